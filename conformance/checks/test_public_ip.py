"""R6: a test node gets a public IPv4 and/or IPv6 address, the way the profile says the provider works
(directly on a provider network, or through a floating IP). Addresses are classified with `ipaddress`.

With --probe-reachability the node boots the probe image (--probe-image or the profile's probe.image: an OS with
sshd) and the check completes an SSH handshake with its public address, as zuul-launcher's ssh-keyscan does
before it hands a node to a job: a TCP port that accepts is not yet a node Zuul can use."""

from __future__ import annotations

import ipaddress
import time

import pytest
from openstack import exceptions as os_exc

from conformance.errors import first_line
from conformance.nodes import (
    BootFailed,
    boot_server,
    boot_timeout,
    external_networks,
    node_setup,
    public_ip_mode,
    server_addresses,
)
from conformance.probe import probe_image, ssh_handshake
from conformance.resources import Waiter

pytestmark = [pytest.mark.requirement("R6"), pytest.mark.dynamic]

# RFC 5737 and RFC 3849: never global, accepted only when the profile says so (the sandbox's ranges).
DOCUMENTATION_NETS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def classify(addr: str, accept_documentation: bool) -> dict:
    ip = ipaddress.ip_address(addr)
    documentation = any(ip in net for net in DOCUMENTATION_NETS if net.version == ip.version)
    return {
        "addr": addr,
        "version": ip.version,
        "global": ip.is_global,
        "documentation": documentation,
        "public": ip.is_global or (documentation and accept_documentation),
    }


def families_ok(families: str, ipv4: bool, ipv6: bool) -> bool:
    return {"ipv4": ipv4, "ipv6": ipv6, "both": ipv4 and ipv6}.get(families, ipv4 or ipv6)


def test_public_ip(zuul, profile, record, images, tracker, pytestconfig):
    families = profile["public_ip.families"]
    accept_doc = bool(profile["public_ip.accept_documentation_ranges"])
    externals = external_networks(zuul)
    mode = public_ip_mode(profile, externals)
    threshold = f"public {families} address ({mode})"
    chosen = pytestconfig.getoption("conformance_network")
    provider_net = None
    if mode == "provider" and not chosen:
        shared = [n for n in externals if n.is_shared]
        if not shared:
            record(
                "R6",
                "public_ip",
                scope=zuul.scope,
                measured="no provider network",
                threshold=threshold,
                ok=False,
                reason="no shared external (provider) network is visible to the zuul project",
                data={"ipv4": False, "ipv6": False, "mode": mode, "addresses": []},
            )
            return
        provider_net = shared[0]
    if mode == "floating" and not externals:
        record(
            "R6",
            "public_ip",
            scope=zuul.scope,
            measured="no external network",
            threshold=threshold,
            ok=False,
            reason="no external network to allocate a floating IP from",
            data={"ipv4": False, "ipv6": False, "mode": mode, "addresses": []},
        )
        return
    setup = node_setup(zuul, profile, images, pytestconfig, network=provider_net)
    reach = pytestconfig.getoption("conformance_probe_reachability")
    node_image, fallback = probe_image(zuul, profile, pytestconfig) if reach else (None, "")
    network_data = {
        "network": {"id": setup.network.id, "name": setup.network.name},
        "project_networks": project_networks(zuul),
    }
    started = time.monotonic()
    try:
        server, _ = boot_server(
            zuul,
            tracker,
            "r6-node",
            image_id=node_image.id if node_image else setup.image_id,
            flavor_id=setup.flavor.id,
            network_id=setup.network.id,
            timeout_s=boot_timeout(profile),
            volume_size_gb=setup.volume_size_gb,
        )
    except (BootFailed, os_exc.SDKException) as exc:
        record(
            "R6",
            "public_ip",
            scope=zuul.scope,
            measured="no test node",
            threshold=threshold,
            ok=False,
            reason=f"the test node did not boot: {first_line(exc)}",
            data={"ipv4": False, "ipv6": False, "mode": mode, "addresses": []},
        )
        return
    addresses = [
        {**classify(a["addr"], accept_doc), "type": a["type"], "network": a["network"]}
        for a in server_addresses(server)
        if a.get("addr")
    ]
    problem = ""
    if mode == "floating":
        problem = _attach_floating_ip(zuul, tracker, server, externals, addresses, accept_doc)
    ipv4 = any(a["public"] and a["version"] == 4 for a in addresses)
    ipv6 = any(a["public"] and a["version"] == 6 for a in addresses)
    ok = families_ok(families, ipv4, ipv6)
    public = [a for a in addresses if a["public"]]
    shown = (
        ", ".join(f"{a['addr']} ({a['type']}{', documentation range' if a['documentation'] else ''})" for a in public)
        or "none"
    )
    notes = []
    if any(a["documentation"] for a in public):
        notes.append(
            "documentation-range addresses count as public only because the profile sets "
            "public_ip.accept_documentation_ranges"
        )
    if not ok:
        notes.insert(
            0,
            problem
            or f"no public {families} address among {', '.join(a['addr'] for a in addresses) or 'no addresses'}",
        )
    record(
        "R6",
        "public_ip",
        scope=zuul.scope,
        measured=shown,
        threshold=threshold,
        ok=ok,
        reason="; ".join(notes),
        data={
            "ipv4": ipv4,
            "ipv6": ipv6,
            "mode": mode,
            "addresses": addresses,
            "accept_documentation_ranges": accept_doc,
            **network_data,
            **setup.describe(),
        },
    )
    if reach:
        _check_reachable(zuul, profile, record, public, node_image, fallback, started)


