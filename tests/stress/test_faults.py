"""The suite under API faults: the sandbox behind the fault proxy (tests/faults/), the suite through its real
command line. Honest verdicts (the same as without faults when retries can cope, the API error quoted when they
cannot), the retries counted in the report, a run that ends by its deadline, and nothing leaked: resources are
counted by run prefix as admin, in every project.

One proxy serves the module; each test sets its rules and clears them. The full runs (with and without faults,
at the same time, with a sweep between them) run once and are shared by the tests that read them.
"""

from __future__ import annotations

import os
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import suite
from helpers.suite import LiveRun

from conformance.report.model import requirement_verdict
from conformance.resources import Waiter, prefix_of

BURST = os.environ.get("CONFORMANCE_TEST_BURST_SIZE", "5")
SEED = 14
# 10 % 503 and 5 % 429 (with Retry-After) on compute and image: what a busy donor cloud answers during a burst.
# Not on version discovery (`/`, `/v2.1/`): keystoneauth falls back to the catalog's URL when discovery fails,
# so a fault there reaches no retry (and no check): the run would neither see nor count it.
NOT_DISCOVERY = r"^(?!/(v[0-9.]+/?)?$)"
RETRYABLE = [
    {
        "name": f"{service}-{status}",
        "service": service,
        "action": "status",
        "status": status,
        "rate": rate,
        "path": NOT_DISCOVERY,
        **({"retry_after": 1} if status == 429 else {}),
    }
    for service in ("compute", "image")
    for status, rate in ((503, 0.10), (429, 0.05))
]


# ------------------------------------------------------------------------------------------------ helpers
def start(sandbox, report_dir: Path, *args, env: dict | None = None) -> LiveRun:
    return LiveRun(sandbox.clouds_yaml, report_dir, *args, env=env)


def run_to_end(sandbox, report_dir: Path, *args, env: dict | None = None) -> LiveRun:
    run = start(sandbox, report_dir, *args, env=env)
    run.finish()
    return run


def leaked(sandbox, *runs: str | None) -> list[str]:
    """Everything named with one of these run prefixes, in any project, listed as admin."""
    wanted = {r for r in runs if r}
    assert wanted, "no run prefix to look for: did the runs start?"
    conn = sandbox.admin()
    found = []

    def keep(kind, name, rid):
        if prefix_of(name) in wanted:
            found.append(f"{kind} {name} {rid}")

    try:
        for s in conn.compute.servers(details=False, all_projects=True):
            keep("server", s.name, s.id)
        for v in conn.block_storage.volumes(details=False, all_projects=True):
            keep("volume", v.name, v.id)
        for i in conn.image.images():
            keep("image", i.name, i.id)
        for f in conn.network.ips():
            keep("floating_ip", f.description, f.id)
        for p in conn.network.ports():
            keep("port", p.name, p.id)
        for g in conn.network.security_groups():
            keep("security_group", g.name, g.id)
        for user in conn.identity.users():
            for k in conn.compute.keypairs(user_id=user.id):
                keep("keypair", k.name, k.id)
    finally:
        conn.close()
    return found


def by_requirement_and_scope(results: dict) -> dict[tuple[str, str], str]:
    """(requirement, project/region) -> that scope's verdict, as the requirement matrix aggregates it."""
    grouped = defaultdict(list)
    for result in results.values():
        grouped[(result["requirement"], f"{result['project']}/{result['region']}")].append(result["verdict"])
    return {key: requirement_verdict(found) for key, found in grouped.items()}


@pytest.fixture
def faults(proxy):
    """Set rules for one test; cleared after it, whatever happened."""
    yield proxy
    proxy.clear()


# ----------------------------------------------------------------- two full runs at once, one under faults
@dataclass
class Paired:
    baseline: LiveRun
    faulted: LiveRun
    swept: subprocess.CompletedProcess
    injected: dict[str, int]
    leases_seen: set[str]
    fired_on: dict[str, list[str]]  # rule -> the requests it fired on (the proxy's last few)


