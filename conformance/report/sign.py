"""Detached signatures of a bundle's manifest with standard tools: `ssh-keygen -Y` (default) or `gpg`.

Signing always runs the tools and reads their documented output (ssh-keygen's fingerprint line, gpg's
--with-colons and --status-fd lines). Checking an SSH signature is done in this process (`check_sshsig`, with
the `cryptography` library): the SSHSIG format of PROTOCOL.sshsig, and the allowed_signers file read with the
rules of ssh-keygen(1) (ALLOWED SIGNERS). It is the same verdict `ssh-keygen -Y verify` gives
(tests/unit/test_sign.py holds the two side by side) without three ssh-keygen processes per bundle, which is
what a fleet of 1,000 bundles spent most of its time on. ssh-keygen still checks what this module does not:
certificates (a `cert-authority` signer), FIDO keys (sk-*), and DSA. OpenPGP signatures are always `gpg`'s:
no library here reads OpenPGP.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from conformance.report.layout import MANIFEST, SIGNATURE_FILES

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
    # What a verdict made in this process is about: sha256 of the manifest, of the signature file and of the
    # allowed signers (or key) file, as read for the check. Empty when ssh-keygen or gpg decided.
    checked: tuple[str, ...] = ()
    # False when the verdict could change with the time of checking alone (a signer line with valid-after or
    # valid-before, or a verdict ssh-keygen gave): the fleet's cache keeps only timeless verdicts.
    timeless: bool = False


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


# ------------------------------------------------------------------------- SSH signatures, in this process
# PROTOCOL.sshsig: the armored blob is "SSHSIG" uint32(1) string(public key) string(namespace) string(reserved)
# string(hash algorithm) string(signature); what the key signed is "SSHSIG" string(namespace) string(reserved)
# string(hash algorithm) string(H(message)). Strings are uint32 length + bytes.
_SSHSIG_MAGIC = b"SSHSIG"
_SSHSIG_BEGIN, _SSHSIG_END = b"-----BEGIN SSH SIGNATURE-----\n", b"\n-----END SSH SIGNATURE-----"
_SSHSIG_HASHES = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}
_ECDSA_HASHES = {"ecdsa-sha2-nistp256": "SHA256", "ecdsa-sha2-nistp384": "SHA384", "ecdsa-sha2-nistp521": "SHA512"}
# False: every SSH signature is checked by ssh-keygen, as before (tests compare the two; bench/fleet.py --baseline).
CHECK_IN_PROCESS = True
# The key types checked here: those `ssh-keygen -t` makes without a security key. Anything else goes to ssh-keygen.
IN_PROCESS_KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", *_ECDSA_HASHES})
_RSA_SIGNATURES = {"rsa-sha2-256": "SHA256", "rsa-sha2-512": "SHA512"}  # sshsig refuses ssh-rsa (SHA-1)
_RSA_MIN_BITS = 1024  # OpenSSH refuses smaller RSA keys
# Key type names an allowed_signers line may start its key with (sshkey_type_from_name): the signature names
# of RSA name an ssh-rsa key.
_KEY_NAME_ALIASES = {"rsa-sha2-256": "ssh-rsa", "rsa-sha2-512": "ssh-rsa"}
_KNOWN_KEY_NAMES = frozenset(
    {
        *IN_PROCESS_KEY_TYPES,
        *_KEY_NAME_ALIASES,
        "ssh-dss",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
        "ssh-xmss@openssh.com",
    }
)
_KNOWN_KEY_NAMES |= {name.replace("@openssh.com", "") + "-cert-v01@openssh.com" for name in _KNOWN_KEY_NAMES}


class SshSigInvalid(Exception):
    """The signature does not verify; the message is what ssh-keygen says in the same case."""


class NotInProcess(Exception):
    """Left to ssh-keygen: a certificate, a FIDO (sk-) or DSA key, or no `cryptography` library."""


@dataclass(frozen=True)
class SshSig:
    key: bytes  # the signer's public key blob (as in a .pub file, base64-decoded)
    key_type: str
    namespace: str
    hash_algorithm: str
    signature: bytes  # string(signature type) string(signature blob)


def _string(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(data):
        raise ValueError("incomplete message")
    size = int.from_bytes(data[offset : offset + 4], "big")
    end = offset + 4 + size
    if end > len(data):
        raise ValueError("incomplete message")
    return data[offset + 4 : end], end


def _strings(data: bytes, count: int, offset: int = 0) -> list[bytes]:
    """`count` strings from offset, and nothing after them."""
    values = []
    for _ in range(count):
        value, offset = _string(data, offset)
        values.append(value)
    if offset != len(data):
        raise ValueError("unexpected trailing data")
    return values


def _mpint(value: bytes) -> int:
    if value and value[0] & 0x80:
        raise ValueError("negative number")
    return int.from_bytes(value, "big")


def _put_string(value: bytes) -> bytes:
    return len(value).to_bytes(4, "big") + value


def key_fingerprint(blob: bytes) -> str:
    """`ssh-keygen -l -E sha256`'s fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def _key_type(blob: bytes) -> str:
    name, _ = _string(blob, 0)
    return name.decode("ascii", "replace")