def _check_reachable(cloud, profile, record, public: list[dict], node_image, fallback: str, started: float):
    """An SSH handshake with one of the node's public addresses (IPv4 first, then IPv6, each round), retried until
    the probe image's wait runs out. Every address is tried: Nova lists them in no fixed order, and a cloud may
    route one family and not the other (the sandbox's IPv6 range is only in Neutron's database)."""
    threshold = "SSH handshake on port 22"
    if node_image is None:
        record(
            "R6",
            "public_ip.reachable",
            scope=cloud.scope,
            measured="not probed",
            threshold=threshold,
            verdict="SKIP",
            reason=fallback
            or "needs an image with sshd: --probe-image or the profile's probe.image (the suite's own image has no OS)",
        )
        return
    if not public:
        record(
            "R6",
            "public_ip.reachable",
            scope=cloud.scope,
            measured="no public address",
            threshold=threshold,
            ok=False,
            reason="the node has no public address to reach",
        )
        return
    targets = [a["addr"] for a in sorted(public, key=lambda a: a["version"])]
    state = {"addr": None, "key": None, "why": {}}

    def answered() -> bool:
        for addr in targets:
            key, why = ssh_handshake(addr)
            if key is not None:
                state["addr"], state["key"] = addr, key
                return True
            state["why"][addr] = why
        return False

    Waiter(float(profile.get("probe.wait_s", 900))).poll(answered, 5.0)
    seconds = time.monotonic() - started
    data = {
        "addr": state["addr"] or targets[0],
        "tried": targets,
        "host_key_type": state["key"],
        "seconds": round(seconds, 1),
        "probe_image": node_image.describe(),
    }
    if state["key"]:
        record(
            "R6",
            "public_ip.reachable",
            scope=cloud.scope,
            measured=f"{state['addr']}:22 answered ({state['key']} host key) {seconds:.0f} s after the boot request",
            threshold=threshold,
            ok=True,
            data=data,
        )
    else:
        record(
            "R6",
            "public_ip.reachable",
            scope=cloud.scope,
            measured=f"{', '.join(targets)}: no answer on 22",
            threshold=threshold,
            ok=False,
            reason="; ".join(state["why"][a] for a in targets if a in state["why"]),
            data=data,
        )


def project_networks(cloud) -> list[str]:
    """The networks Nova would choose from for a node that names none (the project's own and shared ones, with a
    subnet): with more than one, Nova refuses such a boot, and zuul-launcher's label must name one (`networks`)."""
    networks = cloud.call(lambda: list(cloud.conn.network.networks()))
    return sorted(
        n.name or n.id for n in networks if n.subnet_ids and (n.project_id == cloud.project_id or n.is_shared)
    )


def _attach_floating_ip(cloud, tracker, server, externals, addresses, accept_doc) -> str:
    """Allocate a floating IP on the node's port; adds it to `addresses`; returns a problem or ""."""
    conn = cloud.conn
    ports = cloud.call(lambda: list(conn.network.ports(device_id=server.id)))
    if not ports:
        return "the test node has no port to attach a floating IP to"
    errors = []
    for network in externals:
        name = tracker.name(f"r6-fip-{network.name or network.id}"[:60], cloud)
        item = tracker.intent("floating_ip", name, cloud)
        try:
            # Floating IPs have no name: the run prefix goes in the description (the sweeper matches it).
            fip = cloud.call(
                conn.network.create_ip, floating_network_id=network.id, port_id=ports[0].id, description=name
            )
        except os_exc.HttpException as exc:
            if exc.status_code and exc.status_code < 500:
                item.deleted = True  # refused: nothing was created
            errors.append(f"floating IP from {network.name}: HTTP {exc.status_code}: {first_line(exc)}")
            continue
        item.bind(fip)
        addresses.append({**classify(fip.floating_ip_address, accept_doc), "type": "floating", "network": network.name})
        return ""
    return "; ".join(errors)
