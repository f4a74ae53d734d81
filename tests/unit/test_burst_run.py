"""run_burst against an in-memory cloud: bulk waiting, timings, failures, quota, deletes and call counts."""

from __future__ import annotations

import time

import pytest
from fake_openstack import FakeCloud

from conformance import interrupt
from conformance.burst import (
    NOT_REQUESTED,
    BurstSettings,
    endpoint_key,
    format_progress,
    is_quota_error,
    parse_cloud_time,
    percentile,
    run_burst,
)
from conformance.resources import Tracker, new_run_prefix


def settings(n, **kw):
    return BurstSettings(
        size=n,
        concurrency=kw.pop("concurrency", 5),
        poll_interval_s=kw.pop("interval", 0.01),
        timeout_s=kw.pop("timeout", 5),
        **kw,
    )


def burst(cloud, n, **kw):
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    lines = []
    result = run_burst(
        cloud,
        tracker,
        image_id="img",
        flavor_id="fl",
        network_id="net",
        settings=settings(n, **kw),
        progress=lines.append,
    )
    return result, tracker, lines


def test_all_active_bulk_polls_only():
    cloud = FakeCloud()
    result, tracker, lines = burst(cloud, 30)
    summary = result.summary()
    assert summary["n"] == 30 and summary["active"] == 30 and summary["success_rate"] == 1.0
    assert summary["p50"] is not None
    assert summary["max"] >= summary["p95"] >= summary["p50"]
    assert all(s.created_to_launched_s == 7.5 for s in result.servers)
    # never one GET per server: creates + deletes + a few bulk lists
    assert cloud.counts["GET /servers/{id}"] == 0
    assert cloud.counts["POST /servers"] == 30 and cloud.counts["DELETE /servers/{id}"] == 30
    assert summary["api_calls"] == sum(cloud.counts.values())
    assert summary["api_calls_per_server"] < 2.5
    assert not cloud.compute.servers_by_id and not tracker.pending()
    assert summary["delete_s"] is not None and summary["left_after_delete"] == 0
    assert lines and lines[-1].startswith("burst 30/30 ACTIVE, 0 ERROR, 0 BUILD")
    assert set(result.servers[0].as_dict()) == {
        "name",
        "status",
        "request_to_active_s",
        "created_to_launched_s",
        "fault",
    }


def test_names_carry_the_run_prefix_and_metadata():
    cloud = FakeCloud(delete_after_polls=10**6)
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    run_burst(
        cloud,
        tracker,
        image_id="i",
        flavor_id="f",
        network_id="n",
        settings=settings(3, timeout=0.5, delete_timeout_s=0.05),
    )
    servers = list(cloud.compute.servers_by_id.values())
    assert len(servers) == 3
    assert all(s.name.startswith(tracker.name("burst-", cloud)) for s in servers)
    assert all(s.metadata["conformance_burst"] == tracker.prefix for s in servers)
    # not gone in time: still tracked, so the teardown cleanup retries
    assert len(tracker.pending()) == 3
    cloud.delete_after_polls = 1
    assert tracker.cleanup(timeout_s=5) == [] and not cloud.compute.servers_by_id


def test_error_faults_from_listing_and_from_a_get_when_missing():
    cloud = FakeCloud(error_names=r"-00[02]$", fault_in_listing=False)
    result, _, _ = burst(cloud, 5)
    errors = [s for s in result.servers if s.status == "ERROR"]
    assert len(errors) == 2 and all("No valid host" in s.fault for s in errors)
    assert cloud.counts["GET /servers/{id}"] == 2  # one GET per ERROR server, to explain it
    assert result.summary()["success_rate"] == 0.6


def test_quota_errors_are_recognised():
    cloud = FakeCloud(quota_instances=4)
    result, tracker, _ = burst(cloud, 6, concurrency=1)
    summary = result.summary()
    assert summary["active"] == 4 and summary["quota_errors"] == 2
    assert all(s.fault.startswith("quota exceeded:") for s in result.quota_errors)
    assert not cloud.compute.servers_by_id


def test_compute_stopped_times_out_and_still_deletes():
    cloud = FakeCloud()
    cloud.compute_paused = True
    result, tracker, _ = burst(cloud, 4, timeout=0.3)
    assert {s.status for s in result.servers} == {"TIMEOUT"}
    assert all("not ACTIVE after" in s.fault for s in result.servers)
    assert result.summary()["success_rate"] == 0.0 and not cloud.compute.servers_by_id
    assert not tracker.pending()


