"""R1: the catalog has the services each project needs, and each endpoint answers its version document."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.requirement("R1")


def _current(versions: list[str]) -> str:
    """The CURRENT version(s) of a version document, else its first entry: the summary stays short."""
    current = [v for v in versions if v.upper().endswith("CURRENT")]
    return ", ".join(current or versions[:1])


def test_services(cloud, profile, record):
    wanted = profile[f"projects.{cloud.role}.services"]
    for service in wanted:
        check = f"service.{service}"
        url = cloud.endpoint(service)
        if url is None:
            record(
                "R1",
                check,
                scope=cloud.scope,
                measured="missing",
                threshold="in catalog",
                ok=False,
                reason=f"no {service} endpoint in the {cloud.role} project's catalog for region "
                f"{cloud.region or '(default)'} (interface {cloud.interface})",
            )
            continue
        document = cloud.version_document(url)
        if document.found:
            record(
                "R1",
                check,
                scope=cloud.scope,
                measured=_current(document.versions),
                threshold="version document",
                ok=True,
                data={"endpoint": url, "version_url": document.url, "versions": document.versions},
            )
        else:
            record(
                "R1",
                check,
                scope=cloud.scope,
                measured="no version document",
                threshold="version document",
                ok=False,
                reason=f"{service} endpoint {url} did not answer a version document ({'; '.join(document.tried)})",
                data={"endpoint": url},
            )
