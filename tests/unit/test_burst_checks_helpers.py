"""Pure helpers of the dynamic checks: the guest probe's parser and user-data, R6's address classification."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from conformance.checks.test_public_ip import classify, families_ok
from conformance.probe import PROBE_KEYS, parse_probe, probe_complete, probe_user_data_b64

CONSOLE = """[    0.000000] Linux version 6.8
conformance-probe: nproc=8
conformance-probe: memtotal_kb=8123456
cloud-init[812]: conformance-probe: nproc=8
conformance-probe: cpu_model=AMD EPYC 7B13 64-Core Processor
conformance-probe: cpu_mhz=2449.998
conformance-probe: steal_percent=0.4
conformance-probe: bench_score=4120
"""


def test_parse_probe_reads_every_key():
    facts = parse_probe(CONSOLE)
    assert probe_complete(facts)
    assert facts["nproc"] == "8" and facts["cpu_model"] == "AMD EPYC 7B13 64-Core Processor"
    assert facts["cpu_mhz"] == "2449.998" and facts["steal_percent"] == "0.4"
    assert not probe_complete(parse_probe("conformance-probe: nproc=8\n"))
    assert parse_probe("") == {} and parse_probe(None) == {}


def test_user_data_is_a_script_printing_every_key():
    script = base64.b64decode(probe_user_data_b64(512)).decode()
    assert script.startswith("#!/bin/sh\n") and "conformance-probe" in script
    for key in PROBE_KEYS:
        assert f'"{key}=' in script


@pytest.mark.skipif(not shutil.which("sh"), reason="no sh")
def test_user_data_runs_here(tmp_path):
    """The script is plain POSIX sh over /proc: on this Linux machine it prints a complete probe."""
    script = tmp_path / "probe.sh"
    # A smaller benchmark so the test stays fast; the parsing is what matters.
    script.write_text(base64.b64decode(probe_user_data_b64(8)).decode())
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=120).stdout
    facts = parse_probe(out)
    assert probe_complete(facts), out
    assert int(facts["nproc"]) >= 1 and int(facts["memtotal_kb"]) > 0
    assert 0.0 <= float(facts["steal_percent"]) <= 100.0


@pytest.mark.parametrize(
    ("addr", "accept", "public", "doc"),
    [
        ("8.8.8.8", False, True, False),
        ("10.0.0.5", True, False, False),
        ("192.0.2.38", False, False, True),
        ("192.0.2.38", True, True, True),
        ("203.0.113.9", True, True, True),
        ("2001:db8::5", True, True, True),
        ("2001:db8::5", False, False, True),
        ("2a00:1450:4001:81b::200e", False, True, False),
        ("fd00::1", True, False, False),
    ],
)
def test_classify(addr, accept, public, doc):
    result = classify(addr, accept)
    assert result["public"] is public and result["documentation"] is doc


def test_families():
    assert families_ok("any", True, False) and families_ok("any", False, True)
    assert not families_ok("any", False, False)
    assert families_ok("both", True, True) and not families_ok("both", True, False)
    assert families_ok("ipv6", False, True) and not families_ok("ipv6", True, False)


# --- R12's verdicts from a burst's result: decided, failed, or INCOMPLETE with what was measured -------------
def _burst(statuses: list[str], interrupted: bool = False, phase: str = "boot", faults: dict | None = None):
    import datetime as dt

    from conformance.burst import BurstResult, ServerTiming
    from conformance.interrupt import Interruption

    servers = []
    for index, status in enumerate(statuses):
        timing = ServerTiming(index, f"s{index}", status=status, requested_at=0.0)
        if status == "ACTIVE":
            timing.active_at = 10.0 + index
        timing.fault = (faults or {}).get(status)
        servers.append(timing)
    stop = Interruption("SIGINT", dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)) if interrupted else None
    result = BurstResult(
        servers=servers,
        interrupted=stop,
        phase=phase if interrupted else "",
        stopped_after_s=25.0 if interrupted else None,
    )
    return result, result.summary()


def _verdicts(result, summary, timeout=1800.0):
    from conformance.checks.test_burst import (
        delete_verdict,
        failure_rate_verdict,
        p95_verdict,
        undecided_boots,
    )

    open_boots = undecided_boots(result, timeout, 1800.0)
    return (
        p95_verdict(summary, 600.0, open_boots),
        failure_rate_verdict(result, summary, 0.02, open_boots),
        delete_verdict(result, summary, timeout, 1800.0),
    )


def test_burst_stopped_while_booting_is_incomplete_with_the_counts_and_times():
    result, summary = _burst(["ACTIVE", "ACTIVE", "BUILD", "BUILD", "NOT_REQUESTED"], interrupted=True)
    p95, failure, delete = _verdicts(result, summary)
    assert p95["verdict"] == failure["verdict"] == delete["verdict"] == "INCOMPLETE"
    assert p95["measured"] == "2/5 ACTIVE, 0 failed, 2 BUILD, 1 not requested (p50 10.5 s, max 11.0 s)"
    assert p95["reason"] == "interrupted by SIGINT at 2030-01-01T00:00:00Z, 25 s into the burst (boot phase)"
    assert "the run's cleanup deletes the servers" in delete["reason"]


def test_burst_stopped_with_more_failed_than_allowed_fails_anyway():
    result, summary = _burst(["ACTIVE", "ERROR", "BUILD"], interrupted=True, faults={"ERROR": "No valid host"})
    p95, failure, _ = _verdicts(result, summary)
    assert p95["verdict"] == "INCOMPLETE"
    assert failure["ok"] is False and "1 of 3 failed before the burst stopped" in failure["reason"]
    assert "No valid host" in failure["reason"]


def test_burst_stopped_while_deleting_keeps_decided_boot_verdicts():
    result, summary = _burst(["ACTIVE"] * 4, interrupted=True, phase="delete")
    p95, failure, delete = _verdicts(result, summary)
    assert p95["ok"] is True and failure["ok"] is True
    assert delete["verdict"] == "INCOMPLETE" and "(delete phase)" in delete["reason"]


def test_burst_timeout_below_the_profile_leaves_building_servers_undecided():
    note = {"TIMEOUT": "not ACTIVE after 20 s (last seen BUILD)"}
    result, summary = _burst(["ACTIVE", "TIMEOUT", "TIMEOUT"], faults=note)
    result.left_after_delete = ["id-1"]
    p95, failure, delete = _verdicts(result, summary, timeout=20.0)
    assert p95["verdict"] == failure["verdict"] == delete["verdict"] == "INCOMPLETE"
    assert p95["measured"].startswith("1/3 ACTIVE, 0 failed, 2 BUILD")
    assert "2 still BUILD when --burst-timeout 20 s (below the profile's 1800 s)" in failure["reason"]
    assert "not ACTIVE after" not in failure["reason"]  # not presented as a fault of the cloud


def test_burst_timeout_of_the_profile_counts_hung_boots_as_failed():
    note = {"TIMEOUT": "not ACTIVE after 1800 s (last seen BUILD)"}
    result, summary = _burst(["ACTIVE"] * 9 + ["TIMEOUT"], faults=note)
    p95, failure, delete = _verdicts(result, summary)
    assert p95["ok"] is True  # the ACTIVE ones were fast
    assert failure["ok"] is False and "not ACTIVE after 1800 s" in failure["reason"]
    assert delete["ok"] is True


@pytest.mark.parametrize("bench_mb", [512, 64])
def test_the_benchmark_hashes_the_profiles_megabytes_per_vcpu(bench_mb):
    """probe.bench_mb_per_vcpu sizes the benchmark, and the score divides by the same figure (a rate)."""
    script = base64.b64decode(probe_user_data_b64(bench_mb)).decode()
    assert f"count={bench_mb} " in script and f"n*{bench_mb}/(ns/1e9)" in script
    assert "@BENCH_MB@" not in script


def test_the_profiles_size_the_benchmark():
    from conformance.profiles import load_profile

    assert load_profile("opendev-donor")["probe.bench_mb_per_vcpu"] == 512
    assert load_profile("sandbox")["probe.bench_mb_per_vcpu"] == 64  # a relaxation: tests/unit/test_profiles.py


def test_burst_where_nothing_booted_fails_p95_for_that_reason_not_for_slowness():
    result, summary = _burst(["ERROR", "ERROR", "ERROR"], faults={"ERROR": "No valid host"})
    p95, failure, _ = _verdicts(result, summary)
    assert p95["ok"] is False and failure["ok"] is False
    assert p95["measured"] == "no server became ACTIVE (0/3)"
    assert p95["reason"] == "no boot to time: 3 of 3 failed (see burst.failure_rate)"
    assert "slower" not in p95["reason"]


def test_burst_with_one_slow_boot_fails_p95_as_slower_than_the_sla():
    result, summary = _burst(["ACTIVE"])
    p95, _, _ = _verdicts(result, summary)
    assert p95["ok"] is True
    assert p95_of(summary, max_p95=5.0)["reason"] == "boots slower than the SLA"


def p95_of(summary, max_p95):
    from conformance.checks.test_burst import OpenBoots, p95_verdict

    return p95_verdict(summary, max_p95, OpenBoots())
