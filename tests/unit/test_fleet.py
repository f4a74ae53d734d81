"""The fleet view from made-up bundles: grouping, trends, changes (compare reused), staleness, rejections,
signatures, the Zuul builds API source (a real HTTP server on 127.0.0.1; requests-mock for its error paths),
and the command's bad input. The fleet of real sandbox runs is tests/integration/test_metrics_fleet_run.py."""

from __future__ import annotations

import datetime as dt
import fnmatch
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests
import requests_mock as requests_mock_module

from conformance.__main__ import main
from conformance.fleet import build, site, sources
from conformance.metrics.model import scope_document
from conformance.report import bundle, compare, model
from conformance.report.sample import sample_session_results

START = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.timezone.utc)
# An absolute URL anywhere, a scheme-relative one where a browser would fetch or follow it (an attribute value or
# CSS), and CSS imports. A bare "//" is not a URL: signature details quote SSH key fingerprints, which are base64.
EXTERNAL = re.compile(r"""(?:https?|ftp):|(?:href|src|action|srcset|poster|data)\s*=\s*["']?//|url\(|@import""", re.I)


def make_doc(day: int, *, verdicts=None, slow_from=0.0, cloud="sandbox-zuul", burst=True) -> dict:
    sr = sample_session_results(verdicts=verdicts or {}, slow_from=slow_from, burst=burst)
    sr.started_at = START + dt.timedelta(days=day)
    sr.finished_at = sr.started_at + dt.timedelta(minutes=40)
    name = bundle.bundle_name(cloud, sr.started_at)
    doc = model.build_document(sr, bundle_name=name, exit_status=1)
    doc["clouds"]["zuul"]["cloud"] = cloud
    return doc


def write(doc: dict, folder: Path, *, key: Path | None = None) -> Path:
    path = bundle.write_bundle(doc, folder / doc["bundle"], sign_key=str(key) if key else None).path
    return path


@pytest.fixture
def runs_folder(tmp_path) -> tuple[Path, list[dict]]:
    """Three runs of one region (R8 fails in the second, the burst slows down), one of another cloud, a
    tampered copy and a bundle whose results.json is not JSON (its manifest rewritten to match)."""
    folder = tmp_path / "reports"
    docs = [make_doc(0), make_doc(1, verdicts={"R8": "FAIL"}, slow_from=40), make_doc(2, slow_from=10)]
    other = make_doc(1, cloud="othercloud", burst=False)
    for doc in [*docs, other]:
        write(doc, folder)
    tampered = folder / "tampered"
    shutil.copytree(folder / docs[0]["bundle"], tampered)
    (tampered / "results.json").write_text((tampered / "results.json").read_text().replace('"FAIL"', '"PASS"'))
    corrupt = folder / "nested" / "corrupt"
    shutil.copytree(folder / docs[1]["bundle"], corrupt)
    (corrupt / "results.json").write_text("{not json")
    bundle.write_manifest(corrupt)
    return folder, docs


def fleet_json(out: Path) -> dict:
    return json.loads((out / site.FLEET_JSON).read_text())


