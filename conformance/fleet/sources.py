"""Where the fleet's runs come from: bundle directories, folders of bundles, and a Zuul tenant's builds API.

Every run is checked the way `python -m conformance verify` checks a bundle, with the same functions: files
against MANIFEST.sha256 always, the signature too when an allowed signers file is given. A bundle that fails is
kept as a *rejected* run with the reason, never dropped silently and never shown as data.

From Zuul, a build's `results.json` artifact is fetched and, when the bundle's MANIFEST.sha256 sits next to it
(the periodic job copies the whole bundle into its logs), every file the manifest lists and the signature too,
so the downloaded copy is checked exactly like a local one.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from conformance.report.bundle import HTML, MANIFEST, RESULTS, SIGNATURE_FILES, check_files, read_manifest
from conformance.report.compare import CompareInputError, load

HTTP_TIMEOUT_S = 30
MAX_FILE_BYTES = 64 * 1024 * 1024  # a bundle file larger than this is not a bundle file
PAGE_SIZE = 50  # Zuul's default page of builds
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
LOAD_THREADS = min(8, 2 * (os.cpu_count() or 1))


class SourceError(Exception):
    """A source that cannot be read at all (no such folder, Zuul API unreachable): a usage error."""


@dataclass
class Run:
    """One run as the fleet sees it: its results.json document, or why it was rejected."""

    source: str  # the path or URL it came from, for people
    doc: dict | None = None
    bundle_dir: Path | None = None  # where its files are (a download for Zuul builds)
    signature: dict = field(default_factory=lambda: {"status": "unsigned", "detail": "not signed"})
    rejected: str | None = None
    build: dict | None = None  # the Zuul build it came from: uuid, job_name, result, end_time


@cache
def _results_validator():
    import jsonschema

    schema = json.loads(resources.files("conformance").joinpath("schemas/results.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


def _schema_problem(doc: dict) -> str | None:
    """The first schema error, if any, in what the fleet reads. Rows it never reads are left out of the check
    (the burst's servers, the results' free-form data, the per-endpoint calls, the requirement rows, which the
    fleet recomputes from the results): they are most of a document and most of the time jsonschema takes."""
    doc = dict(doc)
    if isinstance(doc.get("burst"), dict):
        doc["burst"] = {**doc["burst"], "servers": []}
    if isinstance(doc.get("results"), list):
        doc["results"] = [{**r, "data": {}} if isinstance(r, dict) else r for r in doc["results"]]
    if isinstance(doc.get("api_calls"), dict):
        doc["api_calls"] = {**doc["api_calls"], "per_endpoint": []}
    if isinstance(doc.get("requirements"), list):
        doc["requirements"] = []
    error = next(iter(_results_validator().iter_errors(doc)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"{RESULTS} does not match the schema at {where}: {error.message[:200]}"


def load_bundle(path: Path, *, allowed_signers=None, source: str | None = None, build: dict | None = None) -> Run:
    """Check one bundle directory and read its results.json (a Run, rejected with the reason if it fails)."""
    from conformance.report.verify import UsageError, verify_bundle

    path = Path(path)
    run = Run(source or str(path), bundle_dir=path, build=build)
    signed = [fmt for fmt, name in SIGNATURE_FILES.items() if (path / name).is_file()]
    if allowed_signers is not None and "ssh" in signed:
        try:
            verification = verify_bundle(path, allowed_signers=allowed_signers)
        except UsageError as exc:
            run.rejected = str(exc)
            return run
        if not verification.valid:
            run.rejected = "; ".join(verification.problems)
            return run
        signer = next(s.signer for s in verification.signatures if s.valid)
        run.signature = {"status": "verified", "detail": f"SSH signature by {signer}"}
    else:
        problems = check_files(path)
        if problems:
            run.rejected = "; ".join(problems)
            return run
        if signed:
            why = "no --allowed-signers given" if allowed_signers is None else "OpenPGP: check it with verify --key"
            run.signature = {"status": "signed", "detail": f"{'/'.join(signed)} signature not checked ({why})"}
    return _read_doc(run, path)


def _read_doc(run: Run, path: Path) -> Run:
    """The run's results.json, if it is one (compare's reader, then the shipped schema)."""
    try:
        doc = load(path)
    except CompareInputError as exc:
        run.rejected = str(exc)
        return run
    run.rejected = _schema_problem(doc)
    run.doc = None if run.rejected else doc
    return run


def bundle_dirs(folder: Path) -> list[Path]:
    """A bundle directory itself, or every bundle under a folder (a directory with results.json or a manifest:
    a bundle that lost its results.json is still found, and rejected)."""
    folder = Path(folder)
    if (folder / RESULTS).is_file() or (folder / MANIFEST).is_file():
        return [folder]
    found = {p.parent for name in (RESULTS, MANIFEST) for p in folder.rglob(name)}
    # A bundle's own subfolders (onboarding/) never hold another bundle.
    return sorted(p for p in found if not any(parent in found for parent in p.parents))


def local_runs(folder: Path, *, allowed_signers=None) -> list[Run]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such directory")
    dirs = bundle_dirs(folder)
    if not dirs:
        raise SourceError(f"{folder}: no report bundle in it (no {RESULTS} or {MANIFEST})")
    # In threads: checking a bundle is mostly reading files and waiting for ssh-keygen.
    with ThreadPoolExecutor(max_workers=LOAD_THREADS) as pool:
        return list(pool.map(lambda path: load_bundle(path, allowed_signers=allowed_signers), dirs))


# ------------------------------------------------------------------------------------------------------ Zuul
def builds_url(api: str) -> str:
    """The builds endpoint of a tenant API root (`https://zuul.example.org/api/tenant/<tenant>`)."""
    api = api.rstrip("/")
    return api if api.endswith("/builds") else api + "/builds"


def fetch_builds(session, api: str, job: str, limit: int) -> list[dict]:
    """Finished builds of jobs matching `job` (Zuul's job_name filter, `*` as wildcard), newest first."""
    import requests

    url, builds, skip = builds_url(api), [], 0
    while len(builds) < limit:
        params = {"job_name": job, "limit": min(PAGE_SIZE, limit - len(builds)), "skip": skip}
        try:
            response = session.get(url, params=params, timeout=HTTP_TIMEOUT_S)
        except requests.RequestException as exc:
            raise SourceError(f"Zuul builds API {url}: {type(exc).__name__}: {str(exc)[:200]}") from None
        if response.status_code != 200:
            raise SourceError(f"Zuul builds API {url}: HTTP {response.status_code}")
        try:
            page = response.json()
        except ValueError:
            raise SourceError(f"Zuul builds API {url}: the answer is not JSON") from None
        if not isinstance(page, list):
            raise SourceError(f"Zuul builds API {url}: expected a list of builds")
        builds += [b for b in page if isinstance(b, dict)]
        if len(page) < params["limit"]:
            break
        skip += len(page)
    # An older Zuul matches job_name exactly: the pattern is applied here too.
    return [b for b in builds[:limit] if fnmatch.fnmatchcase(str(b.get("job_name") or ""), job)]


def results_url(build: dict) -> str | None:
    """The build's results.json: the artifact of metadata type `results_json` (what the cloud-conformance job
    returns), named `results.json`, or whose URL ends in it; a relative URL is relative to the build's logs."""
    for artifact in build.get("artifacts") or []:
        if not isinstance(artifact, dict) or not artifact.get("url"):
            continue
        url = urljoin(build.get("log_url") or "", str(artifact["url"]))
        kind = (artifact.get("metadata") or {}).get("type") if isinstance(artifact.get("metadata"), dict) else None
        if kind == "results_json" or artifact.get("name") == RESULTS or urlsplit(url).path.endswith("/" + RESULTS):
            return url
    return None


def _get(session, url: str) -> bytes | None:
    """A file's bytes, None when it is not there (404); other failures raise with the URL and status."""
    response = session.get(url, timeout=HTTP_TIMEOUT_S, stream=True)
    with response:
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise OSError(f"GET {url}: HTTP {response.status_code}")
        data = bytearray()
        for chunk in response.iter_content(1 << 16):
            data += chunk
            if len(data) > MAX_FILE_BYTES:
                raise OSError(f"GET {url}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        return bytes(data)


def _build_info(build: dict) -> dict:
    return {key: build.get(key) for key in ("uuid", "job_name", "result", "start_time", "end_time")}


def download_run(session, url: str, dest: Path, *, allowed_signers=None, build: dict | None = None) -> Run:
    """Fetch results.json (and the rest of its bundle, by its manifest) into `dest` and check it."""
    import requests

    dest.mkdir(parents=True, exist_ok=True)
    base = url.rsplit("/", 1)[0] + "/"
    try:
        results = _get(session, url)
        if results is None:
            return Run(url, rejected=f"GET {url}: HTTP 404", build=build)
        (dest / RESULTS).write_bytes(results)
        manifest = _get(session, base + MANIFEST)
        if manifest is None:
            report = _get(session, base + HTML)
            if report is not None:
                (dest / HTML).write_bytes(report)
            run = Run(url, bundle_dir=dest, build=build)
            run.signature = {"status": "unverifiable", "detail": f"no {MANIFEST} next to {RESULTS}"}
            return _read_doc(run, dest)
        (dest / MANIFEST).write_bytes(manifest)
        entries, problems = read_manifest(dest / MANIFEST)
        if problems:
            return Run(url, rejected="; ".join(problems), build=build)
        for rel in [*entries, *SIGNATURE_FILES.values()]:
            if rel == RESULTS:
                continue
            data = _get(session, base + rel)
            if data is not None:  # a listed file that is missing is named by the manifest check
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                (dest / rel).write_bytes(data)
    except (OSError, requests.RequestException) as exc:
        return Run(url, rejected=str(exc)[:300], build=build)
    return load_bundle(dest, allowed_signers=allowed_signers, source=url, build=build)


def zuul_runs(api: str, job: str, workdir: Path, *, allowed_signers=None, limit: int = 100, session=None) -> list[Run]:
    """The runs of a Zuul tenant's builds of `job`: one per finished build (a build without a results.json
    artifact is a rejected run: the job ran but left nothing to show)."""
    import requests

    session = session or requests.Session()
    runs = []
    for build in fetch_builds(session, api, job, limit):
        if build.get("result") is None:
            continue  # still running
        info = _build_info(build)
        uuid = _SAFE.sub("_", str(build.get("uuid") or "")) or f"build-{len(runs)}"  # a folder name below
        url = results_url(build)
        if url is None:
            reason = f"build {uuid} of {build.get('job_name')} ({build.get('result')}) has no {RESULTS} artifact"
            runs.append(Run(f"zuul build {uuid}", rejected=reason, build=info))
            continue
        runs.append(download_run(session, url, Path(workdir) / uuid, allowed_signers=allowed_signers, build=info))
    return runs
