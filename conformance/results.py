"""Per-requirement results, API call records, and the session's collection of both.

Results and call records travel from the process that ran a check (an xdist worker or the controller
itself) to the controller on the test report's `user_properties`, as JSON, under these keys:
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from conformance import requirements
from conformance.redact import redact, redact_obj

RESULT_KEY = "conformance.result"
CALLS_KEY = "conformance.calls"
RETRIES_KEY = "conformance.retries"
# INCOMPLETE: the check was cut short (interrupted, or its time ran out) before it could decide; it records
# what it measured until then. ERROR: the check could not decide for a reason that is not the cloud's (a bug of
# the suite: error_result). Readers must not assume these are the only words.
VERDICTS = ("PASS", "FAIL", "WARN", "SKIP", "INCOMPLETE", "ERROR")
# What an ERROR result of the suite's own crash says after the exception's first line.
SUITE_BUG = "a bug of the suite, not a finding about the cloud"

# A path segment that is an id, not a name: a UUID (with or without dashes), 16 or more hex digits, a number, a
# request id. Call records keep paths with ids replaced, so calls group by what they do, not per resource.
ID_SEGMENT = re.compile(
    r"^(?:[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}|[0-9a-fA-F]{16,}|\d+"
    r"|req-[0-9a-fA-F-]{36})$"
)


def path_template(url: str) -> str:
    """`/v2.1/servers/{id}` for `https://host:8774/v2.1/servers/6f1c...?all_tenants=1`: no ids, no query."""
    path = urlsplit(url).path or "/"
    return "/".join("{id}" if ID_SEGMENT.match(segment) else segment for segment in path.split("/")) or "/"


@dataclass(frozen=True)
class CallRecord:
    """One HTTP request the suite made: `path` is a template (`/v2.1/servers/{id}`), never a query string."""

    method: str
    path: str
    status: int | None
    seconds: float
    service: str = ""
    scope: str = ""  # "zuul/RegionOne": which connection made it
    started: float = 0.0  # wall-clock epoch seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetryRecord:
    """One retry by the cloud layer: the attempt that failed and why (`HTTP 503`, `timeout`, `connection reset`,
    ...). `gave_up`: the call's last attempt failed too, and the check got the error."""

    service: str
    method: str
    path: str
    reason: str
    attempt: int  # the failed attempt's number (1 = the call's first try)
    wait_s: float  # before the next attempt (at least the server's Retry-After)
    scope: str = ""
    gave_up: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_scope(scope: str) -> tuple[str, str]:
    """("zuul", "RegionOne") from "zuul/RegionOne"; a scope without a region gives ("zuul", "")."""
    project, _, region = (scope or "").partition("/")
    return project, region


def make_result(
    requirement: str,
    check: str,
    *,
    scope: str,
    measured: Any = "",
    threshold: Any = "",
    ok: bool | None = None,
    verdict: str | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    test: str = "",
) -> dict[str, Any]:
    """The JSON-ready result dict of ARCHITECTURE.md; `ok` gives PASS/FAIL, else `verdict` must be given."""
    requirements.get(requirement)  # unknown IDs are a bug in the check: fail loudly
    if verdict is None:
        if ok is None:
            raise ValueError("record() needs ok=True/False or verdict='SKIP'|'WARN'|'INCOMPLETE'|'ERROR'")
        verdict = "PASS" if ok else "FAIL"
    verdict = verdict.upper()
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, not {verdict!r}")
    project, region = split_scope(scope)
    return {
        "requirement": requirement,
        "check": check,
        "project": project,
        "region": region,
        "measured": redact("" if measured is None else str(measured)),
        "threshold": "" if threshold is None else str(threshold),
        "verdict": verdict,
        "reason": redact(reason or ""),
        "data": redact_obj(data or {}),
        "test": test,
    }


def error_result(
    requirement: str,
    check: str,
    *,
    scope: str,
    why: str,
    kind: str = "suite",
    measured: Any = "",
    threshold: Any = "",
    data: dict[str, Any] | None = None,
    test: str = "",
) -> dict[str, Any]:
    """An ERROR result: the requirement is undecided for a reason that is not the cloud's fault. `kind` says
    which ("suite": a bug of the suite, whose reason ends with SUITE_BUG; other kinds name their own), kept in
    `data.error_kind` so the report can say it without parsing reasons."""
    reason = f"{why}: {SUITE_BUG}" if kind == "suite" else why
    return make_result(
        requirement,
        check,
        scope=scope,
        measured=measured,
        threshold=threshold,
        verdict="ERROR",
        reason=reason,
        data={**(data or {}), "error_kind": kind},
        test=test,
    )


NOT_MEASURED = "not measured"  # error_kind of not_measured()