def test_per_server_baseline_costs_more_calls():
    bulk_cloud, base_cloud = FakeCloud(active_after_polls=3), FakeCloud(active_after_polls=3)
    bulk, _, _ = burst(bulk_cloud, 20)
    run_burst(
        base_cloud,
        Tracker(new_run_prefix()),
        image_id="i",
        flavor_id="f",
        network_id="n",
        settings=BurstSettings(size=20, concurrency=5, poll_interval_s=0.01, timeout_s=30, per_server_baseline=True),
    )
    assert base_cloud.counts["GET /servers/{id}"] >= 20
    assert sum(base_cloud.counts.values()) > sum(bulk_cloud.counts.values())


def test_counts_own_calls_without_cloud_records():
    cloud = FakeCloud(with_records=False)
    result, _, _ = burst(cloud, 3)
    assert result.api_calls == sum(cloud.counts.values())


def test_interrupt_leaves_servers_to_the_tracker():
    cloud = FakeCloud()
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)

    def interrupt(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_burst(cloud, tracker, image_id="i", flavor_id="f", network_id="n", settings=settings(8), progress=interrupt)
    assert cloud.compute.servers_by_id
    assert tracker.cleanup(timeout_s=5) == []
    assert not cloud.compute.servers_by_id


def test_helpers():
    assert percentile([], 95) is None
    assert percentile([1.0], 95) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile(list(map(float, range(1, 101))), 95) == pytest.approx(95.05)
    assert parse_cloud_time("2030-01-01T00:00:00Z").tzinfo is not None
    assert parse_cloud_time("2030-01-01T00:00:07.500000").second == 7
    assert parse_cloud_time(None) is None and parse_cloud_time("garbage") is None
    assert (
        endpoint_key("get", "https://h:8774/v2.1/servers/0b4a6b4e-9a5e-4a0b-8f7e-2d6c2f7d6d1a?x=1")
        == "GET /v2.1/servers/{id}"
    )
    assert endpoint_key("GET", "/v2.1/servers/detail?name=%5Econformance") == "GET /v2.1/servers/detail"

    class Exc(Exception):
        status_code = 403

    assert is_quota_error(Exc("Quota exceeded for cores"))
    assert not is_quota_error(Exc("Policy doesn't allow"))


def test_progress_line_format():
    from conformance.burst import ServerTiming

    servers = [ServerTiming(i, f"s{i}") for i in range(100)]
    for s in servers[:37]:
        s.status = "ACTIVE"
    for s in servers[37:39]:
        s.status = "ERROR"
    assert format_progress(servers, 42) == "burst 37/100 ACTIVE, 2 ERROR, 61 BUILD, 00:42"


@pytest.fixture
def stop_request():
    """Ask the run to stop (conformance.interrupt), as the SIGINT handler does; forgotten after the test."""
    yield lambda: interrupt.request("SIGINT")
    interrupt.reset()


def test_stopped_while_booting_returns_what_was_measured(stop_request):
    cloud = FakeCloud(active_after_polls=10**6)
    create = cloud.compute.create_server

    def slow_create(*args, **kwargs):  # creates still queued when the stop comes
        time.sleep(0.05)
        return create(*args, **kwargs)

    cloud.compute.create_server = slow_create
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    result = run_burst(
        cloud,
        tracker,
        image_id="i",
        flavor_id="f",
        network_id="n",
        settings=settings(20, concurrency=2),
        progress=lambda line: stop_request(),
    )
    assert result.interrupted.reason == "SIGINT" and result.phase == "boot"
    summary = result.summary()
    assert summary["interrupted"]["phase"] == "boot" and summary["interrupted"]["reason"] == "SIGINT"
    assert summary["build"] >= 1 and summary["not_requested"] >= 1 and summary["active"] == 0
    assert summary["active"] + summary["error"] + summary["build"] + summary["not_requested"] == 20
    assert cloud.counts["POST /servers"] == 20 - summary["not_requested"]  # no create after the stop
    assert all(s.requested_at is None for s in result.servers if s.status == NOT_REQUESTED)
    assert result.delete_s is None and cloud.counts["DELETE /servers/{id}"] == 0
    # the tracker's cleanup (shielded from the stop request) deletes what was created
    assert tracker.cleanup(timeout_s=5) == [] and not cloud.compute.servers_by_id


def test_stopped_while_deleting_keeps_the_boot_times(stop_request):
    cloud = FakeCloud(active_after_polls=1, delete_after_polls=10**6)
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)

    def progress(line):
        if "| delete:" in line:
            stop_request()

    result = run_burst(
        cloud, tracker, image_id="i", flavor_id="f", network_id="n", settings=settings(5), progress=progress
    )
    assert result.interrupted and result.phase == "delete" and result.delete_s is not None
    summary = result.summary()
    assert summary["active"] == 5 and summary["p95"] is not None and summary["build"] == 0
    cloud.delete_after_polls = 1
    assert tracker.cleanup(timeout_s=5) == [] and not cloud.compute.servers_by_id
