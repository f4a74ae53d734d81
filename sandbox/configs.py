"""The services' configuration files, rendered into the state dir's etc/ for one sandbox.

Settings that matter for a fake-driver cloud under a 100-server burst carry a comment saying why.
"""

from __future__ import annotations

import configparser
import io
import shutil
import sys
from pathlib import Path

from sandbox.layout import HOST, REGION, Layout

COMPUTE_HOST = "sandbox-compute"  # the fake hypervisor's four nodes
REAL_COMPUTE_HOST = "sandbox-real"  # the libvirt host of real guests (sandbox/real_host.py)
SERVICE_USERS = ("glance", "placement", "nova", "neutron", "cinder")
# Quotas of the cloud's initial state: room for 150 test nodes (R8 needs 100), also when they boot from 80 GB
# volumes (the `flavor disk=0` variant, as several donors' nodes do), and 1000 GB of volumes in ci.
TEST_NODE_FLAVOR = {"name": "ci.standard", "vcpus": 8, "ram": 8192, "disk": 80}
MIRROR_FLAVOR = {"name": "ci.mirror", "vcpus": 4, "ram": 8192, "disk": 40}
SMALL_FLAVOR = {"name": "ci.small", "vcpus": 2, "ram": 2048, "disk": 20}
QUOTAS = {
    "zuul": {
        "instances": 150,
        "cores": 1536,
        "ram": 1536 * 1024,
        "port": 500,
        "floatingip": 200,
        "gigabytes": 150 * 80,
        "volumes": 150,
    },
    "ci": {"instances": 10, "cores": 80, "ram": 81920, "port": 50, "floatingip": 10, "gigabytes": 1000, "volumes": 10},
}


def _render(sections: dict[str, dict[str, object]]) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep option case
    for section, options in sections.items():
        if section != "DEFAULT":
            parser.add_section(section)
        for key, value in options.items():
            parser.set(section, key, str(value))
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def _auth(layout: Layout, username: str, password: str, **extra) -> dict[str, object]:
    return {
        "auth_url": layout.keystone_url,
        "cafile": layout.ca_cert,
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": username,
        "password": password,
        **extra,
    }


def _authtoken(layout: Layout, username: str, password: str) -> dict[str, object]:
    return {
        "www_authenticate_uri": layout.keystone_url,
        **_auth(layout, username, password),
        "service_token_roles_required": "true",
    }


def _messaging(layout: Layout) -> str:
    return f"rabbit://guest:guest@{HOST}:{layout.ports['rabbitmq']}/"


def _common(layout: Layout, name: str) -> dict[str, object]:
    return {"log_file": layout.log / f"{name}.log", "debug": "false"}


def render_all(layout: Layout, passwords: dict[str, str], real_host=None) -> None:
    """Write every service's config into layout.etc (paste files come from the installed services).
    `real_host` (sandbox.real_host.RealHost): the libvirt host of real guests, when it runs."""
    etc = layout.etc
    etc.mkdir(parents=True, exist_ok=True)
    for name in ("nova", "neutron", "cinder", "glance", "placement", "keystone"):
        (layout.data / name).mkdir(parents=True, exist_ok=True)
    shipped = Path(sys.prefix) / "etc"
    shutil.copy(shipped / "nova" / "api-paste.ini", etc / "nova-api-paste.ini")
    shutil.copy(shipped / "neutron" / "api-paste.ini", etc / "neutron-api-paste.ini")
    shutil.copy(shipped / "cinder" / "api-paste.ini", etc / "cinder-api-paste.ini")
    shutil.copy(shipped / "glance" / "glance-api-paste.ini", etc / "glance-api-paste.ini")
    files = {
        "keystone.conf": keystone(layout),
        "glance-api.conf": glance(layout, passwords),
        "placement.conf": placement(layout, passwords),
        "nova.conf": nova(layout, passwords, real_host),
        "nova-real.conf": nova_real(layout, real_host),
        "neutron.conf": neutron(layout, passwords),
        "cinder.conf": cinder(layout, passwords),
    }
    for filename, text in files.items():
        path = etc / filename
        path.write_text(text)
        path.chmod(0o600)  # they hold the service users' passwords
    for service in ("glance", "nova", "neutron", "cinder", "keystone", "placement"):
        policy = etc / f"{service}-policy.yaml"
        if not policy.exists():
            policy.write_text("{}\n")


def keystone(layout: Layout) -> str:
    return _render(
        {
            "DEFAULT": _common(layout, "keystone"),
            "database": {"connection": layout.db_url("keystone"), "max_pool_size": 10, "max_overflow": 20},
            "fernet_tokens": {"key_repository": layout.data / "keystone" / "fernet"},
            "credential": {"key_repository": layout.data / "keystone" / "credential"},
            "token": {"provider": "fernet"},
            # Every authentication verifies a bcrypt hash; the default cost (12) makes each one ~0.3 s of CPU, which
            # a 2-core machine running a whole cloud and the suite's many sessions can't spare. Loopback only.
            "identity": {"password_hash_rounds": 4},
            "oslo_policy": {"policy_file": layout.etc / "keystone-policy.yaml"},
            "cache": {"enabled": "true", "backend": "dogpile.cache.memory_pickle"},
        }
    )


