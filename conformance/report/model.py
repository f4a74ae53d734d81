"""The run as one JSON-like document (`results.json`): built from the controller's SessionResults.

Everything the HTML, the onboarding snippets and `compare` show is read from this document, so the three
always agree and a bundle can be re-rendered or compared from its `results.json` alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.metadata
import json
import math
import platform
import re
from collections import defaultdict

from conformance import requirements
from conformance.results import VERDICTS

# 1.1: the INCOMPLETE verdict (results, requirements, burst) and the run-level `interrupted` record.
# 1.2: the ERROR verdict of results and requirements (a check crashed on a bug of the suite).
SCHEMA_VERSION = "1.2"
SUITE_NAME = "opendev-cloud-conformance"
# Per-requirement verdicts add NOT_RUN: the catalogue entry has no result in this run.
REQUIREMENT_VERDICTS = (*VERDICTS, "NOT_RUN")
RESULT_FIELDS = (
    "requirement",
    "check",
    "project",
    "region",
    "measured",
    "threshold",
    "verdict",
    "reason",
    "data",
    "test",
)
# Cloud facts shown and reused for the onboarding snippets; anything else the main part adds is kept too.
FACT_ALIASES = {
    "cloud": ("cloud", "name", "cloud_name"),
    "auth_url": ("auth_url",),
    "regions": ("regions", "region_names"),
    "project_name": ("project_name", "project"),
    "project_id": ("project_id",),
    "username": ("username", "user_name", "user"),
    "user_domain_name": ("user_domain_name", "user_domain"),
    "project_domain_name": ("project_domain_name", "project_domain"),
    "identity_api_version": ("identity_api_version",),
    "compute_api_version": ("compute_api_version",),
    "endpoints": ("endpoints",),
}


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _get(obj, *names, default=None):
    """First present attribute or key among `names`: SessionResults may be an object or a mapping."""
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if not isinstance(obj, dict) and hasattr(obj, name):
            return getattr(obj, name)
    return default


def as_plain(value):
    """Dataclasses, namedtuples and simple objects as JSON-ready values (no exotic types in results.json)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_plain(dataclasses.asdict(value))
    if hasattr(value, "_asdict"):
        return as_plain(value._asdict())
    if isinstance(value, dict):
        return {str(k): as_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [as_plain(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return iso(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    if hasattr(value, "__dict__"):
        return {k: as_plain(v) for k, v in vars(value).items() if not k.startswith("_")}
    return str(value)


def iso(value) -> str | None:
    """UTC ISO 8601 from a datetime, an epoch number or an ISO string."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        value = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def percentile(values, p: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), p in [0, 100]."""
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return None
    rank = (len(data) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


_ID_SEGMENT = re.compile(
    r"^(?:[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}|[0-9a-fA-F]{32,}|\d+)$"
)


def endpoint_of(path: str) -> str:
    """A call's path with ids replaced by {id}, so calls group per endpoint, not per resource."""
    path = (path or "").split("?", 1)[0]
    parts = [("{id}" if _ID_SEGMENT.match(p) else p) for p in path.split("/")]
    # Resource names of this run (conformance-<timestamp>-...) are ids too.
    parts = ["{id}" if p.startswith("conformance-") else p for p in parts]
    return "/".join(parts) or "/"


def call_stats(calls) -> dict:
    groups: dict[tuple, list] = defaultdict(list)
    for call in calls:
        call = as_plain(call)
        key = (
            str(call.get("service") or ""),
            str(call.get("method") or "").upper(),
            endpoint_of(call.get("path")),
        )
        groups[key].append(call)
    rows = []
    for (service, method, endpoint), items in sorted(groups.items()):
        rows.append({"service": service, "method": method, "endpoint": endpoint, **_call_figures(items)})
    return {
        "total": sum(r["count"] for r in rows),
        "errors": sum(r["errors"] for r in rows),
        "per_endpoint": rows,
        "per_service": service_stats(calls),
    }


def service_stats(calls) -> list[dict]:
    """Per region and service: count, errors and latency percentiles (what the run's metrics report per scope;
    a region is read from the call's scope, `zuul/RegionOne`)."""
    groups: dict[tuple, list] = defaultdict(list)
    for call in calls:
        call = as_plain(call)
        region = str(call.get("scope") or "").partition("/")[2]
        groups[(region, str(call.get("service") or ""))].append(call)
    rows = []
    for (region, service), items in sorted(groups.items()):
        rows.append({"region": region, "service": service, **_call_figures(items)})
    return rows


def _call_figures(calls: list[dict]) -> dict:
    """count, errors (an error status or no answer) and p50/p95/max seconds of a group of calls."""
    seconds = [c.get("seconds") for c in calls if isinstance(c.get("seconds"), (int, float))]
    return {
        "count": len(calls),
        "errors": sum(1 for c in calls if not isinstance(c.get("status"), int) or c["status"] >= 400),
        "p50_s": _round(percentile(seconds, 50)),
        "p95_s": _round(percentile(seconds, 95)),
        "max_s": _round(max(seconds) if seconds else None),
    }


def retry_stats(retries) -> dict:
    """Retries by the cloud layer, per service and reason: how many attempts were retried, how many calls
    needed a retry, and how many calls failed even so (`gave_up`)."""
    groups: dict[tuple, dict] = {}
    for retry in retries:
        retry = as_plain(retry)
        key = (str(retry.get("service") or ""), str(retry.get("reason") or ""))
        row = groups.setdefault(key, {"service": key[0], "reason": key[1], "retries": 0, "calls": 0, "gave_up": 0})
        if retry.get("gave_up"):
            row["gave_up"] += 1
        else:
            row["retries"] += 1
            row["calls"] += 1 if retry.get("attempt") == 1 else 0
    rows = [groups[key] for key in sorted(groups)]
    return {
        "total": sum(r["retries"] for r in rows),
        "calls": sum(r["calls"] for r in rows),
        "gave_up": sum(r["gave_up"] for r in rows),
        "per_service": rows,
    }


def _round(value, digits=4):
    return None if value is None else round(float(value), digits)


def normalize_result(raw) -> dict:
    raw = as_plain(raw)
    if isinstance(raw, str):
        raw = json.loads(raw)
    result = {name: raw.get(name) for name in RESULT_FIELDS}
    for name in ("check", "project", "region", "reason", "test"):
        result[name] = "" if result[name] is None else str(result[name])
    result["requirement"] = str(result["requirement"] or "")
    verdict = str(result["verdict"] or "").upper()
    result["verdict"] = verdict if verdict in VERDICTS else "FAIL"
    result["data"] = result["data"] if isinstance(result["data"], dict) else {}
    return result


# A requirement's verdict is the first of these among its results: a FAIL of the cloud stands whatever else
# happened; an ERROR (the suite crashed) and an INCOMPLETE (cut short) leave it undecided, ERROR first because
# it needs a fix of the suite, not just another run.
REQUIREMENT_PRECEDENCE = ("FAIL", "ERROR", "INCOMPLETE", "WARN", "PASS", "SKIP")


def requirement_verdict(verdicts) -> str:
    """The worst of a requirement's results (REQUIREMENT_PRECEDENCE); NOT_RUN without any."""
    verdicts = set(verdicts)
    for verdict in REQUIREMENT_PRECEDENCE:
        if verdict in verdicts:
            return verdict
    return "NOT_RUN"


def requirement_rows(results) -> list[dict]:
    by_id: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        by_id[result["requirement"]].append(result)
    ids = list(requirements.CATALOGUE) + sorted(set(by_id) - set(requirements.CATALOGUE))
    rows = []
    for rid in ids:
        req = requirements.CATALOGUE.get(rid)
        verdicts = [r["verdict"] for r in by_id.get(rid, [])]
        rows.append(
            {
                "id": rid,
                "name": req.name if req else "",
                "text": req.text if req else "(not in the catalogue)",
                "verdict": requirement_verdict(verdicts),
                "counts": {v: verdicts.count(v) for v in VERDICTS},
            }
        )
    return rows


def overall_verdict(rows, exit_status, interrupted=None) -> str:
    """FAIL on any failed requirement (the cloud's fault shows whatever else happened); ERROR when one is
    undecided because the suite crashed; INCOMPLETE when one was cut short (interrupted, time ran out); ERROR
    when pytest failed without any of these (a crash outside a requirement; an interrupted run's exit status is
    not a crash); INCOMPLETE when a catalogue requirement has no PASS/WARN result (skipped or not run); else
    PASS. An interruption shows in `interrupted`, next to the verdict its results give (docs/report.md)."""
    if any(r["verdict"] == "FAIL" for r in rows):
        return "FAIL"
    if any(r["verdict"] == "ERROR" for r in rows):
        return "ERROR"
    if any(r["verdict"] == "INCOMPLETE" for r in rows):
        return "INCOMPLETE"
    if exit_status not in (None, 0, 5) and not interrupted:
        return "ERROR"
    if any(r["verdict"] in ("SKIP", "NOT_RUN") for r in rows if r["id"] in requirements.CATALOGUE):
        return "INCOMPLETE"
    return "PASS"


# How verdict_text says why a requirement is undecided, in this order.
UNDECIDED = {"ERROR": "", "INCOMPLETE": "cut short", "SKIP": "not measured", "NOT_RUN": "not run"}
MAX_NAMED = 4  # requirement ids named per reason; the rest are counted


def verdict_text(doc: dict) -> str:
    """The overall verdict as the terminal, the HTML and `compare` show it: `INCOMPLETE (run interrupted by
    SIGINT at 2026-11-29T04:37:44Z, 25 s in)`, `INCOMPLETE (R11 not measured)`, `ERROR (R4: a bug of the
    suite)`: an undecided run names what left it undecided."""
    verdict = str(doc.get("verdict") or "?")
    stop = doc.get("interrupted")
    if isinstance(stop, dict):
        after = f", {stop['after_s']:.0f} s in" if isinstance(stop.get("after_s"), (int, float)) else ""
        detail = f" ({stop['detail']})" if stop.get("detail") else ""
        return f"{verdict} (run interrupted by {stop.get('reason')} at {stop.get('at')}{detail}{after})"
    if verdict not in ("ERROR", "INCOMPLETE"):
        return verdict
    rows = [
        r
        for r in doc.get("requirements") or []
        if r.get("id") in requirements.CATALOGUE or r.get("verdict") in ("ERROR", "INCOMPLETE")
    ]
    parts = []
    # ERROR names only what the suite could not decide: the requirements not run follow from it.
    for word, said in UNDECIDED.items() if verdict == "INCOMPLETE" else [("ERROR", "")]:
        ids = [str(r["id"]) for r in rows if r.get("verdict") == word]
        if not ids:
            continue
        named = ", ".join(ids[:MAX_NAMED]) + (f" and {len(ids) - MAX_NAMED} more" if len(ids) > MAX_NAMED else "")
        parts.append(f"{named}: {_error_words(doc, ids)}" if word == "ERROR" else f"{named} {said}")
    return f"{verdict} ({'; '.join(parts)})" if parts else verdict


def _error_words(doc: dict, ids: list[str]) -> str:
    """What left these requirements ERROR: `a bug of the suite` when the suite crashed, else the kinds recorded."""
    kinds = sorted(
        {
            str((r.get("data") or {}).get("error_kind") or "suite")
            for r in doc.get("results") or []
            if r.get("verdict") == "ERROR" and r.get("requirement") in ids
        }
    )
    return ", ".join("a bug of the suite" if kind == "suite" else kind for kind in kinds or ["suite"])


def burst_of(results) -> dict | None:
    """The R12 burst: per-server times and summary, merged from the R12 results' data (the dynamic checks
    record p95, failure rate and delete as separate results, any of which may carry them)."""
    burst_results = [r for r in results if r["requirement"] == "R12" and r.get("data")]
    with_servers = [r for r in burst_results if r["data"].get("servers")]
    with_summary = [r for r in burst_results if isinstance(r["data"].get("summary"), dict)]
    if not with_servers and not with_summary:
        return None
    main = (with_servers or with_summary)[0]
    servers = [s for s in (with_servers[0]["data"]["servers"] if with_servers else []) if isinstance(s, dict)]
    summary = dict((with_summary[0]["data"]["summary"]) if with_summary else {})
    times = [s.get("request_to_active_s") for s in servers if isinstance(s.get("request_to_active_s"), (int, float))]
    # Fill what the summary lacks from the servers, so the chart and compare always have p50/p95.
    if servers:
        for key, value in (
            ("count", len(servers)),
            ("p50", _round(percentile(times, 50))),
            ("p95", _round(percentile(times, 95))),
            ("max", _round(max(times) if times else None)),
        ):
            if summary.get(key) is None:
                summary[key] = value
        if summary.get("success_rate") is None:
            ok = sum(1 for s in servers if str(s.get("status", "")).upper() == "ACTIVE" and not s.get("fault"))
            summary["success_rate"] = round(ok / len(servers), 4)
    # complete: p95 and failure rate were decided (a burst cut short while booting has partial boot times,
    # which `compare` must not set against a whole burst's).
    boot = [r for r in burst_results if r["check"] in ("burst.p95", "burst.failure_rate")]
    return {
        "scope": "/".join(p for p in (main["project"], main["region"]) if p),
        "verdict": requirement_verdict(r["verdict"] for r in results if r["requirement"] == "R12"),
        "complete": not any(r["verdict"] == "INCOMPLETE" for r in boot),
        "threshold": main.get("threshold"),
        "summary": summary,
        "servers": servers,
    }


def result_data(results, requirement_id, region=None, *, project="zuul", key=None) -> dict | None:
    """The data of the first result of a requirement measured in `project` (in `region` when given and
    present) whose data has `key` when given: R4's test-node flavor, not the ci project's mirror flavor."""
    candidates = [
        r
        for r in results
        if r["requirement"] == requirement_id
        and r.get("data")
        and r.get("project") in (project, "")
        and (key is None or key in r["data"])
    ]
    for result in candidates:
        if region is None or result.get("region") == region:
            return result["data"]
    return candidates[0]["data"] if candidates else None


def normalize_facts(raw) -> dict:
    facts = as_plain(raw) or {}
    if not isinstance(facts, dict):
        return {}
    out = {}
    for key, aliases in FACT_ALIASES.items():
        value = _get(facts, *aliases)
        if value is not None:
            out[key] = value
    if isinstance(out.get("regions"), str):
        out["regions"] = [out["regions"]]
    for key, value in facts.items():
        if not any(key in aliases for aliases in FACT_ALIASES.values()):
            out.setdefault(key, value)
    return out


def profile_info(profile) -> dict:
    if profile is None:
        return {"name": None, "sha256": None, "relaxations": []}
    relaxations = as_plain(_get(profile, "relaxations", default=[]) or [])
    return {
        "name": _get(profile, "name"),
        "sha256": _get(profile, "sha256"),
        "relaxations": [
            {"key": str(r.get("key")), "reason": str(r.get("reason", ""))} for r in relaxations if isinstance(r, dict)
        ],
    }


def profile_value(profile, dotted: str, default=None):
    """A profile threshold by dotted key, from Profile.__getitem__ or its .data mapping."""
    if profile is None:
        return default
    try:
        return profile[dotted]
    except Exception:  # noqa: BLE001 - any Profile shape: fall back to walking .data
        pass
    node = _get(profile, "data", default=profile if isinstance(profile, dict) else None)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def build_document(
    session_results,
    *,
    bundle_name: str = "",
    exit_status=None,
    signature=None,
    fallback_results=(),
    fallback_calls=(),
    now=None,
) -> dict:
    """The results.json document. `session_results` may be None (the main part gathered none: a run
    that is not the conformance checks, with --report-bundle=yes); then the results and calls gathered from the
    reports' user_properties are used."""
    sr = session_results
    raw_results = _get(sr, "results", default=None) if sr is not None else None
    raw_calls = _get(sr, "calls", default=None) if sr is not None else None
    retries = list(_get(sr, "retries", default=None) or []) if sr is not None else []
    interrupted = as_plain(_get(sr, "interrupted", default=None)) if sr is not None else None
    results = [normalize_result(r) for r in (raw_results if raw_results is not None else fallback_results)]
    calls = list(raw_calls if raw_calls is not None else fallback_calls)
    profile = _get(sr, "profile") if sr is not None else None
    facts = _get(sr, "clouds", "facts", "cloud_facts", default={}) if sr is not None else {}
    facts = as_plain(facts) or {}
    start = _get(sr, "start", "start_time", "started_at", "started") if sr is not None else None
    end = _get(sr, "end", "end_time", "finished_at", "ended") if sr is not None else None
    end = end or now or dt.datetime.now(dt.timezone.utc)
    started_at, finished_at = iso(start), iso(end)
    duration = None
    if started_at and finished_at:
        try:
            duration = round(
                (
                    dt.datetime.fromisoformat(finished_at.replace("Z", "+00:00"))
                    - dt.datetime.fromisoformat(started_at.replace("Z", "+00:00"))
                ).total_seconds(),
                1,
            )
        except ValueError:
            duration = None
    rows = requirement_rows(results)
    interrupted = as_plain(_get(sr, "interrupted")) if sr is not None else None
    burst = burst_of(results)
    if burst is not None:
        burst["max_p95_boot_s"] = profile_value(profile, "burst.max_p95_boot_s")
        burst["max_failure_rate"] = profile_value(profile, "burst.max_failure_rate")
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": {"name": SUITE_NAME, "version": version(SUITE_NAME)},
        "bundle": bundle_name,
        "verdict": overall_verdict(rows, exit_status, interrupted),
        "interrupted": interrupted if isinstance(interrupted, dict) else None,
        "exit_status": exit_status if isinstance(exit_status, int) else None,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": duration,
        "profile": profile_info(profile),
        "environment": {
            "suite_version": version(SUITE_NAME),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "pytest": version("pytest"),
            "pytest_html": version("pytest-html"),
            "openstacksdk": version("openstacksdk"),
        },
        "clouds": {str(role): normalize_facts(f) for role, f in facts.items()} if isinstance(facts, dict) else {},
        "requirements": rows,
        "results": results,
        "api_calls": call_stats(calls),
        "api_retries": retry_stats(retries),
        "burst": burst,
        "signature": signature,
        "profile_thresholds": {
            "flavor_min_ram_mb": profile_value(profile, "flavor.min_ram_mb"),
            "flavor_min_disk_gb": profile_value(profile, "flavor.min_disk_gb"),
            "quota_headroom_percent": profile_value(profile, "quota.headroom_percent"),
        },
    }
