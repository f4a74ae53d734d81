"""Endpoints the run cannot use, against local sockets on 127.0.0.1: one that accepts and never answers is marked
once and then refused at once; Keystone's untrusted certificate is one line naming the fix; a stop request ends a
call that hangs within moments."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests
import yaml

from conformance import cloud as cl
from conformance import interrupt
from conformance.results import not_measured
from tests.unit.test_cloud_tls import make_pki, tls_server  # noqa: F401 - tls_server is a fixture

QUICK = cl.RetryPolicy(max_attempts=2, max_total_s=30.0, initial_wait_s=0.01, max_wait_s=0.01, jitter_s=0.0)


class Silent:
    """A listener that accepts connections and never says a word; counts them."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


@pytest.fixture
def clouds_yaml(tmp_path, monkeypatch):
    def write(auth_url: str, **extra) -> None:
        entry = {
            "auth": {
                "auth_url": auth_url,
                "username": "u",
                "password": "p",
                "project_name": "p",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            **extra,
        }
        path = tmp_path / "clouds.yaml"
        path.write_text(yaml.safe_dump({"clouds": {"one": entry, "two": entry}}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))

    return write


@pytest.fixture(autouse=True)
def no_stop_request():
    interrupt.reset()
    yield
    interrupt.reset()


def compute_of(silent: Silent) -> str:
    return f"http://127.0.0.1:{silent.port}/v2.1"


def quick_cloud(name: str, silent: Silent, outages: cl.Outages, timeout: float = 1.0) -> cl.Cloud:
    cloud = cl.open_cloud(name, "RegionOne", policy=QUICK, timeout=timeout, outages=outages)
    cloud.sleep = lambda _s: None
    cloud._endpoints = [(compute_of(silent), "compute")]  # as the token's catalog would name it
    return cloud


def test_an_endpoint_that_stops_answering_is_marked_once_then_refused_at_once(clouds_yaml, silent):
    clouds_yaml("http://127.0.0.1:1/v3")
    outages = cl.Outages()
    first, second = quick_cloud("one", silent, outages), quick_cloud("two", silent, outages)
    url = compute_of(silent) + "/flavors/detail"

    with pytest.raises(cl.EndpointDown) as down:
        first.request("GET", url, authenticated=False)
    text = f"compute endpoint {compute_of(silent)} stopped answering (no answer in 1 s, 2 tries)"
    assert down.value.outage.text == str(down.value) == text
    assert len(silent.accepted) == 2  # the call's own retry, then no more
    assert [r.gave_up for r in first.retries] == [False, True]

    for cloud in (first, second):  # every connection of the run, without waiting or sending anything
        started = time.monotonic()
        with pytest.raises(cl.EndpointDown, match="stopped answering"):
            cloud.request("GET", compute_of(silent) + "/limits", authenticated=False)
        assert time.monotonic() - started < 0.5
    assert len(silent.accepted) == 2
    assert outages.all() == [down.value.outage]

    # A check's results name it; a requirement the suite could not ask about is ERROR, not FAIL.
    result = not_measured("R4", "node_flavor", "zuul/RegionOne", text)
    assert (result["verdict"], result["reason"]) == ("ERROR", f"not measured: {text}")


def test_a_cleanup_still_tries_an_endpoint_that_stopped_answering(clouds_yaml, silent):
    clouds_yaml("http://127.0.0.1:1/v3")
    outages = cl.Outages([cl.Outage("compute", compute_of(silent), "compute endpoint ... stopped answering")])
    cloud = quick_cloud("one", silent, outages, timeout=0.2)
    with interrupt.shielded(), pytest.raises(cl.EndpointDown):
        cloud.request("DELETE", compute_of(silent) + "/servers/x", authenticated=False)
    assert len(silent.accepted) == 2  # tried (what the run created may be deleted after all)
    untrusted = cl.Outages([cl.untrusted_keystone(compute_of(silent), ["one"], None, "")])
    cloud = quick_cloud("one", silent, untrusted, timeout=0.2)
    with interrupt.shielded(), pytest.raises(cl.EndpointDown, match="not trusted"):
        cloud.request("DELETE", compute_of(silent) + "/servers/x", authenticated=False)
    assert len(silent.accepted) == 2  # never usable: nothing of the run went through it


def test_an_answer_is_no_outage(clouds_yaml, silent):
    clouds_yaml("http://127.0.0.1:1/v3")
    cloud = quick_cloud("one", silent, cl.Outages())
    response = requests.Response()
    response.status_code = 503
    response.request = requests.Request("GET", compute_of(silent) + "/flavors/detail").prepare()
    assert cloud._outage_of(requests.HTTPError("503", response=response), 6) is None
    assert cloud.outages.all() == []


def test_an_untrusted_keystone_is_one_line_naming_cacert(clouds_yaml, tmp_path, tls_server):  # noqa: F811
    ca, cert, key = make_pki(tmp_path)
    url = tls_server(cert, key)
    clouds_yaml(url)
    cloud = cl.open_cloud("one", "RegionOne", policy=cl.STARTUP_POLICY, timeout=5.0)
    with pytest.raises(cl.EndpointDown) as down:
        cl.check_access(cloud, where="--zuul-cloud one")
    root = url.removesuffix("v3")
    assert down.value.outage.text == (
        f"Keystone's certificate at {root} is not trusted (unable to get local issuer certificate): "
        "add `cacert: /path/to/ca.pem` to cloud one in clouds.yaml (or fix the CA)"
    )
    assert down.value.outage.from_start and "\n" not in str(down.value)
    # Said once for every clouds.yaml entry using that Keystone; a cacert that does not verify it is named.
    assert cl.untrusted_keystone(url, ["one", "two"], None, "x").text.endswith(
        "add `cacert: /path/to/ca.pem` to clouds one and two in clouds.yaml (or fix the CA)"
    )
    assert (
        "the CA file /etc/ca.pem that cloud one names as `cacert`"
        in cl.untrusted_keystone(url, ["one"], "/etc/ca.pem", "x").text
    )

    clouds_yaml(url, cacert=str(ca))  # the fix: authentication then gets past TLS (nothing answers it here)
    cloud = cl.open_cloud("one", "RegionOne", policy=cl.STARTUP_POLICY, timeout=1.0)
    with pytest.raises(Exception) as other:
        cl.check_access(cloud, where="--zuul-cloud one", reach_timeout=1.0)
    assert not isinstance(other.value, cl.EndpointDown), other.value


def test_a_stop_request_ends_a_call_that_hangs(clouds_yaml, silent):
    clouds_yaml("http://127.0.0.1:1/v3")
    cloud = quick_cloud("one", silent, cl.Outages(), timeout=60.0)
    timer = threading.Timer(0.5, interrupt.request, args=("SIGINT",))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(interrupt.Interrupted):
            cloud.request("GET", compute_of(silent) + "/flavors/detail", authenticated=False)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5  # not the call's 60 s timeout
    assert len(silent.accepted) == 1  # no retry once asked to stop
    assert cloud.retries == [] and cloud.outages.all() == []  # a stop is neither a fault nor an outage


def test_a_cleanup_call_after_the_stop_request_is_left_alone(clouds_yaml, silent):
    """The cleanup runs after the stop request: its calls take their own time (here: time out), never aborted."""
    clouds_yaml("http://127.0.0.1:1/v3")
    cloud = quick_cloud("one", silent, cl.Outages(), timeout=1.0)
    interrupt.request("SIGINT")
    started = time.monotonic()
    with interrupt.shielded(), pytest.raises(cl.EndpointDown, match=r"no answer in 1 s, 2 tries"):
        cloud.request("DELETE", compute_of(silent) + "/servers/x", authenticated=False)
    assert time.monotonic() - started >= 2 * 0.9 and len(silent.accepted) == 2


def test_a_create_under_way_is_not_cut(clouds_yaml, silent):
    """A POST already sent may be carried out anyway: it is left to its answer (or its timeout), which is what
    lets the run know what to delete; only then does the stop request end the call."""
    clouds_yaml("http://127.0.0.1:1/v3")
    cloud = quick_cloud("one", silent, cl.Outages(), timeout=3.0)
    timer = threading.Timer(0.2, interrupt.request, args=("SIGINT",))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(interrupt.Interrupted):
            cloud.request("POST", compute_of(silent) + "/servers", authenticated=False, json={})
    finally:
        timer.cancel()
    assert time.monotonic() - started >= 2.8 and len(silent.accepted) == 1
