"""Sign and verify bundles with keys made in the test: ssh-keygen (ed25519) and gpg (temporary GNUPGHOME)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conformance.__main__ import main
from conformance.report import bundle, model
from conformance.report.sample import sample_session_results

needs_ssh = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
needs_gpg = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg not installed")


def make_bundle(directory: Path) -> Path:
    doc = model.build_document(sample_session_results(), bundle_name="sandbox-zuul-20261128T120000Z")
    return bundle.write_bundle(doc, directory / "sandbox-zuul-20261128T120000Z").path


def ssh_key(directory: Path, name: str, principal: str) -> tuple[Path, Path]:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)], check=True)
    return key, key.with_suffix(".pub")


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("ssh")
    donor, donor_pub = ssh_key(directory, "donor", "donor@example.org")
    other, other_pub = ssh_key(directory, "other", "other@example.org")
    allowed = directory / "allowed_signers"
    allowed.write_text("donor@example.org " + " ".join(donor_pub.read_text().split()[:2]) + "\n")
    return {
        "donor": donor,
        "donor_pub": donor_pub,
        "other": other,
        "other_pub": other_pub,
        "allowed": allowed,
    }


@pytest.fixture
def signed(tmp_path, ssh_keys):
    path = make_bundle(tmp_path)
    assert main(["sign", str(path), "--key", str(ssh_keys["donor"])]) == 0
    return path


def verify(path, *args) -> int:
    return main(["verify", str(path), *map(str, args)])


@needs_ssh
def test_ssh_sign_then_verify(signed, ssh_keys, capsys):
    assert (signed / "MANIFEST.sha256.sig").is_file()
    capsys.readouterr()
    assert verify(signed, "--allowed-signers", ssh_keys["allowed"]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out and "donor@example.org" in out
    assert verify(signed, "--key", ssh_keys["donor_pub"]) == 0


@needs_ssh
def test_signing_key_fingerprint_shown_in_html_and_json(signed, ssh_keys):
    from conformance.report.sign import ssh_fingerprint

    fingerprint = ssh_fingerprint(ssh_keys["donor"])
    assert fingerprint in (signed / "report.html").read_text()
    signature = json.loads((signed / "results.json").read_text())["signature"]
    assert signature == {
        "format": "ssh",
        "fingerprint": fingerprint,
        "file": "MANIFEST.sha256.sig",
        "namespace": "opendev-cloud-conformance",
    }


@needs_ssh
@pytest.mark.parametrize(
    "target", ["report.html", "results.json", "onboarding/nodepool-provider.yaml", "MANIFEST.sha256"]
)
def test_one_changed_byte_fails_naming_the_file(signed, ssh_keys, target, capsys):
    data = bytearray((signed / target).read_bytes())
    data[len(data) // 2] ^= 0x01
    (signed / target).write_bytes(bytes(data))
    capsys.readouterr()
    assert verify(signed, "--allowed-signers", ssh_keys["allowed"]) == 1
    err = capsys.readouterr().err
    if target == "MANIFEST.sha256":
        assert "MANIFEST.sha256.sig is not a valid signature of MANIFEST.sha256" in err
    else:
        assert f"changed: {target}" in err


@needs_ssh
def test_deleted_file_fails(signed, ssh_keys, capsys):
    (signed / "onboarding" / "clouds-public.yaml").unlink()
    assert verify(signed, "--allowed-signers", ssh_keys["allowed"]) == 1
    assert "missing: onboarding/clouds-public.yaml" in capsys.readouterr().err


@needs_ssh
def test_added_file_fails(signed, ssh_keys, capsys):
    (signed / "notes.txt").write_text("added later\n")
    assert verify(signed, "--allowed-signers", ssh_keys["allowed"]) == 1
    assert "extra: notes.txt" in capsys.readouterr().err


@needs_ssh
def test_signature_by_key_not_in_allowed_signers_fails(tmp_path, ssh_keys, capsys):
    path = make_bundle(tmp_path)
    assert main(["sign", str(path), "--key", str(ssh_keys["other"])]) == 0
    capsys.readouterr()
    assert verify(path, "--allowed-signers", ssh_keys["allowed"]) == 1
    assert "not in the allowed signers" in capsys.readouterr().err
    assert verify(path, "--key", ssh_keys["donor_pub"]) == 1
    assert "not by the key given" in capsys.readouterr().err


@needs_ssh
def test_missing_signature_fails(tmp_path, ssh_keys, capsys):
    path = make_bundle(tmp_path)
    assert verify(path, "--allowed-signers", ssh_keys["allowed"]) == 1
    assert "not signed" in capsys.readouterr().err


@needs_ssh
def test_sign_refuses_a_bundle_that_no_longer_matches_its_manifest(tmp_path, ssh_keys, capsys):
    path = make_bundle(tmp_path)
    (path / "results.json").write_text("{}")
    assert main(["sign", str(path), "--key", str(ssh_keys["donor"])]) == 1
    assert "changed: results.json" in capsys.readouterr().err
    assert not (path / "MANIFEST.sha256.sig").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["verify"],  # no bundle
        ["verify", "/nonexistent/bundle", "--key", "x"],  # not a directory
        ["verify", "{bundle}"],  # SSH signature but no key / allowed signers
        ["verify", "{bundle}", "--allowed-signers", "/nonexistent"],
        ["verify", "{bundle}", "--bogus"],
        ["sign", "{bundle}"],  # no --key
        ["sign", "{bundle}", "--key", "/nonexistent/key"],
        ["sign", "{bundle}", "--key", "k", "--format", "pgp"],
    ],
)
@needs_ssh
def test_usage_errors_exit_2(signed, argv):
    assert main([a.replace("{bundle}", str(signed)) for a in argv]) == 2


@pytest.fixture
def gnupghome():
    # Short path: gpg-agent's socket lives in the home directory and socket paths are limited to ~100 bytes.
    home = tempfile.mkdtemp(prefix="cg-", dir="/tmp")
    os.chmod(home, 0o700)
    yield Path(home)
    subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def gpg_key(home: Path, uid: str, export_to: Path) -> None:
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"],
        env=env,
        check=True,
        capture_output=True,
    )
    export_to.write_bytes(
        subprocess.run(["gpg", "--batch", "--armor", "--export", uid], env=env, check=True, capture_output=True).stdout
    )


@needs_gpg
def test_gpg_sign_then_verify_and_tamper(tmp_path, gnupghome, monkeypatch, capsys):
    gpg_key(gnupghome, "Donor <donor@example.org>", tmp_path / "donor.asc")
    monkeypatch.setenv("GNUPGHOME", str(gnupghome))
    path = make_bundle(tmp_path)
    assert main(["sign", str(path), "--key", "donor@example.org", "--format", "gpg"]) == 0
    assert (path / "MANIFEST.sha256.asc").is_file()
    signature = json.loads((path / "results.json").read_text())["signature"]
    assert signature["format"] == "gpg" and signature["fingerprint"] in (path / "report.html").read_text()
    capsys.readouterr()
    assert verify(path, "--key", tmp_path / "donor.asc") == 0
    assert signature["fingerprint"] in capsys.readouterr().out
    assert verify(path) == 0  # the reviewer's own keyring

    (path / "results.json").write_text((path / "results.json").read_text().replace("FAIL", "PASS"))
    assert verify(path, "--key", tmp_path / "donor.asc") == 1
    assert "changed: results.json" in capsys.readouterr().err


@needs_gpg
def test_gpg_signature_by_another_key_fails(tmp_path, gnupghome, monkeypatch, capsys):
    other_home = Path(tempfile.mkdtemp(prefix="cg-", dir="/tmp"))
    os.chmod(other_home, 0o700)
    try:
        gpg_key(gnupghome, "Donor <donor@example.org>", tmp_path / "donor.asc")
        gpg_key(other_home, "Other <other@example.org>", tmp_path / "other.asc")
        monkeypatch.setenv("GNUPGHOME", str(other_home))
        path = make_bundle(tmp_path)
        assert main(["sign", str(path), "--key", "other@example.org", "--format", "gpg"]) == 0
        capsys.readouterr()
        assert verify(path, "--key", tmp_path / "donor.asc") == 1
        assert "not the key given" in capsys.readouterr().err
    finally:
        subprocess.run(["gpgconf", "--homedir", str(other_home), "--kill", "all"], capture_output=True)
        shutil.rmtree(other_home, ignore_errors=True)


@needs_gpg
@needs_ssh
def test_key_kind_mismatch_is_usage_error(tmp_path, gnupghome, signed, ssh_keys):
    gpg_key(gnupghome, "Donor <donor@example.org>", tmp_path / "donor.asc")
    assert verify(signed, "--key", tmp_path / "donor.asc") == 2
