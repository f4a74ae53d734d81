"""The R7 TLS probe against local TLS listeners with generated certificates: trusted, expired, wrong host."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest

from conformance.tls import probe_tls, tls_version_number

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_pki(tmp_path, *, host_ip="127.0.0.1", days_valid=30, expired=False):
    """A CA and a server certificate for `host_ip`, written as PEM files."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test CA"))
        .issuer_name(_name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    not_after = now - dt.timedelta(days=1) if expired else now + dt.timedelta(days=days_valid)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("keystone"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(days=10))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host_ip))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


@pytest.fixture
def tls_server():
    """Start a TLS listener on 127.0.0.1 with the given cert; returns its https URL."""
    servers = []

    def start(cert_file, key_file):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        listener = socket.create_server(("127.0.0.1", 0))
        stop = threading.Event()

        def serve():
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((listener, stop, thread))
        return f"https://127.0.0.1:{listener.getsockname()[1]}/v3"

    yield start
    for listener, stop, thread in servers:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_trusted_certificate_is_verified_with_its_ca(tmp_path, tls_server):
    ca, cert, key = make_pki(tmp_path, days_valid=30)
    info = probe_tls(tls_server(cert, key), cafile=str(ca), min_version="1.2")
    assert info.verified and not info.error
    assert info.tls_version in ("TLSv1.2", "TLSv1.3")
    assert info.issuer == "CN=test CA"
    assert 29 <= info.days_to_expiry <= 30
    assert info.accepts_below == ""


def test_unknown_ca_fails_verification(tmp_path, tls_server):
    _, cert, key = make_pki(tmp_path)
    info = probe_tls(tls_server(cert, key), cafile=None)
    assert not info.verified
    assert "certificate verification failed" in info.error


def test_expired_certificate_fails_verification(tmp_path, tls_server):
    ca, cert, key = make_pki(tmp_path, expired=True)
    info = probe_tls(tls_server(cert, key), cafile=str(ca))
    assert not info.verified
    assert "expired" in info.error


def test_host_name_mismatch_fails_verification(tmp_path, tls_server):
    ca, cert, key = make_pki(tmp_path, host_ip="10.9.8.7")  # certificate for another address
    info = probe_tls(tls_server(cert, key), cafile=str(ca))
    assert not info.verified
    assert "mismatch" in info.error.lower() or "doesn't match" in info.error


def test_nothing_listening(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = probe_tls(f"https://127.0.0.1:{port}/v3", timeout=2)
    assert not info.verified and "cannot connect" in info.error


def test_tls_version_numbers():
    assert tls_version_number("TLSv1.3") > tls_version_number("1.2") > tls_version_number("TLSv1.1")
