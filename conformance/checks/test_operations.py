"""R13: what nodepool / zuul-launcher and OpenDev's cloud-launcher do besides booting: keypairs, a security
group open to 0.0.0.0/0 and ::/0, server metadata set at boot and read back, and deletes that complete."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from openstack import exceptions as os_exc

from conformance.errors import first_line
from conformance.nodes import BootFailed, boot_server, boot_timeout, delete_and_wait, node_setup
from conformance.resources import CleanupError

pytestmark = [pytest.mark.requirement("R13"), pytest.mark.dynamic]

INGRESS = [  # (ethertype, protocol, port, remote prefix)
    ("IPv4", "tcp", 22, "0.0.0.0/0"),
    ("IPv6", "tcp", 22, "::/0"),
    ("IPv4", "icmp", None, "0.0.0.0/0"),
    ("IPv6", "ipv6-icmp", None, "::/0"),
]


def public_key() -> str:
    """A fresh ed25519 public key (Nova no longer generates keys); the private half is never kept."""
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def test_nodepool_operations(zuul, profile, record, images, tracker, pytestconfig):
    conn = zuul.conn
    scope = zuul.scope
    timeout = boot_timeout(profile)

    key_name = tracker.name("r13-key", zuul)
    tracker.intent("keypair", key_name, zuul)
    try:
        zuul.call(conn.compute.create_keypair, name=key_name, public_key=public_key())
        keypair = zuul.call(conn.compute.get_keypair, key_name)
        record(
            "R13",
            "ops.keypair",
            scope=scope,
            measured=f"created ({keypair.fingerprint})",
            threshold="create, read back",
            ok=True,
        )
    except os_exc.SDKException as exc:
        record(
            "R13",
            "ops.keypair",
            scope=scope,
            measured="failed",
            threshold="create, read back",
            ok=False,
            reason=first_line(exc),
        )
        key_name = None

    group_name = tracker.name("r13-secgroup", zuul)
    group_item = tracker.intent("security_group", group_name, zuul)
    try:
        group = zuul.call(conn.network.create_security_group, name=group_name, description=group_name)
        group_item.bind(group)
        for ethertype, protocol, port, prefix in INGRESS:
            ports = {"port_range_min": port, "port_range_max": port} if port else {}
            zuul.call(
                conn.network.create_security_group_rule,
                security_group_id=group.id,
                direction="ingress",
                ethertype=ethertype,
                protocol=protocol,
                remote_ip_prefix=prefix,
                **ports,
            )
        rules = zuul.call(lambda: list(conn.network.security_group_rules(security_group_id=group.id)))
        seen = {
            (r.ether_type, r.protocol, r.port_range_min, r.remote_ip_prefix) for r in rules if r.direction == "ingress"
        }
        missing = [
            f"{p}/{port or '*'} from {prefix}" for e, p, port, prefix in INGRESS if (e, p, port, prefix) not in seen
        ]
        record(
            "R13",
            "ops.security_group",
            scope=scope,
            measured=f"{len(INGRESS) - len(missing)} ingress rules",
            threshold="tcp/22 and icmp from 0.0.0.0/0 and ::/0",
            ok=not missing,
            reason=f"missing after create: {', '.join(missing)}" if missing else "",
        )
    except os_exc.SDKException as exc:
        record(
            "R13",
            "ops.security_group",
            scope=scope,
            measured="failed",
            threshold="tcp/22 and icmp from 0.0.0.0/0 and ::/0",
            ok=False,
            reason=first_line(exc),
        )
        group = None

    setup = node_setup(zuul, profile, images, pytestconfig)
    metadata = {"nodepool_provider_name": "conformance", "nodepool_node_id": "0000000001", "nodepool_pool_name": "main"}
    extra = {}
    if key_name:
        extra["key_name"] = key_name
    if group is not None:
        extra["security_groups"] = [{"name": group.name}]
    try:
        server, seconds = boot_server(
            zuul,
            tracker,
            "r13-node",
            image_id=setup.image_id,
            flavor_id=setup.flavor.id,
            network_id=setup.network.id,
            timeout_s=timeout,
            metadata=metadata,
            volume_size_gb=setup.volume_size_gb,
            **extra,
        )
        read = zuul.call(conn.compute.fetch_server_metadata, server).metadata or {}
        wrong = {k: read.get(k) for k, v in metadata.items() if read.get(k) != v}
        record(
            "R13",
            "ops.metadata",
            scope=scope,
            measured=f"{len(metadata) - len(wrong)}/{len(metadata)} keys",
            threshold="set at boot, read back",
            ok=not wrong,
            reason=f"read back differently: {wrong}" if wrong else "",
            data=setup.describe(),
        )
    except (BootFailed, os_exc.SDKException) as exc:
        record(
            "R13",
            "ops.metadata",
            scope=scope,
            measured="no server",
            threshold="set at boot, read back",
            ok=False,
            reason=first_line(exc),
        )
        return

    try:
        delete_s = delete_and_wait(tracker, "server", timeout)
        if setup.volume_size_gb:  # the boot volume goes with the server (delete_on_termination): verified
            delete_s += delete_and_wait(tracker, "volume", timeout)
        what = "server and its boot volume" if setup.volume_size_gb else "server"
        record(
            "R13",
            "ops.delete",
            scope=scope,
            measured=f"{what} gone in {delete_s:.1f} s",
            threshold=f"gone within {timeout:.0f} s",
            ok=True,
        )
        # Keypair and security group go after the server (the group is in use until then); verified gone.
        delete_and_wait(tracker, "keypair", timeout)
        delete_and_wait(tracker, "security_group", timeout)
        record(
            "R13",
            "ops.cleanup",
            scope=scope,
            measured="keypair and security group deleted",
            threshold="deleted",
            ok=True,
        )
    except CleanupError as exc:
        record(
            "R13",
            "ops.delete",
            scope=scope,
            measured="not gone",
            threshold=f"gone within {timeout:.0f} s",
            ok=False,
            reason="; ".join(str(f) for f in exc.failures),
        )