def parse_sshsig(armored: bytes) -> SshSig:
    """The fields of an armored SSH signature (`ssh-keygen -Y sign` output); SshSigInvalid if it is not one,
    NotInProcess if its key is one of the kinds ssh-keygen checks."""
    if not armored.startswith(_SSHSIG_BEGIN):
        raise SshSigInvalid("Couldn't parse signature: missing header")
    end = armored.find(_SSHSIG_END, len(_SSHSIG_BEGIN) - 1)
    if end < 0:
        raise SshSigInvalid("Couldn't parse signature: missing footer")
    try:
        blob = base64.b64decode(b"".join(armored[len(_SSHSIG_BEGIN) : end].split()), validate=True)
    except ValueError:
        raise SshSigInvalid("Couldn't decode signature: invalid format") from None
    if blob[:6] != _SSHSIG_MAGIC or len(blob) < 10:
        raise SshSigInvalid("Couldn't verify signature: invalid format")
    if int.from_bytes(blob[6:10], "big") > 1:
        raise SshSigInvalid(f"Signature version {int.from_bytes(blob[6:10], 'big')} is larger than supported version 1")
    try:
        key, namespace, _reserved, hash_algorithm, signature = _strings(blob, 5, 10)
        key_type = _key_type(key)
    except ValueError as exc:
        message = "Signature contains trailing data" if "trailing" in str(exc) else f"parse signature object: {exc}"
        raise SshSigInvalid(message) from None
    if key_type not in IN_PROCESS_KEY_TYPES:
        raise NotInProcess(f"a {key_type} signature is checked by ssh-keygen")
    return SshSig(
        key, key_type, namespace.decode("utf-8", "replace"), hash_algorithm.decode("ascii", "replace"), signature
    )


def _public_key(blob: bytes):
    """The `cryptography` public key of a blob (ValueError when it is not a valid key)."""
    try:
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives import serialization
    except ImportError:  # an install without it: ssh-keygen checks instead
        raise NotInProcess("the cryptography library is not installed") from None
    key_type = _key_type(blob)
    try:
        key = serialization.load_ssh_public_key(key_type.encode() + b" " + base64.b64encode(blob))
    except UnsupportedAlgorithm:  # e.g. a curve this build of OpenSSL lacks
        raise NotInProcess(f"{key_type}: not supported by the cryptography library here") from None
    if key_type == "ssh-rsa" and key.key_size < _RSA_MIN_BITS:
        raise ValueError(f"RSA key of {key.key_size} bits is too small")
    return key


