"""R7: Keystone is reached over https; its certificate verifies, is current, and TLS is modern."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from conformance.tls import tls_version_number

pytestmark = pytest.mark.requirement("R7")


def test_keystone_https(cloud, profile, record):
    url, scope = cloud.auth_url, cloud.scope
    scheme = urlsplit(url).scheme or "(none)"
    if profile["keystone.require_https"]:
        https = scheme == "https"
        record(
            "R7",
            "keystone.https",
            scope=scope,
            measured=scheme,
            threshold="https",
            ok=https,
            reason="" if https else f"auth_url {url} is not https: passwords and tokens cross the network unencrypted",
        )
        if not https:
            return
    elif scheme != "https":
        record(
            "R7",
            "keystone.https",
            scope=scope,
            measured=scheme,
            threshold="any (profile)",
            verdict="SKIP",
            reason="the profile does not require https",
        )
        return

    if not cloud.tls_verify:
        record(
            "R7",
            "keystone.certificate",
            scope=scope,
            measured="verify: false",
            threshold="verified",
            ok=False,
            reason="clouds.yaml turns certificate verification off (verify: false or insecure) "
            "for this cloud: an unverified connection proves nothing",
        )
        return

    min_version = profile["keystone.min_tls_version"]
    ca = cloud.cacert or "system store"
    info = cloud.probe_keystone_tls(min_version=min_version)
    if info.error:
        hint = ""
        if not cloud.cacert and "verification failed" in info.error:
            # A private CA is fine for OpenDev; the donor's clouds.yaml just has to name it.
            hint = (
                "; if Keystone's certificate comes from a private CA or is self-signed (OpenDev accepts that), "
                "give the CA file as `cacert` in this cloud's clouds.yaml entry"
            )
        record(
            "R7",
            "keystone.certificate",
            scope=scope,
            measured="not verified",
            threshold=f"valid, CA {ca}",
            ok=False,
            reason=f"{info.error} (host {info.host}, CA {ca}){hint}",
            data={"ca": ca},
        )
        return
    record(
        "R7",
        "keystone.certificate",
        scope=scope,
        measured=f"verified for {info.host}",
        threshold=f"valid, CA {ca}",
        ok=True,
        data={
            "ca": ca,
            "issuer": info.issuer,
            "subject": info.subject,
            "not_after": info.not_after,
            "days_to_expiry": info.days_to_expiry,
        },
    )

    version_ok = tls_version_number(info.tls_version) >= tls_version_number(min_version)
    reason = ""
    if not version_ok:
        reason = f"Keystone negotiated {info.tls_version}, older than TLS {min_version}"
    elif info.accepts_below:
        version_ok = False
        reason = f"Keystone still accepts {info.accepts_below}, older than TLS {min_version}"
    record(
        "R7",
        "keystone.tls_version",
        scope=scope,
        measured=info.tls_version,
        threshold=f">= TLSv{min_version}",
        ok=version_ok,
        reason=reason,
    )

    min_days = profile["keystone.min_days_to_expiry"]
    days = info.days_to_expiry
    expiry_ok = days is not None and days >= min_days
    record(
        "R7",
        "keystone.cert_expiry",
        scope=scope,
        measured=f"{days} days",
        threshold=f">= {min_days} days",
        ok=expiry_ok,
        reason="" if expiry_ok else f"the certificate (issuer {info.issuer}) expires {info.not_after}",
        data={"issuer": info.issuer, "not_after": info.not_after, "days_to_expiry": days},
    )
