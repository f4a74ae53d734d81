"""A test-only pytest plugin: the suite's real command line against a fake cloud, with one fault on purpose.

Loaded with `-p fake_cloud_plugin` (tests/unit on PYTHONPATH) by tests/unit/test_error_verdict.py. requests-mock
answers Keystone (a token whose catalog has one compute endpoint) and Nova's flavor listing, so the main part
authenticates and R4's `test_node_flavor` runs as against a real cloud. FAKE_CLOUD_FAULT picks the fault:

    suite-bug    the suite's flavor choice raises TypeError inside the check (a bug of the suite)
    fixture-bug  the suite's cloud fixture raises TypeError in the check's setup (a bug of the suite)
    api-503      Nova answers the flavor listing 503 every time (the cloud's API, after the retries)
    (unset)      no fault: R4 passes

The mocker starts at import, before the main part's pytest_cmdline_main authenticates.
"""

from __future__ import annotations

import os

import requests_mock

from conformance import cloud as cloudlayer
from conformance import flavors, plugin

KEYSTONE = "http://keystone.fake.test/v3"
NOVA = "http://nova.fake.test/v2.1"
FAULT = os.environ.get("FAKE_CLOUD_FAULT", "")
BUG = "unsupported operand type(s) for +: 'int' and 'NoneType'"

TOKEN = {
    "token": {
        "methods": ["password"],
        "expires_at": "2099-01-01T00:00:00.000000Z",
        "issued_at": "2030-01-01T00:00:00.000000Z",
        "user": {"id": "u1", "name": "tester", "domain": {"id": "default", "name": "Default"}},
        "project": {"id": "p1", "name": "zuul", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "member"}],
        "catalog": [
            {
                "type": "compute",
                "name": "nova",
                "id": "s1",
                "endpoints": [
                    {"id": "e1", "interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": NOVA}
                ],
            }
        ],
    }
}
FLAVOR = {
    "id": "f1",
    "name": "ci.large",
    "vcpus": 8,
    "ram": 8192,
    "disk": 80,
    "swap": "",
    "OS-FLV-EXT-DATA:ephemeral": 0,
    "os-flavor-access:is_public": True,
    "rxtx_factor": 1.0,
    "OS-FLV-DISABLED:disabled": False,
    "links": [],
}


def _keystone_version(request, context):
    return {
        "version": {
            "id": "v3.14",
            "status": "stable",
            "links": [{"rel": "self", "href": KEYSTONE + "/"}],
            "media-types": [],
        }
    }


def _nova(request, context):
    if request.path.endswith("/flavors/detail"):
        if FAULT == "api-503":
            context.status_code = 503
            return {"error": "injected 503 (fake cloud)"}
        return {"flavors": [FLAVOR]}
    # Nova's version document (openstacksdk's discovery)
    return {
        "version": {
            "id": "v2.1",
            "status": "CURRENT",
            "version": "2.79",
            "min_version": "2.1",
            "links": [{"rel": "self", "href": NOVA + "/"}],
        }
    }


MOCK = requests_mock.Mocker()
# The last matcher registered is tried first: every other GET is Nova's.
MOCK.register_uri("GET", requests_mock.ANY, json=_nova)
MOCK.get(KEYSTONE, json=_keystone_version)
MOCK.get(KEYSTONE + "/", json=_keystone_version)
MOCK.post(KEYSTONE + "/auth/tokens", status_code=201, json=TOKEN, headers={"X-Subject-Token": "fake-token-1"})
MOCK.start()

# The cloud layer's retry policy with waits of milliseconds: the 503 is retried the full number of times, fast.
cloudlayer.open_cloud.__kwdefaults__["policy"] = cloudlayer.RetryPolicy(
    initial_wait_s=0.001, max_wait_s=0.002, jitter_s=0.0
)

if FAULT == "suite-bug":

    def _broken_choice(*args, **kwargs):
        raise TypeError(BUG)

    flavors.choose_flavor = _broken_choice
elif FAULT == "fixture-bug":

    def _broken_get(self, role, region):
        raise TypeError(BUG)

    plugin.CloudCache.get = _broken_get


def pytest_unconfigure(config):
    MOCK.stop()
