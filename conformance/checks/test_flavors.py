"""R4: a flavor for test nodes is visible to the zuul project, and one for the mirror to the ci project."""

from __future__ import annotations

import pytest

from conformance.flavors import mirror_choice, mirror_spec, node_choice, node_spec

pytestmark = pytest.mark.requirement("R4")


def _spec_text(spec) -> str:
    return f">= {spec['min_vcpus']} vCPU, {spec['min_ram_mb']} MB RAM, {spec['min_disk_gb']} GB disk"


def _flavor_data(flavor, boot_from_volume: bool) -> dict:
    return {
        "id": flavor.id,
        "name": flavor.name,
        "vcpus": flavor.vcpus,
        "ram": flavor.ram_mb,
        "disk": flavor.disk_gb,
        "boot_from_volume": boot_from_volume,
    }


def _no_flavor_reason(project: str, choice, spec) -> str:
    if choice.closest is None:
        return f"the {project} project sees no flavors at all"
    return (
        f"no flavor visible to the {project} project has {_spec_text(spec)}; closest is "
        f"{choice.closest.describe()}: {', '.join(choice.shortfalls)}"
    )


def _check_flavor(cloud, choice, spec, check: str, record) -> None:
    """Record the best flavor visible to `cloud` meeting `spec` (PASS), or the closest one and why (FAIL)."""
    project = cloud.role
    if choice.best is None:
        record(
            "R4",
            check,
            scope=cloud.scope,
            measured=choice.closest.name if choice.closest else "none",
            threshold=_spec_text(spec),
            ok=False,
            reason=_no_flavor_reason(project, choice, spec),
        )
        return
    note = f" (disk 0: nodes must boot from a {spec['min_disk_gb']} GB volume)" if choice.boot_from_volume else ""
    record(
        "R4",
        check,
        scope=cloud.scope,
        measured=choice.best.describe() + note,
        threshold=_spec_text(spec),
        ok=True,
        data={check: _flavor_data(choice.best, choice.boot_from_volume)},
    )


def test_node_flavor(zuul, profile, record):
    # The choice every test node of the run boots with (conformance.nodes) and R8 sizes the quota for.
    _check_flavor(zuul, node_choice(zuul, profile), node_spec(profile), "flavor", record)


def test_mirror_flavor(ci, profile, record):
    _check_flavor(ci, mirror_choice(ci, profile), mirror_spec(profile), "mirror_flavor", record)
