"""Fixtures of the stress tests (`tox -e stress`): they run against a sandbox of their own (tox.ini)."""

from __future__ import annotations

import pytest

from tests.faults.proxy import FaultProxy, services_from_catalog


@pytest.fixture(scope="module")
def proxy(sandbox, tmp_path_factory):
    """mitmdump with the fault addon in front of the sandbox's http endpoints (Keystone, https, goes direct)."""
    conn = sandbox.connect("sandbox-zuul")
    try:
        catalog = conn.session.auth.get_access(conn.session).service_catalog.catalog
    finally:
        conn.close()
    services = services_from_catalog(catalog)
    assert {"compute", "image", "block-storage"} <= set(services.values()), services
    with FaultProxy(tmp_path_factory.mktemp("faultproxy"), services) as fault_proxy:
        yield fault_proxy
