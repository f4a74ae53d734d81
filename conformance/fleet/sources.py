"""Where the fleet's runs come from: bundle directories, folders of bundles, and a Zuul tenant's builds API.

Every run is checked the way `python -m conformance verify` checks a bundle, with the same functions: files
against MANIFEST.sha256 always, the signature too when an allowed signers file is given. A bundle that fails is
kept as a *rejected* run with the reason, never dropped silently and never shown as data.

From Zuul, a build's `results.json` artifact is fetched and, when the bundle's MANIFEST.sha256 sits next to it
(the periodic job copies the whole bundle into its logs), every file the manifest lists and the signature too,
so the downloaded copy is checked exactly like a local one.

A rebuild does not repeat what an earlier build of the same site found (FleetCache, `<out>/.fleet-cache.json`):
a signature verdict is kept under the sha256 of the manifest, of the signature file and of the allowed signers
file it was made from (so a changed bundle or a changed allowed signers file is verified again), and a
results.json that passed the schema check under its own sha256. The files are hashed against MANIFEST.sha256 at
every build, cached or not: that takes 0.4 s of CPU for 1,000 bundles (docs/benchmarks.md), and it means no file
changed since the last build can pass on a cached verdict, whatever its size and times say. Only verdicts that
hold at any time are kept (not one through a signer line with valid-after/valid-before, nor one ssh-keygen gave),
and only for accepted bundles: a rejected one is checked again at every build, its reason written anew.

Local bundles are checked in a process pool, one process per core, when many are new to the cache (a cold
build): hashing, the schema check and the signature check are CPU work, which threads would run on one core.
"""

from __future__ import annotations

import fnmatch
import gc
import hashlib
import json
import multiprocessing
import os
import re
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from conformance.report.bundle import check_files, read_manifest
from conformance.report.compare import CompareInputError, load
from conformance.report.layout import HTML, MANIFEST, RESULTS, SIGNATURE_FILES
from conformance.report.model import SUITE_NAME, version
from conformance.report.verify import UsageError, verify_bundle

HTTP_TIMEOUT_S = 30
MAX_FILE_BYTES = 64 * 1024 * 1024  # a bundle file larger than this is not a bundle file
PAGE_SIZE = 50  # Zuul's default page of builds
_SAFE = re.compile(r"[^A-Za-z0-9_-]")
CACHE_FILE = ".fleet-cache.json"  # in --out, beside the site
CACHE_FORMAT = 1
# A process per core for checking local bundles when about this many are new to the cache (their schema check
# is most of the work: about 1 ms each). Fewer are checked in this process: a pool's start and the copying of the
# documents back cost more than a rebuild's hashing of bundles it knows gains from a second core.
POOL_MIN_BUNDLES = 64


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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@cache
def _checker() -> str:
    """What a cached schema verdict was made with: a new suite version or schema drops the old verdicts."""

    schema = resources.files("conformance").joinpath("schemas/results.schema.json").read_bytes()
    return f"{CACHE_FORMAT}:{version(SUITE_NAME)}:{_sha256(schema)[:16]}"


@dataclass
class Known:
    """What earlier builds found, as one check needs it (a worker process gets its own copy)."""

    signers: str | None = None  # sha256 of the allowed signers file of this build
    signatures: dict[str, dict] = field(default_factory=dict)  # "<manifest>:<signature>:<signers>" -> signature
    results: frozenset[str] = frozenset()  # sha256 of results.json files that passed the schema check


@dataclass
class Learned:
    """What one check found that a later build can reuse, and what it had to do for it."""

    signature: tuple[str, dict] | None = None
    results: str | None = None
    signature_verified: bool = False  # the signature was checked (not taken from the cache)
    schema_checked: bool = False


