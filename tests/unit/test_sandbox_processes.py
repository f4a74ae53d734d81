"""The sandbox's process table, with real processes: start, track by PID + start time, stop whole groups."""

from __future__ import annotations

import subprocess
import sys

from sandbox.processes import Process, ProcessTable, group_members, is_alive

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# A leader that forks a child into its own group, as gunicorn forks workers.
FORKER = [
    sys.executable,
    "-c",
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
    " time.sleep(60)",
]


def test_start_records_and_stop_all_stops_every_group_member(tmp_path):
    table = ProcessTable(tmp_path / "processes.json")
    first = table.start("first", SLEEPER, tmp_path / "first.out", {})
    forker = table.start("forker", FORKER, tmp_path / "forker.out", {})
    assert set(table.running()) == {"first", "forker"}
    assert first.start_ticks > 0
    # wait until the forked child exists, then stop everything
    import time

    deadline = time.monotonic() + 10
    while len(group_members(forker.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    members = group_members(forker.pid)
    assert len(members) == 2
    stopped = table.stop_all(timeout=5)
    assert sorted(stopped) == ["first", "forker"]
    assert table.running() == {}
    assert group_members(forker.pid) == []


def test_a_recycled_pid_is_not_ours(tmp_path):
    other = subprocess.Popen(SLEEPER)
    try:
        impostor = Process("old", other.pid, start_ticks=1, argv=[], log="", env={})
        assert not is_alive(impostor), "a different start time means the PID was reused by another process"
        table = ProcessTable(tmp_path / "processes.json")
        table._save({"old": impostor})
        assert table.stop_all(timeout=1) == []
        assert other.poll() is None, "stop_all must not touch a process it did not start"
    finally:
        other.kill()
        other.wait()


def test_paused_returns_only_once_the_group_is_stopped_and_resumes_it(tmp_path):
    from sandbox.api import Sandbox
    from sandbox.layout import Layout
    from sandbox.processes import process_state

    sb = Sandbox(Layout(tmp_path))
    tmp_path.mkdir(exist_ok=True)
    proc = sb.stack.table.start("nova-compute", SLEEPER, tmp_path / "sleeper.out", {})
    try:
        with sb.paused("nova-compute"):
            assert process_state(proc.pid) == "T"
        assert process_state(proc.pid) in ("S", "R")
    finally:
        sb.stack.table.stop_all(timeout=2)


def test_stop_keeps_the_record_so_the_process_can_be_started_again(tmp_path):
    """`python -m sandbox service stop X` then `service start X`: the second needs X's command line."""
    table = ProcessTable(tmp_path / "processes.json")
    table.start("sleeper", SLEEPER, tmp_path / "sleeper.out", {"A": "1"})
    table.stop("sleeper", timeout=5)
    assert table.running() == {}
    kept = table.load()["sleeper"]
    assert (kept.argv, kept.env) == (SLEEPER, {"A": "1"})
    again = table.start("sleeper", kept.argv, tmp_path / "sleeper.out", kept.env)
    try:
        assert set(table.running()) == {"sleeper"} and table.load()["sleeper"].pid == again.pid
    finally:
        table.stop_all(timeout=2)


def test_cpu_seconds_counts_every_member_of_the_group(tmp_path):
    # A leader that sleeps and a child that burns ~0.5 s of CPU, then sleeps: the group's time includes the child's.
    burner = [
        sys.executable,
        "-c",
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time\\n"
        "end = time.process_time() + 0.5\\nwhile time.process_time() < end: pass\\ntime.sleep(60)']);"
        " time.sleep(60)",
    ]
    from sandbox.processes import cpu_seconds
    from sandbox.waiting import wait_for

    table = ProcessTable(tmp_path / "processes.json")
    proc = table.start("burner", burner, tmp_path / "burner.out", {})
    try:
        assert wait_for(lambda: cpu_seconds(proc) >= 0.5, timeout=20, interval=0.1, raise_on_timeout=False), (
            cpu_seconds(proc)
        )
        assert len(group_members(proc.pid)) == 2
        sleeper = table.start("sleeper", SLEEPER, tmp_path / "sleeper.out", {})
        assert cpu_seconds(sleeper) < 0.5
    finally:
        table.stop_all(timeout=2)
    assert cpu_seconds(proc) == 0.0, "a group that is gone has no members left to count"


def test_a_start_fails_on_what_this_command_started_not_on_what_was_stopped_before(tmp_path):
    """`up` (or `service start`) fails fast, naming it, when a process it started exits; a process stopped
    earlier on purpose (`service stop`, its record kept) is not a failed start."""
    import pytest

    from sandbox.layout import Layout
    from sandbox.services import Service
    from sandbox.stack import Stack
    from sandbox.waiting import SandboxError, wait_for

    stack = Stack(Layout(tmp_path), say=lambda message: None)
    stack.layout.log.mkdir(parents=True)
    stack.table.start("stopped-earlier", SLEEPER, tmp_path / "earlier.out", {})
    stack.table.stop("stopped-earlier", timeout=5)
    try:
        built = stack._start(Service("template-build", SLEEPER))  # as `up` does when it builds the template:
        stack.table.stop_all(timeout=5)  # everything stopped, then the state (and the table) wiped
        stack.layout.processes.unlink()
        assert not is_alive(built)
        stack._start(Service("sleeper", SLEEPER))
        stack._check_alive()  # neither the one stopped before nor the template build's are a failed start
        failing = stack._start(Service("failing", [sys.executable, "-c", "print('bad config'); raise SystemExit(3)"]))
        wait_for(lambda: not is_alive(failing), timeout=10, interval=0.05)
        with pytest.raises(SandboxError, match="failing exited during start: bad config"):
            stack._check_alive()
    finally:
        stack.table.stop_all(timeout=2)


def test_schema_sync_passes_no_password_on_a_command_line(tmp_path, monkeypatch):
    """keystone-manage bootstrap takes the admin password from OS_BOOTSTRAP_PASSWORD: on its command line it was
    in every process listing, and a password starting with "-" was taken for an option (a failed `up`)."""
    from sandbox.layout import Layout
    from sandbox.stack import Stack

    stack = Stack(Layout(tmp_path), say=lambda message: None)
    steps = []
    monkeypatch.setattr(stack, "_run_step", lambda name, argv, env=None: steps.append((name, argv, env or {})))
    password = "-starts-like-an-option"
    stack._sync_schemas({"admin": password})
    [(_, argv, env)] = [step for step in steps if "bootstrap" in step[1]]
    assert env == {"OS_BOOTSTRAP_PASSWORD": password}
    assert not [arg for name, argv, _ in steps for arg in argv if password in arg]


def test_the_guest_image_lines_of_up_say_guest_image_once(tmp_path, monkeypatch):
    from sandbox import guest_image, real_host
    from sandbox.layout import Layout
    from sandbox.stack import Stack

    said = []
    monkeypatch.setattr(guest_image, "ensure_image", lambda say: say("guest image: [  17s] block-device"))
    Stack(Layout(tmp_path), say=said.append)._guest_image(real_host.RealHost(enabled=True))
    [line] = said
    assert line.endswith("] guest image: [  17s] block-device") and line.count("guest image:") == 1, line
