"""Stop requests (conformance.interrupt): a signal is recorded, raised at the next safe point with a traceback
pytest can render, never inside a cleanup; a second signal exits at once naming the sweeper."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading

import pytest
from _pytest._code import ExceptionInfo
from helpers.suite import default_sigint

from conformance import interrupt
from conformance.resources import Waiter

main_thread_only = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signal handlers: main thread only"
)


@pytest.fixture
def handlers():
    """Install the handlers with a pipe for their messages and a fake exit; restore everything after."""
    read_fd, write_fd = os.pipe()
    open_fds = {read_fd, write_fd}
    exits: list[int] = []
    restore = interrupt.install_signal_handlers(
        lambda: "run conformance-x left: `cleanup --run x` deletes it.", exit_now=exits.append, stderr_fd=write_fd
    )

    def messages() -> str:
        os.close(write_fd)
        open_fds.clear()
        with os.fdopen(read_fd) as pipe:
            return pipe.read()

    try:
        yield exits, messages
    finally:
        restore()
        interrupt.reset()
        for fd in open_fds:
            os.close(fd)


@main_thread_only
def test_signal_is_recorded_and_raised_at_the_next_wait(handlers):
    exits, messages = handlers
    os.kill(os.getpid(), signal.SIGTERM)  # the handler returns: nothing is raised where the signal landed
    stop = interrupt.requested()
    assert stop is not None and stop.reason == "SIGTERM" and stop.at.tzinfo is not None
    waiter = Waiter(60)
    with pytest.raises(interrupt.Interrupted) as caught:
        waiter.wait(60)  # woken at once, not after 60 s
    assert waiter.elapsed() < 30
    assert caught.value.interruption is stop and "SIGTERM at" in str(caught.value)
    assert exits == []
    text = messages()
    assert "SIGTERM at" in text and "INCOMPLETE" in text and "SIGTERM again exits at once" in text


@main_thread_only
def test_second_signal_exits_at_once_and_names_the_sweeper(handlers):
    exits, messages = handlers
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    assert exits == [128 + signal.SIGTERM]
    text = messages()
    assert "SIGTERM again: exiting now, without waiting for the cleanup" in text
    assert "`cleanup --run x` deletes it." in text


def test_cleanup_is_shielded_from_a_stop_request():
    interrupt.request("SIGINT")
    try:
        with interrupt.shielded():
            interrupt.check()  # no raise
            polls = []
            assert not Waiter(0.2).poll(lambda: polls.append(1) and False, 0.05)
            assert len(polls) >= 3  # the waits took their time: no busy loop, no early exit
        with pytest.raises(interrupt.Interrupted):
            interrupt.check()
    finally:
        interrupt.reset()


def test_first_request_wins_and_later_callers_see_it():
    try:
        first = interrupt.request("deadline", "overall deadline of 3600 s")
        assert interrupt.request("SIGINT") is first
        assert first.describe().startswith("deadline at ") and first.describe().endswith("(overall deadline of 3600 s)")
        assert first.to_dict()["at"].endswith("Z")
    finally:
        interrupt.reset()
    assert interrupt.requested() is None
    interrupt.check()


SPIN = """
import os, signal, sys, threading
from conformance import interrupt

def spin(stop_at_safe_point):
    while True:
        if stop_at_safe_point:
            interrupt.check()
        for i in range(200000):
            if not i % 1000:  # a loop ending in an `if`: its backward jump has no line number on 3.11
                pass

def report(exc):
    entries = []
    tb = exc.__traceback__
    while tb is not None:
        entries.append(tb.tb_lineno)
        tb = tb.tb_next
    print("LINENOS", entries)

mode = sys.argv[1]
if mode == "ours":
    interrupt.install_signal_handlers(stderr_fd=2)
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
try:
    spin(mode == "ours")
except KeyboardInterrupt as exc:
    report(exc)
