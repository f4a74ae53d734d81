"""The metric model, its statsd names and metrics.prom, from made-up runs (the sandbox run is in
tests/integration/test_metrics_fleet_run.py)."""

from __future__ import annotations

import copy
import math
import re
import socket
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conformance.burst import ServerTiming, format_progress
from conformance.metrics import model as metrics
from conformance.metrics.prometheus import openmetrics_text
from conformance.metrics.statsd_sink import (
    StatsdError,
    StatsdSink,
    burst_progress,
    end_of_run,
    normalize,
    sink_from,
)
from conformance.report import bundle
from conformance.report import model as report_model
from conformance.report.sample import sample_session_results
from conformance.results import VERDICTS

REPO = Path(__file__).resolve().parents[2]
KEY = "conformance.cloud.sandbox-zuul.region.RegionOne"


def sample_doc(**kwargs) -> dict:
    return report_model.build_document(
        sample_session_results(**kwargs), bundle_name="sandbox-zuul-20261128T120000Z", exit_status=1
    )


def two_region_doc() -> dict:
    """R8 fails in RegionTwo only; the burst ran in RegionOne; R10 was measured for the whole cloud."""
    doc = sample_doc()
    extra = copy.deepcopy([r for r in doc["results"] if r["requirement"] in ("R1", "R8")])
    for result in extra:
        result["region"] = "RegionTwo"
        if result["requirement"] == "R8":
            result.update(verdict="FAIL", data={**result["data"], "max_servers": None})
    doc["results"] = [r for r in doc["results"] if r["requirement"] != "R12"] + extra
    doc["results"] += [r for r in sample_doc()["results"] if r["requirement"] == "R12"]
    doc["requirements"] = report_model.requirement_rows(doc["results"])
    doc["verdict"] = "FAIL"
    doc["burst"]["scope"] = "zuul/RegionOne"
    return doc


def test_one_region_takes_every_figure_from_results_json():
    doc = sample_doc()
    [scope] = metrics.scope_metrics(doc)
    summary = doc["burst"]["summary"]
    assert (scope.cloud, scope.region, scope.bundle) == ("sandbox-zuul", "RegionOne", doc["bundle"])
    assert scope.verdict == doc["verdict"] == "FAIL"
    assert scope.requirements == {row["id"]: row["verdict"] for row in doc["requirements"]}
    assert scope.failing == ["R12"]
    assert (scope.burst_p50_s, scope.burst_p95_s, scope.burst_max_s) == (
        summary["p50"],
        summary["p95"],
        summary["max"],
    )
    assert scope.burst_failure_rate == round(1 - summary["success_rate"], 4) == 0.05
    assert scope.burst_boots_per_minute == summary["boots_per_minute"]
    assert scope.duration_s == doc["duration_s"] == 2520
    assert scope.quota_instances_headroom == 150  # R8 quota.instances data.max_servers
    compute = next(r for r in doc["api_calls"]["per_service"] if r["service"] == "compute")
    assert scope.api["compute"] == metrics.ServiceMetrics(
        compute["count"], compute["errors"], compute["p50_s"], compute["p95_s"], compute["max_s"]
    )
    assert scope.api["compute"].errors == 1  # the one POST answered 500


def test_each_region_gets_its_own_verdict_burst_and_headroom():
    doc = two_region_doc()
    one, two = metrics.scope_metrics(doc)
    assert (one.region, two.region) == ("RegionOne", "RegionTwo")
    assert one.requirements["R8"] == "PASS" and two.requirements["R8"] == "FAIL"
    assert two.verdict == "FAIL" and "R8" in two.failing and "R8" not in one.failing
    assert one.burst_p95_s == doc["burst"]["summary"]["p95"] and two.burst_p95_s is None
    assert two.requirements["R12"] == "NOT_RUN"
    # A result without a region counts everywhere; an unlimited quota is infinite headroom.
    assert one.requirements["R10"] == two.requirements["R10"] == "PASS"
    assert two.quota_instances_headroom == math.inf and two.to_dict()["quota_instances_headroom"] == "unlimited"


def test_cloud_name_falls_back_to_the_bundle_name():
    doc = sample_doc()
    doc["clouds"] = {}
    assert metrics.cloud_name(doc) == "sandbox-zuul"
    assert metrics.cloud_name({"bundle": "mycloud-20261128T120000Z-2"}) == "mycloud"


def test_every_verdict_word_has_a_statsd_code():
    words = set(VERDICTS) | set(report_model.REQUIREMENT_VERDICTS) | {"INCOMPLETE", "ERROR"}
    assert words <= set(metrics.VERDICT_CODES)
    assert metrics.verdict_code("SOMETHING_NEW") == metrics.OTHER_VERDICT_CODE


def test_statsd_names_and_values_follow_the_model():
    doc = sample_doc()
    stats = {name: (value, kind) for name, value, kind in end_of_run(metrics.scope_metrics(doc))}
    assert stats[f"{KEY}.runs"] == (1, "c")
    assert stats[f"{KEY}.verdict"] == (2, "g")  # FAIL
    assert stats[f"{KEY}.requirement.R12"] == (2, "g") and stats[f"{KEY}.requirement.R2"] == (4, "g")
    assert stats[f"{KEY}.burst.p95"] == (doc["burst"]["summary"]["p95"], "g")
    assert stats[f"{KEY}.burst.failure_rate"] == (0.05, "g")
    assert stats[f"{KEY}.api.compute.errors"] == (1, "g")
    assert stats[f"{KEY}.quota.instances_headroom"] == (150, "g")
    assert f"{KEY}.keystone.cert_days_to_expiry" not in stats  # not measured: not sent
    unlimited = end_of_run(metrics.scope_metrics(two_region_doc()))
    assert not any(name.endswith("RegionTwo.quota.instances_headroom") for name, _, _ in unlimited)


