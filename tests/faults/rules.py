"""Fault rules: which requests the proxy spoils, how, how often, and for how long. Standard library only: the
mitmproxy addon imports this module in mitmproxy's own environment, the tests in theirs.

A rules file is JSON (the tests write it; the proxy re-reads it when it changes):

    {"seed": 14,
     "written_at": 1764400000.0,                          # epoch seconds: every window counts from here
     "services": {"127.0.0.1:13774": "compute", ...},     # host:port -> catalog service type
     "rules": [
       {"name": "compute-503", "service": "compute", "action": "status", "status": 503, "rate": 0.1},
       {"service": "compute", "action": "status", "status": 429, "retry_after": 1, "rate": 0.05},
       {"service": "block-storage", "method": "POST", "path": "/volumes$", "action": "status", "status": 500},
       {"service": "compute", "action": "latency", "delay_s": 2},
       {"service": "image", "method": "PUT", "path": "/file$", "action": "reset", "after_bytes": 1048576},
       {"service": "compute", "method": "GET", "path": "/servers/detail$", "action": "stall", "for_s": 60}
     ]}

Every rule is bounded: `max_count` injections (default 1000) within its window, `start_after_s` to
`start_after_s + for_s` seconds after `written_at` (default 0 to 600). `rate` (default 1.0) is the chance a
matching request is spoiled, drawn from a random generator seeded with `seed` and the rule's position, so a
run's sequence of decisions is reproducible for a given order of requests.

Actions:
  status   answer `status` (429, 500, 502, 503, ...) without forwarding; `retry_after` adds Retry-After
  latency  forward after `delay_s` seconds (latency rules add up; they never stop the other rules)
  reset    close the client's connection: before anything reaches the service, or after `after_bytes` bytes
           of the request body were forwarded (a reset mid-upload)
  stall    never answer: hold the request until `stall_s` (default: the rest of the window) has passed, then
           close the connection without a response
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("status", "latency", "reset", "stall")
TERMINAL = ("status", "reset", "stall")  # actions that decide the request's fate (latency only delays it)
DEFAULT_MAX_COUNT = 1000
DEFAULT_FOR_S = 600.0
RECENT_KEPT = 20  # requests each rule remembers having fired on (stats "recent")
TITLES = {429: "overLimit", 500: "computeFault", 502: "badGateway", 503: "serviceUnavailable", 504: "gatewayTimeout"}
_FIELDS = {
    "name",
    "service",
    "method",
    "path",
    "action",
    "status",
    "retry_after",
    "delay_s",
    "after_bytes",
    "stall_s",
    "rate",
    "max_count",
    "start_after_s",
    "for_s",
}


class RulesError(ValueError):
    """A rules file the proxy cannot use (the message names the rule and the field)."""


@dataclass
class Rule:
    name: str
    action: str
    service: str = "*"
    method: str = "*"
    path: str = ""
    status: int = 503
    retry_after: float | None = None
    delay_s: float = 0.0
    after_bytes: int | None = None
    stall_s: float | None = None
    rate: float = 1.0
    max_count: int = DEFAULT_MAX_COUNT
    start_after_s: float = 0.0
    for_s: float = DEFAULT_FOR_S
    matched: int = 0
    injected: int = 0
    recent: list = field(default_factory=list)  # the last requests it fired on, "METHOD /path", for diagnosis
    _path_re: re.Pattern | None = field(default=None, repr=False)
    _random: random.Random | None = field(default=None, repr=False)

    def matches(self, service: str, method: str, path: str) -> bool:
        return (
            self.service in ("*", service)
            and self.method in ("*", method.upper())
            and (self._path_re is None or self._path_re.search(path) is not None)
        )

    def active(self, age_s: float) -> bool:
        """Within its window (`age_s` counts from the rules' written_at) and with injections left."""
        return self.start_after_s <= age_s < self.start_after_s + self.for_s and self.injected < self.max_count

    def window_left(self, age_s: float) -> float:
        return max(0.0, self.start_after_s + self.for_s - age_s)

    def fires(self) -> bool:
        return self.rate >= 1.0 or self._random.random() < self.rate

    def error_body(self) -> bytes:
        title = TITLES.get(self.status, "error")
        message = f"faultproxy: injected HTTP {self.status} (rule {self.name})"
        return json.dumps({title: {"code": self.status, "message": message}}).encode()

    def stats(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "service": self.service,
            "matched": self.matched,
            "injected": self.injected,
            "recent": list(self.recent),
        }


def _number(rule: dict, key: str, default, kind=float, low: float = 0.0, high: float | None = None):
    value = rule.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RulesError(f"rule {rule.get('name')!r}: {key} must be a number, not {value!r}")
    if value < low or (high is not None and value > high):
        raise RulesError(f"rule {rule.get('name')!r}: {key} {value} is outside [{low}, {high or 'inf'}]")
    return kind(value)


def parse_rule(raw: dict, index: int, seed: int) -> Rule:
    if not isinstance(raw, dict):
        raise RulesError(f"rule #{index} is not a mapping")
    raw = {"name": f"rule{index}", **raw}
    unknown = set(raw) - _FIELDS
    if unknown:
        raise RulesError(f"rule {raw['name']!r}: unknown field(s) {', '.join(sorted(unknown))}")
    action = raw.get("action")
    if action not in ACTIONS:
        raise RulesError(f"rule {raw['name']!r}: action must be one of {', '.join(ACTIONS)}, not {action!r}")
    path = str(raw.get("path") or "")
    try:
        path_re = re.compile(path) if path else None
    except re.error as exc:
        raise RulesError(f"rule {raw['name']!r}: path is not a regular expression: {exc}") from None
    rule = Rule(
        name=str(raw["name"]),
        action=action,
        service=str(raw.get("service", "*")),
        method=str(raw.get("method", "*")).upper(),
        path=path,
        status=_number(raw, "status", 503, int, 400, 599),
        retry_after=_number(raw, "retry_after", None),
        delay_s=_number(raw, "delay_s", 0.0, high=600),
        after_bytes=_number(raw, "after_bytes", None, int),
        stall_s=_number(raw, "stall_s", None, high=3600),
        rate=_number(raw, "rate", 1.0, high=1.0),
        max_count=_number(raw, "max_count", DEFAULT_MAX_COUNT, int, 1, 1_000_000),
        start_after_s=_number(raw, "start_after_s", 0.0, high=86400),
        for_s=_number(raw, "for_s", DEFAULT_FOR_S, low=0.001, high=86400),
    )
    rule._path_re = path_re
    rule._random = random.Random(f"{seed}/{index}")
    return rule


@dataclass
class Decision:
    """What to do with one request: wait `delay_s`, then `rule` (None: forward it unchanged)."""

    delay_s: float = 0.0
    rule: Rule | None = None
    stall_s: float = 0.0  # for a stall: how long to hold the request


class FaultPlan:
    """The parsed rules file, with the counters of what it injected."""

    def __init__(self, data: dict | None = None):
        data = data or {}
        if not isinstance(data, dict):
            raise RulesError("the rules file must hold a JSON object")
        self.seed = int(data.get("seed", 0))
        self.written_at = float(data.get("written_at", 0.0))
        self.services: dict[str, str] = {str(k): str(v) for k, v in (data.get("services") or {}).items()}
        raw_rules = data.get("rules") or []
        if not isinstance(raw_rules, list):
            raise RulesError("'rules' must be a list")
        self.rules = [parse_rule(raw, index, self.seed) for index, raw in enumerate(raw_rules)]
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise RulesError(f"rule names must be unique: {names}")
        self.requests: dict[str, int] = {}

    @classmethod
    def from_json(cls, text: str) -> FaultPlan:
        try:
            return cls(json.loads(text) if text.strip() else {})
        except json.JSONDecodeError as exc:
            raise RulesError(f"the rules file is not JSON: {exc}") from None

    def service_of(self, host: str, port: int) -> str:
        return self.services.get(f"{host}:{port}", "")

    def decide(self, service: str, method: str, path: str, now: float) -> Decision:
        """Latency rules add up; then the first terminal rule that matches, is active and fires wins."""
        self.requests[service or "?"] = self.requests.get(service or "?", 0) + 1
        age = now - self.written_at
        decision = Decision()
        for rule in self.rules:
            if not rule.matches(service, method, path):
                continue
            rule.matched += 1
            if not rule.active(age) or not rule.fires():
                continue
            if rule.action == "latency":
                rule.injected += 1
                decision.delay_s += rule.delay_s
                continue
            rule.injected += 1
            rule.recent = [*rule.recent[-(RECENT_KEPT - 1) :], f"{method} {path}"]
            decision.rule = rule
            if rule.action == "stall":
                window = rule.window_left(age)
                decision.stall_s = min(rule.stall_s, window) if rule.stall_s is not None else window
            break
        return decision

    def stats(self) -> dict[str, Any]:
        return {
            "written_at": self.written_at,
            "requests": dict(self.requests),
            "rules": {r.name: r.stats() for r in self.rules},
            "injected": sum(r.injected for r in self.rules),
        }
