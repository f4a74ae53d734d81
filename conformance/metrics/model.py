"""The run's metrics per scope (cloud, region), filled from its results.json document.

One model for every consumer: statsd at the end of a run, `metrics.prom` in the bundle and the fleet view all
read `scope_metrics(doc)`, so a value means the same everywhere and can be recomputed from results.json alone.

The cloud is the zuul project's clouds.yaml entry (the bundle is named after it); a result without a region
(measured once for the whole cloud) counts in every region of the run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from conformance.report.model import overall_verdict, requirement_rows

DEFAULT_REGION = "default"  # what conformance.cloud calls a connection without a region
# Verdicts as numbers for statsd gauges (Graphite has no labels): 0 is good, higher is worse or less known.
VERDICT_CODES = {"PASS": 0, "WARN": 1, "FAIL": 2, "SKIP": 3, "NOT_RUN": 4, "INCOMPLETE": 5, "ERROR": 6}
OTHER_VERDICT_CODE = 9  # a verdict word this version does not know
_STAMP_SUFFIX = re.compile(r"-\d{8}T\d{6}Z(?:-\d+)?$")


def verdict_code(verdict: str | None) -> int:
    return VERDICT_CODES.get(str(verdict or "NOT_RUN"), OTHER_VERDICT_CODE)


@dataclass
class ServiceMetrics:
    """API calls the run made to one service in one region."""

    count: int
    errors: int
    p50_s: float | None = None
    p95_s: float | None = None
    max_s: float | None = None


@dataclass
class ScopeMetrics:
    cloud: str
    region: str
    bundle: str
    finished_at: str | None
    verdict: str  # the run's overall verdict, judged on this region's results
    requirements: dict[str, str]  # requirement id -> verdict in this region (NOT_RUN included)
    duration_s: float | None = None
    burst_p50_s: float | None = None
    burst_p95_s: float | None = None
    burst_max_s: float | None = None
    burst_failure_rate: float | None = None
    burst_boots_per_minute: float | None = None
    burst_size: int | None = None
    api: dict[str, ServiceMetrics] = field(default_factory=dict)
    quota_instances_headroom: float | None = None  # nodes of the test flavor that still fit; inf: unlimited
    cert_days_to_expiry: float | None = None  # Keystone's certificate, the soonest of the run's projects

    @property
    def failing(self) -> list[str]:
        return [rid for rid, verdict in self.requirements.items() if verdict == "FAIL"]

    def to_dict(self) -> dict:
        data = {**vars(self), "api": {name: vars(figures).copy() for name, figures in self.api.items()}}
        data["requirements"] = dict(self.requirements)
        if data["quota_instances_headroom"] == math.inf:
            data["quota_instances_headroom"] = "unlimited"  # JSON has no infinity
        data["failing"] = self.failing
        return data


def cloud_name(doc: dict) -> str:
    """The zuul project's clouds.yaml entry; else the bundle's name without its timestamp."""
    zuul = (doc.get("clouds") or {}).get("zuul") or {}
    if zuul.get("cloud"):
        return str(zuul["cloud"])
    return _STAMP_SUFFIX.sub("", str(doc.get("bundle") or "")) or "cloud"


def regions(doc: dict) -> list[str]:
    found = sorted({r.get("region") for r in doc.get("results") or [] if r.get("region")})
    if not found:
        found = [str(r) for r in ((doc.get("clouds") or {}).get("zuul") or {}).get("regions") or [] if r]
    return found or [DEFAULT_REGION]


def region_results(doc: dict, region: str) -> list[dict]:
    return [r for r in doc.get("results") or [] if r.get("region") in (region, "", None)]


def burst_region(doc: dict) -> str | None:
    burst = doc.get("burst")
    if not burst:
        return None
    return str(burst.get("scope") or "").partition("/")[2] or DEFAULT_REGION


def scope_document(doc: dict, region: str) -> dict:
    """The run as seen from one region: its results, requirement rows, verdict and (if it ran there) the burst.
    `compare` takes it like a whole results.json, so the fleet reuses compare per region."""
    runs_in = regions(doc)
    results = region_results(doc, region)
    rows = requirement_rows(results)
    if len(runs_in) <= 1:
        verdict = doc.get("verdict") or overall_verdict(rows, doc.get("exit_status"))
    else:
        # pytest's exit status is the run's: only an ERROR run passes it on (a FAIL elsewhere must not count).
        verdict = overall_verdict(rows, doc.get("exit_status") if doc.get("verdict") == "ERROR" else 0)
    burst = doc.get("burst") if burst_region(doc) == region or (len(runs_in) <= 1 and doc.get("burst")) else None
    return {**doc, "results": results, "requirements": rows, "verdict": verdict, "burst": burst}


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _api(doc: dict, region: str, single_region: bool) -> dict[str, ServiceMetrics]:
    stats = doc.get("api_calls") or {}
    per_service = stats.get("per_service")
    out: dict[str, ServiceMetrics] = {}
    if per_service is not None:
        rows = [r for r in per_service if r.get("region") == region or (single_region and not r.get("region"))]
        rows.sort(key=lambda r: bool(r.get("region")))  # the region's own rows last: they win over unscoped ones
        for row in rows:
            out[row.get("service") or "unknown"] = ServiceMetrics(
                int(row.get("count") or 0),
                int(row.get("errors") or 0),
                _number(row.get("p50_s")),
                _number(row.get("p95_s")),
                _number(row.get("max_s")),
            )
        return out
    # Older results.json: per endpoint only, for the whole run; counts add up, percentiles do not.
    for row in stats.get("per_endpoint") or []:
        service = out.setdefault(row.get("service") or "unknown", ServiceMetrics(0, 0))
        service.count += int(row.get("count") or 0)
        service.errors += int(row.get("errors") or 0)
        top = _number(row.get("max_s"))
        if top is not None:
            service.max_s = max(service.max_s or 0.0, top)
    return out


def _data(result: dict) -> dict:
    data = result.get("data")
    return data if isinstance(data, dict) else {}


def _headroom(results: list[dict]) -> float | None:
    for result in results:
        data = _data(result)
        if result.get("requirement") == "R8" and result.get("check") == "quota.instances" and "max_servers" in data:
            fits = data["max_servers"]
            return math.inf if fits is None else _number(fits)
    return None


def _cert_days(results: list[dict]) -> float | None:
    days = [
        _number(_data(r).get("days_to_expiry"))
        for r in results
        if r.get("requirement") == "R7" and r.get("check") == "keystone.cert_expiry"
    ]
    days = [d for d in days if d is not None]
    return min(days) if days else None


def scope_metrics(doc: dict) -> list[ScopeMetrics]:
    """One ScopeMetrics per region of the run (sorted by region)."""
    return [region_metrics(doc, region, scope_document(doc, region)) for region in regions(doc)]


def region_metrics(doc: dict, region: str, view: dict) -> ScopeMetrics:
    """The metrics of one region, from the run's document and its view of that region (scope_document)."""
    metrics = ScopeMetrics(
        cloud=cloud_name(doc),
        region=region,
        bundle=str(doc.get("bundle") or ""),
        finished_at=doc.get("finished_at"),
        verdict=view["verdict"],
        requirements={row["id"]: row["verdict"] for row in view["requirements"]},
        duration_s=_number(doc.get("duration_s")),
        api=_api(doc, region, len(regions(doc)) == 1),
        quota_instances_headroom=_headroom(view["results"]),
        cert_days_to_expiry=_cert_days(view["results"]),
    )
    burst = view["burst"]
    if burst:
        summary = burst.get("summary") or {}
        metrics.burst_p50_s = _number(summary.get("p50"))
        metrics.burst_p95_s = _number(summary.get("p95"))
        metrics.burst_max_s = _number(summary.get("max"))
        rate = _number(summary.get("success_rate"))
        metrics.burst_failure_rate = None if rate is None else round(1 - rate, 4)
        metrics.burst_boots_per_minute = _number(summary.get("boots_per_minute"))
        size = summary.get("n", summary.get("count"))
        metrics.burst_size = int(size) if isinstance(size, int) else len(burst.get("servers") or []) or None
    return metrics
