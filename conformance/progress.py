"""The burst's live progress line on the terminal: rewritten in place on a terminal, one flushed line every
--progress-interval seconds otherwise (a pipe, a file, tox's or Zuul's console log)."""

from __future__ import annotations

import contextlib
import sys
import time

import pytest

PROGRESS_EVERY_S = 10.0  # a progress line this often when the output is not a terminal (a pipe, a log)


def progress_writer(config: pytest.Config, every_s: float | None = None):
    """A function writing the burst's live line: rewritten in place on a terminal, one flushed line every
    `every_s` (--progress-interval) otherwise: a pipe, a file, tox's or Zuul's console log. In an xdist worker
    (`-n 2`), whose terminal output goes nowhere, one line every `every_s` on the standard error it shares with
    the controller, marked with the worker's id as xdist marks its own lines (`[gw1] burst 10/100 ACTIVE, ...`):
    never rewritten in place, as the controller writes between. Call from the main thread (it suspends pytest's
    output capture)."""
    if every_s is None:
        every_s = config.getoption("conformance_progress_interval", PROGRESS_EVERY_S)
    worker = getattr(config, "workerinput", {}).get("workerid")
    reporter = None if worker else config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if worker:
        tty = False
    elif reporter is not None:
        tty = bool(reporter.isatty)
    else:
        tty = sys.__stderr__.isatty()
    mark = f"[{worker}] " if worker else ""
    last = {"t": None, "line": "", "shown": True}

    def out(line: str, rewrite: bool = False, end: bool = False) -> None:
        # While a check runs, pytest points descriptors 1 and 2 at temporary files (its capture): the terminal
        # reporter's stream is reached with capturing suspended, as pytest's own live logging does. A pipe is
        # block-buffered, so every line is flushed: without that it left only with the run's last output.
        suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with suspended:
            if reporter is None:
                sys.__stderr__.write(mark + line + "\n")
                sys.__stderr__.flush()
                return
            if rewrite:
                reporter.rewrite(line, erase=True)
                if end:
                    reporter.write_line("")
            else:
                reporter.write_line(line)
            reporter.flush()

    def write(line: str) -> None:
        now = time.monotonic()
        last["line"], last["shown"] = line, False
        if tty:
            out(line, rewrite=True)
        elif last["t"] is None or now - last["t"] >= every_s:
            last["t"], last["shown"] = now, True
            out(line)

    def done() -> None:
        """The final state: ends the rewritten line on a terminal, or shows the last line if it was not yet."""
        if last["line"] and (tty or not last["shown"]):
            out(last["line"], rewrite=tty, end=tty)
            last["shown"] = True

    write.done = done
    return write
