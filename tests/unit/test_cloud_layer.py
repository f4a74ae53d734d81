"""The cloud layer without a cloud: clouds.yaml handling, secrets, call records, flavor choice, summaries."""

from __future__ import annotations

import pytest
import requests_mock
import yaml

from conformance import cloud as cl
from conformance.errors import BadInput
from conformance.redact import redact
from conformance.results import make_result, path_template, summary_lines

SECRET = "s3cret-password-for-tests"


@pytest.fixture
def clouds_yaml(tmp_path, monkeypatch):
    path = tmp_path / "clouds.yaml"
    data = {
        "clouds": {
            "one": {
                "auth": {
                    "auth_url": "https://keystone.test:5000/v3",
                    "username": "u",
                    "password": SECRET,
                    "project_name": "p",
                    "user_domain_name": "Default",
                    "project_domain_name": "Default",
                },
                "regions": ["RegionOne", "RegionTwo"],
            },
            "single": {"auth": {"auth_url": "https://k.test/v3"}, "region_name": "Solo"},
            "none": {"auth": {"auth_url": "https://k.test/v3"}},
        }
    }
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def test_regions_come_from_the_clouds_yaml_entry(clouds_yaml):
    assert cl.cloud_regions("one") == ["RegionOne", "RegionTwo"]
    assert cl.cloud_regions("single") == ["Solo"]
    assert cl.cloud_regions("none") == [""]


def test_unknown_cloud_lists_the_known_ones(clouds_yaml):
    with pytest.raises(BadInput, match=r"cloud 'nope' is not in .*clouds.yaml \(clouds there: none, one, single\)"):
        cl.cloud_regions("nope")


def test_missing_and_broken_clouds_yaml(tmp_path, monkeypatch):
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "absent.yaml"))
    with pytest.raises(BadInput, match="OS_CLIENT_CONFIG_FILE=.*absent.yaml does not exist"):
        cl.find_clouds_yaml()
    broken = tmp_path / "broken.yaml"
    broken.write_text("clouds: {a: [\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(broken))
    with pytest.raises(BadInput, match=r"is not valid YAML at line \d+"):
        cl.find_clouds_yaml()


def test_open_cloud_registers_the_password_and_records_calls(clouds_yaml):
    cloud = cl.open_cloud("one", "RegionTwo", role="ci")
    assert (cloud.name, cloud.region, cloud.role, cloud.scope) == ("one", "RegionTwo", "ci", "ci/RegionTwo")
    assert cloud.auth_url == "https://keystone.test:5000/v3"
    assert redact(f"password is {SECRET}") == "password is ***"
    cl.CALL_LOG.drain()
    url = "https://nova.test/v2.1/servers/6f1c2a9e-8a44-4a7e-9d0b-6f1c2a9e8a44?name=conformance-x"
    with requests_mock.Mocker() as mock:
        mock.get(url, status_code=404)
        cloud.conn.session.get(url, authenticated=False, raise_exc=False)
    [record] = cloud.calls
    assert (record.method, record.path, record.status, record.scope) == (
        "GET",
        "/v2.1/servers/{id}",
        404,
        "ci/RegionTwo",
    )
    assert record.seconds >= 0
    assert cl.CALL_LOG.drain() == [record]
    assert cl.CALL_LOG.drain() == []


@pytest.mark.parametrize(
    ("url", "template"),
    [
        ("https://h/v2.1/servers/6f1c2a9e-8a44-4a7e-9d0b-6f1c2a9e8a44/action", "/v2.1/servers/{id}/action"),
        ("https://h:8776/v3/0123456789abcdef0123456789abcdef/volumes/detail", "/v3/{id}/volumes/detail"),
        ("https://h/v2.0/ports?device_id=x&fields=id", "/v2.0/ports"),
        ("https://h/v2/images/42/file", "/v2/images/{id}/file"),
        ("https://h", "/"),
    ],
)
def test_path_template_hides_ids_and_queries(url, template):
    assert path_template(url) == template


def test_version_candidates_strip_project_and_version():
    assert cl._version_candidates("https://h:8776/v3/abc", "abc") == [
        "https://h:8776/v3/abc/",
        "https://h:8776/v3/",
        "https://h:8776/",
    ]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Failed to resolve 'k.invalid' ([Errno -2] Name or service not known)",
            "host name k.invalid does not resolve",
        ),
        ("[Errno 111] Connection refused", "connection refused by k.invalid:5000"),
        ("Read timed out. (read timeout=3)", "no answer from k.invalid:5000 (timed out)"),
    ],
)
def test_connection_errors_are_explained(message, expected):
    assert cl._explain_connection_error(Exception(message), "https://k.invalid:5000/v3") == expected


def test_make_result_and_summary_line():
    result = make_result("R8", "quota.instances", scope="zuul/RegionOne", measured=150, threshold=">= 100", ok=True)
    assert result["project"] == "zuul" and result["region"] == "RegionOne" and result["verdict"] == "PASS"
    failed = make_result(
        "R7",
        "keystone.https",
        scope="zuul/RegionOne",
        measured="http",
        threshold="https",
        ok=False,
        reason="not https",
    )
    lines = dict((v, line) for v, line in summary_lines([result, failed]))
    assert lines["PASS"].split() == ["R8", "quota.instances", "zuul/RegionOne", "150", ">=", "100", "PASS"]
    assert lines["FAIL"].endswith("FAIL  not https")
    with pytest.raises(KeyError):
        make_result("R99", "x", scope="zuul/RegionOne", ok=True)
    with pytest.raises(ValueError):
        make_result("R1", "x", scope="zuul/RegionOne")


def test_calls_are_named_by_the_catalog_service_even_when_the_sdk_authenticated(clouds_yaml):
    """openstacksdk authenticates on the first call, not through Cloud.access(): the call records must still
    name their service from the token's catalog (the report groups API statistics by it)."""
    cloud = cl.open_cloud("one", "RegionOne", role="zuul")
    token = {
        "token": {
            "methods": ["password"],
            "expires_at": "2099-01-01T00:00:00.000000Z",
            "issued_at": "2026-01-01T00:00:00Z",
            "user": {"id": "u1", "name": "u", "domain": {"id": "default", "name": "Default"}},
            "project": {"id": "p1", "name": "p", "domain": {"id": "default", "name": "Default"}},
            "roles": [{"id": "r1", "name": "member"}],
            "catalog": [
                {
                    "type": "compute",
                    "name": "nova",
                    "id": "c1",
                    "endpoints": [
                        {
                            "id": "e1",
                            "interface": "public",
                            "region": "RegionOne",
                            "region_id": "RegionOne",
                            "url": "https://nova.test/v2.1",
                        }
                    ],
                }
            ],
        }
    }
    with requests_mock.Mocker() as mock:
        mock.get(
            "https://keystone.test:5000/v3",
            json={
                "version": {
                    "id": "v3.14",
                    "status": "stable",
                    "links": [{"rel": "self", "href": "https://keystone.test:5000/v3/"}],
                }
            },
        )
        mock.post(
            "https://keystone.test:5000/v3/auth/tokens",
            json=token,
            status_code=201,
            headers={"X-Subject-Token": "tok-" + "x" * 30},
        )
        mock.get("https://nova.test/v2.1/servers", json={"servers": []})
        cloud.conn.session.get("https://nova.test/v2.1/servers", raise_exc=False)
    services = {record.path: record.service for record in cloud.calls}
    assert services["/v2.1/servers"] == "compute"
