"""The report bundle on disk: the single writer (all redaction happens here), manifest, finalisation.

The files' names are conformance.report.layout. Order matters: files first, then the manifest, then the
signature over the manifest (conformance.report.sign).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from conformance.metrics.prometheus import openmetrics_text
from conformance.redact import redact, redact_obj
from conformance.report import onboarding, sign
from conformance.report.html import signature_html, standalone_page
from conformance.report.layout import HTML, MANIFEST, METRICS, NOT_HASHED, ONBOARDING, RESULTS, SIGNATURE_FILES

_MANIFEST_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def write_file(path: Path, content) -> Path:
    """The one writer of bundle files. Text is redacted (registered secrets in their plain and escaped
    forms); JSON-like values go through redact_obj first (secret keys masked whole), then the text as well."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, (dict, list)):
        content = json.dumps(redact_obj(content), indent=2, ensure_ascii=False) + "\n"
    path.write_text(redact(str(content)), encoding="utf-8")
    return path


def utc_stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def bundle_name(cloud: str | None, now: dt.datetime | None = None) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", cloud or "cloud").strip("-.") or "cloud"
    return f"{slug}-{utc_stamp(now)}"


def new_bundle_dir(report_dir, cloud: str | None, now: dt.datetime | None = None) -> Path:
    """A fresh directory: two runs in the same second get -2, -3... rather than sharing one."""
    base = Path(report_dir) / bundle_name(cloud, now)
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    candidate.mkdir(parents=True)
    return candidate


def bundle_files(bundle_dir: Path) -> list[str]:
    """Every file under the bundle (posix relative paths, sorted), manifest and signatures excluded."""
    bundle_dir = Path(bundle_dir)
    return sorted(
        p.relative_to(bundle_dir).as_posix()
        for p in bundle_dir.rglob("*")
        if p.is_file() and p.relative_to(bundle_dir).as_posix() not in NOT_HASHED
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(bundle_dir: Path) -> Path:
    """`sha256sum` format, so `sha256sum -c MANIFEST.sha256` inside the bundle checks it too."""
    bundle_dir = Path(bundle_dir)
    lines = [f"{sha256_file(bundle_dir / rel)}  {rel}\n" for rel in bundle_files(bundle_dir)]
    return write_file(bundle_dir / MANIFEST, "".join(lines))


def read_manifest(path: Path) -> tuple[dict[str, str], list[str]]:
    """(path -> sha256, problems). Absolute paths and '..' are problems: a manifest must not point outside."""
    entries: dict[str, str] = {}
    problems = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.match(line)
        if not match:
            problems.append(f"{MANIFEST} line {number} is malformed")
            continue
        digest, rel = match.groups()
        if rel.startswith("/") or ".." in Path(rel).parts:
            problems.append(f"{MANIFEST} line {number} points outside the bundle: {rel}")
            continue
        if rel in entries:
            problems.append(f"{MANIFEST} lists {rel} twice")
        entries[rel] = digest
    return entries, problems


def check_files(bundle_dir: Path) -> list[str]:
    """Every file against the manifest: which file changed, is missing, or is extra."""
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / MANIFEST).is_file():
        return [f"missing: {MANIFEST}"]
    entries, problems = read_manifest(bundle_dir / MANIFEST)
    for rel, digest in sorted(entries.items()):
        target = bundle_dir / rel
        if not target.is_file():
            problems.append(f"missing: {rel}")
        elif sha256_file(target) != digest:
            problems.append(f"changed: {rel}")
    problems += [f"extra: {rel} (not in {MANIFEST})" for rel in bundle_files(bundle_dir) if rel not in entries]
    return problems


@dataclass
class BundleOutcome:
    path: Path
    signature: dict | None = None
    files: list[str] = field(default_factory=list)


def write_bundle(
    doc: dict,
    bundle_dir,
    *,
    sign_key=None,
    sign_format: str = "ssh",
    gpg_homedir=None,
    extra_files: dict | None = None,
) -> BundleOutcome:
    """Write everything, then the manifest, then (with a key) the signature.

    report.html and junit.xml written by pytest-html/junitxml are kept but re-written through `write_file`,
    like every other text file already in the directory, so nothing leaves without redaction.
    """
    bundle_dir = Path(bundle_dir)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    for stale in NOT_HASHED:
        (bundle_dir / stale).unlink(missing_ok=True)
    written = {RESULTS, METRICS}
    write_file(bundle_dir / RESULTS, doc)
    write_file(bundle_dir / METRICS, openmetrics_text(doc))
    if not (bundle_dir / HTML).is_file():
        write_file(bundle_dir / HTML, standalone_page(doc))
        written.add(HTML)
    for name, text in onboarding.snippets(doc).items():
        write_file(bundle_dir / ONBOARDING / name, text)
        written.add(f"{ONBOARDING}/{name}")
    for name, content in (extra_files or {}).items():
        write_file(bundle_dir / name, content)
        written.add(name)
    for rel in bundle_files(bundle_dir):
        if rel not in written:
            target = bundle_dir / rel
            try:
                text = target.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue  # binary: nothing the suite writes is binary; leave foreign files as they are
            write_file(target, text)
    write_manifest(bundle_dir)
    signature = None
    if sign_key:
        signature = sign.sign_manifest(bundle_dir, sign_key, sign_format, gpg_homedir=gpg_homedir)
    return BundleOutcome(bundle_dir, signature, bundle_files(bundle_dir))


_SIGNATURE_PARAGRAPH = re.compile(r'<h2>Signature</h2><p id="conformance-signature">.*?</p>', re.S)


def sign_bundle(bundle_dir, key, fmt: str = "ssh", gpg_homedir=None) -> tuple[dict | None, list[str]]:
    """Sign an existing bundle: (signature info, problems). A bundle whose files no longer match its manifest
    is not signed (problems say which file). The HTML and results.json are updated to name the signing key
    first, so the new manifest and signature cover them."""
    bundle_dir = Path(bundle_dir)
    if (bundle_dir / MANIFEST).is_file():
        problems = check_files(bundle_dir)
        if problems:
            return None, problems
    info = sign.signature_info(key, fmt, gpg_homedir)
    results = bundle_dir / RESULTS
    if results.is_file():
        doc = json.loads(results.read_text(encoding="utf-8"))
        doc["signature"] = info
        write_file(results, doc)
    page = bundle_dir / HTML
    if page.is_file():
        text = page.read_text(encoding="utf-8")
        write_file(page, _SIGNATURE_PARAGRAPH.sub(lambda _: signature_html({"signature": info}), text, count=1))
    for stale in SIGNATURE_FILES.values():
        (bundle_dir / stale).unlink(missing_ok=True)
    write_manifest(bundle_dir)
    return sign.sign_manifest(bundle_dir, key, fmt, gpg_homedir=gpg_homedir), []
