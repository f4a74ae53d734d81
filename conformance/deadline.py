"""The run's deadline (`conformance_deadline` pytest11 entry point): whatever the cloud does (a stalled endpoint,
a burst stuck in BUILD), the run ends by `--deadline` seconds (default: the profile's `run.deadline_s`).

At the deadline the checks stop: the check running then is interrupted (as by Ctrl-C: its requirements are
not run, never failed for it), no further check starts, every tracked resource is deleted by the usual
teardowns (each API call bounded by the per-call timeout, `api.timeout_s`), the bundle is written and says
the run was interrupted (reason `deadline`, verdict INCOMPLETE unless a requirement failed), and pytest exits
with 2 (interrupted). A cleanup under way when the deadline passes is never interrupted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from conformance import resources
from conformance import results as res

WORKER_KEY = "conformance_deadline_end"
REASON = "deadline"


class DeadlineReached(KeyboardInterrupt):
    """Raised in the main thread at the deadline. A KeyboardInterrupt, so pytest unwinds the way it does for
    Ctrl-C: the running check gets no verdict, then every teardown runs."""


@dataclass
class _State:
    seconds: float
    end: float  # epoch seconds
    session: pytest.Session | None = None
    interruptible: bool = False  # inside a check's setup or call (never during a teardown)
    loop_running: bool = False
    reached: bool = False
    message: str = ""
    previous_handler: object = None
    # The real stderr, kept before pytest's capture redirects fd 2 during a check: the line must show at once.
    stderr: object = None


_STATE = pytest.StashKey[_State]()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text}: must be more than 0 seconds")
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption(
        "--deadline",
        dest="conformance_deadline",
        type=_seconds,
        metavar="SECONDS",
        default=os.environ.get("CONFORMANCE_DEADLINE") or None,  # a string: argparse checks it like the option
        help="end the run this many seconds after its start, cleaning up and writing the bundle (exit 2). "
        "Env CONFORMANCE_DEADLINE; default: the profile's run.deadline_s",
    )


def _active(config: pytest.Config) -> bool:
    from conformance import plugin

    return plugin._active(config)


def _under_xdist_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if not _active(config):
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get(WORKER_KEY):
        end = float(workerinput[WORKER_KEY])  # the controller's deadline, not one of the worker's own
        seconds = end - time.time()
    else:
        seconds = config.getoption("conformance_deadline")
        if seconds is None:
            profile = config.stash[res.SESSION_RESULTS].profile if res.SESSION_RESULTS in config.stash else None
            seconds = profile.get("run.deadline_s") if profile is not None else None
        if not seconds:
            return
        end = time.time() + float(seconds)
    config.stash[_STATE] = _State(seconds=float(seconds), end=end, stderr=_real_stderr())


def _real_stderr():
    try:
        return os.fdopen(os.dup(2), "w", buffering=1)
    except OSError:
        return sys.__stderr__


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    state = node.config.stash.get(_STATE, None)
    if state is not None:
        node.workerinput[WORKER_KEY] = repr(state.end)


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or threading.current_thread() is not threading.main_thread():
        return
    state.session = session
    state.previous_handler = signal.signal(signal.SIGALRM, lambda signum, frame: _reached(state))
    signal.setitimer(signal.ITIMER_REAL, max(0.001, state.end - time.time()))


def _reached(state: _State) -> None:
    if state.reached or not state.loop_running:
        return
    state.reached = True
    started = dt.datetime.fromtimestamp(state.end - state.seconds, dt.timezone.utc).strftime("%H:%M:%SZ")
    state.message = (f"run deadline reached: {state.seconds:.0f} s after the start at {started} "
                     "(--deadline / profile run.deadline_s); the checks stop, cleanup runs, the bundle is written")
    if state.session is not None:
        state.session.shouldstop = state.message  # no further check starts
    try:
        state.stderr.write(f"\nconformance: {state.message}\n")
        state.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    config = state.session.config if state.session is not None else None
    if state.interruptible and not resources.cleaning.is_set() and not (config and _under_xdist_controller(config)):
        raise DeadlineReached(state.message)


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    state = session.config.stash.get(_STATE, None)
    if state is not None:
        state.loop_running = True
    try:
        return (yield)
    finally:
        if state is not None:
            state.loop_running = False


def _interruptible(item: pytest.Item):
    state = item.config.stash.get(_STATE, None)
    if state is not None:
        state.interruptible = True
    try:
        return (yield)
    finally:
        if state is not None:
            state.interruptible = False


pytest_runtest_setup = pytest.hookimpl(wrapper=True)(_interruptible)
pytest_runtest_call = pytest.hookimpl(wrapper=True)(_interruptible)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Before the bundle is written: it says the run was interrupted, and why."""
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    _disarm(state)
    results = session.config.stash.get(res.SESSION_RESULTS, None)
    if state.reached and results is not None and results.interrupted is None:
        results.interrupted = {"reason": REASON, "message": state.message}
    if state.reached and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.INTERRUPTED


def _disarm(state: _State) -> None:
    if state.previous_handler is None:
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, state.previous_handler)
    state.previous_handler = None


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None:
        _disarm(state)
        if state.stderr is not None and state.stderr is not sys.__stderr__:
            state.stderr.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.reached and not hasattr(config, "workerinput"):
        terminalreporter.write_line(f"conformance: {state.message}", red=True, bold=True)
