"""Compare two runs (bundle directories or results.json files): per-requirement verdict changes and the
burst's p95 boot time / failure rate deltas. A periodic job fails on `regressions`."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.report.layout import RESULTS
from conformance.report.model import verdict_text

# Worse to the right. SKIP / NOT_RUN / INCOMPLETE are changes in coverage (a smaller --burst-size, an interrupted
# run), not regressions; a FAIL after any of them is.
RANK = {"PASS": 0, "WARN": 1, "FAIL": 2}
P95_TOLERANCE = 0.25  # a p95 more than 25 % slower ...
P95_MIN_DELTA_S = 5.0  # ... and more than 5 s slower is a regression (noise on small values is not)
FAILURE_RATE_TOLERANCE = 0.01


class CompareInputError(Exception):
    pass


def load(path) -> dict:
    path = Path(path)
    target = path / RESULTS if path.is_dir() else path
    if not target.is_file():
        raise CompareInputError(f"{path}: no {RESULTS} (give a bundle directory or a results.json file)")
    try:
        doc = json.loads(target.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CompareInputError(f"{target}: not JSON ({exc})") from exc
    if not isinstance(doc, dict) or "results" not in doc:
        raise CompareInputError(f"{target}: not a conformance results.json (no 'results')")
    return doc


def _worse(old: str | None, new: str | None) -> bool:
    return new in RANK and RANK[new] > RANK.get(old or "", -1) and (old in RANK or new == "FAIL")


def _key(result: dict) -> tuple:
    return (result.get("requirement"), result.get("check"), result.get("project"), result.get("region"))


def _burst_numbers(doc: dict) -> tuple[float | None, float | None]:
    """p95 and failure rate of a complete burst; (None, None) for one cut short (its times are partial)."""
    if _burst_cut_short(doc):
        return None, None
    burst = doc.get("burst") or {}
    summary = burst.get("summary") or {}
    p95 = summary.get("p95")
    rate = summary.get("success_rate")
    failure = None if not isinstance(rate, (int, float)) else round(1 - rate, 4)
    if failure is None and isinstance(summary.get("failure_rate"), (int, float)):
        failure = summary["failure_rate"]
    return (p95 if isinstance(p95, (int, float)) else None), failure


def compare(
    old: dict,
    new: dict,
    *,
    p95_tolerance=P95_TOLERANCE,
    p95_min_delta=P95_MIN_DELTA_S,
    failure_rate_tolerance=FAILURE_RATE_TOLERANCE,
) -> dict:
    old_req = {r["id"]: r["verdict"] for r in old.get("requirements", [])}
    new_req = {r["id"]: r["verdict"] for r in new.get("requirements", [])}
    requirement_changes = []
    for rid in list(new_req) + [r for r in old_req if r not in new_req]:
        before, after = old_req.get(rid, "NOT_RUN"), new_req.get(rid, "NOT_RUN")
        if before != after:
            requirement_changes.append({"id": rid, "old": before, "new": after, "regression": _worse(before, after)})
    old_res = {_key(r): r for r in old.get("results", [])}
    new_res = {_key(r): r for r in new.get("results", [])}
    result_changes = []
    for key in list(new_res) + [k for k in old_res if k not in new_res]:
        before, after = old_res.get(key), new_res.get(key)
        vb, va = (before or {}).get("verdict", "NOT_RUN"), (after or {}).get("verdict", "NOT_RUN")
        if vb != va:
            result_changes.append(
                {
                    "requirement": key[0],
                    "check": key[1],
                    "scope": "/".join(p for p in key[2:] if p),
                    "old": vb,
                    "new": va,
                    "old_measured": (before or {}).get("measured"),
                    "new_measured": (after or {}).get("measured"),
                    "regression": _worse(vb, va),
                }
            )
    (old_p95, old_fail), (new_p95, new_fail) = _burst_numbers(old), _burst_numbers(new)
    burst = {
        "old_incomplete": _burst_cut_short(old),
        "new_incomplete": _burst_cut_short(new),
        "old_p95_s": old_p95,
        "new_p95_s": new_p95,
        "old_failure_rate": old_fail,
        "new_failure_rate": new_fail,
        "p95_regression": False,
        "failure_rate_regression": False,
    }
    if old_p95 is not None and new_p95 is not None:
        burst["p95_delta_s"] = round(new_p95 - old_p95, 3)
        burst["p95_regression"] = new_p95 - old_p95 > p95_min_delta and new_p95 > old_p95 * (1 + p95_tolerance)
    if old_fail is not None and new_fail is not None:
        burst["failure_rate_delta"] = round(new_fail - old_fail, 4)
        burst["failure_rate_regression"] = new_fail - old_fail > failure_rate_tolerance
    regressions = [f"{c['id']}: {c['old']} -> {c['new']}" for c in requirement_changes if c["regression"]]
    regressions += [
        f"{c['requirement']} {c['check']} {c['scope']}: {c['old']} -> {c['new']}"
        for c in result_changes
        if c["regression"]
    ]
    if burst["p95_regression"]:
        regressions.append(f"burst p95 {old_p95} s -> {new_p95} s")
    if burst["failure_rate_regression"]:
        regressions.append(f"burst failure rate {old_fail} -> {new_fail}")
    return {
        "old": {
            "bundle": old.get("bundle"),
            "verdict": old.get("verdict"),
            "verdict_text": verdict_text(old),
            "interrupted": old.get("interrupted"),
            "finished_at": old.get("finished_at"),
        },
        "new": {
            "bundle": new.get("bundle"),
            "verdict": new.get("verdict"),
            "verdict_text": verdict_text(new),
            "interrupted": new.get("interrupted"),
            "finished_at": new.get("finished_at"),
        },
        "requirement_changes": requirement_changes,
        "result_changes": result_changes,
        "burst": burst,
        "regressions": regressions,
        "regression": bool(regressions),
    }


def _burst_cut_short(doc: dict) -> bool:
    return (doc.get("burst") or {}).get("complete") is False


def _num(value, unit="") -> str:
    return "n/a" if value is None else f"{value:g}{unit}"


def render(comparison: dict) -> str:
    old, new = comparison["old"], comparison["new"]
    lines = [
        f"compare {old.get('bundle') or 'OLD'} -> {new.get('bundle') or 'NEW'}",
        f"overall verdict: {old.get('verdict_text') or old.get('verdict')} -> "
        f"{new.get('verdict_text') or new.get('verdict')}",
    ]
    if not comparison["requirement_changes"] and not comparison["result_changes"]:
        lines.append("requirements: no verdict changed")
    for c in comparison["requirement_changes"]:
        lines.append(f"  {c['id']:<4} {c['old']} -> {c['new']}{'   REGRESSION' if c['regression'] else ''}")
    for c in comparison["result_changes"]:
        lines.append(
            f"    {c['requirement']} {c['check']} {c['scope']}: {c['old']} -> {c['new']} "
            f"(measured {c['old_measured']} -> {c['new_measured']})"
            f"{'   REGRESSION' if c['regression'] else ''}"
        )
    b = comparison["burst"]
    cut = [side for side in ("old", "new") if b.get(f"{side}_incomplete")]
    if cut:
        lines.append(
            f"burst: {' and '.join(s.upper() for s in cut)} INCOMPLETE (cut short while booting): "
            "boot times not compared"
        )
    delta = "" if b.get("p95_delta_s") is None else f" ({b['p95_delta_s']:+g} s)"
    lines.append(
        f"burst p95: {_num(b['old_p95_s'], ' s')} -> {_num(b['new_p95_s'], ' s')}{delta}"
        f"{'   REGRESSION' if b['p95_regression'] else ''}"
    )
    delta = "" if b.get("failure_rate_delta") is None else f" ({b['failure_rate_delta']:+g})"
    lines.append(
        f"burst failure rate: {_num(b['old_failure_rate'])} -> {_num(b['new_failure_rate'])}{delta}"
        f"{'   REGRESSION' if b['failure_rate_regression'] else ''}"
    )
    lines.append(f"{len(comparison['regressions'])} regression(s)" if comparison["regression"] else "no regression")
    return "\n".join(lines) + "\n"
