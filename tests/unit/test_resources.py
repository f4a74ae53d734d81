"""Run prefix, tracking and ordered, verified cleanup against an in-memory cloud."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from fake_openstack import FakeCloud

from conformance import resources
from conformance.resources import (
    KIND_ORDER,
    PREFIX_RE,
    CleanupError,
    Tracker,
    Waiter,
    new_run_prefix,
    prefix_of,
    prefix_time,
    server_name_filter,
)


def test_run_prefix_shape_and_parsing():
    now = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    prefix = new_run_prefix(now)
    assert PREFIX_RE.fullmatch(prefix)
    assert prefix.startswith("conformance-20300506T070809Z-")
    assert prefix_of(prefix + "-burst-001") == prefix
    assert prefix_time(prefix + "-r2-image") == now
    for name in (
        None,
        "",
        "conformance",
        "my-server",
        "xconformance-20300506T070809Z-abcdef",
        "conformance-20300506T070809Z-abcdefg",
        "conformance-2030-abcdef",
    ):
        assert prefix_of(name) is None
    assert (
        server_name_filter("conformance-20300506T070809Z-abcdef-burst-")
        == r"^conformance\-20300506T070809Z\-abcdef\-burst\-"
    )


def test_intent_requires_prefix_and_known_kind():
    tracker = Tracker(new_run_prefix())
    with pytest.raises(ValueError):
        tracker.intent("server", "unprefixed", FakeCloud())
    with pytest.raises(ValueError):
        tracker.intent("network", tracker.name("x"), FakeCloud())
    with pytest.raises(ValueError):
        Tracker("not-a-prefix")


def test_cleanup_in_dependency_order():
    cloud = FakeCloud()
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    # registered in the "wrong" order on purpose
    image = tracker.intent("image", tracker.name("img"), cloud)
    cloud.image.imgs["img1"] = SimpleNamespace(id="img1", name=image.name)
    image.bind("img1")
    group = tracker.intent("security_group", tracker.name("sg"), cloud)
    cloud.network.groups["sg1"] = SimpleNamespace(id="sg1", name=group.name)
    group.bind("sg1")
    key = tracker.intent("keypair", tracker.name("key"), cloud)
    cloud.compute.create_keypair(key.name)
    fip = tracker.intent("floating_ip", tracker.name("fip"), cloud)
    cloud.network.fips["fip1"] = SimpleNamespace(id="fip1", description=fip.name)
    fip.bind("fip1")
    vol = tracker.intent("volume", tracker.name("vol"), cloud)
    cloud.block_storage.vols["vol1"] = SimpleNamespace(
        id="vol1", name=vol.name, status="in-use", attachments=[{"server_id": "x"}]
    )
    vol.bind("vol1")
    server = tracker.intent("server", tracker.name("srv"), cloud)
    server.bind(cloud.compute.create_server(server.name))
    tracker.intent("attachment", "attach", cloud, server_id=server.id, volume_id="vol1")

    assert tracker.cleanup(timeout_s=5) == []
    kinds = [kind for kind, _ in cloud.order]
    assert kinds == ["detach", "server", "volume", "floating_ip", "security_group", "image"]
    assert not cloud.compute.keypair_map and not cloud.image.imgs and not cloud.compute.servers_by_id
    assert not tracker.pending()
    assert KIND_ORDER.index("attachment") < KIND_ORDER.index("server") < KIND_ORDER.index("image")


def test_unbound_intent_found_by_name():
    """The create succeeded in the cloud but was interrupted before returning: cleanup finds it by name."""
    cloud = FakeCloud()
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    item = tracker.intent("server", tracker.name("lost"), cloud)
    cloud.compute.create_server(item.name)
    never = tracker.intent("server", tracker.name("never-created"), cloud)
    other = cloud.compute.create_server("someone-elses-server")
    assert tracker.cleanup(timeout_s=5) == []
    assert item.deleted and never.deleted
    assert list(cloud.compute.servers_by_id) == [other.id]


def test_failures_are_reported_not_swallowed():
    cloud = FakeCloud()
    cloud.fail_deletes = True
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    item = tracker.intent("server", tracker.name("stuck"), cloud)
    item.bind(cloud.compute.create_server(item.name))
    failures = tracker.cleanup(timeout_s=0.1)
    assert len(failures) == 1 and failures[0].kind == "server" and failures[0].id == item.id
    assert "delete refused" in failures[0].error
    error = CleanupError(failures)
    assert "conformance cleanup" in str(error) and item.name in str(error)
    assert tracker in resources.live_trackers()  # kept for the last-resort cleanup at exit
    cloud.fail_deletes = False
    assert tracker.cleanup(timeout_s=5) == []
    assert tracker not in resources.live_trackers()


def test_one_kind_failing_does_not_stop_the_others():
    cloud = FakeCloud()
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    vol = tracker.intent("volume", tracker.name("vol"), cloud)
    cloud.block_storage.vols["vol-x"] = SimpleNamespace(id="vol-x", name=vol.name, status="available", attachments=[])
    vol.bind("vol-x")

    def boom(*a, **k):
        raise RuntimeError("cinder down")

    cloud.block_storage.delete_volume = boom
    key = tracker.intent("keypair", tracker.name("key"), cloud)
    cloud.compute.create_keypair(key.name)
    failures = tracker.cleanup(timeout_s=1)
    assert [f.kind for f in failures] == ["volume"] and "cinder down" in failures[0].error
    assert key.deleted and not cloud.compute.keypair_map
    vol.deleted = True


def test_waiter_poll():
    waiter = Waiter(0.2)
    calls = []
    assert not waiter.poll(lambda: calls.append(1) and False, 0.05)
    assert 3 <= len(calls) <= 6 and waiter.expired()
    assert Waiter(5).poll(lambda: True, 1)


def test_delete_ending_in_error_is_retried_once_then_reported_early():
    cloud = FakeCloud()
    cloud.delete_goes_error = True
    tracker = Tracker(new_run_prefix(), poll_interval_s=0.01)
    item = tracker.intent("server", tracker.name("undeletable"), cloud)
    item.bind(cloud.compute.create_server(item.name))
    waiter = Waiter(30)
    failures = tracker.cleanup(timeout_s=30)
    assert waiter.elapsed() < 5  # not waited for until its time limit
    assert len(failures) == 1 and "delete_port is disallowed" in failures[0].error
    assert cloud.compute.servers_by_id[item.id].delete_attempts == 2
    cloud.delete_goes_error = False
    assert tracker.cleanup(timeout_s=5) == []