def test_index_rows_trends_changes_and_rejections(runs_folder, tmp_path, capsys):
    folder, docs = runs_folder
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "fleet: 2 region(s) of 2 cloud(s), 4 run(s)" in printed.out and "2 rejected" in printed.out
    assert f"rejected: {folder / 'tampered'}: changed: results.json" in printed.err
    fleet = fleet_json(out)
    by_cloud = {s["cloud"]: s for s in fleet["scopes"]}
    scope = by_cloud["sandbox-zuul"]
    assert scope["region"] == "RegionOne" and [r["bundle"] for r in scope["runs"]] == [d["bundle"] for d in docs]
    assert [r["verdict"] for r in scope["runs"]] == [d["verdict"] for d in docs]
    assert scope["runs"][1]["failing"] == ["R8", "R12"] and scope["latest"]["bundle"] == docs[2]["bundle"]
    assert [p["value"] for p in scope["trends"]["burst_p95_s"]] == [d["burst"]["summary"]["p95"] for d in docs]
    assert [p["value"] for p in scope["trends"]["burst_failure_rate"]] == [0.05, 0.05, 0.05]
    assert by_cloud["othercloud"]["trends"]["burst_p95_s"] == []
    # What changed is compare's result for the region's view of each two consecutive runs.
    assert len(scope["changes"]) == 2
    for change, old, new in zip(scope["changes"], docs[:-1], docs[1:], strict=True):
        expected = compare.compare(scope_document(old, "RegionOne"), scope_document(new, "RegionOne"))
        assert {k: v for k, v in change.items() if k not in ("from", "to")} == json.loads(json.dumps(expected))
    assert scope["changes"][0]["regression"] and "R8: PASS -> FAIL" in scope["changes"][0]["regressions"]
    reasons = {Path(r["source"]).name: r["reason"] for r in fleet["rejected"]}
    assert reasons["tampered"] == "changed: results.json"
    assert "not JSON" in reasons["corrupt"]

    index = (out / "index.html").read_text()
    assert index.count("<tr data-cloud=") == 2
    assert 'data-cloud="sandbox-zuul" data-region="RegionOne" data-verdict="FAIL" data-stale=' in index
    assert 'class="trend" data-metric="burst_p95_s" data-points="3"' in index
    for doc in docs:
        assert f'data-value="{doc["burst"]["summary"]["p95"]:g}"' in index
    assert index.count('<tr class="rejected">') == 2 and "changed: results.json" in index
    page = (out / scope["page"]).read_text()
    assert [m for m in re.findall(r'<tr data-bundle="([^"]+)"', page)] == [d["bundle"] for d in docs]
    assert page.count('<div class="change"') == 2 and "REGRESSION" in page
    for run in scope["runs"]:
        assert (out / run["report"]).is_file() and f'href="../{run["report"]}"' in page


@pytest.mark.parametrize(
    "html, external",
    [
        ('<a href="//example.org/x">', True),
        ("<img src='https://example.org/i.png'>", True),
        ("<style>b{background:url(x.png)}</style>", True),
        ('<td title="ED25519 key SHA256:q0//1ITlJikL4)">verified</td>', False),  # base64 fingerprint, not a URL
        ('<a href="../runs/x/report.html">', False),
    ],
)
def test_the_external_url_pattern_tells_urls_from_fingerprints(html, external):
    assert bool(EXTERNAL.findall(html)) is external


def test_pages_hold_no_external_url(runs_folder, tmp_path):
    folder, _ = runs_folder
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    pages = [out / "index.html", *sorted((out / "regions").glob("*.html"))]
    assert len(pages) == 3
    for page in pages:
        text = page.read_text()
        assert not EXTERNAL.findall(text), page
        assert "<script" not in text and "<link" not in text and "<img" not in text


def test_compare_is_the_one_used_for_changes(runs_folder, monkeypatch):
    folder, docs = runs_folder
    calls = []
    real = compare.compare
    monkeypatch.setattr(compare, "compare", lambda old, new, **kw: calls.append((old, new)) or real(old, new, **kw))
    fleet = build.build_fleet(sources.local_runs(folder), stale_after_hours=48)
    assert [(old["bundle"], new["bundle"]) for old, new in calls] == [
        (docs[0]["bundle"], docs[1]["bundle"]),
        (docs[1]["bundle"], docs[2]["bundle"]),
    ]
    assert len(fleet["scopes"]) == 2