@pytest.fixture(scope="module")
def paired(sandbox, proxy, tmp_path_factory) -> Paired:
    """The whole suite twice at the same time against the same clouds: directly, and through the proxy with
    RETRYABLE faults. While both are under way (each holds its lease), `cleanup --older-than 1s` sweeps."""
    proxy.set_rules(RETRYABLE, seed=SEED)
    try:
        baseline = start(sandbox, tmp_path_factory.mktemp("baseline"), "--burst-size", BURST)
        faulted = start(sandbox, tmp_path_factory.mktemp("faulted"), "--burst-size", BURST, env=proxy.client_env())
        leases: set[str] = set()

        def both_leased() -> bool:
            # The runs print their prefix only at the end: wait for two leases, the runs' first creates.
            conn = sandbox.connect("sandbox-zuul")
            try:
                leases.update(g.name for g in conn.network.security_groups() if g.name.endswith("-lease"))
            finally:
                conn.close()
            return len(leases) >= 2 or baseline.proc.poll() is not None or faulted.proc.poll() is not None

        Waiter(900).poll(both_leased, 2.0)
        swept = suite.sweep(sandbox.clouds_yaml, "--older-than", "1s")
        baseline.finish()
        faulted.finish()
        injected = {rule: proxy.injected(rule) for rule in (r["name"] for r in RETRYABLE)}
        fired_on = {name: rule.get("recent") for name, rule in proxy.stats().get("rules", {}).items()}
    finally:
        proxy.clear()
    return Paired(baseline, faulted, swept, injected, {prefix_of(name) for name in leases}, fired_on)


def test_retryable_faults_keep_every_verdict(paired):
    """10 % 503 + 5 % 429 on compute and image: the run completes and every requirement, in every project and
    region, has the verdict it has without faults."""
    baseline, faulted = paired.baseline, paired.faulted
    assert paired.injected["compute-503"] and paired.injected["compute-429"], paired.injected
    assert faulted.proc.returncode == baseline.proc.returncode == 0, faulted.output[-4000:] + baseline.output[-3000:]
    expected, got = by_requirement_and_scope(baseline.verdicts()), by_requirement_and_scope(faulted.verdicts())
    assert {requirement for requirement, _ in expected} == {f"R{n}" for n in range(1, 14)}, expected
    assert got == expected


def test_the_report_counts_the_retried_calls(paired):
    """Every injected 503/429 reached the cloud layer's retries and is counted, per service and reason, in
    results.json and report.html; none of them was hidden and none was fatal."""
    document = paired.faulted.document()
    retries = document["api_retries"]
    rows = {(r["service"], r["reason"]): r for r in retries["per_service"]}
    injected = paired.injected
    assert retries["gave_up"] == 0
    assert retries["total"] == sum(injected.values()), (retries, injected, paired.fired_on)
    for service in ("compute", "image"):
        for status in (503, 429):
            count = rows.get((service, f"HTTP {status}"), {}).get("retries", 0)
            assert count == injected[f"{service}-{status}"], (service, status, retries, injected)
    html = next(paired.faulted.report_dir.glob("*/report.html")).read_text()
    assert 'id="conformance-api-retries"' in html and f"{retries['total']} retries of" in html
    assert f"API retries: {retries['total']} (" in paired.faulted.output
    assert paired.baseline.document()["api_retries"]["total"] == 0


def test_two_runs_at_once_leave_each_other_and_nothing_else(sandbox, paired):
    """Neither run deleted the other's resources (both verdict sets are whole, and the same), the sweep left
    both running runs alone by their leases, and nothing of either run is left, counted as admin."""
    runs = (paired.baseline.prefix, paired.faulted.prefix)
    assert paired.leases_seen >= set(runs), (paired.leases_seen, runs)
    assert paired.swept.returncode == 0, paired.swept.stdout + paired.swept.stderr
    for run in runs:
        assert f"left alone: run {run} is in progress" in paired.swept.stdout, paired.swept.stdout
        assert run not in "".join(
            line for line in paired.swept.stdout.splitlines(keepends=True) if line.startswith("deleting:")
        )
    for run in (paired.baseline, paired.faulted):
        assert f"run {run.prefix}: every resource the run created was deleted" in run.output
    assert leaked(sandbox, *runs) == []


# ------------------------------------------------------------------------------------ one fault at a time
def test_volume_create_500_fails_r3_quoting_the_api_error(sandbox, faults, tmp_path):
    faults.set_rules(
        [
            {
                "name": "volume-500",
                "service": "block-storage",
                "method": "POST",
                "path": "/volumes$",
                "action": "status",
                "status": 500,
            }
        ]
    )
    run = run_to_end(sandbox, tmp_path / "reports", "-k", "mirror_disk or quota or services", env=faults.client_env())
    assert faults.injected("volume-500") == 1
    results = run.verdicts()
    mirror = results[("R3", "mirror.disk")]
    assert mirror["verdict"] == "FAIL", mirror
    assert "HTTP 500" in mirror["reason"] and "injected HTTP 500 (rule volume-500)" in mirror["reason"], mirror
    others = {key: r["verdict"] for key, r in results.items() if key[0] != "R3"}
    assert others and set(others.values()) == {"PASS"}, others
    assert leaked(sandbox, run.prefix) == []


