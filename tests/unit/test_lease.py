"""A running run is never swept: its lease (a security group renewed while it runs) keeps
`python -m conformance cleanup` off every resource of the run, whatever `--older-than` says; a lapsed lease
does not; `--run` names a run known to be dead. And a create carried out twice (a retried POST) is cleaned
up twice."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from fake_openstack import FakeCloud
from test_resources_cleanup import SweepCloud, swept  # noqa: F401 (fixture)

from conformance import cleanup
from conformance.resources import Lease, Tracker, Waiter, lease_until, new_run_prefix

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def test_a_lease_is_taken_at_the_first_create_renewed_and_released_last():
    cloud = FakeCloud()
    prefix = new_run_prefix()
    clock = {"now": NOW}
    lease = Lease(prefix, renew_s=0.01, now=lambda: clock["now"])
    tracker = Tracker(prefix, lease=lease)
    assert cloud.network.groups == {}, "no lease before the run creates anything"
    tracker.intent("keypair", f"{prefix}-key", cloud)
    tracker.intent("server", f"{prefix}-node", cloud)
    (group,) = cloud.network.groups.values()
    assert group.name == f"{prefix}-lease"
    assert lease_until(group.name, group.description) == NOW + dt.timedelta(seconds=600)
    clock["now"] = NOW + dt.timedelta(minutes=5)
    assert Waiter(5).poll(lambda: lease_until(group.name, group.description) > NOW + dt.timedelta(minutes=10), 0.01), (
        "the lease is renewed while the run goes on"
    )
    assert lease.release(timeout_s=5) == []
    assert cloud.network.groups == {}


def test_no_lease_where_there_is_no_network_service():
    cloud = FakeCloud()
    cloud.network.create_security_group = lambda **kw: (_ for _ in ()).throw(RuntimeError("no network"))
    lease = Lease(new_run_prefix())
    lease.hold(cloud)
    assert lease.id is None and "no network" in lease.error
    assert lease.release() == []


def _leased(cloud, prefix, until):
    cloud.network.groups["lease"] = SimpleNamespace(
        id="lease",
        name=f"{prefix}-lease",
        description=f"conformance run in progress: lease until {until.strftime('%Y%m%dT%H%M%SZ')} (renewed ...)",
    )


def test_the_sweeper_leaves_a_running_run_alone_whatever_its_age(swept, capsys):  # noqa: F811
    now = dt.datetime.now(dt.timezone.utc)
    running = new_run_prefix(now - dt.timedelta(hours=5))  # a long run, still going
    crashed = new_run_prefix(now - dt.timedelta(hours=5))  # its lease lapsed
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    ci = swept.setdefault("c", SweepCloud(scope="ci/RegionOne"))
    ci.project_id = "p2"
    _leased(zuul, running, now + dt.timedelta(minutes=8))
    zuul.compute.create_keypair(f"{running}-key")
    ci.compute.create_keypair(f"{running}-key")  # the lease in zuul protects the run in ci too
    zuul.network.groups["old"] = SimpleNamespace(
        id="old",
        name=f"{crashed}-lease",
        description=f"conformance run in progress: lease until {(now - dt.timedelta(minutes=1)):%Y%m%dT%H%M%SZ}",
    )
    zuul.compute.create_keypair(f"{crashed}-key")
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--older-than", "2h", "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert f"left alone: run {running} is in progress" in out and ": 3 resource(s)" in out
    assert set(zuul.compute.keypair_map) == {f"{running}-key"} and set(ci.compute.keypair_map) == {f"{running}-key"}
    assert set(zuul.network.groups) == {"lease"}, "the crashed run's lapsed lease is swept with it"


def test_run_sweeps_a_named_run_even_with_a_live_lease(swept, capsys):  # noqa: F811
    killed = new_run_prefix()
    zuul = swept.setdefault("z", SweepCloud(scope="zuul/RegionOne"))
    _leased(zuul, killed, dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=9))
    zuul.compute.create_keypair(f"{killed}-key")
    assert cleanup.main(["--zuul-cloud", "z", "--ci-cloud", "c", "--run", killed, "--timeout", "5"]) == 0
    assert "swept anyway because --run names it" in capsys.readouterr().out
    assert zuul.compute.keypair_map == {} and zuul.network.groups == {}


def test_a_create_carried_out_twice_is_deleted_twice():
    cloud = FakeCloud()
    prefix = new_run_prefix()
    tracker = Tracker(prefix)
    item = tracker.intent("security_group", f"{prefix}-sg", cloud)
    first = cloud.network.create_security_group(name=f"{prefix}-sg")
    cloud.network.create_security_group(name=f"{prefix}-sg")  # the retried POST's twin
    item.bind(first)
    assert tracker.cleanup(timeout_s=5) == []
    assert cloud.network.groups == {}


def test_lease_until_reads_only_leases():
    prefix = new_run_prefix()
    text = "conformance run in progress: lease until 20261129T120000Z (renewed every 60 s)"
    assert lease_until(f"{prefix}-lease", text) == NOW
    assert lease_until(f"{prefix}-lease-gw3", text) == NOW
    assert lease_until(f"{prefix}-r13-secgroup", text) is None
    assert lease_until(f"{prefix}-lease", "hello") is None


def test_a_cleanup_waits_out_an_api_that_does_not_answer():
    """A poll that times out (even after the cloud layer's retries) is looked at again at the next tick, until
    the cleanup's own deadline: a stalled endpoint delays the cleanup, it does not abandon the servers."""
    from keystoneauth1 import exceptions as ksa_exc

    cloud = FakeCloud()
    prefix = new_run_prefix()
    tracker = Tracker(prefix, poll_interval_s=0.01)
    item = tracker.intent("server", f"{prefix}-node", cloud)
    item.bind(cloud.compute.create_server(f"{prefix}-node"))
    listing, stalls = cloud.compute.servers, {"left": 2}

    def stalled_servers(**kw):
        if kw.get("details") and stalls["left"]:
            stalls["left"] -= 1
            raise ksa_exc.ConnectTimeout("Request to http://127.0.0.1:8774/v2.1/servers/detail timed out")
        return listing(**kw)

    cloud.compute.servers = stalled_servers
    assert tracker.cleanup(timeout_s=10) == []
    assert stalls["left"] == 0 and cloud.compute.servers_by_id == {}


def test_the_third_party_warning_filters_hold_outside_pytests_capture():
    """The lease's renew thread and its release at unconfigure call openstacksdk outside pytest's per-test
    warning capture: the suite's narrow filters are process-wide too, and only those."""
    import warnings

    from openstack.warnings import RemovedInSDK50Warning

    from conformance.plugin import THIRD_PARTY_WARNINGS, _ignore_process_wide

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for spec in THIRD_PARTY_WARNINGS:
            _ignore_process_wide(spec)
        for message in (
            "The _compute_attributes method is deprecated for removal",
            "The 'service_type' parameter is unnecesary and will be removed",
            "a deprecation the suite must see",
        ):
            warnings.warn(message, RemovedInSDK50Warning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["a deprecation the suite must see"]