def glance(layout: Layout, passwords: dict[str, str]) -> str:
    return _render(
        {
            "DEFAULT": {**_common(layout, "glance"), "enabled_backends": "fs:file"},
            "database": {"connection": layout.db_url("glance")},
            "glance_store": {"default_backend": "fs"},
            "fs": {"filesystem_store_datadir": layout.data / "glance" / "images"},
            "os_glance_staging_store": {"filesystem_store_datadir": layout.data / "glance" / "staging"},
            "os_glance_tasks_store": {"filesystem_store_datadir": layout.data / "glance" / "tasks"},
            "paste_deploy": {"flavor": "keystone", "config_file": layout.etc / "glance-api-paste.ini"},
            "keystone_authtoken": _authtoken(layout, "glance", passwords["glance"]),
            # oslo.policy re-reads this file when it changes: the `policy` variant edits it on a running cloud.
            "oslo_policy": {"enforce_new_defaults": "true", "policy_file": layout.etc / "glance-policy.yaml"},
        }
    )


def placement(layout: Layout, passwords: dict[str, str]) -> str:
    return _render(
        {
            "DEFAULT": _common(layout, "placement"),
            "placement_database": {"connection": layout.db_url("placement")},
            "api": {"auth_strategy": "keystone"},
            "keystone_authtoken": _authtoken(layout, "placement", passwords["placement"]),
        }
    )


def isolated_images(real_host) -> list[str]:
    """The Glance ids that boot on the real host and only there: the guest image's disk."""
    image = getattr(real_host, "image", None) if getattr(real_host, "enabled", False) else None
    return [image["ids"]["disk"]] if image else []


def nova(layout: Layout, passwords: dict[str, str], real_host=None) -> str:
    service = {"region_name": REGION}
    return _render(
        {
            "DEFAULT": {
                **_common(layout, "nova"),
                "transport_url": _messaging(layout),
                "compute_driver": "sandbox_guest.EmulatedGuestDriver",  # see sandbox/nova_compute.py
                "host": COMPUTE_HOST,
                "my_ip": HOST,
                "state_path": layout.data / "nova",
                "instances_path": layout.data / "nova" / "instances",
                # No agent ever reports the VIF as plugged: do not wait for it.
                "vif_plugging_is_fatal": "false",
                "vif_plugging_timeout": 0,
                # The fake driver builds instantly; let a burst of 100 through the compute manager without queueing.
                "max_concurrent_builds": 50,
                # No overcommit: the fake hypervisor is sized for the nodes instead.
                "initial_cpu_allocation_ratio": 1.0,
                "initial_ram_allocation_ratio": 1.0,
                "initial_disk_allocation_ratio": 1.0,
                "reserved_host_memory_mb": 0,
                "rpc_response_timeout": 120,
            },
            "wsgi": {"api_paste_config": layout.etc / "nova-api-paste.ini"},
            "api": {"auth_strategy": "keystone"},
            "api_database": {"connection": layout.db_url("nova_api"), "max_pool_size": 20, "max_overflow": 40},
            "database": {"connection": layout.db_url("nova"), "max_pool_size": 20, "max_overflow": 40},
            "oslo_concurrency": {"lock_path": layout.data / "nova" / "lock"},
            "keystone_authtoken": _authtoken(layout, "nova", passwords["nova"]),
            "placement": {**_auth(layout, "placement", passwords["placement"]), **service},
            "neutron": {**_auth(layout, "neutron", passwords["neutron"]), **service},
            "cinder": {**_auth(layout, "cinder", passwords["cinder"]), **service, "os_region_name": REGION},
            "glance": {**service, "cafile": layout.ca_cert},
            # Map the compute host into the cell within seconds of its start instead of waiting for an operator.
            "scheduler": {"discover_hosts_in_cells_interval": 2, "workers": 1},
            # Pick among the best 4 nodes at random, so a burst's concurrent requests don't all claim the same one.
            # The real host takes the guest image and nothing else; the guest image goes nowhere else (with no
            # real host, that image does not exist either).
            "filter_scheduler": {
                "host_subset_size": 4,
                "enabled_filters": "ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,"
                "ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter,IsolatedHostsFilter",
                "isolated_hosts": REAL_COMPUTE_HOST,
                "isolated_images": ",".join(isolated_images(real_host)),
                "restrict_isolated_hosts_to_isolated_images": "true",
            },
            "conductor": {"workers": 1},
            # Neutron's policy lets only a service (a service token with the `service` role) delete a compute
            # port: without it, deleting a server fails with "rule:delete_port is disallowed by policy".
            "service_user": {"send_service_user_token": "true", **_auth(layout, "nova", passwords["nova"])},
            "oslo_messaging_notifications": {"driver": "noop"},
            "oslo_policy": {"policy_file": layout.etc / "nova-policy.yaml"},
        }
    )


