"""The fault proxy's rule engine (tests/faults/rules.py): matching, rates with a seed, bounds in count and time,
and the validation that makes a mistaken rule the test's error rather than a silent no-op."""

from __future__ import annotations

import json

import pytest

from tests.faults.proxy import services_from_catalog
from tests.faults.rules import RECENT_KEPT, FaultPlan, RulesError

T0 = 1_000_000.0


def plan(*rules, seed=7):
    return FaultPlan({"seed": seed, "written_at": T0, "rules": list(rules)})


def test_a_rule_matches_service_method_and_path():
    p = plan(
        {
            "name": "vol",
            "service": "block-storage",
            "method": "post",
            "path": "/volumes$",
            "action": "status",
            "status": 500,
        }
    )
    assert p.decide("block-storage", "POST", "/v3/abc/volumes", T0).rule.name == "vol"
    assert p.decide("block-storage", "GET", "/v3/abc/volumes", T0).rule is None
    assert p.decide("block-storage", "POST", "/v3/abc/volumes/1/action", T0).rule is None
    assert p.decide("compute", "POST", "/v3/abc/volumes", T0).rule is None
    assert p.stats()["rules"]["vol"] == {
        "action": "status",
        "service": "block-storage",
        "matched": 1,
        "injected": 1,
        "recent": ["POST /v3/abc/volumes"],
    }


def test_a_path_can_leave_version_discovery_alone():
    p = plan({"name": "api", "service": "compute", "path": r"^(?!/(v[0-9.]+/?)?$)", "action": "status"})
    assert [p.decide("compute", "GET", path, T0).rule is None for path in ("/", "/v2.1", "/v2.1/")] == [True] * 3
    assert p.decide("compute", "GET", "/v2.1/servers/detail", T0).rule.name == "api"


def test_a_rule_remembers_the_last_requests_it_fired_on():
    p = plan({"name": "r", "service": "compute", "action": "status"})
    for n in range(RECENT_KEPT + 5):
        p.decide("compute", "GET", f"/v2.1/servers/{n}", T0)
    recent = p.stats()["rules"]["r"]["recent"]
    assert len(recent) == RECENT_KEPT and recent[-1] == f"GET /v2.1/servers/{RECENT_KEPT + 4}"


def test_rates_are_reproducible_with_a_seed_and_near_the_rate():
    def fired(seed):
        p = plan({"name": "r", "service": "compute", "action": "status", "rate": 0.1}, seed=seed)
        return [p.decide("compute", "GET", "/", T0).rule is not None for _ in range(2000)]

    assert fired(14) == fired(14)
    assert fired(14) != fired(15)
    assert 140 <= sum(fired(14)) <= 260  # 10 % of 2000, loosely


def test_injections_are_bounded_in_count_and_time():
    p = plan(
        {"name": "c", "action": "status", "max_count": 3},
        {"name": "w", "action": "reset", "service": "image", "start_after_s": 10, "for_s": 5},
    )
    assert [p.decide("compute", "GET", "/", T0).rule is not None for _ in range(5)] == [True] * 3 + [False] * 2
    assert p.decide("image", "GET", "/", T0 + 9.9).rule is None
    assert p.decide("image", "GET", "/", T0 + 10).rule.name == "w"
    assert p.decide("image", "GET", "/", T0 + 15).rule is None


def test_latency_adds_up_and_does_not_stop_the_other_rules():
    p = plan(
        {"name": "a", "action": "latency", "delay_s": 2},
        {"name": "b", "action": "latency", "delay_s": 0.5},
        {"name": "s", "action": "status", "status": 503, "retry_after": 1},
    )
    decision = p.decide("compute", "GET", "/", T0)
    assert decision.delay_s == 2.5 and decision.rule.name == "s"


def test_a_stall_holds_at_most_until_its_window_ends():
    p = plan({"name": "s", "action": "stall", "for_s": 60}, {"name": "t", "action": "stall", "stall_s": 5})
    assert p.decide("compute", "GET", "/", T0 + 40).stall_s == pytest.approx(20)
    p = plan({"name": "t", "action": "stall", "stall_s": 5})
    assert p.decide("compute", "GET", "/", T0).stall_s == 5


def test_error_bodies_read_like_openstack_errors():
    p = plan({"name": "q", "action": "status", "status": 429})
    body = json.loads(p.decide("compute", "GET", "/", T0).rule.error_body())
    assert body == {"overLimit": {"code": 429, "message": "faultproxy: injected HTTP 429 (rule q)"}}


@pytest.mark.parametrize(
    "rule, words",
    [
        ({"action": "explode"}, "action must be one of"),
        ({"action": "status", "rate": 1.5}, "rate 1.5 is outside"),
        ({"action": "status", "status": 200}, "status 200 is outside"),
        ({"action": "status", "path": "("}, "not a regular expression"),
        ({"action": "status", "colour": "red"}, "unknown field(s) colour"),
        ({"action": "latency", "delay_s": "2"}, "delay_s must be a number"),
        ({"action": "stall", "for_s": 0}, "for_s 0 is outside"),
    ],
)
def test_mistaken_rules_are_refused_with_the_field_named(rule, words):
    with pytest.raises(RulesError, match=words.replace("(", r"\(").replace(")", r"\)")):
        plan(rule)


def test_services_come_from_the_catalogs_plain_http_loopback_endpoints():
    catalog = [
        {
            "type": "compute",
            "endpoints": [
                {"interface": "public", "url": "http://127.0.0.1:13774/v2.1"},
                {"interface": "internal", "url": "http://127.0.0.1:13775/v2.1"},
            ],
        },
        {"type": "identity", "endpoints": [{"interface": "public", "url": "https://127.0.0.1:10000/v3"}]},
        {"type": "image", "endpoints": [{"interface": "public", "url": "http://192.0.2.7:9292"}]},
    ]
    assert services_from_catalog(catalog) == {"127.0.0.1:13774": "compute"}
    assert FaultPlan({"services": {"127.0.0.1:13774": "compute"}}).service_of("127.0.0.1", 13774) == "compute"