def test_a_check_the_api_never_answers_says_so(sandbox, faults, tmp_path):
    """Every flavor listing answers 503: R4 fails with the API's error and how often the suite tried, not
    with a made-up shortfall; the report counts the retries and the call that gave up."""
    faults.set_rules(
        [
            {
                "name": "flavors-503",
                "service": "compute",
                "method": "GET",
                "path": "/flavors/detail$",
                "action": "status",
                "status": 503,
            }
        ]
    )
    run = run_to_end(sandbox, tmp_path / "reports", "-k", "test_node_flavor", env=faults.client_env())
    flavor = run.verdicts()[("R4", "node_flavor")]  # a check that errored is named after its test
    assert flavor["verdict"] == "FAIL", flavor
    assert flavor["reason"].startswith(
        "no answer from the cloud's API: GET /v2.1/flavors/detail: HTTP 503 (gave up after 6 attempts): "
    ), flavor
    assert "injected HTTP 503 (rule flavors-503)" in flavor["reason"]
    retries = run.document()["api_retries"]
    assert retries["gave_up"] == 1 and retries["total"] == faults.injected("flavors-503") - 1 == 5, retries


def test_two_seconds_on_every_compute_call(sandbox, faults, tmp_path):
    """The burst finishes within the profile's timeout, or fails cleanly (a verdict with its reason, never a
    crashed check); its servers are deleted either way."""
    faults.set_rules([{"name": "slow-compute", "service": "compute", "action": "latency", "delay_s": 2}])
    run = run_to_end(sandbox, tmp_path / "reports", "-k", "boot_burst", "--burst-size", BURST, env=faults.client_env())
    assert faults.injected("slow-compute") > 0
    results = run.verdicts()
    for check in ("burst.p95", "burst.failure_rate"):
        result = results[("R12", check)]
        assert result["verdict"] == "PASS" or (
            result["verdict"] == "FAIL" and result["reason"] and "crashed" not in result["reason"]
        ), result
    assert results[("R12", "burst.delete")]["verdict"] == "PASS"
    assert leaked(sandbox, run.prefix) == []


def test_connection_reset_mid_image_upload(sandbox, faults, tmp_path):
    """A reset after 1 MiB of the image data reached Glance: the upload is sent again from its start and
    verified (size, hashes), or R2 fails quoting the error; either way no image of the run is left."""
    faults.set_rules(
        [
            {
                "name": "upload-reset",
                "service": "image",
                "method": "PUT",
                "path": "/file$",
                "action": "reset",
                "after_bytes": 1024 * 1024,
                "max_count": 1,
            }
        ]
    )
    run = run_to_end(sandbox, tmp_path / "reports", "-k", "image_upload_and_boot", env=faults.client_env())
    assert faults.injected("upload-reset") == 1
    upload = run.verdicts()[("R2", "image.upload")]
    retried = {(r["service"], r["reason"]): r["retries"] for r in run.document()["api_retries"]["per_service"]}
    assert (upload["verdict"] == "PASS" and retried.get(("image", "connection reset")) == 1) or (
        upload["verdict"] == "FAIL" and "connection" in upload["reason"]
    ), (upload, retried)
    assert leaked(sandbox, run.prefix) == []


def test_stalled_compute_ends_the_run_at_its_deadline(sandbox, faults, tmp_path):
    """The burst's wait (`GET /servers/detail`) never answers: the run stops at its deadline with one clear
    line, exits non-zero and writes its bundle saying so. Its servers are deleted once the stall is lifted (the
    stalled call, dropped unanswered, is retried by the cloud layer)."""
    faults.set_rules(
        [
            {
                "name": "stall",
                "service": "compute",
                "method": "GET",
                "path": "/servers/detail$",
                "action": "stall",
                "for_s": 300,
            }
        ]
    )
    run = start(
        sandbox,
        tmp_path / "reports",
        "-k",
        "boot_burst",
        "--burst-size",
        "3",
        "--deadline",
        "60",
        env=faults.client_env(),
    )
    try:
        reached = Waiter(600).poll(lambda: "run deadline reached" in run.output or run.proc.poll() is not None, 1)
        stalled = faults.injected("stall")
    finally:
        faults.clear()  # the stall is lifted: the cleanup after the deadline can reach compute again
    run.finish()
    assert reached and stalled >= 1, run.output[-3000:]
    assert run.proc.returncode == pytest.ExitCode.INTERRUPTED, run.output[-3000:]
    assert "conformance: run deadline reached: 60 s after the start" in run.output
    document = run.document()
    assert document["interrupted"]["reason"] == "deadline", document["interrupted"]
    assert document["verdict"] == "INCOMPLETE"
    assert f"run {run.prefix}: every resource the run created was deleted" in run.output, run.output[-3000:]
    assert leaked(sandbox, run.prefix) == []
