"""The sandbox's Python API: start/stop, and variants that make the running cloud non-conforming in one respect.

Each variant is a context manager that applies one change through the admin API or the services' own config
and restores the previous state on exit:

    sb = Sandbox()
    with sb.quota("zuul", instances=99):
        ...   # R8 must fail here
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import warnings
from contextlib import contextmanager
from pathlib import Path

import openstack
import yaml

from sandbox import configs, seed
from sandbox.layout import REGION, Layout
from sandbox.processes import process_state
from sandbox.stack import Stack
from sandbox.waiting import SandboxError, wait_for

# Named policy changes: service -> name -> rules written into that service's policy file.
POLICIES = {
    "glance": {
        "deny-upload": {"add_image": "!", "upload_image": "!"},
    },
    "nova": {
        "deny-console": {"os_compute_api:os-console-output": "!"},
        "deny-keypairs": {"os_compute_api:os-keypairs:create": "!"},
    },
    "neutron": {
        "deny-floatingip": {"create_floatingip": "!"},
    },
}


# Where each service registers its default policy rules (imported only when a policy variant is restored).
POLICY_MODULES = {
    "glance": lambda: importlib.import_module("glance.policies"),
    "nova": lambda: importlib.import_module("nova.policies"),
    "neutron": lambda: importlib.import_module("neutron.conf.policies"),
}


SECOND_REGION = "RegionTwo"
# The clouds.yaml entries of the two projects' users: what a conformance run is pointed at.
PROJECT_CLOUDS = ("sandbox-zuul", "sandbox-ci")


class Sandbox:
    def __init__(self, layout: Layout | None = None):
        self.layout = layout or Layout.from_env()
        self.stack = Stack(self.layout)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def clouds_yaml(self) -> Path:
        return self.layout.clouds_yaml

    def is_running(self) -> bool:
        return self.stack.is_running()

    def up(self) -> None:
        self.stack.up()

    def down(self) -> list[str]:
        return self.stack.down()

    def status(self):
        return self.stack.status()

    # ---- access ----------------------------------------------------------------------------------------------
    def cloud_config(self, cloud: str) -> dict:
        return yaml.safe_load(self.clouds_yaml.read_text())["clouds"][cloud]

    def password(self, cloud: str) -> str:
        return self.cloud_config(cloud)["auth"]["password"]

    def connect(self, cloud: str) -> openstack.connection.Connection:
        config = openstack.config.OpenStackConfig(config_files=[str(self.clouds_yaml)])
        return openstack.connection.Connection(config=config.get_one(cloud=cloud))

    def admin(self) -> openstack.connection.Connection:
        return self.connect("sandbox-admin")

    def project_id(self, project: str) -> str:
        return self.admin().identity.find_project(project, ignore_missing=False).id

    # ---- variants --------------------------------------------------------------------------------------------
    @contextmanager
    def quota(self, project: str, **limits: int):
        """Set quotas of a project by name (instances, cores, ram, port, floatingip, gigabytes, volumes...)."""
        conn = self.admin()
        project_id = self.project_id(project)
        before = seed.get_quotas(conn, project_id, limits)
        seed.set_quotas(conn, project_id, limits)
        try:
            yield
        finally:
            seed.set_quotas(conn, project_id, before)

    @contextmanager
    def test_flavor(self, **values: int):
        """Replace the conforming test-node flavor by one with other values (vcpus=4, ram=..., disk=...)."""
        conn = self.admin()
        original = configs.TEST_NODE_FLAVOR
        unknown = set(values) - {"vcpus", "ram", "disk"}
        if unknown:
            raise SandboxError(f"unknown flavor field(s): {', '.join(sorted(unknown))}")
        self._replace_flavor(conn, {**original, **values})
        try:
            yield
        finally:
            self._replace_flavor(conn, original)

    @staticmethod
    def _replace_flavor(conn, flavor: dict) -> None:
        try:
            conn.compute.delete_flavor(conn.compute.find_flavor(flavor["name"], ignore_missing=False))
        except openstack.exceptions.NotFoundException:
            pass
        conn.compute.create_flavor(**flavor)

    @contextmanager
    def role(self, project: str, role: str):
        """Grant a role (e.g. admin) to the project's sandbox user in its project."""
        conn = self.admin()
        identity = conn.identity
        project_obj = identity.find_project(project, ignore_missing=False)
        user = identity.find_user(seed.PROJECT_USERS[project], ignore_missing=False)
        role_obj = identity.find_role(role, ignore_missing=False)
        identity.assign_project_role_to_user(project_obj, user, role_obj)
        try:
            yield
        finally:
            identity.unassign_project_role_from_user(project_obj, user, role_obj)

    @contextmanager
    def without_service(self, service_type: str):
        """Remove a service's endpoints from the catalog (tokens issued afterwards lack it)."""
        conn = self.admin()
        services = [s for s in conn.identity.services() if s.type == service_type]
        if not services:
            raise SandboxError(f"no service of type {service_type!r} in the catalog")
        removed = []
        for service in services:
            for endpoint in conn.identity.endpoints(service_id=service.id):
                removed.append((endpoint.interface, endpoint.url))
                conn.identity.delete_endpoint(endpoint)
        try:
            yield
        finally:
            for service in services:
                for interface, url in removed:
                    conn.identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=REGION)

    @contextmanager
    def second_region(self, name: str = SECOND_REGION):
        """A second region: every catalog endpoint registered again under `name` (the same services answer both
        regions, as one Nova, Glance... would behind two catalogs), and the project users' clouds.yaml entries
        naming both regions, so a run checks both. Tokens issued afterwards carry the new endpoints."""
        conn = self.admin()
        identity = conn.identity
        region_made = False
        try:
            identity.get_region(name)
        except openstack.exceptions.NotFoundException:
            identity.create_region(id=name, description="sandbox: the same services as " + REGION)
            region_made = True
        added = [
            identity.create_endpoint(service_id=e.service_id, interface=e.interface, url=e.url, region_id=name)
            for e in list(identity.endpoints(region_id=REGION))
        ]
        before = self.clouds_yaml.read_text()
        config = yaml.safe_load(before)
        for cloud in PROJECT_CLOUDS:
            entry = config["clouds"][cloud]
            entry["regions"] = [entry.pop("region_name", REGION), name]
        self.clouds_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
        try:
            yield
        finally:
            self.clouds_yaml.write_text(before)
            for endpoint in added:
                identity.delete_endpoint(endpoint)
            if region_made:
                identity.delete_region(name)

    @contextmanager
    def policy(self, service: str, name: str):
        """Apply a named policy change (see POLICIES); oslo.policy re-reads the file on its next check."""
        try:
            rules = POLICIES[service][name]
        except KeyError:
            known = ", ".join(f"{s} {n}" for s, names in POLICIES.items() for n in names)
            raise SandboxError(f"unknown policy variant {service} {name}; known: {known}") from None
        path = self.layout.etc / f"{service}-policy.yaml"
        before = yaml.safe_load(path.read_text()) or {}
        path.write_text(yaml.safe_dump({**before, **rules}))
        try:
            yield
        finally:
            # Rules removed from the file are not reset to their defaults by oslo.policy's reload (they stay as
            # last loaded), so the restore writes each changed rule's default explicitly.
            with warnings.catch_warnings():
                # The services' own rule definitions trip oslo.policy's deprecation checks (nova's
                # flavor-extra-specs rules): their data, nothing the sandbox could change.
                warnings.simplefilter("ignore", DeprecationWarning)
                defaults = {rule.name: rule.check_str for rule in POLICY_MODULES[service]().list_rules()}
            path.write_text(yaml.safe_dump({**{name: defaults[name] for name in rules}, **before}))

    @contextmanager
    def without_external_network(self):
        """Make the public network internal: no floating IP pool, no provider network with public addresses."""
        conn = self.admin()
        network = conn.network.find_network(seed.PUBLIC_NETWORK_NAME, ignore_missing=False)
        routers = [r for r in conn.network.routers() if (r.external_gateway_info or {}).get("network_id") == network.id]
        for router in routers:
            conn.network.update_router(router, external_gateway_info={})
        conn.network.update_network(network, is_router_external=False, is_shared=False)
        try:
            yield
        finally:
            conn.network.update_network(network, is_router_external=True, is_shared=True)
            for router in routers:
                conn.network.update_router(router, external_gateway_info={"network_id": network.id})

    @contextmanager
    def unshared_external_network(self):
        """Keep the public network external but stop sharing it: no booting on it directly (provider), so public
        addresses come only as floating IPs from it."""
        conn = self.admin()
        network = conn.network.find_network(seed.PUBLIC_NETWORK_NAME, ignore_missing=False)
        conn.network.update_network(network, is_shared=False)
        try:
            yield
        finally:
            conn.network.update_network(network, is_shared=True)

    @contextmanager
    def http_keystone(self):
        """Keystone's plain http listener (the `sandbox-zuul-http` clouds.yaml entry) for the duration: started
        and, once it answers, yielded; stopped on exit unless it was running before."""
        started = self.stack.start_on_demand("keystone-http")
        try:
            yield
        finally:
            if started:
                self.stack.stop_on_demand("keystone-http")

    @contextmanager
    def paused(self, service: str):
        """Freeze a service's processes (SIGSTOP) as if it hung, and let them go on (SIGCONT) on exit."""
        proc = self.stack.table.running().get(service)
        if not proc:
            raise SandboxError(f"no running sandbox process named {service!r}")
        os.killpg(proc.pid, signal.SIGSTOP)
        # A signal takes effect when the kernel next schedules the target: return only once it has.
        wait_for(lambda: process_state(proc.pid) == "T", timeout=10, interval=0.02, what=f"{service} to stop")
        try:
            yield
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
            wait_for(lambda: process_state(proc.pid) != "T", timeout=10, interval=0.02, what=f"{service} to continue")

    @contextmanager
    def guest(self, cpu_mhz: float | None = None, steal_percent: float | None = None):
        """Change what the guest emulation reports (see sandbox/guest_emulation.py)."""
        path = self.layout.guest_file
        before = path.read_text() if path.exists() else None
        settings = json.loads(before) if before else {}
        if cpu_mhz is not None:
            settings["cpu_mhz"] = cpu_mhz
        if steal_percent is not None:
            settings["steal_percent"] = steal_percent
        path.write_text(json.dumps(settings))
        try:
            yield
        finally:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(before)
