"""Errors the suite reports to the user as one line, without a traceback."""

from __future__ import annotations


class BadInput(Exception):
    """The run cannot start: wrong options, clouds.yaml or profile. The message is the whole explanation."""


class CloudError(Exception):
    """A cloud did something the suite could not work with (not bad input: the run goes on)."""
