"""Flavor policy: the smallest flavor meeting a spec, and the one choice R4 reports and every test node boots."""

from __future__ import annotations

from types import SimpleNamespace

from conformance import flavors
from conformance.flavors import FlavorChoice, FlavorInfo, choose_flavor

SPEC = {"min_vcpus": 8, "min_ram_mb": 8192, "min_disk_gb": 80}


def flavor(name, vcpus, ram, disk):
    return FlavorInfo(id=name, name=name, vcpus=vcpus, ram_mb=ram, disk_gb=disk)


def test_the_smallest_fitting_flavor_is_chosen():
    flavors = [flavor("huge", 32, 65536, 400), flavor("exact", 8, 8192, 80), flavor("small", 2, 2048, 20)]
    choice = choose_flavor(flavors, SPEC, allow_zero_disk=True)
    assert choice.best.name == "exact" and not choice.boot_from_volume


def test_disk_zero_flavor_needs_boot_from_volume_and_only_when_allowed():
    flavors = [flavor("bfv", 8, 8192, 0)]
    allowed = choose_flavor(flavors, SPEC, allow_zero_disk=True)
    assert allowed.best.name == "bfv" and allowed.boot_from_volume
    refused = choose_flavor(flavors, SPEC, allow_zero_disk=False)
    assert refused.best is None and refused.shortfalls == ("0 GB disk < 80",)


def test_local_disk_is_preferred_over_boot_from_volume():
    flavors = [flavor("bfv", 8, 8192, 0), flavor("local", 16, 16384, 160)]
    assert choose_flavor(flavors, SPEC, allow_zero_disk=True).best.name == "local"


def test_no_fitting_flavor_names_the_closest_and_its_shortfalls():
    flavors = [flavor("tiny", 1, 512, 1), flavor("almost", 4, 8192, 80)]
    choice = choose_flavor(flavors, SPEC, allow_zero_disk=True)
    assert choice.best is None
    assert choice.closest.name == "almost"
    assert choice.shortfalls == ("4 vCPU < 8",)
    assert choose_flavor([], SPEC, allow_zero_disk=True) == FlavorChoice(best=None)


class Profile(dict):
    """A profile's dotted keys (conformance.profiles.Profile.get/[] semantics, flat)."""

    def get(self, key, default=None):
        return super().get(key, default)


NODE = Profile(
    {
        "flavor.min_ram_mb": 8192,
        "flavor.min_vcpus": 8,
        "flavor.min_disk_gb": 80,
        "flavor.allow_boot_from_volume": True,
        "mirror.flavor.min_ram_mb": 4096,
        "mirror.flavor.min_vcpus": 2,
        "mirror.flavor.min_disk_gb": 20,
        "mirror.allow_volume": True,
    }
)


def cloud_with(*found):
    return SimpleNamespace(flavors=lambda: list(found))


def test_node_choice_is_r4s_and_says_how_its_nodes_boot():
    cloud = cloud_with(flavor("bfv", 8, 8192, 0), flavor("small", 2, 2048, 20))
    choice = flavors.node_choice(cloud, NODE)
    assert choice.best.name == "bfv" and choice.boot_from_volume
    assert flavors.boot_volume_gb(choice, NODE) == 80
    # A caller that cannot boot from a volume (the benchmarks) gets none rather than a disk-0 flavor.
    assert flavors.node_choice(cloud, NODE, allow_boot_from_volume=False).best is None
    local = flavors.node_choice(cloud_with(flavor("exact", 8, 8192, 80)), NODE)
    assert local.best.name == "exact" and flavors.boot_volume_gb(local, NODE) is None


def test_mirror_choice_follows_the_profile_or_the_caller():
    cloud = cloud_with(flavor("bfv", 2, 4096, 0), flavor("tiny", 1, 1024, 10))
    assert flavors.mirror_choice(cloud, NODE).best.name == "bfv"  # R4: the mirror's disk may be a volume
    assert flavors.mirror_choice(cloud, NODE, allow_zero_disk=False).best is None  # R3 boots from local disk
    big = cloud_with(flavor("local", 2, 4096, 40), flavor("big", 4, 8192, 600))
    assert flavors.mirror_choice(big, NODE, allow_zero_disk=False).best.name == "local"
    assert flavors.mirror_choice(big, NODE, min_disk_gb=500, allow_zero_disk=False).best.name == "big"
    assert flavors.mirror_spec(NODE, 500) == {"min_ram_mb": 4096, "min_vcpus": 2, "min_disk_gb": 500}