class FleetCache:
    """What earlier builds of one site found, in `<out>/.fleet-cache.json`: verdicts (see the module
    docstring), and which report.html each `runs/<name>/` copy was made from (conformance.fleet.site).

    Whoever can write the site folder can write this file, as they can write the pages it produces: it is not
    meant to be trusted more than the site itself. A missing or unreadable file is an empty cache."""

    def __init__(self, path: Path | None = None, *, allowed_signers=None):
        self.path = Path(path) if path is not None else None
        self.signers = _sha256(Path(allowed_signers).read_bytes()) if allowed_signers is not None else None
        self.signatures: dict[str, dict] = {}
        self.results: set[str] = set()
        self.used_signatures: dict[str, dict] = {}
        self.used_results: set[str] = set()
        self.reports: dict[str, list] = {}  # runs/<name> -> [sha256 of the bundle's report.html, copy's size]
        self.used_reports: dict[str, list] = {}
        self.bundles = self.verified = self.schema_checked = 0  # this build's counts

    @classmethod
    def load(cls, out: Path, *, allowed_signers=None) -> FleetCache:
        cache = cls(Path(out) / CACHE_FILE, allowed_signers=allowed_signers)
        try:
            stored = json.loads(cache.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cache
        if isinstance(stored, dict) and stored.get("checker") == _checker():
            signatures, results = stored.get("signatures"), stored.get("results")
            cache.signatures = (
                {str(k): v for k, v in signatures.items() if isinstance(v, dict)}
                if isinstance(signatures, dict)
                else {}
            )
            cache.results = {str(r) for r in results} if isinstance(results, list) else set()
            reports = stored.get("reports")
            cache.reports = (
                {str(k): v for k, v in reports.items() if isinstance(v, list)} if isinstance(reports, dict) else {}
            )
        return cache

    def known(self) -> Known:
        return Known(self.signers, self.signatures, frozenset(self.results))

    def learn(self, learned: Learned) -> None:
        self.bundles += 1
        self.verified += learned.signature_verified
        self.schema_checked += learned.schema_checked
        if learned.signature is not None:
            self.used_signatures[learned.signature[0]] = learned.signature[1]
        if learned.results is not None:
            self.used_results.add(learned.results)

    def save(self) -> None:
        """Keep what this build used or found (entries of bundles gone from the sources are dropped)."""
        if self.path is None:
            return
        stored = {
            "checker": _checker(),
            "signatures": dict(sorted(self.used_signatures.items())),
            "results": sorted(self.used_results),
            "reports": dict(sorted(self.used_reports.items())),
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(stored, separators=(",", ":")) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def _signature_key(path: Path, signers: str | None) -> str | None:
    try:
        manifest, signature = (path / MANIFEST).read_bytes(), (path / SIGNATURE_FILES["ssh"]).read_bytes()
    except OSError:
        return None
    return f"{_sha256(manifest)}:{_sha256(signature)}:{signers}"


def load_bundle(
    path: Path,
    *,
    allowed_signers=None,
    source: str | None = None,
    build: dict | None = None,
    cache: FleetCache | None = None,
) -> Run:
    """Check one bundle directory and read its results.json (a Run, rejected with the reason if it fails)."""
    run, learned = check_bundle(
        path, allowed_signers=allowed_signers, source=source, build=build, known=cache.known() if cache else None
    )
    if cache is not None:
        cache.learn(learned)
    return run


def check_bundle(
    path: Path,
    *,
    allowed_signers=None,
    source: str | None = None,
    build: dict | None = None,
    known: Known | None = None,
) -> tuple[Run, Learned]:
    """load_bundle's work, with what it learned for the cache: the signature is verified unless `known` holds a
    verdict for these very manifest, signature and allowed signers bytes; the files are checked every time."""

    path = Path(path)
    known = known or Known()
    learned = Learned()
    run = Run(source or str(path), bundle_dir=path, build=build)
    signed = [fmt for fmt, name in SIGNATURE_FILES.items() if (path / name).is_file()]
    if allowed_signers is not None and "ssh" in signed:
        key = _signature_key(path, known.signers) if known.signers else None
        if key is not None and key in known.signatures:
            # The same manifest, signature and allowed signers were verified before: the files still are checked.
            problems = check_files(path)
            if problems:
                run.rejected = "; ".join(problems)
                return run, learned
            run.signature = dict(known.signatures[key])
            learned.signature = (key, run.signature)
        else:
            try:
                verification = verify_bundle(path, allowed_signers=allowed_signers)
            except UsageError as exc:
                run.rejected = str(exc)
                return run, learned
            learned.signature_verified = True
            if not verification.valid:
                run.rejected = "; ".join(verification.problems)
                return run, learned
            check = next(s for s in verification.signatures if s.valid)
            run.signature = {"status": "verified", "detail": f"SSH signature by {check.signer}"}
            # Kept only when made here, about the bytes it names, and for any time of checking.
            if check.timeless and check.checked and check.checked[2] == known.signers:
                learned.signature = (":".join(check.checked), run.signature)
    else:
        problems = check_files(path)
        if problems:
            run.rejected = "; ".join(problems)
            return run, learned
        if signed:
            why = "no --allowed-signers given" if allowed_signers is None else "OpenPGP: check it with verify --key"
            run.signature = {"status": "signed", "detail": f"{'/'.join(signed)} signature not checked ({why})"}
    return _read_doc(run, path, known, learned), learned


def _read_doc(run: Run, path: Path, known: Known | None = None, learned: Learned | None = None) -> Run:
    """The run's results.json, if it is one (compare's reader, then the shipped schema). A results.json whose
    bytes passed both before (`known`) is only parsed."""
    known, learned = known or Known(), learned if learned is not None else Learned()
    try:
        raw = (path / RESULTS).read_bytes()
    except OSError:
        raw = None
    digest = _sha256(raw) if raw is not None else None
    if digest is not None and digest in known.results:
        try:
            run.doc, learned.results = json.loads(raw), digest
            return run
        except ValueError:
            pass  # cannot happen for bytes that passed before; check them as new
    try:
        doc = load(path)
    except CompareInputError as exc:
        run.rejected = str(exc)
        return run
    run.rejected = _schema_problem(doc)
    learned.schema_checked = True
    run.doc = None if run.rejected else doc
    # Kept when the bytes read above are what was checked (the file did not change in between).
    if run.doc is not None and raw is not None and _same_doc(raw, doc):
        learned.results = digest
    return run


def _same_doc(raw: bytes, doc: dict) -> bool:
    try:
        return json.loads(raw) == doc
    except ValueError:
        return False


def bundle_dirs(folder: Path) -> list[Path]:
    """A bundle directory itself, or every bundle under a folder (a directory with results.json or a manifest:
    a bundle that lost its results.json is still found, and rejected)."""
    folder = Path(folder)
    if (folder / RESULTS).is_file() or (folder / MANIFEST).is_file():
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder):
        names = {*dirs, *files}
        if RESULTS in names or MANIFEST in names:
            found.append(Path(root))
            dirs.clear()  # a bundle's own subfolders (onboarding/) never hold another bundle
    return sorted(found)


_WORKER_KNOWN: Known | None = None


def _start_worker(known: Known) -> None:
    global _WORKER_KNOWN
    _WORKER_KNOWN = known


def _check_in_worker(path: Path, allowed_signers) -> tuple[Run, Learned]:
    return check_bundle(path, allowed_signers=allowed_signers, known=_WORKER_KNOWN)


def pool_size(bundles: int) -> int:
    """Processes for checking this many new bundles: one per usable core, none (this process) for a few."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if bundles < POOL_MIN_BUNDLES or cores < 2 else min(cores, 8)


def check_bundles(dirs: list[Path], *, allowed_signers=None, cache: FleetCache | None = None) -> list[Run]:
    """Every bundle checked (load_bundle), in order; in a process pool when there are many."""
    cache = cache or FleetCache(allowed_signers=allowed_signers)
    known = cache.known()
    workers = pool_size(len(dirs) - len(known.results))  # about as many as the cache does not know
    # Forked workers start at once with everything imported. Only on Linux, and only when this process runs no
    # other thread (a fork copies a lock another thread holds, held for ever); spawn would re-run the caller's
    # main module, which a library function cannot ask of its caller. Otherwise: this process alone.
    if not (sys.platform.startswith("linux") and threading.active_count() == 1):
        workers = 0
    if not workers:
        outcomes = [check_bundle(path, allowed_signers=allowed_signers, known=known) for path in dirs]
    else:
        context = multiprocessing.get_context("fork")
        chunk = max(1, len(dirs) // (workers * 8))
        gc.freeze()  # a forked worker's collector then leaves this process's objects (and their pages) alone
        try:
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(known,)) as pool:
                outcomes = list(pool.map(_check_in_worker, dirs, [allowed_signers] * len(dirs), chunksize=chunk))
        finally:
            gc.unfreeze()
    runs = []
    for run, learned in outcomes:
        cache.learn(learned)
        runs.append(run)
    return runs


def local_runs(folder: Path, *, allowed_signers=None, cache: FleetCache | None = None) -> list[Run]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such directory")
    dirs = bundle_dirs(folder)
    if not dirs:
        raise SourceError(f"{folder}: no report bundle in it (no {RESULTS} or {MANIFEST})")
    return check_bundles(dirs, allowed_signers=allowed_signers, cache=cache)


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


def download_run(
    session, url: str, dest: Path, *, allowed_signers=None, build: dict | None = None, cache: FleetCache | None = None
) -> Run:
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
    return load_bundle(dest, allowed_signers=allowed_signers, source=url, build=build, cache=cache)


def zuul_runs(
    api: str,
    job: str,
    workdir: Path,
    *,
    allowed_signers=None,
    limit: int = 100,
    session=None,
    cache: FleetCache | None = None,
) -> list[Run]:
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
        runs.append(
            download_run(session, url, Path(workdir) / uuid, allowed_signers=allowed_signers, build=info, cache=cache)
        )
    return runs
