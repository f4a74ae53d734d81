"""Sign and verify bundles with keys made in the test: ssh-keygen (ed25519) and gpg (temporary GNUPGHOME)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conformance.__main__ import main
from conformance.report import bundle, model, sign
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


# ------------------------------------------------------------------ SSH signatures checked in this process
# sign.verify_ssh checks SSHSIG signatures with the cryptography library (no ssh-keygen process); each case below
# is also checked by ssh-keygen (sign.CHECK_IN_PROCESS off: `-Y check-novalidate`, `-Y find-principals`,
# `-Y verify`, as before) and, for the verdict, by a plain `ssh-keygen -Y verify` of the same files.
KEY_TYPES = {"ed25519": ["-t", "ed25519"], "ecdsa": ["-t", "ecdsa", "-b", "256"], "rsa": ["-t", "rsa", "-b", "2048"]}


@pytest.fixture(scope="module")
def typed_keys(tmp_path_factory):
    """A donor key and another key of each type the suite's signer can make (ssh-keygen -t without a token)."""
    directory = tmp_path_factory.mktemp("typed")
    keys = {}
    for name, args in KEY_TYPES.items():
        for who in ("donor", "other"):
            key = directory / f"{who}_{name}"
            comment = f"{who}@example.org"
            subprocess.run(["ssh-keygen", "-q", *args, "-N", "", "-C", comment, "-f", str(key)], check=True)
            keys[who, name] = key
    return keys


def pub_fields(key: Path) -> str:
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def sign_with(bundle_dir: Path, key: Path, namespace: str = sign.NAMESPACE) -> None:
    """`ssh-keygen -Y sign` of the manifest, as sign.sign_manifest runs it (but any namespace)."""
    (bundle_dir / "MANIFEST.sha256.sig").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-Y", "sign", "-n", namespace, "-f", str(key), str(bundle_dir / "MANIFEST.sha256")],
        check=True,
        capture_output=True,
    )


def ssh_keygen_verify(bundle_dir: Path, allowed: Path, principal: str) -> bool:
    """The reference: `ssh-keygen -Y verify` of the bundle's manifest for this principal."""
    done = subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(allowed),
            "-I",
            principal,
            "-n",
            sign.NAMESPACE,
            "-s",
            str(bundle_dir / "MANIFEST.sha256.sig"),
        ],
        stdin=(bundle_dir / "MANIFEST.sha256").open("rb"),
        capture_output=True,
    )
    return done.returncode == 0


def both_ways(monkeypatch, bundle_dir: Path, **given) -> tuple[sign.SignatureCheck, sign.SignatureCheck]:
    """verify_ssh in this process (it must not start ssh-keygen), then by ssh-keygen."""

    def no_process(*args, **kwargs):
        raise AssertionError(f"a process was started: {args}")

    with monkeypatch.context() as patch:
        patch.setattr(sign, "_run", no_process)
        patch.setattr(subprocess, "run", no_process)
        here = sign.verify_ssh(bundle_dir, **given)
    with monkeypatch.context() as patch:
        patch.setattr(sign, "CHECK_IN_PROCESS", False)
        tool = sign.verify_ssh(bundle_dir, **given)
    return here, tool


def same_verdict(here: sign.SignatureCheck, tool: sign.SignatureCheck) -> bool:
    return (here.valid, here.signer, here.problems) == (tool.valid, tool.signer, tool.problems)


@needs_ssh
@pytest.mark.parametrize("key_type", list(KEY_TYPES))
@pytest.mark.parametrize("case", ["valid", "tampered manifest", "wrong namespace", "key not in allowed signers"])
def test_in_process_check_agrees_with_ssh_keygen(tmp_path, typed_keys, monkeypatch, key_type, case):
    path = make_bundle(tmp_path)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"donor@example.org {pub_fields(typed_keys['donor', key_type])}\n")
    signer = typed_keys["other" if case == "key not in allowed signers" else "donor", key_type]
    sign_with(path, signer, "another-namespace" if case == "wrong namespace" else sign.NAMESPACE)
    if case == "tampered manifest":
        manifest = path / "MANIFEST.sha256"
        manifest.write_text(manifest.read_text().replace("  results.json", "  results.json ", 1))

    here, tool = both_ways(monkeypatch, path, allowed_signers=allowed)
    assert same_verdict(here, tool), (here, tool)
    assert here.valid is (case == "valid") is ssh_keygen_verify(path, allowed, "donor@example.org")
    expected = {
        "valid": None,
        "tampered manifest": "(Signature verification failed: incorrect signature)",
        "wrong namespace": "(Couldn't verify signature: namespace does not match)",
        "key not in allowed signers": "which is not in the allowed signers",
    }[case]
    if expected:
        [problem] = here.problems
        assert expected in problem
    else:
        assert here.signer == f"donor@example.org ({sign.ssh_fingerprint(signer)})" and not here.problems
        assert here.checked[0] == hashlib.sha256((path / "MANIFEST.sha256").read_bytes()).hexdigest()
        assert here.timeless
    # The same through the command (`verify`), and by one public key (`verify --key`).
    assert verify(path, "--allowed-signers", allowed) == (0 if case == "valid" else 1)
    pub = Path(f"{typed_keys['donor', key_type]}.pub")
    here, tool = both_ways(monkeypatch, path, key=pub)
    assert same_verdict(here, tool), (here, tool)
    assert here.valid is (case == "valid")