def test_staleness_is_the_profile_lifetime(runs_folder, tmp_path):
    folder, docs = runs_folder
    runs = sources.local_runs(folder)
    finished = build.parse_time(docs[2]["finished_at"])
    fresh = build.build_fleet(runs, stale_after_hours=48, now=finished + dt.timedelta(hours=47))
    stale = build.build_fleet(runs, stale_after_hours=48, now=finished + dt.timedelta(hours=49))
    region = lambda fleet: next(s for s in fleet["scopes"] if s["cloud"] == "sandbox-zuul")  # noqa: E731
    assert region(fresh)["age_hours"] == 47 and not region(fresh)["stale"]
    assert region(stale)["stale"] and stale["summary"]["stale"] == 2
    assert site.age_text(47) == "47 h" and site.age_text(49) == "2 d 1 h" and site.age_text(0.5) == "30 min"
    # The command reads the lifetime from --profile: these runs are days old, so a 1 h lifetime flags them.
    profile = tmp_path / "short.yaml"
    profile.write_text("extends: opendev-donor\nname: short\nfleet:\n  stale_after_hours: 1\nrelaxations: []\n")
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out), "--profile", str(profile)]) == 0
    fleet = fleet_json(out)
    assert fleet["stale_after_hours"] == 1 and fleet["profile"] == "short" and all(s["stale"] for s in fleet["scopes"])
    assert "STALE" in (out / "index.html").read_text()


def test_two_regions_of_one_run_are_two_rows(tmp_path):
    doc = make_doc(0)
    moved = [dict(r, region="RegionTwo", verdict="FAIL") for r in doc["results"] if r["requirement"] == "R8"]
    doc["results"] += moved
    doc["requirements"] = model.requirement_rows(doc["results"])
    write(doc, tmp_path / "reports")
    fleet = build.build_fleet(sources.local_runs(tmp_path / "reports"), stale_after_hours=48)
    rows = {s["region"]: s for s in fleet["scopes"]}
    assert set(rows) == {"RegionOne", "RegionTwo"}
    assert "R8" in rows["RegionTwo"]["latest"]["failing"] and "R8" not in rows["RegionOne"]["latest"]["failing"]
    assert rows["RegionOne"]["trends"]["burst_p95_s"] and not rows["RegionTwo"]["trends"]["burst_p95_s"]


def _key(directory: Path, comment: str) -> Path:
    key = directory / comment.split("@")[0]
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)], check=True)
    return key


def test_signatures_are_verified_against_the_allowed_signers(tmp_path, capsys):
    donor, stranger = _key(tmp_path, "donor@example.org"), _key(tmp_path, "stranger@example.org")
    folder = tmp_path / "reports"
    signed = write(make_doc(0), folder, key=donor)
    foreign = write(make_doc(1), folder, key=stranger)
    unsigned = write(make_doc(2), folder)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"donor@example.org {Path(f'{donor}.pub').read_text()}")
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out), "--allowed-signers", str(allowed)]) == 0
    fleet = fleet_json(out)
    runs = {r["bundle"]: r for r in fleet["scopes"][0]["runs"]}
    assert runs[signed.name]["signature"]["status"] == "verified"
    assert "donor@example.org" in runs[signed.name]["signature"]["detail"]
    assert runs[unsigned.name]["signature"]["status"] == "unsigned"
    [rejected] = fleet["rejected"]
    assert rejected["source"] == str(foreign) and "not in the allowed signers" in rejected["reason"]
    assert fleet["signatures_checked"] is True
    # Without the file, signatures are reported as present but not checked, and nothing is rejected.
    out2 = tmp_path / "site2"
    assert main(["fleet", str(folder), "--out", str(out2)]) == 0
    statuses = {r["bundle"]: r["signature"]["status"] for r in fleet_json(out2)["scopes"][0]["runs"]}
    assert statuses == {signed.name: "signed", foreign.name: "signed", unsigned.name: "unsigned"}
    page = next((out2 / "regions").glob("*.html")).read_text()
    assert page.count('data-signature="signed"') == 2 and 'data-signature="unsigned"' in page