"""


def _linenos(mode: str) -> list:
    out = subprocess.run(
        [sys.executable, "-c", SPIN, mode], capture_output=True, text=True, timeout=120, preexec_fn=default_sigint
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("LINENOS"))
    return ast.literal_eval(line.split(" ", 1)[1])  # a printed list of ints / None


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="CPython 3.11's missing line number (gh-107901)")
def test_the_cause_a_handler_raising_in_a_loop_leaves_a_frame_without_a_line_number():
    """Why the handler does not raise: Python's own SIGINT handler raises in the loop's backward jump, whose
    traceback entry has no line number; pytest's rendering of it computed `None - 1` (the INTERNALERROR)."""
    assert None in _linenos("default")


def test_raised_at_a_safe_point_every_frame_has_a_line_number_and_pytest_renders_it():
    assert None not in _linenos("ours")
    try:
        interrupt.request("SIGINT")
        try:
            Waiter(5).wait(5)
        except interrupt.Interrupted:
            info = ExceptionInfo.from_current()
        assert "Interrupted" in str(info.getrepr(funcargs=True))  # what pytest_keyboard_interrupt does
    finally:
        interrupt.reset()


@main_thread_only
def test_xdist_worker_stop_is_a_request_not_a_signal():
    previous = signal.getsignal(interrupt.WORKER_STOP)
    try:
        interrupt.install_worker_stop()
        os.kill(os.getpid(), interrupt.WORKER_STOP)
        assert interrupt.requested().reason == "the xdist controller"
    finally:
        signal.signal(interrupt.WORKER_STOP, previous)
        interrupt.reset()


def test_child_pids_finds_this_process_children():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert child.pid in interrupt.child_pids()
        assert os.getpid() not in interrupt.child_pids()
    finally:
        child.kill()
        child.wait()


def test_listeners_hear_the_first_request_once():
    heard = []
    remove = interrupt.add_listener(heard.append)
    try:
        first = interrupt.request("deadline")
        interrupt.request("SIGTERM")
        assert heard == [first]
    finally:
        remove()
        interrupt.reset()


def test_run_level_line_says_what_was_cut_short():
    from conformance.plugin import interruption_line

    record = {"reason": "SIGTERM", "at": "2026-11-29T04:55:24Z", "detail": "", "during": "checks", "after_s": 28.1}
    assert interruption_line(record) == (
        "run interrupted by SIGTERM at 2026-11-29T04:55:24Z, 28 s in, during the "
        "checks: the results above are what was measured until then"
    )
    record.update(during="finish", detail="overall deadline of 3600 s")
    assert interruption_line(record).endswith(
        "(overall deadline of 3600 s), 28 s in, after every check had ended (nothing was cut short)"
    )


# The handler writes with os.write: a print() would re-enter stdout's buffer when the signal lands while the
# "ready" print is still flushing (RuntimeError: reentrant call), which happened on a busy machine.
CHILD = """
import os, signal, sys, time
signal.signal(signal.SIGINT, lambda *a: (os.write(1, b"child: cleaning up\\n"), sys.exit(7)))
print("child: ready", flush=True)
time.sleep(60)
"""

PARENT = f"""
import sys
from sandbox.cli import run_child
sys.exit(run_child([sys.executable, "-c", {CHILD!r}]))
"""


def test_sandbox_demo_and_with_leave_ctrl_c_to_the_suite():
    """`python -m sandbox demo|with` wait for the suite through Ctrl-C (the terminal signals both): the child
    gets to clean up and its exit status is theirs, where subprocess.call would SIGKILL it."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert parent.stdout.readline() == "child: ready\n"
    os.killpg(parent.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole foreground group
    out, err = parent.communicate(timeout=60)
    assert parent.returncode == 7 and "child: cleaning up" in out
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_a_stop_request_does_not_cut_the_report_short(tmp_path):
    """Writing the bundle has no safe point: a stop requested while it is written changes nothing there."""
    from conformance.report import bundle, model
    from conformance.report.sample import sample_session_results

    interrupt.request("SIGINT")
    try:
        doc = model.build_document(sample_session_results(interrupted=True), bundle_name="b", exit_status=2)
        written = bundle.write_bundle(doc, tmp_path / "b")
        assert "results.json" in written.files and "report.html" in written.files
        assert bundle.check_files(written.path) == []
    finally:
        interrupt.reset()
