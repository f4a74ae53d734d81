"""Flavor policy: which flavor meets a spec (R4), and the one choice every test node boots with.

    choice = node_choice(cloud, profile)     # R4's test-node flavor: the smallest meeting profile flavor.*
    choice.best, choice.boot_from_volume     # None when none does: then choice.closest and its shortfalls
    boot_volume_gb(choice, profile)          # the volume its nodes boot from (disk 0), else None

R4 reports the choice, R8 sizes the quota for it, and every check that boots a test node (R2, R5/R11, R6, R12,
R13) boots it; the mirror (R3) chooses from `mirror.flavor` the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SPEC_KEYS = ("min_ram_mb", "min_vcpus", "min_disk_gb")


@dataclass(frozen=True)
class FlavorInfo:
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int

    def describe(self) -> str:
        return f"{self.name} ({self.vcpus} vCPU, {self.ram_mb} MB RAM, {self.disk_gb} GB disk)"


@dataclass(frozen=True)
class FlavorChoice:
    """Matching flavors against a spec: `best` meets it; otherwise `closest` and its shortfalls."""

    best: FlavorInfo | None
    boot_from_volume: bool = False
    closest: FlavorInfo | None = None
    shortfalls: tuple[str, ...] = ()


def flavor_shortfalls(flavor: FlavorInfo, spec: dict[str, Any], allow_zero_disk: bool) -> list[str]:
    """Plain-words reasons `flavor` does not meet `spec` (min_vcpus, min_ram_mb, min_disk_gb)."""
    short = []
    if flavor.vcpus < spec["min_vcpus"]:
        short.append(f"{flavor.vcpus} vCPU < {spec['min_vcpus']}")
    if flavor.ram_mb < spec["min_ram_mb"]:
        short.append(f"{flavor.ram_mb} MB RAM < {spec['min_ram_mb']}")
    if flavor.disk_gb < spec["min_disk_gb"] and not (flavor.disk_gb == 0 and allow_zero_disk):
        short.append(f"{flavor.disk_gb} GB disk < {spec['min_disk_gb']}")
    return short


def choose_flavor(flavors: Iterable[FlavorInfo], spec: dict[str, Any], allow_zero_disk: bool) -> FlavorChoice:
    """The smallest flavor that meets `spec` (least waste), preferring local disk over boot-from-volume."""
    flavors = list(flavors)
    fitting = [f for f in flavors if not flavor_shortfalls(f, spec, allow_zero_disk)]
    if fitting:
        best = min(fitting, key=lambda f: (f.disk_gb == 0, f.vcpus, f.ram_mb, f.disk_gb, f.name))
        return FlavorChoice(best=best, boot_from_volume=best.disk_gb == 0 and spec["min_disk_gb"] > 0)
    if not flavors:
        return FlavorChoice(best=None)

    def nearness(f: FlavorInfo):
        ratios = [
            min(1.0, f.vcpus / spec["min_vcpus"]),
            min(1.0, f.ram_mb / spec["min_ram_mb"]),
            1.0
            if (f.disk_gb == 0 and allow_zero_disk) or not spec["min_disk_gb"]
            else min(1.0, f.disk_gb / spec["min_disk_gb"]),
        ]
        return (-len(flavor_shortfalls(f, spec, allow_zero_disk)), sum(ratios))

    closest = max(flavors, key=nearness)
    return FlavorChoice(best=None, closest=closest, shortfalls=tuple(flavor_shortfalls(closest, spec, allow_zero_disk)))


# ------------------------------------------------------------------------------------------ the suite's policy
def node_spec(profile) -> dict[str, Any]:
    """What one test node needs (profile flavor.min_ram_mb, min_vcpus, min_disk_gb)."""
    return {key: profile[f"flavor.{key}"] for key in SPEC_KEYS}


def node_allows_boot_from_volume(profile) -> bool:
    """A disk-0 flavor is a test-node flavor when its nodes may boot from a volume of min_disk_gb."""
    return bool(profile.get("flavor.allow_boot_from_volume", False))


def node_choice(cloud, profile, *, allow_boot_from_volume: bool | None = None) -> FlavorChoice:
    """R4's test-node flavor among those `cloud` sees (Cloud.flavors(), listed once per connection): what R4
    reports, R8 sizes the quota for, and every test node boots with. `allow_boot_from_volume=False` for a caller
    that cannot boot from a volume (the benchmarks)."""
    if allow_boot_from_volume is None:
        allow_boot_from_volume = node_allows_boot_from_volume(profile)
    return choose_flavor(cloud.flavors(), node_spec(profile), allow_boot_from_volume)


def boot_volume_gb(choice: FlavorChoice, profile) -> int | None:
    """The size of the volume a node of `choice` boots from: the profile's min_disk_gb for a disk-0 flavor,
    else None (the flavor's local disk)."""
    return int(profile["flavor.min_disk_gb"]) if choice.boot_from_volume else None


def mirror_spec(profile, min_disk_gb: int | None = None) -> dict[str, Any]:
    """What the mirror host needs (profile mirror.flavor.*), with at least `min_disk_gb` of local disk if given."""
    spec = {key: profile[f"mirror.flavor.{key}"] for key in SPEC_KEYS}
    if min_disk_gb is not None:
        spec["min_disk_gb"] = max(spec["min_disk_gb"], min_disk_gb)
    return spec


def mirror_choice(
    cloud, profile, *, min_disk_gb: int | None = None, allow_zero_disk: bool | None = None
) -> FlavorChoice:
    """The mirror host's flavor. R4 allows a disk-0 flavor when the mirror's disk may be a volume
    (mirror.allow_volume); R3 boots the mirror from its local disk, so it passes allow_zero_disk=False."""
    if allow_zero_disk is None:
        allow_zero_disk = bool(profile.get("mirror.allow_volume", False))
    return choose_flavor(cloud.flavors(), mirror_spec(profile, min_disk_gb), allow_zero_disk)