def not_measured(
    requirement: str, check: str, scope: str, reason: str, *, data: dict[str, Any] | None = None, test: str = ""
) -> dict[str, Any]:
    """The one way a requirement the suite could not ask the cloud about is recorded (an endpoint the run cannot
    use): ERROR (undecided, not FAIL) of kind NOT_MEASURED, the reason naming what stood in the way (`not
    measured: compute endpoint https://... stopped answering (no answer in 120 s, 1 try)`)."""
    return error_result(
        requirement, check, scope=scope, why=f"{NOT_MEASURED}: {reason}", kind=NOT_MEASURED, data=data, test=test
    )


def scope_of(result: dict[str, Any]) -> str:
    return "/".join(filter(None, [result.get("project", ""), result.get("region", "")]))


def _requirement_order(result: dict[str, Any]) -> tuple:
    rid = result.get("requirement", "")
    number = int(rid[1:]) if rid[1:].isdigit() else 10**6
    return (number, result.get("check", ""), scope_of(result), result.get("test", ""))


@dataclass
class SessionResults:
    """What a run measured, gathered in the controller; read by the terminal summary and the report bundle.

    clouds: role ("zuul" | "ci") -> public facts (cloud name, auth_url, regions, project name/id, domains,
    interface, api versions). Never a secret.
    """

    results: list[dict[str, Any]] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    retries: list[dict[str, Any]] = field(default_factory=list)  # RetryRecord dicts
    profile: Any = None  # conformance.profiles.Profile
    clouds: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # the conformance options of the run (no secrets)
    started_at: datetime | None = None  # UTC
    finished_at: datetime | None = None  # UTC
    # The run was asked to stop (conformance.interrupt): Interruption.to_dict() plus "during" ("start" before
    # any check ran, "checks", or "finish" once every check had ended) and "after_s" since started_at.
    interrupted: dict[str, Any] | None = None

    def add_result(self, result: dict[str, Any]) -> None:
        self.results.append(result)

    def add_calls(self, calls: list[dict[str, Any]]) -> None:
        self.calls.extend(calls)

    def add_retries(self, retries: list[dict[str, Any]]) -> None:
        self.retries.extend(retries)

    def sorted_results(self) -> list[dict[str, Any]]:
        return sorted(self.results, key=_requirement_order)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(VERDICTS, 0)
        for result in self.results:
            counts[result["verdict"]] = counts.get(result["verdict"], 0) + 1
        return counts

    @property
    def failed(self) -> bool:
        return any(r["verdict"] == "FAIL" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": self.sorted_results(),
            "calls": list(self.calls),
            "retries": list(self.retries),
            "profile": self.profile.to_dict() if self.profile is not None else None,
            "clouds": redact_obj(self.clouds),
            "options": redact_obj(self.options),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "interrupted": self.interrupted,
            "counts": self.counts(),
        }


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


_COMPARISON = re.compile(r"^(>=|<=|==|!=|<|>)\s")
VALUE_WIDTH = 44  # longer values are not padded: the verdict column stays readable for the rest


def value_text(result: dict[str, Any]) -> str:
    """`150 >= 100` for a comparison threshold, `https (want https)` for a descriptive one."""
    measured, threshold = result.get("measured", "") or "", result.get("threshold", "") or ""
    if not threshold:
        return measured or "-"
    if _COMPARISON.match(threshold):
        return f"{measured or '?'} {threshold}"
    return f"{measured or '?'} (want {threshold})"


def summary_lines(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(verdict, line) per result, columns aligned: `R8 quota.instances  zuul/RegionOne  150 >= 100  PASS`."""
    rows = []
    for r in sorted(results, key=_requirement_order):
        name = f"{r['requirement']} {r['check']}"
        rows.append((name, scope_of(r) or "-", value_text(r), r["verdict"], r.get("reason", "")))
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    widths[2] = min(widths[2], VALUE_WIDTH)
    lines = []
    for name, scope, value, verdict, reason in rows:
        line = f"{name:<{widths[0]}}  {scope:<{widths[1]}}  {value:<{widths[2]}}  {verdict}"
        if reason and verdict != "PASS":
            line += f"  {reason}"
        lines.append((verdict, redact(line)))
    return lines


def retry_summary(retries: list[dict[str, Any]]) -> str:
    """`12 (compute: 9 x HTTP 503, 2 x HTTP 429; image: 1 x connection reset); 1 call gave up` or ""."""
    done = [r for r in retries if not r.get("gave_up")]
    gave_up = len(retries) - len(done)
    if not retries:
        return ""
    per_service: dict[str, dict[str, int]] = {}
    for retry in done:
        reasons = per_service.setdefault(retry.get("service") or "?", {})
        reasons[retry.get("reason", "?")] = reasons.get(retry.get("reason", "?"), 0) + 1
    parts = [
        f"{service}: " + ", ".join(f"{n} x {why}" for why, n in sorted(reasons.items(), key=lambda i: -i[1]))
        for service, reasons in sorted(per_service.items())
    ]
    text = f"{len(done)} ({'; '.join(parts)})" if done else "0"
    if gave_up:
        text += f"; {gave_up} call(s) gave up after their retries"
    return text


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
