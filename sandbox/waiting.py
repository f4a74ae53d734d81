"""Bounded waiting: a deadline, an interval, and an error that says what was awaited and what was seen last."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class SandboxError(Exception):
    """A problem the user must see as one clear line (the CLI prints it without a traceback)."""


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    interval: float = 0.5,
    what: str = "condition",
    describe: Callable[[], str] | None = None,
    raise_on_timeout: bool = True,
):
    """Return the predicate's first truthy value, checking every `interval` s until `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if not raise_on_timeout:
                return value
            detail = f" (last seen: {describe()})" if describe else ""
            raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        pause.wait(min(interval, remaining))
