"""The plugin's deadline part: whatever the cloud does (a stalled endpoint, a burst stuck in BUILD), the run ends by
`--deadline` seconds (default: the profile's `run.deadline_s`).

At the deadline the run is asked to stop (conformance.interrupt, reason `deadline`), as Ctrl-C asks it: the
check under way stops at its next wait or API call and records what it measured (INCOMPLETE), no further check
starts, every tracked resource is deleted (the cleanup is shielded from the stop, each API call bounded by the
per-call timeout `api.timeout_s`), the bundle is written and says the run was interrupted by its deadline, and
pytest exits with 2. An API call already waiting for an answer when the deadline passes ends first, at the
latest after `api.timeout_s`.

Only the controller keeps the deadline; under pytest-xdist it tells its workers (conformance.plugin).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import sys
import threading

import pytest

from conformance import interrupt, state
from conformance.state import DeadlineState

REASON = "deadline"


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


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    state.require_main(config, __name__)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    run = state.of(config)
    if not run.active or not run.controller:
        return
    seconds = config.getoption("conformance_deadline")
    if seconds is None:
        profile = run.session.profile if run.session is not None else None
        seconds = profile.get("run.deadline_s") if profile is not None else None
    if seconds:
        run.deadline = DeadlineState(seconds=float(seconds), stderr=_real_stderr())


def _real_stderr():
    try:
        return os.fdopen(os.dup(2), "w", buffering=1)
    except OSError:
        return sys.__stderr__


def pytest_sessionstart(session: pytest.Session) -> None:
    deadline = state.of(session.config).deadline
    if deadline is None:
        return
    started = dt.datetime.now(dt.timezone.utc)
    deadline.timer = threading.Timer(deadline.seconds, _reached, (deadline, started))
    deadline.timer.daemon = True
    deadline.timer.start()


def _reached(deadline: DeadlineState, started: dt.datetime) -> None:
    deadline.reached = True
    detail = f"{deadline.seconds:.0f} s after the start at {started.strftime('%H:%M:%SZ')}"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        deadline.stderr.write(
            f"\nconformance: run deadline reached: {detail} (--deadline / profile "
            "run.deadline_s); the checks stop, cleanup runs, the bundle is written\n"
        )
        deadline.stderr.flush()
    interrupt.request(REASON, detail)


def pytest_unconfigure(config: pytest.Config) -> None:
    deadline = state.of(config).deadline
    if deadline is None:
        return
    if deadline.timer is not None:
        deadline.timer.cancel()
    if deadline.stderr is not None and deadline.stderr is not sys.__stderr__:
        with contextlib.suppress(OSError):
            deadline.stderr.close()