def check_sshsig(sig: SshSig, message: bytes, namespace: str) -> None:
    """Raise SshSigInvalid unless `sig` is `sig.key`'s signature of `message` in `namespace` (what
    `ssh-keygen -Y check-novalidate` checks: no allowed signers yet)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if sig.hash_algorithm not in _SSHSIG_HASHES:
        raise SshSigInvalid(f'unsupported hash algorithm "{sig.hash_algorithm[:100]}"')
    if sig.namespace != namespace:
        raise SshSigInvalid("Couldn't verify signature: namespace does not match")
    try:
        public = _public_key(sig.key)
        sig_type, sig_blob = _strings(sig.signature, 2)
        sig_type = sig_type.decode("ascii", "replace")
    except ValueError as exc:
        raise SshSigInvalid(f"parse signature object: {exc}") from None
    signed = b"".join(
        [
            _SSHSIG_MAGIC,
            _put_string(namespace.encode()),
            _put_string(b""),
            _put_string(sig.hash_algorithm.encode()),
            _put_string(_SSHSIG_HASHES[sig.hash_algorithm](message).digest()),
        ]
    )
    if sig.key_type == "ssh-rsa":
        if sig_type not in _RSA_SIGNATURES:
            raise SshSigInvalid(f"Couldn't verify signature: unsupported RSA signature algorithm {sig_type}")
        algorithm = getattr(hashes, _RSA_SIGNATURES[sig_type])()
    elif sig_type != sig.key_type:
        raise SshSigInvalid("Signature verification failed: wrong signature type")
    try:
        if sig.key_type == "ssh-ed25519":
            public.verify(sig_blob, signed)
        elif sig.key_type == "ssh-rsa":
            size = (public.key_size + 7) // 8
            if len(sig_blob) > size:
                raise ValueError("RSA signature longer than the key")
            # OpenSSH accepts a signature whose leading zero bytes were left out.
            public.verify(sig_blob.rjust(size, b"\0"), signed, padding.PKCS1v15(), algorithm)
        else:
            r, s = (_mpint(v) for v in _strings(sig_blob, 2))
            public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(getattr(hashes, _ECDSA_HASHES[sig.key_type])()))
    except (InvalidSignature, ValueError):
        raise SshSigInvalid("Signature verification failed: incorrect signature") from None


@dataclass(frozen=True)
class AllowedSigner:
    """One line of an allowed_signers file (ssh-keygen(1), ALLOWED SIGNERS)."""

    principals: str  # comma-separated patterns, as written
    key: bytes
    cert_authority: bool = False
    namespaces: str | None = None  # comma-separated patterns
    valid_after: int = 0  # seconds since the epoch, 0 = unset
    valid_before: int = 0

    def in_time(self, now: float) -> bool:
        return not (self.valid_after and now < self.valid_after) and not (self.valid_before and now > self.valid_before)

    def matches_key(self, key: bytes, now: float) -> bool:
        """This line names this (plain, not certificate) key and is valid now: `-Y find-principals`."""
        return not self.cert_authority and self.key == key and self.in_time(now)

    def permits(self, key: bytes, principal: str, namespace: str, now: float) -> bool:
        """`-Y verify -I principal -n namespace` accepts this key by this line."""
        return (
            match_pattern_list(principal, self.principals) == 1
            and self.matches_key(key, now)
            and (self.namespaces is None or match_pattern_list(namespace, self.namespaces) == 1)
        )


def match_pattern(text: str, pattern: str) -> bool:
    """OpenSSH's match_pattern: `*` any run of characters, `?` any one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, text, re.S) is not None


def match_pattern_list(text: str, patterns: str) -> int:
    """OpenSSH's match_pattern_list: 1 if a pattern matches, -1 if a negated one (`!pattern`) does, else 0."""
    positive = 0
    for pattern in patterns.split(","):
        negated = pattern.startswith("!")
        if match_pattern(text, pattern[1:] if negated else pattern):
            if negated:
                return -1
            positive = 1
    return positive


