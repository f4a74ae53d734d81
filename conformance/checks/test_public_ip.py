"""R6: a test node gets a public IPv4 and/or IPv6 address, the way the profile says the provider works
(directly on a provider network, or through a floating IP). Addresses are classified with `ipaddress`."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from openstack import exceptions as os_exc

from conformance.dynamic import (
    BootFailed,
    boot_server,
    boot_timeout,
    external_networks,
    first_line,
    node_setup,
    public_ip_mode,
    server_addresses,
)
from conformance.resources import call

pytestmark = [pytest.mark.requirement("R6"), pytest.mark.dynamic]

# RFC 5737 and RFC 3849: never global, accepted only when the profile says so (the sandbox's ranges).
DOCUMENTATION_NETS = tuple(ipaddress.ip_network(n) for n in
                           ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


def classify(addr: str, accept_documentation: bool) -> dict:
    ip = ipaddress.ip_address(addr)
    documentation = any(ip in net for net in DOCUMENTATION_NETS if net.version == ip.version)
    return {"addr": addr, "version": ip.version, "global": ip.is_global, "documentation": documentation,
            "public": ip.is_global or (documentation and accept_documentation)}


def families_ok(families: str, ipv4: bool, ipv6: bool) -> bool:
    return {"ipv4": ipv4, "ipv6": ipv6, "both": ipv4 and ipv6}.get(families, ipv4 or ipv6)


def _reachable(addr: str, timeout: float = 10.0) -> tuple[bool, str]:
    try:
        with socket.create_connection((addr, 22), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, exc.strerror or str(exc)


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
            record("R6", "public_ip", scope=zuul.scope, measured="no provider network", threshold=threshold,
                   ok=False, reason="no shared external (provider) network is visible to the zuul project",
                   data={"ipv4": False, "ipv6": False, "mode": mode, "addresses": []})
            return
        provider_net = shared[0]
    if mode == "floating" and not externals:
        record("R6", "public_ip", scope=zuul.scope, measured="no external network", threshold=threshold,
               ok=False, reason="no external network to allocate a floating IP from",
               data={"ipv4": False, "ipv6": False, "mode": mode, "addresses": []})
        return
    setup = node_setup(zuul, profile, images, pytestconfig, network=provider_net)
    try:
        server, _ = boot_server(zuul, tracker, "r6-node", image_id=setup.image_id, flavor_id=setup.flavor.id,
                                network_id=setup.network.id, timeout_s=boot_timeout(profile),
                                volume_size_gb=setup.volume_size_gb)
    except (BootFailed, os_exc.SDKException) as exc:
        record("R6", "public_ip", scope=zuul.scope, measured="no test node", threshold=threshold, ok=False,
               reason=f"the test node did not boot: {first_line(exc)}",
               data={"ipv4": False, "ipv6": False, "mode": mode, "addresses": []})
        return
    addresses = [{**classify(a["addr"], accept_doc), "type": a["type"], "network": a["network"]}
                 for a in server_addresses(server) if a.get("addr")]
    problem = ""
    if mode == "floating":
        problem = _attach_floating_ip(zuul, tracker, server, externals, addresses, accept_doc)
    ipv4 = any(a["public"] and a["version"] == 4 for a in addresses)
    ipv6 = any(a["public"] and a["version"] == 6 for a in addresses)
    ok = families_ok(families, ipv4, ipv6)
    public = [a for a in addresses if a["public"]]
    shown = ", ".join(f"{a['addr']} ({a['type']}{', documentation range' if a['documentation'] else ''})"
                      for a in public) or "none"
    notes = []
    if any(a["documentation"] for a in public):
        notes.append("documentation-range addresses count as public only because the profile sets "
                     "public_ip.accept_documentation_ranges")
    if not ok:
        notes.insert(0, problem or f"no public {families} address among "
                                   f"{', '.join(a['addr'] for a in addresses) or 'no addresses'}")
    record("R6", "public_ip", scope=zuul.scope, measured=shown, threshold=threshold, ok=ok,
           reason="; ".join(notes),
           data={"ipv4": ipv4, "ipv6": ipv6, "mode": mode, "addresses": addresses,
                 "accept_documentation_ranges": accept_doc, **setup.describe()})
    if pytestconfig.getoption("conformance_probe_reachability") and public:
        target = public[0]["addr"]
        reachable, why = _reachable(target)
        record("R6", "public_ip.reachable", scope=zuul.scope, measured=f"tcp/22 on {target}",
               threshold="connects", ok=reachable, reason=why)


def _attach_floating_ip(cloud, tracker, server, externals, addresses, accept_doc) -> str:
    """Allocate a floating IP on the node's port; adds it to `addresses`; returns a problem or ""."""
    conn = cloud.conn
    ports = call(cloud, lambda: list(conn.network.ports(device_id=server.id)))
    if not ports:
        return "the test node has no port to attach a floating IP to"
    errors = []
    for network in externals:
        name = tracker.name(f"r6-fip-{network.name or network.id}"[:60], cloud)
        item = tracker.intent("floating_ip", name, cloud)
        try:
            # Floating IPs have no name: the run prefix goes in the description (the sweeper matches it).
            fip = call(cloud, conn.network.create_ip, floating_network_id=network.id, port_id=ports[0].id,
                       description=name)
        except os_exc.HttpException as exc:
            if exc.status_code and exc.status_code < 500:
                item.deleted = True  # refused: nothing was created
            errors.append(f"floating IP from {network.name}: HTTP {exc.status_code}: {first_line(exc)}")
            continue
        item.bind(fip)
        addresses.append({**classify(fip.floating_ip_address, accept_doc), "type": "floating",
                          "network": network.name})
        return ""
    return "; ".join(errors)