def test_a_rebuild_replaces_the_site_and_a_foreign_out_is_refused(runs_folder, tmp_path, capsys):
    folder, _ = runs_folder
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    (out / "regions" / "old.html").write_text("left from an earlier build")
    assert main(["fleet", str(folder / "tampered"), str(folder / "nested"), "--out", str(out)]) == 0
    assert not (out / "regions" / "old.html").exists() and fleet_json(out)["summary"]["runs"] == 0
    assert "No accepted run yet." in (out / "index.html").read_text()
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["fleet", str(folder), "--out", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and err.count("\n") == 1 and (foreign / "notes.txt").exists()


# ------------------------------------------------------------------------------------------- rebuild cache
CHECKED = re.compile(r"(\d+) bundle\(s\) checked: (\d+) signature\(s\) verified, (\d+) results.json schema-checked")


def build_counts(capsys, *argv) -> tuple[int, int, int]:
    """Run the command; (bundles checked, signatures verified, results.json schema-checked) from its summary."""
    capsys.readouterr()
    assert main(["fleet", *map(str, argv)]) == 0
    return tuple(int(n) for n in CHECKED.search(capsys.readouterr().out).groups())


def without_build_time(fleet: dict) -> dict:
    """fleet.json less what depends on when it was built (generated_at, and each region's age from it)."""
    fleet = dict(fleet, generated_at=None)
    fleet["scopes"] = [dict(s, age_hours=None, stale=None) for s in fleet["scopes"]]
    fleet["summary"] = dict(fleet["summary"], stale=None)
    return fleet


@pytest.fixture
def signed_folder(tmp_path):
    """Four bundles signed by the donor (R8 failing in one), one signed by a stranger, the allowed signers."""
    donor, stranger = _key(tmp_path, "donor@example.org"), _key(tmp_path, "stranger@example.org")
    folder = tmp_path / "reports"
    for day in range(4):
        write(make_doc(day, verdicts={"R8": "FAIL"} if day == 2 else None, slow_from=day * 10), folder, key=donor)
    write(make_doc(4, cloud="strangecloud"), folder, key=stranger)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"donor@example.org {Path(f'{donor}.pub').read_text()}")
    return folder, allowed, donor


def test_a_rebuild_verifies_only_the_new_bundle(signed_folder, tmp_path, capsys, monkeypatch):
    folder, allowed, donor = signed_folder
    out = tmp_path / "site"
    # Signatures are checked in this process: no ssh-keygen (nor any other process) for these ed25519 keys.
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"a process was started: {a}"))
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed) == (5, 5, 4)
    first = fleet_json(out)
    assert (out / sources.CACHE_FILE).is_file()
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed) == (5, 1, 0)
    # The stranger's bundle is rejected again (rejections are never cached); nothing else was checked again.
    assert without_build_time(fleet_json(out)) == without_build_time(first)
    monkeypatch.undo()
    new = write(make_doc(5, slow_from=30), folder, key=donor)
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed) == (6, 2, 1)
    runs = {r["bundle"]: r for s in fleet_json(out)["scopes"] for r in s["runs"]}
    assert runs[new.name]["signature"]["status"] == "verified" and len(runs) == 5


def test_a_cached_bundle_changed_since_is_rejected(signed_folder, tmp_path, capsys):
    """The files are hashed at every build: an edit that keeps the size and the modification time (what a
    size+mtime shortcut would trust) is caught."""
    folder, allowed, _ = signed_folder
    out = tmp_path / "site"
    build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed)
    victim = sorted(folder.iterdir())[1]
    results = victim / "results.json"
    before = results.stat()
    text = results.read_text()
    results.write_text(text.replace('"FAIL"', '"PASS"').replace('"WARN"', '"PASS"'))
    assert results.stat().st_size == before.st_size and results.read_text() != text
    os.utime(results, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed)[1] == 1  # the stranger only
    fleet = fleet_json(out)
    assert {Path(r["source"]).name: r["reason"] for r in fleet["rejected"]}[victim.name] == "changed: results.json"
    # A manifest changed to match (but no longer signed by it) is caught by the signature check.
    bundle.write_manifest(victim)
    build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed)
    reason = {Path(r["source"]).name: r["reason"] for r in fleet_json(out)["rejected"]}[victim.name]
    assert "is not a valid signature of MANIFEST.sha256" in reason


