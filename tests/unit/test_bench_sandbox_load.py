"""bench/sandbox_load.py's simultaneous creates (--simultaneous-creates), against a stand-in cloud: every client
has its token before the start, all POSTs leave together, an answer's time runs from the common start, a create
with no answer within the read timeout counts as unanswered, and what was created is tracked for deletion."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the bench imports benchlib beside it
    spec = importlib.util.spec_from_file_location("bench_sandbox_load", BENCH / "sandbox_load.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("benchlib", None)


class StandInCloud:
    """The API tier: answers each POST /servers after `delay(index)` seconds (None: never, until the timeout)."""

    def __init__(self, delay):
        self.delay = delay
        self.lock = threading.Lock()
        self.sent: list[float] = []
        self.authorized: list[float] = []
        self.servers: dict[str, str] = {}

    def connect(self, cloud, connect_retries):
        assert connect_retries == 0
        stand_in = self

        class Compute:
            def get_endpoint(self):
                return "http://127.0.0.1:1/v2.1"

            def post(self, path, json, timeout, raise_exc):
                assert path == "/servers" and raise_exc is False
                with stand_in.lock:
                    index = len(stand_in.sent)
                    stand_in.sent.append(time.monotonic())
                delay = stand_in.delay(index)
                if delay is None or delay > timeout:
                    time.sleep(timeout)
                    raise requests.exceptions.ReadTimeout(f"Read timed out. (read timeout={timeout})")
                time.sleep(delay)
                server_id = f"id-{index}"
                with stand_in.lock:
                    stand_in.servers[server_id] = json["server"]["name"]
                response = requests.Response()
                response.status_code = 202
                response._content = b'{"server": {"id": "%s"}}' % server_id.encode()
                return response

        def authorize():
            stand_in.authorized.append(time.monotonic())

        return SimpleNamespace(authorize=authorize, compute=Compute(), close=lambda: None)

    def owner(self):
        stand_in = self

        def servers(name):
            return [SimpleNamespace(id=i, name=n, status="ACTIVE") for i, n in stand_in.servers.items()]

        return SimpleNamespace(conn=SimpleNamespace(compute=SimpleNamespace(servers=servers)))


class Tracker:
    prefix = "conformance-20300101T000000Z-abcdef"

    def __init__(self):
        self.items = []

    def name(self, suffix):
        return f"{self.prefix}-{suffix}"

    def intent(self, kind, name, cloud):
        item = SimpleNamespace(kind=kind, name=name, id=None)
        item.bind = lambda server_id: setattr(item, "id", server_id)
        self.items.append(item)
        return item


BOOT = {"image_id": "img", "flavor_id": "flv", "network_id": "net"}


def test_all_creates_leave_together_after_every_token_and_are_timed_from_the_start(bench, monkeypatch):
    cloud = StandInCloud(delay=lambda index: 0.05 * (index % 5))
    monkeypatch.setattr(bench.openstack, "connect", cloud.connect)
    tracker = Tracker()
    outcomes, statuses = bench.run_simultaneous_creates("c", cloud.owner(), tracker, 30, timeout_s=5, wait_s=5, **BOOT)
    assert len(cloud.authorized) == 30 and max(cloud.authorized) < min(cloud.sent)
    assert max(cloud.sent) - min(cloud.sent) < 1.0, "the creates did not leave together"
    assert [o.status for o in outcomes] == [202] * 30
    assert statuses == {"ACTIVE": 30}
    # Every server is tracked (bound to its id) for the cleanup at the end.
    assert sorted(item.id for item in tracker.items) == sorted(f"id-{i}" for i in range(30))
    summary = bench.summarize_creates(outcomes)
    assert summary["sent"] == summary["answered"] == 30 and summary["over_limit"] == 0
    assert 0 <= summary["p50"] <= summary["max"] < 1.5


def test_a_create_with_no_answer_within_the_read_timeout_counts_as_unanswered(bench, monkeypatch):
    cloud = StandInCloud(delay=lambda index: None if index < 2 else 0.0)
    monkeypatch.setattr(bench.openstack, "connect", cloud.connect)
    tracker = Tracker()
    outcomes, _ = bench.run_simultaneous_creates("c", cloud.owner(), tracker, 6, timeout_s=0.5, wait_s=1, **BOOT)
    unanswered = [o for o in outcomes if o.status is None]
    assert len(unanswered) == 2 and all("ReadTimeout" in o.error for o in unanswered)
    assert all(o.seconds >= 0.5 for o in unanswered)
    assert sum(item.id is None for item in tracker.items) == 2, "unanswered creates stay tracked by name"
    summary = bench.summarize_creates(outcomes)
    assert (summary["answered"], summary["over_limit"]) == (4, 2)
    assert summary["errors"] == {"ReadTimeout": 2}


def test_a_slow_answer_counts_over_the_limit(bench):
    outcomes = [bench.CreateOutcome(seconds=s, status=202) for s in (1.0, 30.0, 61.0)]
    summary = bench.summarize_creates(outcomes, limit_s=60.0)
    assert (summary["answered"], summary["over_limit"], summary["max"], summary["p50"]) == (3, 1, 61.0, 30.0)
