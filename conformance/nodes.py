"""Test nodes: what a check boots one with (NodeSetup: the run's image, R4's flavor, the network), booting it and
waiting for ACTIVE, deleting what a check measures the deletion of, and the networks a node gets its addresses
from.

    setup = node_setup(zuul, profile, images, pytestconfig)   # skips the check when R2 or R4 leave no way to boot
    server, seconds = boot_server(zuul, tracker, "probe", image_id=setup.image_id, flavor_id=setup.flavor.id,
                                  network_id=setup.network.id, timeout_s=boot_timeout(profile),
                                  volume_size_gb=setup.volume_size_gb)             # BootFailed with the fault
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from conformance import flavors
from conformance.burst import fault_text
from conformance.errors import CloudFault
from conformance.images import ImageCache, require_image
from conformance.resources import (
    DELETERS,
    RUN_KEY,
    CleanupError,
    Tracker,
    Waiter,
    attached_volume_ids,
    boot_disk,
)

SINGLE_BOOT_POLL_S = 2.0


# -------------------------------------------------------------------------------------------- node setup
@dataclass
class NodeSetup:
    """What a test node boots with: the run's image, the smallest R4 flavor, the network, and the size of the
    volume it boots from (None: the flavor's local disk)."""

    image_id: str
    flavor: Any
    network: Any
    volume_size_gb: int | None = None

    def describe(self) -> dict:
        """For a result's data: how the node booted."""
        return {
            "flavor": self.flavor.name,
            "boot_from_volume": bool(self.volume_size_gb),
            "volume_size_gb": self.volume_size_gb,
        }


def node_setup(cloud, profile, images: ImageCache, config: pytest.Config, network=None) -> NodeSetup:
    """The run's image (skips the check when its upload failed: R2 says why), R4's test-node flavor
    (conformance.flavors.node_choice, with the volume a disk-0 flavor's nodes boot from; skips the check when no
    flavor meets the profile: R4 says why) and the network (--network, else the project's)."""
    image_id = require_image(images.get(cloud))
    choice = flavors.node_choice(cloud, profile)
    if choice.best is None:
        why = "; ".join(choice.shortfalls) or "the project sees no flavors"
        pytest.skip(f"no flavor meets {flavors.node_spec(profile)} ({why}; see R4)")
    network = network or project_network(cloud, config.getoption("conformance_network"))
    return NodeSetup(image_id, choice.best, network, flavors.boot_volume_gb(choice, profile))


def boot_timeout(profile) -> float:
    """One server: the burst's p95 SLA is the most a single boot may reasonably take."""
    return float(profile.get("burst.max_p95_boot_s", 600))


# -------------------------------------------------------------------------------------------- networks
def external_networks(cloud) -> list:
    return [n for n in cloud.call(lambda: list(cloud.conn.network.networks(is_router_external=True)))]


def public_ip_mode(profile, externals: list) -> str:
    """How R6 gives a test node its public address: the profile's public_ip.mode, `auto` decided by the cloud
    (a shared external network: nodes boot on it, `provider`; else a floating IP from it, `floating`)."""
    mode = profile["public_ip.mode"]
    if mode == "auto":
        mode = "provider" if any(n.is_shared for n in externals) else "floating"
    return mode


def project_network(cloud, option: str | None = None):
    """The network test nodes boot on: --network, else the project's own (non-external) network."""
    conn = cloud.conn
    networks = cloud.call(lambda: list(conn.network.networks()))
    if option:
        for net in networks:
            if option in (net.id, net.name):
                return net
        pytest.fail(f"--network {option}: no such network visible to {cloud.scope}", pytrace=False)
    usable = [n for n in networks if not n.is_router_external and n.subnet_ids]
    own = [n for n in usable if n.project_id == cloud.project_id]
    shared = [n for n in usable if n.is_shared]
    candidates = own or shared
    if not candidates:
        pytest.skip(f"no network for test nodes in {cloud.scope} (pass --network)")
    return sorted(candidates, key=lambda n: n.name or "")[0]


def server_addresses(server) -> list[dict]:
    """[{addr, version, type ('fixed'|'floating'), network}] from a server's `addresses`."""
    found = []
    for network, entries in (server.addresses or {}).items():
        for entry in entries or []:
            found.append(
                {
                    "addr": entry.get("addr"),
                    "version": entry.get("version"),
                    "type": entry.get("OS-EXT-IPS:type", "fixed"),
                    "network": network,
                }
            )
    return found


# ------------------------------------------------------------------------------------------ boot, delete
class BootFailed(CloudFault):
    """The server went ERROR or was not ACTIVE in time."""


def boot_server(
    cloud,
    tracker: Tracker,
    suffix: str,
    *,
    image_id: str,
    flavor_id: str,
    network_id: str | None,
    timeout_s: float,
    interval_s: float = SINGLE_BOOT_POLL_S,
    volume_size_gb: int | None = None,
    **create_kwargs,
):
    """Boot one server (from a new volume of `volume_size_gb` when given) and wait for ACTIVE (one GET per tick:
    a single server). Returns (server, seconds). Raises BootFailed with the fault on ERROR or timeout; the
    server and its boot volume stay tracked for cleanup."""
    conn = cloud.conn
    name = tracker.name(suffix, cloud)
    item = tracker.intent("server", name, cloud)
    metadata = {RUN_KEY: tracker.prefix, **create_kwargs.pop("metadata", {})}
    networks = [{"uuid": network_id}] if network_id else "auto"
    disk, volume = boot_disk(tracker, cloud, name, image_id, volume_size_gb)
    start = time.monotonic()
    server = cloud.call(
        conn.compute.create_server,
        name=name,
        flavor_id=flavor_id,
        networks=networks,
        metadata=metadata,
        **disk,
        **create_kwargs,
    )
    item.bind(server)
    state = {"server": server}

    def settled() -> bool:
        state["server"] = cloud.call(conn.compute.get_server, server.id)
        if volume is not None and volume.id is None:
            volume.id = next(iter(attached_volume_ids(state["server"])), None)
        return state["server"].status in ("ACTIVE", "ERROR")

    ok = Waiter(timeout_s).poll(settled, interval_s)
    server = state["server"]
    seconds = time.monotonic() - start
    if server.status == "ERROR":
        raise BootFailed(f"server {name} went ERROR: {fault_text(server.fault) or 'no fault message'}")
    if not ok:
        raise BootFailed(f"server {name} not ACTIVE after {timeout_s:.0f} s (status {server.status})")
    return server, seconds


def delete_and_wait(tracker: Tracker, kind: str, timeout_s: float) -> float:
    """Run the tracker's deleter for one kind now (a check that measures deletion); returns seconds."""
    start = time.monotonic()
    items = [i for i in tracker.pending() if i.kind == kind]
    failures = DELETERS[kind](items, Waiter(timeout_s), tracker.poll_interval_s, tracker.prefix) if items else []
    if failures:
        raise CleanupError(failures)
    return time.monotonic() - start
