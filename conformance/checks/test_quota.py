"""R8: the non-admin users' quotas leave room for the profile's instances of the chosen test-node flavor.

Needs are what is *still free* (limit minus what is already used); -1 means unlimited.
"""

from __future__ import annotations

import pytest

from conformance.flavors import node_choice
from conformance.nodes import external_networks, public_ip_mode

pytestmark = pytest.mark.requirement("R8")


def _node_size(zuul, profile) -> tuple[int, int, str]:
    """vCPUs, RAM MB and name of one node: the R4 flavor, or the profile's minimum when R4 found none."""
    spec = profile["flavor"]
    choice = node_choice(zuul, profile)  # R4's
    if choice.best is not None:
        return choice.best.vcpus, choice.best.ram_mb, choice.best.name
    return spec["min_vcpus"], spec["min_ram_mb"], "the profile's minimum flavor"


def _free(limit, used) -> int | None:
    """What is left, or None for unlimited (-1)."""
    if int(limit) < 0:
        return None
    return int(limit) - int(used or 0)


def _record_quota(record, scope, check, *, limit, used, needed, quota_name, unit, why, data=None):
    if limit is None:  # not "unlimited": the cloud did not tell, so nothing is proven
        record(
            "R8",
            check,
            scope=scope,
            measured="unknown",
            threshold=f">= {needed}",
            ok=False,
            reason=f"the cloud did not report {quota_name} to the project's user",
        )
        return
    free = _free(limit, used)
    ok = free is None or free >= needed
    reason = ""
    if not ok:
        reason = (
            f"{quota_name} is {limit} with {used or 0} in use, so {max(free, 0)} {unit} free; "
            f"{why} need {needed} (short by {needed - free}): raise {quota_name} to at least "
            f"{int(used or 0) + needed}"
        )
    record(
        "R8",
        check,
        scope=scope,
        measured="unlimited" if free is None else free,
        threshold=f">= {needed}",
        ok=ok,
        reason=reason,
        data={"limit": limit, "used": used or 0, "needed": needed, **(data or {})},
    )


def test_compute_quota(zuul, profile, record):
    instances = profile["quota.instances"]
    vcpus, ram_mb, flavor_name = _node_size(zuul, profile)
    absolute = zuul.call(zuul.conn.compute.get_limits).absolute
    dimensions = [
        (
            "quota.instances",
            absolute.instances,
            absolute.instances_used,
            instances,
            1,
            "maxTotalInstances",
            "instances",
        ),
        (
            "quota.cores",
            absolute.total_cores,
            absolute.total_cores_used,
            instances * vcpus,
            vcpus,
            "maxTotalCores",
            "cores",
        ),
        (
            "quota.ram",
            absolute.total_ram,
            absolute.total_ram_used,
            instances * ram_mb,
            ram_mb,
            "maxTotalRAMSize",
            "MB of RAM",
        ),
        *_boot_volume_dimensions(zuul, profile, record),
    ]
    # How many nodes of this flavor the quota allows: what a zuul-launcher max-servers could be.
    fits = [
        free // per_node
        for _, limit, used, _, per_node, _, _ in dimensions
        if limit is not None and (free := _free(limit, used)) is not None
    ]
    max_servers = max(0, min(fits)) if fits else None
    for check, limit, used, needed, _per_node, quota_name, unit in dimensions:
        _record_quota(
            record,
            zuul.scope,
            check,
            limit=limit,
            used=used,
            needed=needed,
            quota_name=quota_name,
            unit=unit,
            why=f"{instances} nodes of {flavor_name}"
            + (f" booting from {profile['flavor.min_disk_gb']} GB volumes" if check in VOLUME_CHECKS else ""),
            data={"flavor": flavor_name, "max_servers": max_servers},
        )


VOLUME_CHECKS = ("quota.volumes", "quota.volume_gigabytes")


def _boot_volume_dimensions(zuul, profile, record) -> list[tuple]:
    """Boot-from-volume nodes (a disk-0 R4 flavor) each need a volume of the profile's size in the zuul
    project: the block-storage volumes and gigabytes quotas, as test_compute_quota's dimensions."""
    if not node_choice(zuul, profile).boot_from_volume:
        return []
    instances, size = profile["quota.instances"], int(profile["flavor.min_disk_gb"])
    if zuul.endpoint("block-storage") is None:
        for check in VOLUME_CHECKS:
            record(
                "R8",
                check,
                scope=zuul.scope,
                measured="no block storage",
                threshold="a volume per node",
                ok=False,
                reason="the test-node flavor has disk 0, so nodes boot from volumes, but the zuul "
                "project's catalog has no block-storage endpoint",
            )
        return []
    quota = zuul.call(zuul.conn.block_storage.get_quota_set, zuul.project_id, usage=True)
    usage = quota.usage or {}
    return [
        (
            "quota.volumes",
            quota.volumes,
            usage.get("volumes", 0),
            instances,
            1,
            "the block-storage volumes quota",
            "volumes",
        ),
        (
            "quota.volume_gigabytes",
            quota.gigabytes,
            usage.get("gigabytes", 0),
            instances * size,
            size,
            "the block-storage gigabytes quota",
            "GB",
        ),
    ]


def test_network_quota(zuul, profile, record):
    instances = profile["quota.instances"]
    quota = zuul.call(zuul.conn.network.get_quota, zuul.project_id, details=True)
    ports = quota.ports or {}
    _record_quota(
        record,
        zuul.scope,
        "quota.ports",
        limit=ports.get("limit"),
        used=ports.get("used"),
        needed=instances * profile.get("quota.ports_per_instance", 1),
        quota_name="the port quota",
        unit="ports",
        why=f"{instances} nodes",
    )
    if public_ip_mode(profile, external_networks(zuul)) == "floating":  # R6 will give nodes floating IPs
        fips = quota.floating_ips or {}
        _record_quota(
            record,
            zuul.scope,
            "quota.floating_ips",
            limit=fips.get("limit"),
            used=fips.get("used"),
            needed=instances * profile.get("quota.floating_ips_per_instance", 1),
            quota_name="the floating IP quota",
            unit="floating IPs",
            why=f"{instances} nodes with floating IPs",
        )


def test_ci_volume_quota(ci, profile, record):
    if "block-storage" not in profile["projects.ci.services"]:
        record(
            "R8",
            "quota.gigabytes",
            scope=ci.scope,
            verdict="SKIP",
            reason="the profile does not put the mirror on block storage",
        )
        return
    if ci.endpoint("block-storage") is None:
        record(
            "R8",
            "quota.gigabytes",
            scope=ci.scope,
            verdict="SKIP",
            reason="the ci project has no block-storage endpoint (reported by R1)",
        )
        return
    needed = profile["quota.ci_volume_gb"]
    quota = ci.call(ci.conn.block_storage.get_quota_set, ci.project_id, usage=True)
    _record_quota(
        record,
        ci.scope,
        "quota.gigabytes",
        limit=quota.gigabytes,
        used=(quota.usage or {}).get("gigabytes", 0),
        needed=needed,
        quota_name="the block-storage gigabytes quota",
        unit="GB",
        why="the mirror's volume",
        data={"volumes_limit": quota.volumes},
    )