def _absolute_time(value: str) -> int:
    """ssh-keygen's YYYYMMDD[HHMM[SS]][Z|UTC] (local time without Z), as seconds since the epoch."""
    utc = value[-1:].upper() == "Z" and len(value) > 1
    if not utc and len(value) > 3 and value[-3:].upper() == "UTC":
        value, utc = value[:-3], True
    elif utc:
        value = value[:-1]
    formats = {8: "%Y%m%d", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    if len(value) not in formats or not value.isdigit():
        raise ValueError(f"invalid time {value!r}")
    parsed = time.strptime(value, formats[len(value)])
    # Local time as ssh-keygen takes it: a struct tm with tm_isdst 0.
    return int(calendar.timegm(parsed) if utc else time.mktime((*parsed[:8], 0)))


def _dequote(opts: str) -> tuple[str, str]:
    """opt_dequote: a "quoted" value (\" inside kept as "), and what follows it."""
    if not opts.startswith('"'):
        raise ValueError("missing start quote")
    value, i = [], 1
    while i < len(opts) and opts[i] != '"':
        if opts[i] == "\\" and opts[i + 1 : i + 2] == '"':
            i += 1
        value.append(opts[i])
        i += 1
    if i >= len(opts):
        raise ValueError("missing end quote")
    return "".join(value), opts[i + 1 :]


def _signer_options(opts: str) -> dict:
    """sshsigopt_parse: cert-authority, namespaces="...", valid-after="...", valid-before="..."."""
    found: dict = {}
    while opts and opts[0] not in " \t":
        lower = opts.lower()
        if lower.startswith("cert-authority"):
            found["cert_authority"], opts = True, opts[len("cert-authority") :]
        else:
            for name in ("namespaces", "valid-after", "valid-before"):
                if lower.startswith(name + "="):
                    if name.replace("-", "_") in found:
                        raise ValueError(f'multiple "{name}" clauses')
                    value, opts = _dequote(opts[len(name) + 1 :])
                    if name != "namespaces":
                        value = _absolute_time(value)
                        if value == 0:
                            raise ValueError(f'invalid "{name}" time')
                    found[name.replace("-", "_")] = value
                    break
        if not opts or opts[0] in " \t":
            break
        if opts[0] != ",":
            raise ValueError("unknown key option")
        opts = opts[1:]
        if not opts:
            raise ValueError("unexpected end-of-options")
    if found.get("valid_after") and found.get("valid_before") and found["valid_before"] <= found["valid_after"]:
        raise ValueError('"valid-before" time is before "valid-after"')
    return found


def _read_key(text: str) -> tuple[bytes, str] | None:
    """sshkey_read: `type base64 [comment]` at the start of text; the blob and the rest, or None."""
    text = text.lstrip(" \t")
    parts = re.split(r"[ \t]+", text, maxsplit=2)
    if len(parts) < 2 or parts[0] not in _KNOWN_KEY_NAMES:
        return None
    try:
        blob = base64.b64decode("".join(parts[1].split()), validate=True)
        key_type = _key_type(blob)
    except ValueError:
        return None
    if _KEY_NAME_ALIASES.get(parts[0], parts[0]) != key_type:
        return None
    if key_type in IN_PROCESS_KEY_TYPES:
        try:
            _public_key(blob)
        except ValueError:
            return None
    return blob, parts[2] if len(parts) > 2 else ""


def _allowed_signer(line: str) -> AllowedSigner | None:
    """One allowed_signers line as ssh-keygen reads it (parse_principals_key_and_options); None for a blank or
    comment line and for a line ssh-keygen would skip as invalid."""
    rest = line.lstrip(" \t\n\r")
    if not rest or rest.startswith("#"):
        return None
    # The principals: up to whitespace, a "quoted part" taken whole (strdelimw).
    cut = re.search(r'[ \t\r\n"]', rest)
    if cut is None:
        return None
    if rest[cut.start()] == '"':
        close = rest.find('"', cut.start() + 1)
        if close < 0:
            return None
        principals = rest[: cut.start()] + rest[cut.start() + 1 : close]
        rest = rest[close + 1 :].lstrip(" \t\r\n")
    else:
        principals, rest = rest[: cut.start()], rest[cut.start() + 1 :].lstrip(" \t\r\n")
    options: dict = {}
    read = _read_key(rest)
    if read is None:
        # Options first: up to the first whitespace outside quotes.
        quoted, i = False, 0
        while i < len(rest) and (quoted or rest[i] not in " \t"):
            if rest[i] == "\\" and rest[i + 1 : i + 2] == '"':
                i += 1
            elif rest[i] == '"':
                quoted = not quoted
            i += 1
        if quoted or i >= len(rest):
            return None
        try:
            options = _signer_options(rest[:i])
        except ValueError:
            return None
        read = _read_key(rest[i + 1 :])
        if read is None:
            return None
    return AllowedSigner(principals, read[0], **options)


def allowed_signers_list(text: str) -> list[AllowedSigner]:
    """Every usable line of an allowed_signers file, in order (ssh-keygen skips the lines it cannot read)."""
    return [signer for signer in map(_allowed_signer, text.splitlines()) if signer is not None]


def _key_blobs(pub: Path, text: str) -> list[bytes]:
    """The keys of a .pub file (its text), as `_allowed_signers_from_key` picks them."""
    blobs = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0].startswith(SSH_KEY_PREFIXES):
            read = _read_key(f"{fields[0]} {fields[1]}")
            if read is None or _key_type(read[0]) not in IN_PROCESS_KEY_TYPES:
                raise NotInProcess(f"{pub}: a key ssh-keygen reads")
            blobs.append(read[0])
    if not blobs:
        raise SignError(f"{pub} holds no SSH public key")
    return blobs