def test_changed_allowed_signers_verify_every_bundle_again(signed_folder, tmp_path, capsys):
    folder, allowed, donor = signed_folder
    out = tmp_path / "site"
    build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed)
    allowed.write_text(f"# donors\n{allowed.read_text()}")  # the same signers: a different file all the same
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed) == (5, 5, 0)
    allowed.write_text("# nobody any more\n")
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed) == (5, 5, 0)
    fleet = fleet_json(out)
    assert fleet["summary"]["runs"] == 0 and len(fleet["rejected"]) == 5
    assert all("not in the allowed signers" in r["reason"] for r in fleet["rejected"])
    # A re-signed bundle (new manifest and signature) is verified again, whatever was cached for the old one.
    allowed.write_text(f"donor@example.org {Path(f'{donor}.pub').read_text()}")
    build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed)
    target = sorted(folder.iterdir())[0]
    bundle.sign_bundle(target, str(donor))
    assert build_counts(capsys, folder, "--out", out, "--allowed-signers", allowed)[1:] == (2, 1)


def test_the_site_is_the_same_built_cold_warm_or_in_processes(signed_folder, tmp_path, capsys, monkeypatch):
    """One process, a process pool and a rebuild from the cache give the same fleet.json and pages (but for
    when they were built), and the same copied reports."""
    folder, allowed, _ = signed_folder
    args = ["--allowed-signers", allowed]
    build_counts(capsys, folder, "--out", tmp_path / "one", *args)
    monkeypatch.setattr(sources, "pool_size", lambda bundles: 2)
    pools = []
    real_pool = sources.ProcessPoolExecutor
    monkeypatch.setattr(sources, "ProcessPoolExecutor", lambda *a, **k: pools.append(a) or real_pool(*a, **k))
    assert threading.active_count() == 1, f"a thread left by another test: {threading.enumerate()}"
    assert build_counts(capsys, folder, "--out", tmp_path / "pool", *args) == (5, 5, 4)
    assert build_counts(capsys, folder, "--out", tmp_path / "pool", *args) == (5, 1, 0)
    assert len(pools) == 2 and pools[0][0] == 2  # both builds in two worker processes
    monkeypatch.undo()
    reference = fleet_json(tmp_path / "one")
    assert without_build_time(fleet_json(tmp_path / "pool")) == without_build_time(reference)
    assert [r["bundle"] for r in reference["scopes"][0]["runs"]] == sorted(p.name for p in folder.iterdir())[:4]

    def files(site: Path) -> dict:
        built = re.compile(r"Built [^;]+;|\d+ (?:min|h|d \d+ h)(?: ago)?")
        return {p.relative_to(site).as_posix(): built.sub("", p.read_text()) for p in site.rglob("*.html")}

    assert files(tmp_path / "pool") == files(tmp_path / "one")


def test_a_rebuild_keeps_report_copies_that_did_not_change(runs_folder, tmp_path, capsys):
    folder, docs = runs_folder
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    copies = {p.parent.name: p for p in (out / "runs").glob("*/report.html")}
    assert len(copies) == 4
    kept, lost, edited = sorted(copies)[:3]
    times = {name: copies[name].stat().st_mtime_ns for name in copies}
    copies[lost].unlink()
    copies[edited].write_text("truncated")
    (out / "runs" / "old-run").mkdir()
    (out / "runs" / "old-run" / "report.html").write_text("a run no source has any more")
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    assert copies[kept].stat().st_mtime_ns == times[kept]
    for name in (lost, edited):
        assert copies[name].read_text() == site.offline(folder / name / "report.html")
    assert not (out / "runs" / "old-run").exists()
    # A bundle whose report.html changed (and its manifest with it) gets a new copy.
    page = folder / kept / "report.html"
    page.write_text(page.read_text().replace("</body>", "<p>amended</p></body>"))
    bundle.write_manifest(folder / kept)
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    assert "amended" in copies[kept].read_text()


