"""Keystone's TLS (R7): one raw TLS handshake with a URL's host, what it shows, and the protocol versions below
the minimum the server still accepts. A socket of its own, not the API connection: the certificate and protocol
are what is measured.

    info = probe_tls(cloud.auth_url, cafile=cloud.cacert, min_version="1.2")   # Cloud.probe_keystone_tls()
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit


@dataclass
class TlsInfo:
    """What one TLS handshake with a URL's host showed. `error` is set when the verified handshake failed."""

    host: str
    port: int
    verified: bool = False
    error: str = ""
    tls_version: str = ""  # "TLSv1.3"
    issuer: str = ""
    subject: str = ""
    not_after: str = ""  # ISO 8601 UTC
    days_to_expiry: float | None = None
    accepts_below: str = ""  # a protocol version below the minimum the server still accepted

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


_TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


def tls_version_number(name: str) -> tuple[int, int]:
    """(1, 2) from "TLSv1.2" or "1.2"."""
    digits = re.findall(r"\d+", name or "")
    return (int(digits[0]), int(digits[1])) if len(digits) >= 2 else (0, 0)


_RDN_LABELS = {"commonName": "CN", "organizationName": "O", "countryName": "C"}


def _name(rdns) -> str:
    """`CN=sandbox CA, O=...` from getpeercert()'s nested tuples."""
    pairs = [(key, value) for rdn in rdns or () for key, value in rdn if key in _RDN_LABELS]
    return ", ".join(f"{_RDN_LABELS[key]}={value}" for key, value in pairs)


def probe_tls(url: str, cafile: str | None = None, min_version: str = "1.2", timeout: float = 5.0) -> TlsInfo:
    """Handshake with the host of `url`, verifying against `cafile` (or the system store) and host name."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    info = TlsInfo(host=host, port=port)
    context = ssl.create_default_context(cafile=os.path.expanduser(cafile) if cafile else None)
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            info.verified = True
            info.tls_version = tls.version() or ""
            cert = tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        info.error = f"certificate verification failed: {exc.verify_message or exc.reason}"
        return info
    except ssl.SSLError as exc:
        info.error = f"TLS handshake failed: {exc.reason or exc}"
        return info
    except (TimeoutError, OSError) as exc:
        info.error = f"cannot connect to {host}:{port}: {exc.strerror or exc}"
        return info
    info.issuer = _name(cert.get("issuer"))
    info.subject = _name(cert.get("subject"))
    if cert.get("notAfter"):
        expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), timezone.utc)
        info.not_after = expires.isoformat()
        info.days_to_expiry = round((expires - datetime.now(timezone.utc)).total_seconds() / 86400, 1)
    info.accepts_below = _accepts_below(host, port, min_version, timeout)
    return info


def _accepts_below(host: str, port: int, min_version: str, timeout: float) -> str:
    """Best effort: a protocol below the minimum the server still accepts ("" when none or untestable)."""
    floor = _TLS_VERSIONS.get(min_version)
    older = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2)
    below = [v for v in older if floor and v < floor]
    for version in reversed(below):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # offering old versions is the point
                context.set_ciphers("ALL:@SECLEVEL=0")
                context.minimum_version = version
                context.maximum_version = version
        except (ValueError, ssl.SSLError):
            continue  # this OpenSSL cannot even offer that version
        try:
            with (
                socket.create_connection((host, port), timeout=timeout) as raw,
                context.wrap_socket(raw, server_hostname=host) as tls,
            ):
                return tls.version() or version.name
        except (OSError, ssl.SSLError):
            continue
    return ""
