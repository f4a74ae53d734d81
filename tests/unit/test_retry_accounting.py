"""Retries are counted, never hidden: the cloud layer records every retry (service, reason) and every call that
gave up, the report shows them per service, and a check that got no answer from the API quotes the API's error.
HTTP goes through a real keystoneauth session against requests-mock; sleeps are recorded, not slept."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest
import requests
import requests_mock
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session

from conformance import cloud as cloudlayer
from conformance.cloud import Cloud, RetryPolicy, api_error_text, failure_reason
from conformance.report.html import retries_html, summary_fragments
from conformance.report.model import build_document, overall_verdict, retry_stats
from conformance.results import SessionResults, retry_summary

URL = "http://127.0.0.1:8774/v2.1/servers/detail"


class Clock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def cloud():
    clock = Clock()

    class Conn:
        session = ksa_session.Session()

    made = Cloud(
        name="c",
        region="RegionOne",
        role="zuul",
        conn=Conn(),
        config=None,
        policy=RetryPolicy(max_attempts=4, max_total_s=100),
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    made._endpoints = [("http://127.0.0.1:8774/v2.1", "compute")]
    cloudlayer.RETRY_LOG.drain()
    return made


def get():
    return ksa_session.Session().get(URL)


def test_every_retry_is_recorded_with_its_service_and_reason(cloud):
    with requests_mock.Mocker() as mock:
        mock.get(
            URL,
            [
                {"status_code": 503},
                {"status_code": 429, "headers": {"Retry-After": "3"}},
                {"exc": requests.exceptions.ConnectionError("Connection reset by peer")},
                {"status_code": 200, "json": {}},
            ],
        )
        assert cloud.call(get).status_code == 200
    reasons = [(r.service, r.method, r.path, r.reason, r.attempt, r.gave_up) for r in cloud.retries]
    assert reasons == [
        ("compute", "GET", "/v2.1/servers/detail", "HTTP 503", 1, False),
        ("compute", "GET", "/v2.1/servers/detail", "HTTP 429", 2, False),
        # keystoneauth names the URL of a broken connection, not its method
        ("compute", "", "/v2.1/servers/detail", "connection reset", 3, False),
    ]
    assert cloud.retries[1].wait_s >= 3  # the server's Retry-After was honoured, and recorded
    assert cloudlayer.RETRY_LOG.drain() == cloud.retries  # and they travel to the report like call records


def test_a_call_that_gives_up_is_recorded_and_its_error_says_how_hard_the_suite_tried(cloud):
    with requests_mock.Mocker() as mock:
        mock.get(URL, status_code=503, json={"serviceUnavailable": {"message": "try later", "code": 503}})
        with pytest.raises(ksa_exc.HttpError) as caught:
            cloud.call(get)
    assert [r.gave_up for r in cloud.retries] == [False, False, False, True]
    text = api_error_text(caught.value)
    assert text.startswith("GET /v2.1/servers/detail: HTTP 503 (gave up after 4 attempts): "), text


def test_what_is_not_retried_is_not_recorded(cloud):
    with requests_mock.Mocker() as mock:
        mock.get(URL, status_code=500)
        with pytest.raises(ksa_exc.HttpError) as caught:
            cloud.call(get)
    assert cloud.retries == []
    assert api_error_text(caught.value).startswith("GET /v2.1/servers/detail: HTTP 500: ")
    assert api_error_text(ValueError("a bug in a check")) is None


@pytest.mark.parametrize(
    "exc, reason",
    [
        (ksa_exc.ConnectTimeout("Request to http://x/ timed out"), "timeout"),
        (
            ksa_exc.ConnectFailure("Unable to establish connection to http://x/: Connection refused"),
            "connection refused",
        ),
        (
            ksa_exc.ConnectFailure(
                "Unable to establish connection to http://x/: RemoteDisconnected('Remote end "
                "closed connection without response')"
            ),
            "connection reset",
        ),
        (ksa_exc.ConnectFailure("Unable to establish connection to http://x/: something else"), "connection error"),
    ],
)
def test_failure_reasons(exc, reason):
    assert failure_reason(exc) == reason


RETRIES = [
    {"service": "compute", "reason": "HTTP 503", "attempt": 1, "gave_up": False},
    {"service": "compute", "reason": "HTTP 503", "attempt": 2, "gave_up": False},
    {"service": "compute", "reason": "HTTP 429", "attempt": 1, "gave_up": False},
    {"service": "image", "reason": "connection reset", "attempt": 1, "gave_up": False},
    {"service": "image", "reason": "connection reset", "attempt": 2, "gave_up": True},
]


def test_the_report_counts_retries_per_service_and_reason():
    stats = retry_stats(RETRIES)
    assert stats["total"] == 4 and stats["calls"] == 3 and stats["gave_up"] == 1
    assert stats["per_service"] == [
        {"service": "compute", "reason": "HTTP 429", "retries": 1, "calls": 1, "gave_up": 0},
        {"service": "compute", "reason": "HTTP 503", "retries": 2, "calls": 1, "gave_up": 0},
        {"service": "image", "reason": "connection reset", "retries": 1, "calls": 1, "gave_up": 1},
    ]
    html = retries_html({"api_retries": stats})
    assert "4 retries of 3 calls; 1 calls failed after their retries" in html and "HTTP 429" in html
    assert "No call needed a retry" in retries_html({"api_retries": retry_stats([])})
    assert retry_summary(RETRIES) == (
        "4 (compute: 2 x HTTP 503, 1 x HTTP 429; image: 1 x connection reset); 1 call(s) gave up after their retries"
    )


def test_an_interrupted_run_says_so_and_is_incomplete_unless_something_failed():
    session = SessionResults(
        retries=RETRIES,
        interrupted={
            "reason": "deadline",
            "at": "2026-11-29T04:55:24Z",
            "detail": "60 s after the start at 04:54:24Z",
            "during": "checks",
            "after_s": 60.0,
        },
    )
    session.add_result(
        {
            "requirement": "R8",
            "check": "quota.instances",
            "project": "zuul",
            "region": "R",
            "measured": "150",
            "threshold": ">= 100",
            "verdict": "PASS",
            "reason": "",
            "data": {},
            "test": "t",
        }
    )
    doc = build_document(session, bundle_name="b", exit_status=2)
    assert doc["verdict"] == "INCOMPLETE" and doc["interrupted"]["reason"] == "deadline"
    schema = json.loads(resources.files("conformance").joinpath("schemas/results.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert 'id="conformance-interrupted"' in "".join(summary_fragments(doc))
    assert overall_verdict([{"id": "R8", "verdict": "FAIL"}], 2, {"reason": "deadline"}) == "FAIL"
