"""The fleet document (`fleet.json`, and everything the pages show): runs grouped per cloud and region.

Per region, from the shared metric model (conformance.metrics.model): every run in time order with its
verdict, failing requirements and figures; the latest run's age against the profile's `fleet.stale_after_hours`;
the burst p95 and failure-rate trends; and what changed between consecutive runs, which is `compare` itself run
on each run's view of that region (conformance.report.compare, not a second implementation).
"""

from __future__ import annotations

import datetime as dt
import re

from conformance.fleet.sources import Run
from conformance.metrics.model import ScopeMetrics, region_metrics, regions, scope_document
from conformance.report import compare
from conformance.report.model import SUITE_NAME, iso, version

FORMAT_VERSION = "1.0"
TRENDS = {"burst_p95_s": "burst p95 (s)", "burst_failure_rate": "burst failure rate"}
_SLUG = re.compile(r"[^A-Za-z0-9._-]+")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)  # runs without an end time sort first


def parse_time(value) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def slug(*parts: str) -> str:
    return _SLUG.sub("-", "--".join(parts)).strip("-.") or "scope"


def _run_entry(run: Run, metrics: ScopeMetrics, report: str | None) -> dict:
    return {
        "bundle": run.doc.get("bundle") or "",
        "source": run.source,
        "finished_at": run.doc.get("finished_at"),
        "verdict": metrics.verdict,
        "failing": metrics.failing,
        "requirements": metrics.requirements,
        "metrics": metrics.to_dict(),
        "signature": run.signature,
        "report": report,
        "build": run.build,
        "profile": (run.doc.get("profile") or {}).get("name"),
        # The profile's limits the trends are drawn against (those of the run's own profile).
        "thresholds": {
            "burst_p95_s": (run.doc.get("burst") or {}).get("max_p95_boot_s"),
            "burst_failure_rate": (run.doc.get("burst") or {}).get("max_failure_rate"),
        },
    }


def _age_hours(finished_at, now: dt.datetime) -> float | None:
    when = parse_time(finished_at)
    return None if when is None else round((now - when).total_seconds() / 3600, 2)


def build_fleet(
    runs: list[Run],
    *,
    stale_after_hours: float,
    now: dt.datetime | None = None,
    reports: dict[int, str] | None = None,
    profile: str | None = None,
    signatures_checked: bool = False,
) -> dict:
    """The fleet document. `reports` maps id(run) to its copied report.html (a path relative to the site)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    reports = reports or {}
    accepted = [r for r in runs if r.doc is not None and not r.rejected]
    # The same bundle from two sources (a folder and Zuul, say) is one run.
    seen: set[tuple] = set()
    unique = []
    for run in sorted(accepted, key=lambda r: parse_time(r.doc.get("finished_at")) or _EPOCH):
        key = (run.doc.get("bundle"), run.doc.get("finished_at"))
        if key not in seen:
            seen.add(key)
            unique.append(run)
    # Per (cloud, region): (the run's view of the region, its entry), in time order.
    groups: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for run in unique:
        for region in regions(run.doc):
            view = scope_document(run.doc, region)
            metrics = region_metrics(run.doc, region, view)
            entry = _run_entry(run, metrics, reports.get(id(run)))
            groups.setdefault((metrics.cloud, region), []).append((view, entry))
    scopes = []
    for (cloud, region), items in sorted(groups.items()):
        entries = [entry for _, entry in items]
        latest = entries[-1]
        age = _age_hours(latest["finished_at"], now)
        changes = []
        for (old_view, old), (new_view, new) in zip(items, items[1:], strict=False):
            changes.append({"from": old["bundle"], "to": new["bundle"], **compare.compare(old_view, new_view)})
        scopes.append(
            {
                "cloud": cloud,
                "region": region,
                "page": f"regions/{slug(cloud, region)}.html",
                "latest": latest,
                "age_hours": age,
                "stale": age is None or age > stale_after_hours,
                "trends": {
                    name: [
                        {"bundle": e["bundle"], "finished_at": e["finished_at"], "value": e["metrics"][name]}
                        for e in entries
                        if e["metrics"][name] is not None
                    ]
                    for name in TRENDS
                },
                "runs": entries,
                "changes": changes,
            }
        )
    rejected = [
        {"source": r.source, "reason": r.rejected or "no results", "build": r.build}
        for r in runs
        if r.doc is None or r.rejected
    ]
    return {
        "format_version": FORMAT_VERSION,
        "generator": {"name": SUITE_NAME, "version": version(SUITE_NAME)},
        "generated_at": iso(now),
        "profile": profile,
        "stale_after_hours": stale_after_hours,
        "signatures_checked": signatures_checked,
        "summary": {
            "scopes": len(scopes),
            "clouds": len({s["cloud"] for s in scopes}),
            "runs": len(unique),
            "rejected": len(rejected),
            "stale": sum(1 for s in scopes if s["stale"]),
            "failing": sum(1 for s in scopes if s["latest"]["verdict"] == "FAIL"),
        },
        "scopes": scopes,
        "rejected": rejected,
    }