def _verify_ssh_in_process(sig: Path, manifest: Path, *, allowed_signers, key, identity) -> SignatureCheck:
    """verify_ssh's verdict and messages, computed here; NotInProcess for what ssh-keygen has to check."""
    check = SignatureCheck(False, "ssh", sig.name)
    trusted = Path(key if key is not None else allowed_signers).read_bytes()
    if key is not None:
        blobs = _key_blobs(Path(key), trusted.decode("utf-8"))
        signers = [AllowedSigner("bundle-signer", blob, namespaces=NAMESPACE) for blob in blobs]
        identity = "bundle-signer"
    else:
        signers = allowed_signers_list(trusted.decode("utf-8", errors="replace"))
    signature, data = sig.read_bytes(), manifest.read_bytes()
    check.checked = tuple(hashlib.sha256(b).hexdigest() for b in (data, signature, trusted))
    try:
        parsed = parse_sshsig(signature)
        check_sshsig(parsed, data, NAMESPACE)
    except SshSigInvalid as exc:
        check.problems.append(f"{sig.name} is not a valid signature of {MANIFEST} in namespace {NAMESPACE} ({exc})")
        check.timeless = True
        return check
    made_by = key_fingerprint(parsed.key)
    check.timeless = not any(s.valid_after or s.valid_before for s in signers if s.key == parsed.key)
    if key is not None and parsed.key != blobs[0]:
        check.problems.append(
            f"{sig.name} was made by key {made_by}, not by the key given ({key_fingerprint(blobs[0])})"
        )
        return check
    now = time.time()
    principals = [identity] if identity else []
    if not principals:
        first = next((s for s in signers if s.matches_key(parsed.key, now)), None)
        # `-Y find-principals` prints the first matching line's principals, one per line.
        principals = first.principals.split(",") if first else []
        principals = principals[: principals.index("")] if "" in principals else principals
        principals = [p for name in principals for p in name.split()]
    if not principals:
        check.problems.append(f"{sig.name} was made by key {made_by}, which is not in the allowed signers")
        return check
    for principal in principals:
        if any(s.permits(parsed.key, principal, NAMESPACE, now) for s in signers):
            check.valid, check.signer = True, f"{principal} ({made_by})"
            return check
    check.problems.append(
        f"{sig.name} (key {made_by}) does not verify for {', '.join(principals)} in the allowed signers"
    )
    return check


def verify_ssh(bundle_dir, *, allowed_signers=None, key=None, identity=None) -> SignatureCheck:
    """The bundle's SSH signature against an allowed_signers file or one public key: checked in this process
    where it can be (CHECK_IN_PROCESS), by ssh-keygen otherwise."""
    bundle_dir = Path(bundle_dir)
    sig, manifest = bundle_dir / SIGNATURE_FILES["ssh"], bundle_dir / MANIFEST
    if CHECK_IN_PROCESS:
        try:
            return _verify_ssh_in_process(sig, manifest, allowed_signers=allowed_signers, key=key, identity=identity)
        except NotInProcess:
            pass  # certificates, FIDO and DSA keys: ssh-keygen decides, below
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
