"""The zygote (sandbox/zygote.py) with real processes: what it forks is a service like one started by exec (own
session, environment, working directory, niceness, log; stopped by its group; reaped when it exits), and without a
zygote the same start falls back to exec."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest

from sandbox import zygote
from sandbox.processes import ProcessTable, group_members, is_alive, process_state
from sandbox.waiting import wait_for

REPORTER = [
    sys.executable,
    "-c",
    "import os, sys, time; print('pgid', os.getpgid(0), 'cwd', os.getcwd(), 'nice', os.nice(0), "
    "'var', os.environ.get('ZYGOTE_TEST_VAR'), 'other', os.environ.get('ZYGOTE_ONLY'), "
    "'argv', sys.argv[1:], flush=True); time.sleep(60)",
    "one",
    "two",
]


@pytest.fixture
def running_zygote(tmp_path):
    """A zygote listening in tmp_path, recorded in a process table; stopped at the end with what it forked."""
    table = ProcessTable(tmp_path / "processes.json")
    sock = tmp_path / "z.sock"
    table.start(
        "zygote",
        [sys.executable, "-m", "sandbox.zygote", str(sock)],
        tmp_path / "zygote.out",
        {"ZYGOTE_ONLY": "the zygote's own", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    wait_for(sock.exists, timeout=60, interval=0.05, what="the zygote's socket")
    yield table, sock
    table.stop_all(timeout=5)


def test_a_forked_process_is_a_service_of_its_own(running_zygote, tmp_path):
    table, sock = running_zygote
    work = tmp_path / "work"
    work.mkdir()
    proc = table.start(
        "reporter",
        REPORTER,
        tmp_path / "reporter.out",
        {"ZYGOTE_TEST_VAR": "given"},
        cwd=work,
        nice=5,
        spawn=partial(zygote.spawn, sock),
    )
    assert proc.start_ticks > 0 and is_alive(proc)
    assert os.getppid() != proc.pid and proc.pid != table.load()["zygote"].pid
    log = tmp_path / "reporter.out"
    wait_for(lambda: "pgid" in log.read_text(), timeout=20, interval=0.05, what="the child's line")
    line = log.read_text()
    # Its own session (ProcessTable stops it by group), the environment it was given and not the zygote's, its
    # working directory, niceness and arguments.
    assert f"pgid {proc.pid} " in line
    assert f"cwd {work} " in line and "nice 5 " in line
    assert "var given other None " in line and "argv ['one', 'two']" in line
    table.stop("reporter", timeout=5)
    assert not is_alive(proc) and group_members(proc.pid) == []
    assert is_alive(table.load()["zygote"]), "stopping a forked service leaves the zygote"


def test_a_forked_process_that_exits_is_reaped_and_its_exit_is_in_its_log(running_zygote, tmp_path):
    table, sock = running_zygote
    proc = table.start(
        "crasher",
        [sys.executable, "-c", "raise SystemExit('cannot start: no config')"],
        tmp_path / "crasher.out",
        {},
        spawn=partial(zygote.spawn, sock),
    )
    wait_for(lambda: process_state(proc.pid) is None, timeout=20, interval=0.05, what="the child to be reaped")
    assert "cannot start: no config" in (tmp_path / "crasher.out").read_text()


def test_a_module_runs_as_main_with_its_arguments(running_zygote, tmp_path):
    table, sock = running_zygote
    (tmp_path / "in.json").write_text('{"b": 1, "a": 2}')
    proc = table.start(
        "module",
        [sys.executable, "-m", "json.tool", "--sort-keys", "--compact", str(tmp_path / "in.json")],
        tmp_path / "module.out",
        {},
        spawn=partial(zygote.spawn, sock),
    )
    wait_for(lambda: process_state(proc.pid) is None, timeout=20, interval=0.05, what="json.tool to end")
    assert (tmp_path / "module.out").read_text().strip() == '{"a":2,"b":1}'


def test_without_a_zygote_the_start_falls_back_to_exec(tmp_path):
    table = ProcessTable(tmp_path / "processes.json")
    proc = table.start(
        "reporter", REPORTER, tmp_path / "reporter.out", {}, spawn=partial(zygote.spawn, tmp_path / "none.sock")
    )
    try:
        assert is_alive(proc)
        assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[0] == sys.executable.encode()
    finally:
        table.stop_all(timeout=5)


def test_the_preloaded_libraries_do_not_import_eventlet():
    """Nova's services refuse to start when eventlet was imported before them (native threads)."""
    code = (
        "import sys; from sandbox import zygote; zygote.preload(); print('eventlet' in sys.modules, len(sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    imported, count = result.stdout.split()
    assert imported == "False" and int(count) > 500


def test_a_request_from_a_client_that_goes_away_does_not_stop_the_zygote(running_zygote):
    table, sock = running_zygote
    import socket

    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock))
        conn.sendall(b"not json\n")
    time.sleep(0.2)
    assert is_alive(table.load()["zygote"])