# allowed_signers lines (ssh-keygen(1), ALLOWED SIGNERS) for the donor's ed25519 key KEY, whether ssh-keygen
# accepts a signature by it through them. OTHER is another key.
SIGNER_FILES = {
    'donor@example.org namespaces="opendev-cloud-conformance" KEY': True,
    'donor@example.org NAMESPACES="opendev-*" KEY': True,
    'donor@example.org namespaces="other,another" KEY': False,
    'donor@example.org namespaces="*,!opendev-cloud-conformance" KEY': False,
    'donor@example.org valid-before="20000101" KEY': False,
    'donor@example.org valid-after="29990101Z" KEY': False,
    'donor@example.org valid-after="20000101Z",valid-before="299901011200" KEY': True,
    "donor@example.org cert-authority KEY": False,
    "donor@example.org,second@example.org KEY": True,
    '"donor@example.org" KEY': True,
    "*@example.org KEY": True,
    "!donor@example.org KEY": False,
    "donor@example.org OTHER": False,
    "# a comment\n\nbroken\ndonor@example.org bogus-option KEY\nfallback@example.org KEY": True,
    'donor@example.org namespaces="unterminated KEY\nlater@example.org KEY': True,
    # find-principals names the first line's principal, and that principal may not sign this namespace.
    'first@example.org namespaces="x" KEY\nsecond@example.org KEY': False,
    'first@example.org namespaces="x" KEY\nfirst@example.org KEY': True,
}


@needs_ssh
@pytest.mark.parametrize("lines", list(SIGNER_FILES), ids=range(len(SIGNER_FILES)))
def test_allowed_signers_are_read_as_ssh_keygen_reads_them(tmp_path, typed_keys, monkeypatch, lines):
    path = make_bundle(tmp_path)
    sign_with(path, typed_keys["donor", "ed25519"])
    allowed = tmp_path / "allowed_signers"
    text = lines.replace("OTHER", pub_fields(typed_keys["other", "ed25519"]))
    allowed.write_text(text.replace("KEY", pub_fields(typed_keys["donor", "ed25519"])) + "\n")
    here, tool = both_ways(monkeypatch, path, allowed_signers=allowed)
    assert same_verdict(here, tool), (here, tool)
    assert here.valid is SIGNER_FILES[lines]
    assert here.timeless is ("valid-" not in lines)
    with monkeypatch.context() as patch:  # an identity given (verify --identity) is matched against the patterns
        patch.setattr(sign, "_run", lambda *a, **k: pytest.fail("a process was started"))
        by_identity = sign.verify_ssh(path, allowed_signers=allowed, identity="second@example.org")
    assert by_identity.valid is ssh_keygen_verify(path, allowed, "second@example.org")


@needs_ssh
def test_a_certificate_signature_is_left_to_ssh_keygen(tmp_path, typed_keys):
    """A key the in-process check does not take (here a certificate, with a cert-authority signer) is checked
    by ssh-keygen, as before."""
    ca = typed_keys["other", "ed25519"]
    user = tmp_path / "user"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(user)], check=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(ca), "-I", "donor", "-n", "donor@example.org", f"{user}.pub"], check=True
    )
    path = make_bundle(tmp_path)
    sign_with(path, Path(f"{user}-cert.pub"))
    with pytest.raises(sign.NotInProcess):
        sign.parse_sshsig((path / "MANIFEST.sha256.sig").read_bytes())
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"*@example.org cert-authority {pub_fields(ca)}\n")
    check = sign.verify_ssh(path, allowed_signers=allowed)
    assert check.valid and check.signer.startswith("donor@example.org (") and not check.timeless
    allowed.write_text(f"*@example.org {pub_fields(ca)}\n")  # the CA's key as a plain signer: not the signer
    assert not sign.verify_ssh(path, allowed_signers=allowed).valid


def test_sshsig_parsing_rejects_what_is_not_a_signature():
    with pytest.raises(sign.SshSigInvalid, match="missing header"):
        sign.parse_sshsig(b"not a signature")
    with pytest.raises(sign.SshSigInvalid, match="missing footer"):
        sign.parse_sshsig(b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n")
    with pytest.raises(sign.SshSigInvalid, match="invalid format"):
        sign.parse_sshsig(b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n")
    assert sign.match_pattern_list("a@example.org", "b@*,a@*") == 1
    assert sign.match_pattern_list("a@example.org", "*,!a@*") == -1
    assert sign.match_pattern_list("a@example.org", "a?example.org") == 1
    assert sign.match_pattern_list("a.example", "[a].example") == 0  # no character classes in OpenSSH patterns
