"""Interrupted runs (R12's burst as the long check): real SIGINT / SIGTERM sent to a real
`python -m pytest --pyargs conformance.checks` whose output is a pipe, at points found by watching the cloud
(the sandbox's admin view) or the run's own progress lines, never by fixed sleeps.

Every interrupted run must exit non-zero without a traceback or a pytest INTERNALERROR, keep what it measured
(INCOMPLETE results with the burst's counts, times and faults in results.json, the run-level `interrupted`
record), and leave nothing with its prefix behind. A second signal exits at once and names the sweeper.

Runs that need no frozen service overlap to keep the suite's time down; each starts once the one before it
has created something (past its start-up, whose Keystone reachability probe is bounded to a few seconds).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from helpers.cloud import leftovers
from helpers.suite import LONG, LiveRun

REPO_ROOT = Path(__file__).resolve().parents[2]
SIZE = 6


class AdminView:
    """What the cloud shows of a run, through the admin connection (never through the run itself)."""

    def __init__(self, sandbox):
        self.conn = sandbox.admin()

    def servers(self, prefix: str) -> list:
        # <prefix>-<region tag>-burst-<n> (conformance.resources.Tracker.name)
        pattern = f"^{re.escape(prefix)}-([a-z0-9-]+-)?burst-"
        return list(self.conn.compute.servers(details=True, all_projects=True, name=pattern))

    def images(self, prefix: str) -> list:
        return [i for i in self.conn.image.images() if (i.name or "").startswith(prefix)]

    def active(self, prefix: str) -> list:
        return [s for s in self.servers(prefix) if s.status == "ACTIVE"]

    @staticmethod
    def booted_in_database(sandbox, prefix: str) -> int:
        """Servers of the run whose boot finished, read from Nova's cell database: the view left while nova-api
        is frozen."""
        import pymysql

        conn = pymysql.connect(unix_socket=str(sandbox.layout.mysql_socket), user="root", database="nova")
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT COUNT(*) FROM instances WHERE deleted = 0 AND vm_state = 'active' AND display_name LIKE %s",
                    (f"{prefix}-%burst-%",),
                )
                return cursor.fetchone()[0]
        finally:
            conn.close()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def admin(sandbox):
    view = AdminView(sandbox)
    yield view
    view.close()


@pytest.fixture
def start(sandbox, tmp_path):
    """start(name, *pytest_args, select=...) -> LiveRun; whatever still runs at the end is killed."""
    runs: list[LiveRun] = []

    def start_run(name: str, *args: str, select: str = "boot_burst") -> LiveRun:
        run = LiveRun(sandbox.clouds_yaml, tmp_path / name, "-k", select, "--burst-size", str(SIZE), *args)
        runs.append(run)
        run.wait_for_line(r"conformance run prefix: (conformance-\S+)", timeout=LONG)  # past its start-up
        return run

    yield start_run
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()


def sigint_while_frozen(sandbox, run: LiveRun, service: str) -> None:
    """SIGINT with `service` frozen: the handler must answer while the run's calls hang."""
    with sandbox.paused(service):
        run.wait_for_line(ack_line("SIGINT"), run.send(signal.SIGINT))


def ack_line(name: str) -> str:
    return rf"conformance: {name} at \S+Z: stopping"


def assert_stopped_cleanly(run: LiveRun, sandbox, name: str) -> tuple[dict, dict]:
    """Exit 2, no traceback, the run-level record and summary lines, nothing left. Returns (doc, R12 by check)."""
    code = run.finish()
    text = run.output
    assert code == 2, run.tail()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text[-6000:]
    assert re.search(ack_line(name), text)
    assert re.search(rf"run interrupted by {name} at \S+Z, \d+ s in, during the checks", text), run.tail()
    assert re.search(rf"overall verdict: INCOMPLETE \(run interrupted by {name} at ", text), run.tail()
    doc = run.document()
    assert doc["verdict"] == "INCOMPLETE" and doc["exit_status"] == 2
    assert doc["interrupted"]["reason"] == name and doc["interrupted"]["during"] == "checks"
    assert leftovers(sandbox, run.prefix) == []
    r12 = {r["check"]: r for r in doc["results"] if r["requirement"] == "R12"}
    return doc, r12