def nova_real(layout: Layout, real_host=None) -> str:
    """What the real host's nova-compute reads after nova.conf: Nova's libvirt driver on the sandbox's private
    libvirtd (sandbox/real_host.py)."""
    virt_type = getattr(real_host, "virt_type", "qemu")
    return _render(
        {
            "DEFAULT": {
                "host": REAL_COMPUTE_HOST,
                "compute_driver": "libvirt.LibvirtDriver",
                "instances_path": layout.real_instances,
                "log_file": layout.log / "nova-compute-real.log",
                # The guests read their metadata, keys and network from a config drive: no metadata service runs.
                "force_config_drive": "true",
                "config_drive_format": "iso9660",
                "mkisofs_cmd": "genisoimage",
                # Keep the image qcow2 in the cache (a raw copy of the 1.2 GB virtual disk buys nothing here).
                "force_raw_images": "false",
                # A 2-core machine shares its cores with the whole cloud: 2 test nodes of 8 vCPU at most; memory is
                # not overcommitted (placement refuses a third 8 GB guest on 24 GB).
                "initial_cpu_allocation_ratio": 8.0,
                "reserved_host_memory_mb": 2048,
                "max_concurrent_builds": 2,
            },
            "libvirt": {
                "virt_type": virt_type,
                "connection_uri": f"qemu:///system?socket={layout.libvirt_socket}",
                # TCG emulates a plain qemu64 CPU well; host-model needs hardware virtualisation.
                "cpu_mode": "host-passthrough" if virt_type == "kvm" else "none",
                # Throwaway guests: no flush ever reaches the disk.
                "disk_cachemodes": "file=unsafe",
                "inject_partition": -2,
            },
            "vnc": {"enabled": "false"},
            "spice": {"enabled": "false"},
        }
    )


def neutron(layout: Layout, passwords: dict[str, str]) -> str:
    return _render(
        {
            "DEFAULT": {
                **_common(layout, "neutron"),
                "transport_url": _messaging(layout),
                "core_plugin": "ml2",
                # Routers and floating IPs; a floating IP reports ACTIVE while associated (sandbox/neutron_l3.py).
                "service_plugins": "sandbox.neutron_l3.AgentlessL3RouterPlugin",
                "auth_strategy": "keystone",
                "state_path": layout.data / "neutron",
                # No agent reports a port's status, so there is no status change to tell Nova about; a floating IP
                # (dis)association is told, as on a real cloud: Nova refreshes the server's addresses at once
                # (zuul-launcher waits for the floating IP to show in them) instead of at its next periodic heal.
                "notify_nova_on_port_status_changes": "false",
                "notify_nova_on_port_data_changes": "true",
                "dhcp_agent_notification": "false",
                "api_paste_config": layout.etc / "neutron-api-paste.ini",
            },
            "database": {"connection": layout.db_url("neutron"), "max_pool_size": 20, "max_overflow": 40},
            "oslo_concurrency": {"lock_path": layout.data / "neutron" / "lock"},
            "keystone_authtoken": _authtoken(layout, "neutron", passwords["neutron"]),
            "nova": {**_auth(layout, "nova", passwords["nova"]), "region_name": REGION},
            "oslo_messaging_notifications": {"driver": "noop"},
            "ml2": {
                "type_drivers": "flat,vxlan",
                "tenant_network_types": "vxlan",
                "mechanism_drivers": "sandbox_bind_all",
                "extension_drivers": "port_security",
            },
            "ml2_type_flat": {"flat_networks": "public"},
            "ml2_type_vxlan": {"vni_ranges": "1:10000"},
            "oslo_policy": {"policy_file": layout.etc / "neutron-policy.yaml"},
        }
    )


def cinder(layout: Layout, passwords: dict[str, str]) -> str:
    return _render(
        {
            "DEFAULT": {
                **_common(layout, "cinder"),
                "transport_url": _messaging(layout),
                "auth_strategy": "keystone",
                "state_path": layout.data / "cinder",
                "enabled_backends": "fake",
                "default_volume_type": "__DEFAULT__",
                "my_ip": HOST,
                "host": "sandbox-volume",
                "api_paste_config": layout.etc / "cinder-api-paste.ini",
            },
            "database": {"connection": layout.db_url("cinder")},
            "oslo_concurrency": {"lock_path": layout.data / "cinder" / "lock"},
            "oslo_messaging_notifications": {"driver": "noop"},
            # Cinder's fake driver (volumes exist only as records, so a 500 GB volume costs nothing), extended to
            # make volumes from images the same way: boot-from-volume servers (sandbox/volume_driver.py).
            "fake": {"volume_driver": "sandbox.volume_driver.RecordsOnlyVolumeDriver", "volume_backend_name": "fake"},
            "keystone_authtoken": _authtoken(layout, "cinder", passwords["cinder"]),
            "nova": {**_auth(layout, "nova", passwords["nova"]), "region_name": REGION},
            "oslo_policy": {"policy_file": layout.etc / "cinder-policy.yaml"},
        }
    )
