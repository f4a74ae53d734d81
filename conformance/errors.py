"""Errors the suite reports to the user as one line, without a traceback, and how any error is said in one."""

from __future__ import annotations


class BadInput(Exception):
    """The run cannot start: wrong options, clouds.yaml or profile. The message is the whole explanation."""


class CloudFault(Exception):
    """Something the suite saw the cloud do wrong (a resource went ERROR, a delete did not happen): a finding about
    the cloud. Escaping a check it is a FAIL; any other exception the suite's own code raises is an ERROR (a bug
    of the suite), so a cloud's fault must be raised as this (or an API error of the cloud layer)."""


def first_line(exc: BaseException) -> str:
    """An exception in one line of at most 300 characters (its type's name when it has no message)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