def assert_partial_burst(doc: dict, r12: dict, phase: str) -> dict:
    """The burst's figures until the stop: INCOMPLETE where the phase leaves them open, counts that add up."""
    summary = r12["burst.p95"]["data"]["summary"]
    assert summary["interrupted"]["phase"] == phase, summary
    assert summary["n"] == SIZE
    assert summary["active"] + summary["error"] + summary["build"] + summary["not_requested"] == SIZE
    servers = r12["burst.p95"]["data"]["servers"]
    assert len(servers) == SIZE
    for server in servers:  # every ACTIVE server keeps its time; the others say where they stood
        assert (server["request_to_active_s"] is not None) == (server["status"] == "ACTIVE"), server
    assert r12["burst.delete"]["verdict"] == "INCOMPLETE"
    if phase == "boot":
        assert r12["burst.p95"]["verdict"] == "INCOMPLETE" and r12["burst.failure_rate"]["verdict"] == "INCOMPLETE"
        assert doc["burst"]["complete"] is False and doc["burst"]["verdict"] == "INCOMPLETE"
        assert f"/{SIZE} ACTIVE" in r12["burst.p95"]["measured"]
    return summary


def test_sigint_during_the_upload_with_glance_hanging_and_a_second_sigint(sandbox, admin, start):
    """Glance frozen while the image uploads: the SIGINT is acknowledged at once (the handler runs while the call
    hangs) and the run stops cleanly once Glance goes on. A second run gets a second SIGINT and exits at once,
    Glance still frozen, naming the sweeper, whose command then deletes what it left."""
    first = start("first")
    first.wait_for(lambda: admin.images(first.prefix), "the image record")
    sigint_while_frozen(sandbox, first, "glance")
    second = start("second")
    second.wait_for(lambda: admin.images(second.prefix), "the image record")
    with sandbox.paused("glance"):
        second.wait_for_line(ack_line("SIGINT"), second.send(signal.SIGINT))
        second.send(signal.SIGINT)
        code = second.finish(timeout=120)  # Glance still frozen: no cleanup could have finished
    assert code == 128 + signal.SIGINT, second.tail()
    text = second.output
    assert "Traceback" not in text and "INTERNALERROR" not in text, text[-6000:]
    hint = re.search(
        r"SIGINT again: exiting now, without waiting for the cleanup\. Whatever run "
        rf"{second.prefix} created and did not delete yet is left behind: `(python -m conformance "
        r"cleanup [^`]+)` deletes it\.",
        text,
    )
    assert hint, second.tail()
    assert hint.group(1).endswith(f"--zuul-cloud sandbox-zuul --ci-cloud sandbox-ci --run {second.prefix}")
    assert not list(second.report_dir.glob("*/results.json"))  # at once: not even the report

    doc, r12 = assert_stopped_cleanly(first, sandbox, "SIGINT")
    assert r12 and all(r["verdict"] in ("INCOMPLETE", "WARN") for r in r12.values()), r12
    assert any("interrupted by SIGINT" in r["reason"] for r in r12.values())

    assert leftovers(sandbox, second.prefix), "the second signal should have left the image behind"
    sweeper = shlex.split(hint.group(1))
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml)}
    swept = subprocess.run([sys.executable, *sweeper[1:]], capture_output=True, text=True, env=env, timeout=LONG)
    assert swept.returncode == 0 and second.prefix in swept.stdout, swept.stdout + swept.stderr
    assert leftovers(sandbox, second.prefix) == []


def test_sigint_after_the_first_create_and_with_nova_api_hanging_sigterm_at_the_first_poll(sandbox, admin, start):
    """Three overlapping runs, each started once the one before has created a server: SIGINT once the first
    server exists (with a second check selected, which must not start); SIGINT while nova-api is frozen (the
    burst's calls hang); SIGTERM once the first progress line came through the pipe (default
    --progress-interval: a pipe gets the line while the burst runs)."""
    create = start("create", select="boot_burst or test_services")
    create.wait_for(lambda: admin.servers(create.prefix), "the first burst server")
    create.send(signal.SIGINT)
    hung = start("hung")
    hung.wait_for(lambda: admin.servers(hung.prefix), "the first burst server")
    sigint_while_frozen(sandbox, hung, "nova-api")
    poll = start("poll")
    poll.wait_for_line(rf"^burst \d+/{SIZE} ACTIVE, \d+ ERROR, \d+ BUILD, \d\d:\d\d")
    assert poll.proc.poll() is None  # read from the pipe while the burst still ran
    poll.send(signal.SIGTERM)

    doc, r12 = assert_stopped_cleanly(create, sandbox, "SIGINT")
    summary = assert_partial_burst(doc, r12, "boot")
    assert summary["active"] + summary["error"] + summary["build"] >= 1  # at least the one seen was sent
    assert "R12 burst.p95" in create.output and "INCOMPLETE  interrupted by SIGINT" in create.output
    assert not [r for r in doc["results"] if r["requirement"] == "R1"]  # the next check never started
    assert "Interrupted: SIGINT at" in create.output

    doc, r12 = assert_stopped_cleanly(hung, sandbox, "SIGINT")
    assert_partial_burst(doc, r12, r12["burst.p95"]["data"]["summary"]["interrupted"]["phase"])

    doc, r12 = assert_stopped_cleanly(poll, sandbox, "SIGTERM")
    summary = r12["burst.p95"]["data"]["summary"]
    assert_partial_burst(doc, r12, summary["interrupted"]["phase"])
    assert summary["polls"] >= 1


