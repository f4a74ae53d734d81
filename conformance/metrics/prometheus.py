"""`metrics.prom`: the run's metrics as OpenMetrics text, for a Prometheus textfile collector or any script.

Written with prometheus-client into a private registry (the process's default registry, with its process and
GC collectors, is never touched). Every series carries `cloud` and `region` labels; verdicts are one series per
possible verdict with value 1 for the one that holds (PromQL: `conformance_verdict{verdict="FAIL"} == 1`).
A burst or a value the run did not measure has no series. An unlimited quota headroom is +Inf.
"""

from __future__ import annotations

import datetime as dt

from conformance.metrics.model import ScopeMetrics, scope_metrics

FILENAME = "metrics.prom"
SCOPE = ("cloud", "region")
RUN_VERDICTS = ("PASS", "FAIL", "INCOMPLETE", "ERROR")
REQUIREMENT_VERDICTS = ("PASS", "FAIL", "WARN", "SKIP", "INCOMPLETE", "ERROR", "NOT_RUN")


def registry_for(scopes: list[ScopeMetrics]):
    from prometheus_client import CollectorRegistry, Gauge, Info

    registry = CollectorRegistry(auto_describe=True)

    def gauge(name, documentation, *labels, unit=""):
        return Gauge(name, documentation, [*SCOPE, *labels], registry=registry, unit=unit)

    run = Info("conformance_run", "The run this file describes", [*SCOPE], registry=registry)
    finished = gauge("conformance_run_finished_timestamp", "When the run ended (Unix time)", unit="seconds")
    duration = gauge("conformance_run_duration", "How long the run took", unit="seconds")
    verdict = gauge("conformance_verdict", "The run's overall verdict in this region (1 = this verdict)", "verdict")
    requirement = gauge(
        "conformance_requirement_verdict", "Verdict of each requirement (1 = this verdict)", "requirement", "verdict"
    )
    boot = gauge(
        "conformance_burst_boot", "Burst: request to ACTIVE, p50/p95/max (quantile 1)", "quantile", unit="seconds"
    )
    failure = gauge("conformance_burst_failure_ratio", "Burst: share of servers that did not become ACTIVE")
    rate = gauge("conformance_burst_boots_per_minute", "Burst: servers ACTIVE per minute")
    size = gauge("conformance_burst_servers", "Burst: servers requested")
    calls = gauge("conformance_api_calls", "API calls the run made", "service")
    errors = gauge("conformance_api_errors", "API calls answered with an error status or not at all", "service")
    latency = gauge(
        "conformance_api_latency", "API call latency, p50/p95/max (quantile 1)", "service", "quantile", unit="seconds"
    )
    headroom = gauge(
        "conformance_quota_instances_headroom", "Nodes of the test flavor the quota still allows (+Inf: unlimited)"
    )
    cert = gauge("conformance_keystone_cert_expiry_days", "Days until Keystone's certificate expires")

    def put(metric, value, *labels) -> None:
        if value is not None:
            metric.labels(*labels).set(value)

    for s in scopes:
        where = (s.cloud, s.region)
        run.labels(*where).info({"bundle": s.bundle, "finished_at": s.finished_at or ""})
        put(finished, _epoch(s.finished_at), *where)
        put(duration, s.duration_s, *where)
        for word in _words(RUN_VERDICTS, s.verdict):
            verdict.labels(*where, word).set(1 if word == s.verdict else 0)
        for rid, word in s.requirements.items():
            for each in _words(REQUIREMENT_VERDICTS, word):
                requirement.labels(*where, rid, each).set(1 if each == word else 0)
        for quantile, value in (("0.5", s.burst_p50_s), ("0.95", s.burst_p95_s), ("1", s.burst_max_s)):
            put(boot, value, *where, quantile)
        put(failure, s.burst_failure_rate, *where)
        put(rate, s.burst_boots_per_minute, *where)
        put(size, s.burst_size, *where)
        for service, figures in sorted(s.api.items()):
            calls.labels(*where, service).set(figures.count)
            errors.labels(*where, service).set(figures.errors)
            for quantile, value in (("0.5", figures.p50_s), ("0.95", figures.p95_s), ("1", figures.max_s)):
                put(latency, value, *where, service, quantile)
        put(headroom, s.quota_instances_headroom, *where)
        put(cert, s.cert_days_to_expiry, *where)
    return registry


def _words(known: tuple[str, ...], current: str) -> tuple[str, ...]:
    """Every verdict a series can have, plus the current one if it is new (another version's verdict word)."""
    return known if current in known else (*known, current)


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def openmetrics_text(doc: dict) -> str:
    """metrics.prom of a results.json document."""
    from prometheus_client.openmetrics.exposition import generate_latest

    return generate_latest(registry_for(scope_metrics(doc))).decode("utf-8")
