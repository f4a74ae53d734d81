"""Stopping a run early (SIGINT, SIGTERM, or any caller such as a run deadline) without losing what it measured.

`request(reason)` records the run-level interruption (why, when) and wakes every wait; nothing is raised at
that moment. The run stops at the next *safe point*, where ordinary Python code raises `Interrupted`: a wait
(`wait`, and `resources.Waiter` built on it), an API call through the cloud layer, or the start of the next
check. The check that was running records what it measured so far with the verdict INCOMPLETE, the trackers
delete what the run created (cleanup is `shielded`: no safe point raises inside it), and the report says when
and why the run stopped.

Why the signal handler does not raise, as Python's default SIGINT handler does: an exception raised by a
handler surfaces in whatever bytecode the main thread was executing. On Python 3.11 the backward jump that
closes a loop carries no line number (CPython gh-107901), so that frame's traceback entry has `tb_lineno`
None and pytest, rendering it (`tb_lineno - 1` in pytest_keyboard_interrupt -> getrepr), died with an
INTERNALERROR `TypeError: unsupported operand type(s) for -: 'NoneType' and 'int'`. Raised from a safe point,
every frame of the traceback stands on a call or a raise, which always have a line. The handler's frame also
took the check's partial measurements down with it; a safe point lets the check keep them.

A second signal exits at once (`os._exit`), after naming the sweeper for what the run created and did not
delete yet.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEFAULT_LEFTOVER_HINT = (
    "Whatever the run created and did not delete yet is left behind: "
    "`python -m conformance cleanup` deletes what interrupted runs left."
)
WORKER_STOP = signal.SIGUSR1  # an xdist controller's stop request to its workers (not a user's signal)


@dataclass(frozen=True)
class Interruption:
    """Why and when a run was asked to stop: `reason` is a signal name (SIGINT, SIGTERM) or a caller's word
    (e.g. "deadline"); `detail` says more when the reason alone does not."""

    reason: str
    at: dt.datetime  # UTC
    detail: str = ""

    @property
    def at_text(self) -> str:
        return self.at.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    def describe(self) -> str:
        """`SIGINT at 2026-11-29T04:37:44Z` (plus the detail)."""
        text = f"{self.reason} at {self.at_text}"
        return f"{text} ({self.detail})" if self.detail else text

    def to_dict(self) -> dict:
        return {"reason": self.reason, "at": self.at_text, "detail": self.detail}


class Interrupted(KeyboardInterrupt):
    """Raised at a safe point once the run was asked to stop. A KeyboardInterrupt, so that `except Exception`
    in a check never swallows it."""

    def __init__(self, interruption: Interruption):
        super().__init__(f"interrupted by {interruption.describe()}")
        self.interruption = interruption


_lock = threading.Lock()
_wake = threading.Event()  # set once a stop is requested: every wait returns at once
_never = threading.Event()  # never set: a shielded wait takes its full time
_state: dict = {"request": None, "shields": 0, "signals": 0}
_listeners: list[Callable[[Interruption], None]] = []


def request(reason: str, detail: str = "", at: dt.datetime | None = None) -> Interruption:
    """Ask the run to stop (from any thread: a signal handler, a deadline's timer). The first request wins and
    is returned to every later caller; it wakes every wait and is told to the listeners."""
    with _lock:
        first = _state["request"] is None
        if first:
            _state["request"] = Interruption(reason, at or dt.datetime.now(dt.timezone.utc), detail)
            _wake.set()
        stop = _state["request"]
    if first:
        for listener in list(_listeners):
            with contextlib.suppress(Exception):
                listener(stop)
    return stop


def add_listener(listener: Callable[[Interruption], None]) -> Callable[[], None]:
    """Call `listener(interruption)` on the first request (e.g. to tell other processes); returns its remover."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def requested() -> Interruption | None:
    return _state["request"]


def reset() -> None:
    """Forget a request (a process that runs several sessions, and tests); listeners stay."""
    with _lock:
        _state.update(request=None, signals=0)
        _wake.clear()


def is_shielded() -> bool:
    return _state["shields"] > 0


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Code that must run to its end once started (deleting what the run created): inside, safe points do not
    raise and waits take their full time. Its own deadlines bound it."""
    with _lock:
        _state["shields"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["shields"] -= 1


def check() -> None:
    """A safe point: raise Interrupted when a stop was requested (never inside a shield)."""
    stop = _state["request"]
    if stop is not None and not is_shielded():
        raise Interrupted(stop)


def wait(seconds: float) -> None:
    """Sleep `seconds`; a stop request ends the sleep at once with Interrupted (a shielded sleep is whole)."""
    check()
    if seconds > 0:
        (_never if is_shielded() else _wake).wait(seconds)
    check()


# --- signals --------------------------------------------------------------------------------------------------


def _say(fd: int | None, text: str) -> None:
    """Write from a signal handler: one unbuffered write to the terminal's own descriptor."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, text.encode("utf-8", "replace"))


def install_signal_handlers(
    leftover_hint: Callable[[], str] = lambda: "",
    *,
    exit_now: Callable[[int], None] = os._exit,
    stderr_fd: int | None = None,
    announce: bool = True,
) -> Callable[[], None]:
    """SIGINT and SIGTERM request a stop (see the module's docstring); a second one exits at once with status
    128 + signal number, after saying what may be left behind (`leftover_hint()`).

    Messages go to a duplicate of the stderr descriptor taken now, while it is still the terminal (pytest
    points descriptors 1 and 2 at temporary files while a check runs); `announce=False` says nothing (an
    xdist worker: its controller speaks). Main thread only (Python's rule for handlers); returns a function
    restoring the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    fd = stderr_fd
    if fd is None and announce:
        with contextlib.suppress(OSError):
            fd = os.dup(2)
    previous = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        with _lock:
            _state["signals"] += 1
            first = _state["signals"] == 1
        if not first:
            hint = ""
            with contextlib.suppress(Exception):
                hint = leftover_hint()
            _say(
                fd,
                f"\nconformance: {name} again: exiting now, without waiting for the cleanup. "
                f"{hint or DEFAULT_LEFTOVER_HINT}\n",
            )
            exit_now(128 + signum)
            return
        stop = request(name)
        _say(
            fd,
            f"\nconformance: {name} at {stop.at_text}: stopping. The check under way keeps what it measured "
            f"(verdict INCOMPLETE), then everything the run created is deleted and the report is written. "
            f"{name} again exits at once.\n",
        )

    for sig in SIGNALS:
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handler)

    def restore():
        for sig, old in previous.items():
            signal.signal(sig, old)
        if fd is not None and fd != stderr_fd:
            with contextlib.suppress(OSError):
                os.close(fd)

    return restore


def child_pids(parent: int | None = None) -> list[int]:
    """Processes whose parent is `parent` (default: this one), from /proc (Linux): xdist's workers."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in os.scandir("/proc") if os.path.isdir("/proc") else []:
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat:
                # pid (comm) state ppid ...: comm may contain spaces and parentheses; ppid follows the last ')'
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(parent):
            found.append(int(entry.name))
    return found


def install_worker_stop() -> None:
    """In an xdist worker: the controller's stop request (WORKER_STOP) stops the check under way like a first
    signal would, without counting as one (the worker may get the user's SIGINT too)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(WORKER_STOP, lambda signum, frame: request("the xdist controller"))