def test_sigint_mid_poll_keeps_the_boot_times_so_far(sandbox, admin, start, tmp_path):
    """Some servers ACTIVE, the others still building, in the burst's own view, then SIGINT: the times of the
    ACTIVE ones are kept. The fake hypervisor finishes a burst's boots together, so the split is made: creates
    one at a time (a profile for this test); nova-api frozen after the first create holds back the others until
    a boot finished; nova-compute frozen then keeps the later ones building."""
    profile = tmp_path / "one-by-one.yaml"
    profile.write_text("extends: sandbox\nname: sandbox-one-by-one\nburst:\n  create_concurrency: 1\n")
    run = start("reports", f"--profile={profile}", "--progress-interval", "0")
    run.wait_for(lambda: admin.servers(run.prefix), "the first burst server")
    with ExitStack() as compute_frozen:
        with sandbox.paused("nova-api"):
            run.wait_for(lambda: admin.booted_in_database(sandbox, run.prefix), "a finished boot")
            compute_frozen.enter_context(sandbox.paused("nova-compute"))
        line = run.wait_for_line(rf"^burst [1-9]\d*/{SIZE} ACTIVE, \d+ ERROR, [1-9]\d* BUILD")
        run.wait_for_line(ack_line("SIGINT"), run.send(signal.SIGINT))
    doc, r12 = assert_stopped_cleanly(run, sandbox, "SIGINT")
    summary = assert_partial_burst(doc, r12, "boot")
    assert 1 <= summary["active"] < SIZE, (line.group(0), summary)
    assert summary["p50"] is not None and "p50" in r12["burst.p95"]["measured"]
    html = next(run.report_dir.glob("*/report.html")).read_text()
    assert 'id="conformance-interrupted"' in html and 'id="conformance-burst-interrupted"' in html
    junit = next(run.report_dir.glob("*/junit.xml")).read_text()
    assert 'name="conformance.interrupted"' in junit and 'message="Failed: INCOMPLETE' in junit


def test_sigint_mid_delete_keeps_the_decided_boot_verdicts(sandbox, admin, start):
    """Every server ACTIVE, their deletes held (nova-compute frozen): p95 and failure rate are decided, the
    delete is INCOMPLETE, and the run's cleanup finishes the deletes."""
    run = start("reports", "--progress-interval", "0")
    run.wait_for(lambda: len(admin.active(run.prefix)) == SIZE, "every burst server ACTIVE")
    with sandbox.paused("nova-compute"):
        run.wait_for_line(r"\| delete: [1-9]\d* left")
        mark = run.send(signal.SIGINT)
        run.wait_for_line(ack_line("SIGINT"), mark)
    doc, r12 = assert_stopped_cleanly(run, sandbox, "SIGINT")
    assert_partial_burst(doc, r12, "delete")
    assert r12["burst.p95"]["verdict"] == "PASS" and r12["burst.failure_rate"]["verdict"] == "PASS"
    assert doc["burst"]["complete"] is True


def test_burst_timeout_below_the_profile_leaves_building_servers_undecided(sandbox, admin, start):
    """--burst-timeout 20 with nova-compute frozen after the first create: the servers still BUILD at the
    timeout are neither fast nor failed (INCOMPLETE, counted), the run is not interrupted and cleans up."""
    run = start("reports", "--burst-timeout", "20", "--progress-interval", "0")
    run.wait_for(lambda: admin.servers(run.prefix), "the first burst server")
    with sandbox.paused("nova-compute"):
        run.wait_for_line(r"\| delete: \d+ left")  # the boot wait ended at the timeout
    code = run.finish()
    text = run.output
    assert code == 1, run.tail()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    doc = run.document()
    r12 = {r["check"]: r for r in doc["results"] if r["requirement"] == "R12"}
    assert doc["interrupted"] is None and doc["verdict"] == "INCOMPLETE"
    for check in ("burst.p95", "burst.failure_rate"):
        assert r12[check]["verdict"] == "INCOMPLETE", r12[check]
        assert "still BUILD when --burst-timeout 20 s (below the profile's 1800 s)" in r12[check]["reason"]
    summary = r12["burst.p95"]["data"]["summary"]
    timed_out = [s for s in r12["burst.p95"]["data"]["servers"] if s["status"] == "TIMEOUT"]
    assert (
        timed_out
        and f"{summary['active']}/{SIZE} ACTIVE, 0 failed, {len(timed_out)} BUILD" in r12["burst.p95"]["measured"]
    )
    assert leftovers(sandbox, run.prefix) == []
