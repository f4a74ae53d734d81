"""Detached signatures of a bundle's manifest with standard tools: `ssh-keygen -Y` (default) or `gpg`.

No cryptography is done here: this module only runs the tools and reads their documented output
(ssh-keygen's fingerprint line, gpg's --with-colons and --status-fd lines).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from conformance.report.bundle import MANIFEST, SIGNATURE_FILES

NAMESPACE = "opendev-cloud-conformance"  # ssh-keygen -Y namespace: a signature for this purpose only
FORMATS = ("ssh", "gpg")
SSH_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-ssh-", "sk-ecdsa-")


class SignError(Exception):
    """Signing could not be done (bad key, tool missing): a usage problem, not an invalid bundle."""


@dataclass
class SignatureCheck:
    valid: bool
    format: str
    file: str
    signer: str = ""  # principal / fingerprint that made the signature, when known
    problems: list[str] = field(default_factory=list)


def _run(args, *, stdin=None, env=None, interactive=False) -> subprocess.CompletedProcess:
    if shutil.which(args[0]) is None:
        raise SignError(f"{args[0]} not found on PATH")
    if interactive:
        # A passphrase prompt goes to the terminal; only stderr is captured for the error message.
        return subprocess.run(args, capture_output=True, text=True, env=env)
    return subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )


def _gpg_env(homedir) -> dict:
    env = dict(os.environ)
    if homedir:
        env["GNUPGHOME"] = str(homedir)
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def ssh_fingerprint(key) -> str:
    """SHA256 fingerprint of an SSH key (private key file, or .pub for a key held by ssh-agent)."""
    key = Path(key).expanduser()
    if not key.is_file():
        raise SignError(f"SSH key {key} does not exist")
    proc = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)])
    match = re.search(r"\bSHA256:[A-Za-z0-9+/=]+", proc.stdout)
    if proc.returncode != 0 or not match:
        raise SignError(f"not an SSH key: {key} ({_last_line(proc.stderr)})")
    return match.group(0)


def gpg_fingerprint(key: str, homedir=None) -> str:
    """Primary key fingerprint of a secret key in the keyring (key id, fingerprint or user id)."""
    proc = _run(["gpg", "--batch", "--with-colons", "--list-secret-keys", "--", str(key)], env=_gpg_env(homedir))
    for line in proc.stdout.splitlines():
        if line.startswith("fpr:"):
            return line.split(":")[9]
    raise SignError(f"no OpenPGP secret key {key!r} in the keyring ({_last_line(proc.stderr)})")


def fingerprint(key, fmt: str, homedir=None) -> str:
    if fmt == "ssh":
        return ssh_fingerprint(key)
    if fmt == "gpg":
        return gpg_fingerprint(key, homedir)
    raise SignError(f"unknown signature format {fmt!r}; use one of {', '.join(FORMATS)}")


def signature_info(key, fmt: str, homedir=None) -> dict:
    """What results.json and the HTML say about the signature; known before the manifest is written."""
    info = {"format": fmt, "fingerprint": fingerprint(key, fmt, homedir), "file": SIGNATURE_FILES[fmt]}
    if fmt == "ssh":
        info["namespace"] = NAMESPACE
    return info


def sign_manifest(bundle_dir, key, fmt: str = "ssh", gpg_homedir=None) -> dict:
    bundle_dir = Path(bundle_dir)
    manifest = bundle_dir / MANIFEST
    if fmt not in FORMATS:
        raise SignError(f"unknown signature format {fmt!r}; use one of {', '.join(FORMATS)}")
    info = signature_info(key, fmt, gpg_homedir)
    target = bundle_dir / SIGNATURE_FILES[fmt]
    target.unlink(missing_ok=True)
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if fmt == "ssh":
        args = ["ssh-keygen", "-Y", "sign", "-n", NAMESPACE, "-f", str(Path(key).expanduser()), str(manifest)]
        proc = _run(args, interactive=interactive)
    else:
        args = [
            "gpg",
            "--yes",
            "--armor",
            "--local-user",
            str(key),
            "--output",
            str(target),
            "--detach-sign",
            str(manifest),
        ]
        if not interactive:
            args.insert(1, "--batch")
        proc = _run(args, env=_gpg_env(gpg_homedir), interactive=interactive)
    if proc.returncode != 0 or not target.is_file():
        raise SignError(f"{args[0]} could not sign {manifest}: {_last_line(proc.stderr)}")
    return info


def key_kind(path) -> str:
    """'ssh' or 'gpg' for a public key file, by its documented text shape."""
    head = Path(path).read_bytes()[:200]
    text = head.decode("ascii", "replace").lstrip()
    if text.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----") or (head and head[0] & 0x80):
        return "gpg"
    if any(token.startswith(SSH_KEY_PREFIXES) for token in text.split()[:3]):
        return "ssh"
    return "unknown"


def _allowed_signers_from_key(pub: Path, directory: Path) -> Path:
    """A one-principal allowed_signers file for `verify --key PUB` (principal 'bundle-signer')."""
    lines = []
    for line in pub.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(SSH_KEY_PREFIXES):
            lines.append(f'bundle-signer namespaces="{NAMESPACE}" {fields[0]} {fields[1]}\n')
    if not lines:
        raise SignError(f"{pub} holds no SSH public key")
    path = directory / "allowed_signers"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def verify_ssh(bundle_dir, *, allowed_signers=None, key=None, identity=None) -> SignatureCheck:
    bundle_dir = Path(bundle_dir)
    sig, manifest = bundle_dir / SIGNATURE_FILES["ssh"], bundle_dir / MANIFEST
    check = SignatureCheck(False, "ssh", sig.name)
    data = manifest.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="conformance-verify-") as tmp:
        if key is not None:
            allowed_signers, identity = _allowed_signers_from_key(Path(key), Path(tmp)), "bundle-signer"
        # Name the key that made the signature, so a rejection can say which key it was.
        probe = _run(["ssh-keygen", "-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig)], stdin=data)
        made_by = re.search(r"SHA256:[A-Za-z0-9+/=]+", probe.stdout + probe.stderr)
        made_by = made_by.group(0) if made_by else "an unknown key"
        if probe.returncode != 0:
            check.problems.append(
                f"{sig.name} is not a valid signature of {MANIFEST} in namespace {NAMESPACE} "
                f"({_last_line(probe.stderr) or _last_line(probe.stdout)})"
            )
            return check
        if key is not None and ssh_fingerprint(key) != made_by:
            check.problems.append(
                f"{sig.name} was made by key {made_by}, not by the key given ({ssh_fingerprint(key)})"
            )
            return check
        principals = [identity] if identity else []
        if not principals:
            found = _run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(allowed_signers)])
            principals = [p for p in found.stdout.split() if p] if found.returncode == 0 else []
        if not principals:
            check.problems.append(f"{sig.name} was made by key {made_by}, which is not in the allowed signers")
            return check
        for principal in principals:
            proc = _run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-f",
                    str(allowed_signers),
                    "-I",
                    principal,
                    "-n",
                    NAMESPACE,
                    "-s",
                    str(sig),
                ],
                stdin=data,
            )
            if proc.returncode == 0:
                check.valid, check.signer = True, f"{principal} ({made_by})"
                return check
        check.problems.append(
            f"{sig.name} (key {made_by}) does not verify for {', '.join(principals)} in the allowed signers"
        )
        return check


def verify_gpg(bundle_dir, *, key=None, homedir=None) -> SignatureCheck:
    """With `key` (an exported public key) the check uses a throw-away keyring holding only that key;
    without, the reviewer's own keyring ($GNUPGHOME)."""
    bundle_dir = Path(bundle_dir)
    sig, manifest = bundle_dir / SIGNATURE_FILES["gpg"], bundle_dir / MANIFEST
    check = SignatureCheck(False, "gpg", sig.name)
    tmp = None
    try:
        if key is not None:
            tmp = tempfile.mkdtemp(prefix="cvg-")
            os.chmod(tmp, 0o700)
            homedir = tmp
            imported = _run(["gpg", "--batch", "--import", str(key)], env=_gpg_env(homedir))
            if imported.returncode != 0:
                raise SignError(f"{key} is not an OpenPGP public key ({_last_line(imported.stderr)})")
        proc = _run(["gpg", "--batch", "--status-fd", "1", "--verify", str(sig), str(manifest)], env=_gpg_env(homedir))
    finally:
        if tmp is not None:
            subprocess.run(["gpgconf", "--homedir", tmp, "--kill", "all"], capture_output=True, check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    status = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "[GNUPG:]":
            status[parts[1]] = parts[2:]
    if proc.returncode == 0 and "VALIDSIG" in status:
        check.valid = True
        check.signer = status["VALIDSIG"][-1]  # primary key fingerprint
        return check
    if "BADSIG" in status:
        check.problems.append(f"{sig.name} does not match {MANIFEST} (BAD signature by key {status['BADSIG'][0]})")
    elif "NO_PUBKEY" in status:
        check.problems.append(
            f"{sig.name} was made by key {status['NO_PUBKEY'][0]}, which is not the key given (or not in the keyring)"
        )
    else:
        check.problems.append(f"{sig.name} does not verify: {_last_line(proc.stderr)}")
    return check