def test_an_unreadable_cache_is_an_empty_one(runs_folder, tmp_path, capsys):
    folder, _ = runs_folder
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out)]) == 0
    (out / sources.CACHE_FILE).write_text("{not json")
    assert build_counts(capsys, folder, "--out", out)[2] == 4  # every results.json checked again
    stored = json.loads((out / sources.CACHE_FILE).read_text())
    stored["checker"] = "an older suite"
    (out / sources.CACHE_FILE).write_text(json.dumps(stored))
    assert build_counts(capsys, folder, "--out", out)[2] == 4


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "no such directory"),
        (["{empty}"], "no report bundle in it"),
        (["http://127.0.0.1:9/api/tenant/t"], "give --job PATTERN"),
        (["{empty}", "--allowed-signers", "{missing}"], "allowed signers file"),
        (["{empty}", "--profile", "no-such-profile"], "--profile"),
        (["{empty}", "--builds", "0"], "--builds must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    values = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}
    argv = ["fleet", *[a.format(**values) for a in args], "--out", str(tmp_path / "site")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "site").exists()


def test_the_command_needs_out(capsys):
    assert main(["fleet", "reports"]) == 2
    assert "--out" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ Zuul source
class FakeZuul(http.server.ThreadingHTTPServer):
    """Zuul's builds API shape (`GET /api/tenant/<t>/builds?job_name=..&limit=..&skip=..`, newest first, `*` in
    job_name a wildcard) and a log server for the builds' files, on 127.0.0.1."""

    def __init__(self, root: Path, builds: list[dict]):
        self.root, self.builds, self.requests = root, builds, []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(inner, *args, **kwargs):  # noqa: N805 - the handler's own self
                super().__init__(*args, directory=str(root / "logs"), **kwargs)

            def log_message(inner, *args):  # noqa: N805
                pass

            def do_GET(inner):  # noqa: N802, N805
                url = urllib.parse.urlsplit(inner.path)
                self.requests.append(inner.path)
                if url.path == "/api/tenant/opendev/builds":
                    query = urllib.parse.parse_qs(url.query)
                    job = query.get("job_name", ["*"])[0]
                    limit, skip = int(query.get("limit", ["50"])[0]), int(query.get("skip", ["0"])[0])
                    found = [b for b in self.builds if fnmatch.fnmatchcase(b["job_name"], job)][skip : skip + limit]
                    body = json.dumps(found).encode()
                    inner.send_response(200)
                    inner.send_header("Content-Type", "application/json")
                    inner.send_header("Content-Length", str(len(body)))
                    inner.end_headers()
                    inner.wfile.write(body)
                    return
                if url.path.startswith("/api/"):
                    inner.send_error(404)
                    return
                super().do_GET()

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def zuul(tmp_path):
    """Builds of the periodic job: three with their bundle in the logs (one verified by signature, one with a
    relative artifact URL, one whose logs hold results.json only), a NODE_FAILURE without artifacts, a build
    still running, and a build of another job."""
    key = _key(tmp_path, "donor@example.org")
    logs = tmp_path / "zuul" / "logs"
    builds = []
    server = FakeZuul(tmp_path / "zuul", builds)
    docs = [make_doc(0), make_doc(1, verdicts={"R8": "FAIL"}), make_doc(2)]
    for number, doc in enumerate(docs):
        uuid = f"{number:032x}"
        log_url = f"{server.url}/{uuid}/"
        path = write(doc, logs / uuid / "reports", key=key)
        if number == 1:  # as the cloud-conformance job returns them: relative to the logs, typed
            artifacts = [
                {
                    "name": "Conformance report",
                    "url": f"reports/{path.name}/report.html",
                    "metadata": {"type": "html_report", "verdict": doc["verdict"]},
                },
                {
                    "name": "Conformance results",
                    "url": f"reports/{path.name}/results.json",
                    "metadata": {"type": "results_json", "verdict": doc["verdict"]},
                },
            ]
        else:
            artifacts = [{"name": "results.json", "url": f"{log_url}reports/{path.name}/results.json"}]
        builds.append(
            {
                "uuid": uuid,
                "job_name": "opendev-cloud-conformance-sandbox",
                "result": "FAILURE" if doc["verdict"] == "FAIL" else "SUCCESS",
                "start_time": doc["started_at"].rstrip("Z"),
                "end_time": doc["finished_at"].rstrip("Z"),
                "log_url": log_url,
                "artifacts": artifacts,
            }
        )
    for name in ("MANIFEST.sha256", "MANIFEST.sha256.sig", "report.html"):  # the third: results.json alone
        (logs / builds[2]["uuid"] / "reports" / docs[2]["bundle"] / name).unlink()
    builds.append(dict(builds[0], uuid="f" * 32, result="NODE_FAILURE", artifacts=[]))
    builds.append(dict(builds[0], uuid="e" * 32, result=None, artifacts=[]))
    builds.append(dict(builds[0], uuid="d" * 32, job_name="another-job"))
    builds.reverse()  # Zuul lists the newest first
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"donor@example.org {Path(f'{key}.pub').read_text()}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, docs, allowed
    finally:
        server.shutdown()
        server.server_close()


def test_zuul_builds_api_source_fetches_and_verifies_each_build(zuul, tmp_path, monkeypatch, capsys):
    server, docs, allowed = zuul
    monkeypatch.setattr(sources, "PAGE_SIZE", 2)  # pages of 2: the source follows skip
    out = tmp_path / "site"
    api = f"{server.url}/api/tenant/opendev"
    argv = ["fleet", api, "--job", "opendev-cloud-conformance-*", "--out", str(out), "--allowed-signers", str(allowed)]
    assert main(argv) == 0, capsys.readouterr().err
    builds_requests = [r for r in server.requests if r.startswith("/api/")]
    assert len(builds_requests) >= 3 and any("skip=2" in r for r in builds_requests)
    assert all("job_name=opendev-cloud-conformance-%2A" in r for r in builds_requests)
    fleet = fleet_json(out)
    [scope] = fleet["scopes"]
    assert [r["bundle"] for r in scope["runs"]] == [d["bundle"] for d in docs]
    assert [r["signature"]["status"] for r in scope["runs"]] == ["verified", "verified", "unverifiable"]
    assert [r["build"]["uuid"] for r in scope["runs"]] == [f"{n:032x}" for n in range(3)]
    assert scope["runs"][1]["source"].startswith(f"{server.url}/{1:032x}/reports/")  # relative URL resolved
    assert (out / scope["runs"][0]["report"]).is_file() and scope["runs"][2]["report"] is None
    assert scope["changes"][0]["regressions"] == ["R8: PASS -> FAIL", "R8 quota.instances zuul/RegionOne: PASS -> FAIL"]
    [rejected] = fleet["rejected"]
    assert (
        rejected["reason"] == f"build {'f' * 32} of opendev-cloud-conformance-sandbox (NODE_FAILURE) has no "
        "results.json artifact"
    )
    # The Zuul build pages are not linked: the site holds no external URL.
    for page in [out / "index.html", *(out / "regions").glob("*.html")]:
        assert not EXTERNAL.findall(page.read_text())
    # --builds: the newest N builds only (here the running one, the NODE_FAILURE and the newest bundle).
    assert main([*argv, "--builds", "3"]) == 0
    newest = fleet_json(out)
    assert [r["bundle"] for s in newest["scopes"] for r in s["runs"]] == [docs[2]["bundle"]]
    assert len(newest["rejected"]) == 1


def test_zuul_source_rejects_a_build_whose_bundle_was_changed_on_the_log_server(zuul, tmp_path):
    server, docs, allowed = zuul
    results = next((server.root / "logs" / f"{0:032x}").rglob("results.json"))
    results.write_text(results.read_text().replace('"PASS"', '"WARN"'))
    runs = sources.zuul_runs(
        f"{server.url}/api/tenant/opendev",
        "opendev-cloud-conformance-sandbox",
        tmp_path / "work",
        allowed_signers=allowed,
    )
    reasons = [r.rejected for r in runs if r.rejected]
    assert "changed: results.json" in reasons and len(runs) == 4


def test_zuul_api_errors_are_usage_errors(tmp_path, capsys):
    api = "http://127.0.0.1:9/api/tenant/opendev"
    out = tmp_path / "site"
    with requests_mock_module.Mocker() as mock:
        mock.get(f"{api}/builds", status_code=500)
        assert main(["fleet", api, "--job", "j", "--out", str(out)]) == 2
        assert capsys.readouterr().err == f"error: Zuul builds API {api}/builds: HTTP 500\n"
        mock.get(f"{api}/builds", text="<html>")
        assert main(["fleet", api, "--job", "j", "--out", str(out)]) == 2
        assert "not JSON" in capsys.readouterr().err
        mock.get(f"{api}/builds", exc=requests.exceptions.ConnectionError("refused"))
        assert main(["fleet", api, "--job", "j", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: Zuul builds API") and "ConnectionError" in err and err.count("\n") == 1


def test_zuul_artifact_that_cannot_be_fetched_is_a_rejected_run(tmp_path):
    api = "http://127.0.0.1:9/api/tenant/opendev"
    build = {
        "uuid": "a" * 32,
        "job_name": "j",
        "result": "SUCCESS",
        "log_url": "http://127.0.0.1:9/logs/",
        "artifacts": [{"name": "results.json", "url": "bundle/results.json"}],
    }
    with requests_mock_module.Mocker() as mock:
        mock.get(f"{api}/builds", json=[build])
        mock.get("http://127.0.0.1:9/logs/bundle/results.json", status_code=503)
        [run] = sources.zuul_runs(api, "j", tmp_path)
    assert run.rejected == "GET http://127.0.0.1:9/logs/bundle/results.json: HTTP 503" and run.doc is None


def test_copied_reports_keep_no_link_out_of_the_site(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(
        '<p>by <a href="https://pypi.python.org/pypi/pytest-html">pytest-html</a></p>'
        '<img src="//cdn.example.org/logo.png"><a href="#results">results</a><td>https://127.0.0.1:5000/v3</td>'
    )
    assert site.offline(page) == (
        '<p>by <a >pytest-html</a></p><img ><a href="#results">results</a><td>https://127.0.0.1:5000/v3</td>'
    )


def test_the_benchmark_runs_on_a_few_bundles():
    """bench/fleet.py (docs/benchmarks.md's figures) on 12 bundles instead of 1,000, with the baseline: it runs
    and says what it measured."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "fleet.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--bundles", "12", "--baseline"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = dict(field.split("=") for field in done.stdout.strip().splitlines()[-1].split())
    assert last["bundles"] == "12" and float(last["cold_s"]) > 0 and float(last["warm_cpu_s"]) > 0
    assert int(last["site_bytes"]) > int(last["pages_bytes"]) and float(last["ratio_cold"]) > 0
    assert "fleet: 12 region(s) of 12 cloud(s), 12 run(s)" in done.stdout
    # The warm build checked the new bundle only.
    assert "13 run(s)" in done.stdout and "1 signature(s) verified, 1 results.json schema-checked" in done.stdout