def test_names_are_made_safe_as_zuul_does():
    assert normalize("cloud.example.org:5000") == "cloud_example_org_5000"
    assert normalize("Region One/α") == "Region_One__"


def test_burst_progress_reads_the_live_line_of_conformance_burst():
    """Guards the coupling with conformance.burst.format_progress: a changed line format fails here."""
    servers = [ServerTiming(i, f"s{i}") for i in range(5)]
    for timing, status in zip(servers, ("ACTIVE", "ACTIVE", "ERROR", "BUILD", "CREATE_FAILED"), strict=True):
        timing.status = status
    stats = dict((n, v) for n, v, _ in burst_progress("c", "r", format_progress(servers, 75.4)))
    key = "conformance.cloud.c.region.r.burst.progress"
    assert stats == {f"{key}.size": 5, f"{key}.active": 2, f"{key}.error": 2, f"{key}.build": 1, f"{key}.elapsed": 75}
    deleting = dict((n, v) for n, v, _ in burst_progress("c", "r", format_progress(servers, 80, "| delete: 3 left")))
    assert deleting[f"{key}.delete_left"] == 3
    assert burst_progress("c", "r", "something else") == []


def test_no_host_no_sink_and_bad_ports_are_usage_errors():
    assert sink_from(None) is None and sink_from("") is None
    with pytest.raises(StatsdError, match="not a UDP port"):
        sink_from("127.0.0.1", 70000)
    with pytest.raises(StatsdError, match="not a number"):
        sink_from("127.0.0.1", "eighty")


def test_sink_sends_gauges_and_counters_over_udp_on_loopback():
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    try:
        sink = StatsdSink("127.0.0.1", listener.getsockname()[1], prefix="opendev")
        assert sink.send([("a.b", 1.5, "g"), ("a.c", 1, "c")]) == 2
        sink.close()
        lines = listener.recv(65536).decode().splitlines()
    finally:
        listener.close()
    assert lines == ["opendev.a.b:1.5|g", "opendev.a.c:1|c"]


def _samples(text: str) -> dict:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_prom_parses_as_openmetrics_and_matches_results_json():
    doc = sample_doc()
    text = openmetrics_text(doc)
    assert text.endswith("# EOF\n")
    samples = _samples(text)
    where = (("cloud", "sandbox-zuul"), ("region", "RegionOne"))

    def value(name, **labels):
        return samples[(name, tuple(sorted((*where, *labels.items()))))]

    assert value("conformance_verdict", verdict="FAIL") == 1 and value("conformance_verdict", verdict="PASS") == 0
    assert value("conformance_requirement_verdict", requirement="R12", verdict="FAIL") == 1
    assert value("conformance_requirement_verdict", requirement="R2", verdict="NOT_RUN") == 1
    assert value("conformance_burst_boot_seconds", quantile="0.95") == doc["burst"]["summary"]["p95"]
    assert value("conformance_burst_failure_ratio") == 0.05
    assert value("conformance_api_errors", service="compute") == 1
    assert value("conformance_run_duration_seconds") == doc["duration_s"]
    assert value("conformance_quota_instances_headroom") == 150
    unlimited = _samples(openmetrics_text(two_region_doc()))
    key = ("conformance_quota_instances_headroom", (("cloud", "sandbox-zuul"), ("region", "RegionTwo")))
    assert unlimited[key] == math.inf


def test_every_bundle_has_metrics_prom_in_its_manifest(tmp_path):
    doc = sample_doc()
    out = bundle.write_bundle(doc, tmp_path / doc["bundle"])
    entries, problems = bundle.read_manifest(out.path / bundle.MANIFEST)
    assert not problems and bundle.METRICS in entries
    assert (out.path / bundle.METRICS).read_text() == openmetrics_text(doc)
    (out.path / bundle.METRICS).write_text("conformance_verdict 0\n# EOF\n")
    assert bundle.check_files(out.path) == [f"changed: {bundle.METRICS}"]


@pytest.mark.parametrize("document", ["README.md", "docs/metrics.md"])
def test_the_docs_list_every_statsd_name(document):
    text = (REPO / document).read_text()
    names = {
        re.sub(r"^conformance\.cloud\.[^.]+\.region\.[^.]+\.", "", name)
        for name, _, _ in end_of_run(metrics.scope_metrics(sample_doc()))
    }
    names = {re.sub(r"^api\.[^.]+\.", "api.<service>.", n) for n in names}
    names = {re.sub(r"^requirement\..*", "requirement.<ID>", n) for n in names}
    names |= {f"burst.progress.{n}" for n in ("size", "active", "error", "build", "elapsed", "delete_left")}
    names |= {"keystone.cert_days_to_expiry"}
    missing = [name for name in sorted(names) if f"`{name}`" not in text]
    assert not missing, f"{document} does not list {missing}"
