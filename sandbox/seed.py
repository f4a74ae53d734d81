"""The initial state, shaped like a donated cloud: two projects with non-admin users, flavors, quotas, networks.

Runs once per database template (see stack.py); every `up` restores the result.
"""

from __future__ import annotations

import ipaddress

import openstack

from sandbox.configs import MIRROR_FLAVOR, QUOTAS, SERVICE_USERS, SMALL_FLAVOR, TEST_NODE_FLAVOR
from sandbox.layout import REGION, Layout

PROJECT_USERS = {"zuul": "openstackzuul-sandbox", "ci": "openstackci-sandbox"}
PUBLIC_NETWORK_NAME = "public"


def public_subnets(layout: Layout) -> dict[str, dict]:
    """The public network's subnets. The real host's bridge carries the IPv4 range (layout.guest_net); its first
    addresses are the host's own."""
    hosts = list(ipaddress.ip_network(layout.guest_net).hosts())
    return {
        "ipv4": {
            "cidr": layout.guest_net,
            "gateway_ip": layout.guest_gateway,
            "allocation_pools": [{"start": str(hosts[9]), "end": str(hosts[-5])}],
        },
        "ipv6": {"cidr": "2001:db8::/64"},
    }


def catalog(layout: Layout) -> dict[str, tuple[str, str, str]]:
    """service name -> (type, endpoint URL)."""
    return {
        "glance": ("image", layout.url("glance")),
        "placement": ("placement", layout.url("placement")),
        "nova": ("compute", layout.url("nova-api", suffix="/v2.1")),
        "neutron": ("network", layout.url("neutron")),
        "cinderv3": ("block-storage", layout.url("cinder-api", suffix="/v3/$(project_id)s")),
    }


def admin_connection(layout: Layout, admin_password: str) -> openstack.connection.Connection:
    return openstack.connect(
        auth_url=layout.keystone_url,
        username="admin",
        password=admin_password,
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        cacert=str(layout.ca_cert),
        region_name=REGION,
        identity_interface="public",
    )


def seed_identity(conn, layout: Layout, passwords: dict[str, str]) -> None:
    identity = conn.identity
    service_project = identity.create_project(name="service", domain_id="default")
    admin_role = identity.find_role("admin", ignore_missing=False)
    service_role = next(iter(identity.roles(name="service")), None) or identity.create_role(name="service")
    member_role = identity.find_role("member", ignore_missing=False)
    for name in SERVICE_USERS:
        user = identity.create_user(
            name=name, password=passwords[name], domain_id="default", default_project_id=service_project.id
        )
        identity.assign_project_role_to_user(service_project, user, admin_role)
        identity.assign_project_role_to_user(service_project, user, service_role)
    for service_name, (service_type, url) in catalog(layout).items():
        add_service(conn, service_name, service_type, url)
    for project_name, user_name in PROJECT_USERS.items():
        project = identity.create_project(
            name=project_name, domain_id="default", description=f"OpenDev {project_name} project (sandbox)"
        )
        user = identity.create_user(
            name=user_name, password=passwords[user_name], domain_id="default", default_project_id=project.id
        )
        identity.assign_project_role_to_user(project, user, member_role)


def add_service(conn, name: str, service_type: str, url: str) -> None:
    service = conn.identity.create_service(name=name, type=service_type)
    for interface in ("public", "internal", "admin"):
        conn.identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=REGION)


def seed_compute_network_volume(conn, layout: Layout) -> None:
    for flavor in (TEST_NODE_FLAVOR, MIRROR_FLAVOR, SMALL_FLAVOR):
        conn.compute.create_flavor(**flavor)
    public = conn.network.create_network(
        name=PUBLIC_NETWORK_NAME,
        is_router_external=True,
        is_shared=True,
        provider_network_type="flat",
        provider_physical_network="public",
    )
    subnets = public_subnets(layout)
    conn.network.create_subnet(
        network_id=public.id,
        name="public-v4",
        ip_version=4,
        is_dhcp_enabled=False,
        **subnets["ipv4"],
    )
    conn.network.create_subnet(
        network_id=public.id,
        name="public-v6",
        ip_version=6,
        ipv6_address_mode="slaac",
        ipv6_ra_mode="slaac",
        **subnets["ipv6"],
    )
    for index, project_name in enumerate(PROJECT_USERS):
        project = conn.identity.find_project(project_name, ignore_missing=False)
        set_quotas(conn, project.id, QUOTAS[project_name])
        network = conn.network.create_network(name="private", project_id=project.id)
        # No DHCP server runs: a real guest takes its static address from the config drive instead of waiting
        # for a lease that never comes.
        subnet = conn.network.create_subnet(
            network_id=network.id,
            name="private-v4",
            ip_version=4,
            cidr=f"10.{index}.0.0/16",
            project_id=project.id,
            is_dhcp_enabled=False,
        )
        router = conn.network.create_router(
            name="router",
            project_id=project.id,
            external_gateway_info={"network_id": public.id},
        )
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)


COMPUTE_QUOTA_KEYS = ("instances", "cores", "ram", "key_pairs", "server_groups", "metadata_items")
NETWORK_QUOTA_KEYS = ("port", "floatingip", "network", "subnet", "router", "security_group", "security_group_rule")
VOLUME_QUOTA_KEYS = ("gigabytes", "volumes", "snapshots", "backups", "backup_gigabytes")


def set_quotas(conn, project_id: str, limits: dict[str, int]) -> None:
    """Set quotas by name, whichever service owns them."""
    unknown = set(limits) - set(COMPUTE_QUOTA_KEYS + NETWORK_QUOTA_KEYS + VOLUME_QUOTA_KEYS)
    if unknown:
        raise ValueError(f"unknown quota name(s): {', '.join(sorted(unknown))}")
    compute = {k: v for k, v in limits.items() if k in COMPUTE_QUOTA_KEYS}
    network = {k: v for k, v in limits.items() if k in NETWORK_QUOTA_KEYS}
    volume = {k: v for k, v in limits.items() if k in VOLUME_QUOTA_KEYS}
    if compute:
        conn.compute.update_quota_set(project_id, **compute)
    if network:
        conn.network.update_quota(project_id, **network)
    if volume:
        conn.block_storage.update_quota_set(project_id, **volume)


def get_quotas(conn, project_id: str, names) -> dict[str, int]:
    compute = conn.compute.get_quota_set(project_id)
    network = conn.network.get_quota(project_id)
    volume = conn.block_storage.get_quota_set(project_id)
    values = {}
    for name in names:
        if name in COMPUTE_QUOTA_KEYS:
            values[name] = getattr(compute, name)
        elif name in NETWORK_QUOTA_KEYS:
            values[name] = getattr(
                network,
                {
                    "port": "ports",
                    "floatingip": "floating_ips",
                    "network": "networks",
                    "subnet": "subnets",
                    "router": "routers",
                    "security_group": "security_groups",
                    "security_group_rule": "security_group_rules",
                }[name],
            )
        elif name in VOLUME_QUOTA_KEYS:
            values[name] = getattr(volume, name)
        else:
            raise ValueError(f"unknown quota name {name!r}")
    return values
