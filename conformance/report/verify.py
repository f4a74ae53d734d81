"""Verify a bundle: the signature over MANIFEST.sha256 AND every file's hash against the manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from conformance.report import sign
from conformance.report.bundle import check_files
from conformance.report.layout import MANIFEST, SIGNATURE_FILES


class UsageError(Exception):
    """The command was called wrongly (exit 2), as opposed to a bundle that does not verify (exit 1)."""


@dataclass
class Verification:
    bundle: Path
    problems: list[str] = field(default_factory=list)
    signatures: list[sign.SignatureCheck] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a second signature no key was given for

    @property
    def valid(self) -> bool:
        return not self.problems and any(s.valid for s in self.signatures)


def verify_bundle(bundle, *, allowed_signers=None, key=None, identity=None, gpg_homedir=None) -> Verification:
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"{bundle} is not a bundle directory")
    for given, what in ((allowed_signers, "allowed signers file"), (key, "public key file")):
        if given is not None and not Path(given).is_file():
            raise UsageError(f"{what} {given} does not exist")
    present = {fmt: bundle / name for fmt, name in SIGNATURE_FILES.items() if (bundle / name).is_file()}
    kind = sign.key_kind(key) if key is not None else None
    if key is not None and kind == "unknown":
        raise UsageError(f"{key} is neither an SSH public key nor an OpenPGP public key")
    if allowed_signers is not None and key is not None:
        raise UsageError("give --allowed-signers or --key, not both")
    if "ssh" in present and allowed_signers is None and kind != "ssh" and set(present) == {"ssh"}:
        raise UsageError("the bundle has an SSH signature: give --allowed-signers FILE or --key KEY.pub")
    if set(present) == {"gpg"} and (allowed_signers is not None or kind == "ssh"):
        raise UsageError("the bundle has an OpenPGP signature: give --key KEY.asc, or no key to use your keyring")

    result = Verification(bundle)
    if not (bundle / MANIFEST).is_file():
        result.problems.append(f"missing: {MANIFEST}")
    if not present:
        result.problems.append(f"not signed: neither {' nor '.join(SIGNATURE_FILES.values())} is in the bundle")
    if result.problems:
        return result
    try:
        if "ssh" in present:
            if kind == "gpg" or (allowed_signers is None and kind is None):
                result.notes.append(f"{SIGNATURE_FILES['ssh']} (SSH) was not checked: no SSH key given")
            else:
                result.signatures.append(
                    sign.verify_ssh(
                        bundle,
                        allowed_signers=allowed_signers,
                        key=key if kind == "ssh" else None,
                        identity=identity,
                    )
                )
        if "gpg" in present:
            if kind == "ssh" or allowed_signers is not None:
                result.notes.append(f"{SIGNATURE_FILES['gpg']} (OpenPGP) was not checked: an SSH key was given")
            else:
                result.signatures.append(sign.verify_gpg(bundle, key=key, homedir=gpg_homedir))
    except sign.SignError as exc:
        raise UsageError(str(exc)) from exc
    if not result.signatures:
        result.problems.append("no signature could be checked with the key given")
    for check in result.signatures:
        result.problems += check.problems
    result.problems += check_files(bundle)
    return result
