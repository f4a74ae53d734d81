"""R4: a flavor for test nodes is visible to the zuul project, and one for the mirror to the ci project."""

from __future__ import annotations

import pytest

from conformance.cloud import choose_flavor

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


def test_node_flavor(zuul, profile, record):
    spec = profile["flavor"]
    allow_volume = bool(spec.get("allow_boot_from_volume", False))
    choice = choose_flavor(zuul.flavors(), spec, allow_zero_disk=allow_volume)
    if choice.best is None:
        record(
            "R4",
            "flavor",
            scope=zuul.scope,
            measured=choice.closest.name if choice.closest else "none",
            threshold=_spec_text(spec),
            ok=False,
            reason=_no_flavor_reason("zuul", choice, spec),
        )
        return
    note = (
        f" (disk 0: nodes must boot from a {spec['min_disk_gb']} GB volume)"
        if choice.boot_from_volume
        else ""
    )
    record(
        "R4",
        "flavor",
        scope=zuul.scope,
        measured=choice.best.describe() + note,
        threshold=_spec_text(spec),
        ok=True,
        data={"flavor": _flavor_data(choice.best, choice.boot_from_volume)},
    )


def test_mirror_flavor(ci, profile, record):
    spec = profile["mirror.flavor"]
    allow_volume = bool(profile.get("mirror.allow_volume", False))
    choice = choose_flavor(ci.flavors(), spec, allow_zero_disk=allow_volume)
    if choice.best is None:
        record(
            "R4",
            "mirror_flavor",
            scope=ci.scope,
            measured=choice.closest.name if choice.closest else "none",
            threshold=_spec_text(spec),
            ok=False,
            reason=_no_flavor_reason("ci", choice, spec),
        )
        return
    record(
        "R4",
        "mirror_flavor",
        scope=ci.scope,
        measured=choice.best.describe(),
        threshold=_spec_text(spec),
        ok=True,
        data={"mirror_flavor": _flavor_data(choice.best, choice.boot_from_volume)},
    )
