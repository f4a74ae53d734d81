"""The one catalogue of requirements. IDs are stable: reports, profiles and tests refer to them."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_URL = "https://docs.opendev.org/opendev/system-config/latest/contribute-cloud.html"


@dataclass(frozen=True)
class Requirement:
    id: str
    name: str
    text: str


CATALOGUE: dict[str, Requirement] = {
    r.id: r
    for r in (
        Requirement("R1", "services", "Nova and Glance APIs (with network, and block storage for the mirror) answer"),
        Requirement("R2", "image upload", "Images can be uploaded to Glance and booted"),
        Requirement("R3", "mirror disk", "One instance with 500 GB of disk per region in the ci project"),
        Requirement("R4", "test-node flavor", "A flavor with 8 GB RAM, 8 vCPU and 80 GB of storage"),
        Requirement("R5", "cpu speed", "8 vCPU at 2.4 GHz (or more or less vCPUs depending on speed)"),
        Requirement("R6", "public ip", "Each test node has a public IP address (IPv4 and/or IPv6)"),
        Requirement("R7", "https keystone", "Keystone is reached over https with a valid certificate"),
        Requirement("R8", "quota", "Quota for a minimum of 100 test instances"),
        Requirement("R9", "two projects", "Two projects: zuul for test nodes, ci for control-plane services"),
        Requirement("R10", "non-admin", "The provided users do not have admin credentials"),
        Requirement("R11", "overcommit", "Little or no overcommitment of test nodes"),
        Requirement("R12", "boot throughput", "Many test nodes boot concurrently, quickly and reliably"),
        Requirement("R13", "nodepool operations", "Keypairs, security groups, metadata and deletes work"),
    )
}


def get(requirement_id: str) -> Requirement:
    try:
        return CATALOGUE[requirement_id]
    except KeyError:
        raise KeyError(f"unknown requirement id {requirement_id!r}; known: {', '.join(CATALOGUE)}") from None
