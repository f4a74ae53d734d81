"""The cloud layer's retry policy, through a real keystoneauth session against requests-mock.

Sleeps are recorded instead of slept, and a fake clock advances by each sleep, so the bounds are exact.
"""

from __future__ import annotations

import email.utils
import time

import pytest
import requests
import requests_mock
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session

from conformance.cloud import Cloud, RetryPolicy, is_retryable, retry_after_seconds, retrying

URL = "https://compute.test/v2.1/servers"
POLICY = RetryPolicy(max_attempts=6, max_total_s=30.0, initial_wait_s=0.5, max_wait_s=10.0, jitter_s=0.5)


class FakeTime:
    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time():
    return FakeTime()


@pytest.fixture
def mock():
    with requests_mock.Mocker() as m:
        yield m


def get(session=None):
    """One GET through keystoneauth, raising its HttpError for >= 400 like openstacksdk calls do."""
    return (session or ksa_session.Session()).get(URL)


def run(fake_time, policy=POLICY, fn=get):
    return retrying(policy, sleep=fake_time.sleep, clock=fake_time.clock)(fn)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried_until_success(mock, fake_time, status):
    mock.get(URL, [{"status_code": status}, {"status_code": status}, {"status_code": 200, "json": {}}])
    assert run(fake_time).status_code == 200
    assert mock.call_count == 3
    assert len(fake_time.sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 500, 501])
def test_other_statuses_fail_at_once(mock, fake_time, status):
    mock.get(URL, [{"status_code": status}, {"status_code": 200}])
    with pytest.raises(ksa_exc.HttpError) as caught:
        run(fake_time)
    assert caught.value.http_status == status
    assert mock.call_count == 1
    assert fake_time.sleeps == []


def test_connection_errors_are_retried(mock, fake_time):
    mock.get(
        URL,
        [
            {"exc": requests.exceptions.ConnectionError("refused")},
            {"exc": requests.exceptions.ConnectTimeout("slow")},
            {"status_code": 200},
        ],
    )
    assert run(fake_time).status_code == 200
    assert mock.call_count == 3


def test_tls_errors_are_not_retried(mock, fake_time):
    mock.get(URL, [{"exc": requests.exceptions.SSLError("bad certificate")}, {"status_code": 200}])
    with pytest.raises(ksa_exc.SSLError):
        run(fake_time)
    assert mock.call_count == 1


def test_classification_of_exceptions():
    assert is_retryable(ksa_exc.ConnectFailure("x"))
    assert is_retryable(ksa_exc.ConnectTimeout("x"))
    assert not is_retryable(ksa_exc.SSLError("x"))
    assert not is_retryable(ValueError("x"))
    assert not is_retryable(ksa_exc.NotFound())
    assert is_retryable(ksa_exc.ServiceUnavailable())


def test_backoff_grows_exponentially_within_the_cap(mock, fake_time):
    mock.get(URL, [{"status_code": 503}] * 5 + [{"status_code": 200}])
    policy = RetryPolicy(max_attempts=10, max_total_s=1000, initial_wait_s=1.0, max_wait_s=6.0, jitter_s=0.5)
    run(fake_time, policy)
    sleeps = fake_time.sleeps
    assert len(sleeps) == 5
    # 1, 2, 4, then capped at 6; jitter adds at most jitter_s.
    for sleep, base in zip(sleeps, [1, 2, 4, 6, 6], strict=True):
        assert base <= sleep <= base + 0.5 or (base == 6 and sleep == 6)


def test_retry_after_seconds_is_honoured(mock, fake_time):
    mock.get(URL, [{"status_code": 429, "headers": {"Retry-After": "7"}}, {"status_code": 200}])
    assert run(fake_time).status_code == 200
    assert fake_time.sleeps[0] >= 7


def test_retry_after_http_date_is_honoured(mock, fake_time):
    when = email.utils.formatdate(time.time() + 12, usegmt=True)
    mock.get(URL, [{"status_code": 503, "headers": {"Retry-After": when}}, {"status_code": 200}])
    run(fake_time)
    assert 10 <= fake_time.sleeps[0] <= 13


def test_retry_after_parsing():
    class Response:
        headers = {"Retry-After": "garbage"}

    class Exc(Exception):
        response = Response()

    assert retry_after_seconds(Exc()) is None
    assert retry_after_seconds(ValueError()) is None


def test_total_time_is_bounded(mock, fake_time):
    mock.get(URL, status_code=503)
    policy = RetryPolicy(max_attempts=100, max_total_s=20.0, initial_wait_s=1.0, max_wait_s=8.0, jitter_s=1.0)
    with pytest.raises(ksa_exc.HttpError):
        run(fake_time, policy)
    assert sum(fake_time.sleeps) <= 20.0
    assert len(fake_time.sleeps) >= 3, "it did retry before giving up"


def test_attempts_are_bounded(mock, fake_time):
    mock.get(URL, status_code=502)
    with pytest.raises(ksa_exc.HttpError):
        run(fake_time, RetryPolicy(max_attempts=4, max_total_s=10_000))
    assert mock.call_count == 4


def test_retry_after_beyond_the_budget_gives_up_without_waiting(mock, fake_time):
    mock.get(URL, status_code=503, headers={"Retry-After": "120"})
    with pytest.raises(ksa_exc.HttpError):
        run(fake_time, RetryPolicy(max_total_s=30))
    assert mock.call_count == 1
    assert fake_time.sleeps == []


def test_cloud_request_retries_and_returns_the_last_response(mock, fake_time):
    class Conn:
        session = ksa_session.Session()

    cloud = Cloud(
        name="c",
        region="R",
        role="zuul",
        conn=Conn(),
        config=None,
        policy=RetryPolicy(max_attempts=3, max_total_s=100),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
    )
    mock.get(URL, status_code=503)
    assert cloud.request("GET", URL).status_code == 503
    assert mock.call_count == 3
    mock.get(URL, [{"status_code": 504}, {"status_code": 404}])
    assert cloud.request("GET", URL).status_code == 404, "404 is an answer, not something to retry"
