"""Endpoints the suite cannot use, through its real command line against the sandbox: Keystone's certificate not
trusted (the clouds.yaml forgot its `cacert`), a compute endpoint that accepts connections and never answers
(the fault proxy in front of the sandbox), and a stop request while a call hangs there.

What the cloud did not fail is recorded as not measured (ERROR), never FAIL; the run says why once, names the
endpoint, ends within minutes (not at its deadline) and leaves nothing behind.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest
import yaml
from helpers import suite
from helpers.cloud import leftovers
from helpers.suite import LiveRun

from conformance.plugin import EXIT_ERROR
from conformance.resources import Waiter

# api.timeout_s 30 instead of the sandbox profile's 120: the stall is waited out once either way.
SHORT_API_TIMEOUT = str(Path(__file__).resolve().parents[1] / "profiles" / "sandbox-short-api-timeout.yaml")

STALL_FLAVORS = [
    {
        "name": "stall",
        "service": "compute",
        "method": "GET",
        "path": "/flavors/detail$",
        "action": "stall",
        "for_s": 600,
    }
]


@pytest.fixture
def stalled_flavors(proxy):
    """`GET /flavors/detail` never answered, for one test; lifted after it, whatever happened."""
    proxy.set_rules(STALL_FLAVORS)
    yield proxy
    proxy.clear()


def without_cacert(sandbox, tmp_path: Path) -> Path:
    clouds = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())
    for entry in clouds["clouds"].values():
        entry.pop("cacert", None)
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(clouds))
    return path


def test_keystone_certificate_not_trusted_is_one_line_and_r7(sandbox, tmp_path):
    """The sandbox's clouds.yaml without its `cacert` (a private CA): one line names the fix before anything
    runs; R7 fails (the cloud's finding), every other requirement is not measured (ERROR, not FAIL); no
    traceback, fewer than 100 lines in all, a non-zero exit, and nothing created."""
    proc = suite.run(without_cacert(sandbox, tmp_path), tmp_path / "reports", "--burst-size", "5", timeout=600)
    output = proc.stdout + proc.stderr
    lines = output.splitlines()
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output[-3000:]
    assert len(lines) < 100, f"{len(lines)} lines:\n{output[-3000:]}"
    assert "Traceback" not in output and "FAILURES" not in output and "urllib3" not in output, output[-3000:]
    said = [line for line in lines if line.startswith("conformance: Keystone's certificate")]
    assert len(said) == 1, output[-3000:]
    assert "add `cacert: /path/to/ca.pem` to clouds sandbox-zuul and sandbox-ci in clouds.yaml" in said[0]
    assert re.search(r"at https://127\.0\.0\.1:\d+/ is not trusted", said[0]), said[0]

    results = suite.results(tmp_path / "reports")
    r7 = [r for r in results if r["requirement"] == "R7" and r["check"] == "keystone.certificate"]
    assert {r["project"] for r in r7} == {"zuul", "ci"} and {r["verdict"] for r in r7} == {"FAIL"}, r7
    others = [r for r in results if r["requirement"] != "R7"]
    assert {r["requirement"] for r in others} >= {"R1", "R2", "R3", "R4", "R8", "R9", "R10", "R12", "R13"}
    for result in others:
        assert result["verdict"] == "ERROR", result
        assert result["reason"].startswith("not measured: Keystone's certificate at https://"), result
    assert suite.document(tmp_path / "reports")["verdict"] == "FAIL"  # R7: the cloud's own finding
    prefix = suite.run_prefix(output)
    assert prefix and leftovers(sandbox, prefix) == []


def test_an_explicit_tb_still_shows_the_failures(sandbox, tmp_path):
    """Someone debugging the suite asks for pytest's report of every failed check with --tb."""
    proc = suite.run(
        without_cacert(sandbox, tmp_path), tmp_path / "reports", "-m", "not dynamic", "--tb=short", timeout=600
    )
    assert "= FAILURES =" in proc.stdout, proc.stdout[-3000:]


def test_compute_that_never_answers_ends_the_run_in_minutes(sandbox, stalled_flavors, tmp_path):
    """`GET /flavors/detail` accepted and never answered: the first check that needs it waits out api.timeout_s
    (30 s in this test's profile) once, the compute endpoint is marked, and every later check that needs it is
    not measured at once, naming the endpoint and the timeout. The run ends within minutes (it went on for more
    than 15 before), with its bundle, and leaves nothing."""
    started = time.monotonic()
    run = LiveRun(
        sandbox.clouds_yaml,
        tmp_path / "reports",
        "--burst-size",
        "5",
        env=stalled_flavors.client_env(),
        profile=SHORT_API_TIMEOUT,
    )
    code = run.finish(timeout=900)
    took = time.monotonic() - started
    assert took < 210, f"{took:.0f} s:\n{run.tail()}"
    assert code == EXIT_ERROR, run.tail()  # not measured is no FAIL of the cloud
    assert stalled_flavors.injected("stall") >= 1

    results = run.verdicts()
    flavor = results[("R4", "node_flavor")]
    assert flavor["verdict"] == "ERROR", flavor
    endpoint = re.search(
        r"compute endpoint (http://127\.0\.0\.1:\d+\S*) stopped answering \(no answer in 30 s, "
        r"\d+ tr(y|ies)\)",
        flavor["reason"],
    )
    assert endpoint, flavor
    needs_compute = [r for r in results.values() if endpoint.group(1) in r["reason"]]
    assert {r["requirement"] for r in needs_compute} >= {"R4", "R8", "R12"}, needs_compute
    assert all(r["verdict"] == "ERROR" for r in needs_compute), needs_compute
    assert not [r for r in results.values() if r["verdict"] == "FAIL"], results
    assert run.document()["verdict"] == "ERROR"
    assert re.search(r"overall verdict: ERROR \(R1, R2, R3, R4 and \d+ more: not measured\)", run.output), run.tail()
    assert "Traceback" not in run.output and "FAILURES" not in run.output, run.tail()
    assert f"run {run.prefix}: every resource the run created was deleted" in run.output, run.tail()
    assert leftovers(sandbox, run.prefix) == []


def test_sigint_during_a_call_that_hangs_ends_it_at_once(sandbox, stalled_flavors, tmp_path):
    """R2 uploads the run's image, then asks for the flavors, which never come: SIGINT there ends the call at
    once (it waited out api.timeout_s, 120 s, before), the cleanup deletes the image and the lease, and the run
    exits as interrupted."""
    run = LiveRun(
        sandbox.clouds_yaml, tmp_path / "reports", "-k", "image_upload_and_boot", env=stalled_flavors.client_env()
    )
    try:
        hanging = Waiter(600).poll(lambda: stalled_flavors.injected("stall") >= 1 or run.proc.poll() is not None, 0.2)
        assert hanging and run.proc.poll() is None, run.tail()
        sent = time.monotonic()
        run.send(signal.SIGINT)
        code = run.finish(timeout=300)
        took = time.monotonic() - sent
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert code == pytest.ExitCode.INTERRUPTED, run.tail()
    assert took < 60, f"{took:.0f} s from SIGINT to exit:\n{run.tail()}"
    r2 = run.verdicts()
    assert r2[("R2", "image.upload")]["verdict"] == "PASS", r2
    assert r2[("R2", "image_upload_and_boot")]["verdict"] == "INCOMPLETE", r2
    assert f"run {run.prefix}: every resource the run created was deleted" in run.output, run.tail()
    assert leftovers(sandbox, run.prefix) == []
