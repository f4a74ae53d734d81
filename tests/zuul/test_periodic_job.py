"""The project's periodic job on a real Zuul, against the sandbox cloud registered as a donated cloud.

Two builds per session, each started through zuul-web's REST API in the `periodic` pipeline: one against the
conforming sandbox, one while the sandbox's zuul project has quota for 99 instances (R8 must FAIL). Every test
reads those two builds (each takes a minute or two).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from harness import NODE_HOME, REPO_ROOT, TENANT, fetch_text
from helpers.cloud import leftovers

JOB = "cloud-conformance-loopback"  # conftest.py registers the sandbox as the donated cloud `loopback`

PREFIX_RE = re.compile(r"run prefix: (conformance-\d{8}T\d{6}Z-[0-9a-f]{6})")
ARTIFACTS = {"Conformance report": "conformance/report.html", "Conformance results": "conformance/results.json"}


class RssSampler(threading.Thread):
    """Total resident memory of the Zuul harness's processes and of the job's processes on the node (everything
    running from the node's workspace), sampled every 2 s while a build runs; keeps the peak."""

    def __init__(self, harness):
        super().__init__(daemon=True)
        self.harness, self.peak, self.stop = harness, {}, threading.Event()

    def sample(self) -> dict[str, float]:
        zuul = sum(self.harness.rss_mb().values())
        node = 0.0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if f"{NODE_HOME}/src/".encode() in (entry / "cmdline").read_bytes():
                        status = (entry / "status").read_text()
                        node += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
                except (OSError, AttributeError):
                    continue
        return {"zuul_mb": zuul, "job_on_node_mb": node, "total_mb": zuul + node}

    def run(self):
        while not self.stop.wait(2):
            now = self.sample()
            if now["total_mb"] > self.peak.get("total_mb", 0):
                self.peak = now

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def run_and_measure(harness, job: str, label: str) -> dict:
    started = time.monotonic()
    with RssSampler(harness) as rss:
        build = harness.run_build(job)
    harness.timings[f"{label}_build_wall_s"] = time.monotonic() - started
    harness.timings[f"{label}_build_duration_s"] = build["duration"]
    harness.timings.update({f"{label}_peak_{name}": value for name, value in rss.peak.items()})
    (harness.root / f"{label}-build.json").write_text(json.dumps(build, indent=1))
    return build


@pytest.fixture(scope="module")
def conforming(zuul_harness, loopback_job):
    return run_and_measure(zuul_harness, loopback_job, "conforming")


@pytest.fixture(scope="module")
def nonconforming(zuul_harness, loopback_job, sandbox, conforming):
    with sandbox.quota("zuul", instances=99):
        return run_and_measure(zuul_harness, loopback_job, "nonconforming")


def artifact_urls(build: dict) -> dict[str, str]:
    return {a["name"]: a["url"] for a in build.get("artifacts") or []}


def job_output(build: dict) -> str:
    return fetch_text(build["log_url"] + "job-output.txt")


@pytest.fixture(params=["conforming", "nonconforming"])
def any_build(request):
    return request.getfixturevalue(request.param)


def test_layout_has_the_jobs_and_no_config_errors(zuul_harness, loopback_job):
    assert zuul_harness.tenant_api("/config-errors") == []
    jobs = {j["name"]: j for j in zuul_harness.tenant_api("/jobs")}
    assert {"cloud-conformance", "cloud-conformance-sandbox", JOB} <= set(jobs)
    variant = zuul_harness.tenant_api(f"/job/{JOB}")[0]
    assert [s["name"] if isinstance(s, dict) else s for s in variant["semaphores"]] == [JOB]
    assert variant["parent"] == "cloud-conformance"
    pipelines = zuul_harness.tenant_api("/pipelines")
    assert sorted(p["name"] for p in pipelines) == ["launcher", "periodic"]  # launcher: test_launcher_node.py


def test_conforming_cloud_build_succeeds_and_lists_both_artifacts(zuul_harness, conforming):
    assert conforming["result"] == "SUCCESS", conforming
    assert conforming["pipeline"] == "periodic" and conforming["job_name"] == JOB
    urls = artifact_urls(conforming)
    assert urls == {name: conforming["log_url"] + path for name, path in ARTIFACTS.items()}
    # The builds list a user (or the web UI) reads has them as well.
    listed = [b for b in zuul_harness.tenant_api(f"/builds?job_name={JOB}&limit=10") if b["uuid"] == conforming["uuid"]]
    assert listed and artifact_urls(listed[0]) == urls
    assert zuul_harness.tenant_api("/config-errors") == []


def test_report_fetched_from_the_log_url_says_pass(conforming):
    html = fetch_text(artifact_urls(conforming)["Conformance report"])
    assert 'id="conformance-verdict"' in html
    assert "Overall verdict: <b>PASS</b>" in html
    results = json.loads(fetch_text(artifact_urls(conforming)["Conformance results"]))
    assert results["verdict"] == "PASS"
    assert results["profile"]["name"] == "sandbox"
    assert results["clouds"]["zuul"]["cloud"] == "sandbox-zuul"
    assert {a["metadata"]["verdict"] for a in conforming["artifacts"]} == {"PASS"}


def test_nonconforming_cloud_build_fails_and_still_returns_its_report(nonconforming):
    assert nonconforming["result"] == "FAILURE", nonconforming
    urls = artifact_urls(nonconforming)
    assert set(urls) == set(ARTIFACTS)
    results = json.loads(fetch_text(urls["Conformance results"]))
    assert results["verdict"] == "FAIL"
    failed = {r["requirement"] for r in results["results"] if r["verdict"] == "FAIL"}
    assert "R8" in failed, failed
    r8 = [r for r in results["results"] if r["requirement"] == "R8" and r["check"] == "quota.instances"]
    assert r8 and r8[0]["verdict"] == "FAIL" and r8[0]["measured"] == "99"
    assert "Overall verdict: <b>FAIL</b>" in fetch_text(urls["Conformance report"])


def test_no_clouds_yaml_left_on_the_node(any_build, secret_values):
    config_root = NODE_HOME / ".config" / "opendev-conformance"
    assert not (config_root / any_build["uuid"]).exists()
    left = [
        str(p)
        for root in (config_root, NODE_HOME / "src", NODE_HOME / "zuul-output")
        if root.exists()
        for p in root.rglob("*")
        if p.name in ("clouds.yaml", "cacert.pem") and "/.tox/" not in str(p)
    ]
    assert left == []
    # The credentials never reached the build's logs either.
    output = job_output(any_build)
    for entry in secret_values[0].values():
        assert entry["auth"]["password"] not in output


def test_cleanup_swept_the_run_prefix_and_nothing_is_left_in_the_cloud(any_build, sandbox):
    output = job_output(any_build)
    prefixes = set(PREFIX_RE.findall(output))
    assert len(prefixes) == 1, output[-3000:]
    prefix = prefixes.pop()
    assert prefix.endswith(any_build["uuid"][:6])
    # The suite named its resources with the job's prefix (CONFORMANCE_RUN_PREFIX) and deleted them itself.
    assert f"conformance cleanup: run {prefix}: every resource the run created was deleted" in output
    # The cleanup playbook ran `python -m conformance cleanup --run <prefix>` against both projects.
    assert f"cleanup --run {prefix}" in output or f"'--run', '{prefix}'" in output
    assert "nothing to delete" in output or "deleted " in output
    assert leftovers(sandbox, prefix) == []
    assert leftovers(sandbox) == [], "a run prefix left in the cloud"


def test_fleet_reads_both_builds_from_zuuls_builds_api(zuul_harness, conforming, nonconforming, tmp_path):
    """The fleet view as OpenDev would build it: from the tenant's builds API, each build's results.json artifact
    (and the bundle beside it, checked like a local one)."""
    out = tmp_path / "fleet"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conformance",
            "fleet",
            f"{zuul_harness.web_url}/api/tenant/{TENANT}",
            "--job",
            "cloud-conformance-*",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["rejected"] == []
    [scope] = [s for s in fleet["scopes"] if s["cloud"] == "sandbox-zuul"]
    runs = {run["build"]["uuid"]: run for run in scope["runs"]}
    assert runs[conforming["uuid"]]["verdict"] == "PASS"
    assert runs[nonconforming["uuid"]]["verdict"] == "FAIL" and "R8" in runs[nonconforming["uuid"]]["failing"]
    assert scope["latest"]["verdict"] == "FAIL"  # the newer build
    assert (out / scope["page"]).exists() and "sandbox-zuul" in (out / "index.html").read_text()
