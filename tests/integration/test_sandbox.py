"""The sandbox cloud itself: real sessions as each user, the things a donated cloud must do, and the variants.

Runs against the session's sandbox (tests/conftest.py). Every resource made here is deleted by the test that
made it; every variant is restored by its context manager.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openstack
import pytest

from sandbox.configs import MIRROR_FLAVOR, QUOTAS, TEST_NODE_FLAVOR
from sandbox.processes import ProcessTable
from sandbox.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]


def unique(prefix: str) -> str:
    # Not the suite's run prefix: the sandbox's own tests must not look like leftovers of a conformance run.
    return f"sandboxtest-{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def zuul(sandbox):
    return sandbox.connect("sandbox-zuul")


@pytest.fixture(scope="module")
def ci(sandbox):
    return sandbox.connect("sandbox-ci")


@pytest.fixture(scope="module")
def image(zuul, tmp_path_factory):
    """A raw image uploaded by the zuul user (Glance inspects data: raw is any bytes, declared as raw)."""
    path = tmp_path_factory.mktemp("image") / "disk.raw"
    path.write_bytes(os.urandom(2 * 1024 * 1024))
    created = zuul.image.create_image(
        name=unique("image"), filename=str(path), disk_format="raw", container_format="bare", wait=True
    )
    yield zuul.image.get_image(created.id)
    zuul.image.delete_image(created)


def boot(conn, image, flavor_name, network_name="private", **kwargs):
    flavor = conn.compute.find_flavor(flavor_name, ignore_missing=False)
    network = conn.network.find_network(network_name, ignore_missing=False)
    server = conn.compute.create_server(
        name=unique("server"), image_id=image.id, flavor_id=flavor.id, networks=[{"uuid": network.id}], **kwargs
    )
    return conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=180)


def delete(conn, server):
    conn.compute.delete_server(server)
    conn.compute.wait_for_delete(server, interval=1, wait=120)


def test_clouds_yaml_has_the_four_entries_over_https_with_the_ca(sandbox):
    zuul_entry = sandbox.cloud_config("sandbox-zuul")
    assert zuul_entry["auth"]["auth_url"].startswith("https://127.0.0.1:")
    assert Path(zuul_entry["cacert"]).exists()
    assert sandbox.cloud_config("sandbox-zuul-http")["auth"]["auth_url"].startswith("http://127.0.0.1:")
    assert {"sandbox-zuul", "sandbox-ci", "sandbox-admin", "sandbox-zuul-http"} <= set(
        __import__("yaml").safe_load(sandbox.clouds_yaml.read_text())["clouds"]
    )


@pytest.mark.parametrize("cloud,project", [("sandbox-zuul", "zuul"), ("sandbox-ci", "ci")])
def test_each_user_gets_a_token_over_https_in_its_project_as_member_only(sandbox, cloud, project):
    conn = sandbox.connect(cloud)
    access = conn.session.auth.get_access(conn.session)
    assert conn.session.auth.auth_url.startswith("https://")
    assert access.project_name == project
    assert set(access.role_names) == {"member", "reader"} or set(access.role_names) == {"member"}


def test_flavors_and_quotas_are_shaped_like_a_donated_cloud(sandbox, zuul):
    flavors = {f.name: f for f in zuul.compute.flavors()}
    standard = flavors[TEST_NODE_FLAVOR["name"]]
    assert (standard.vcpus, standard.ram, standard.disk) == (8, 8192, 80)
    assert MIRROR_FLAVOR["name"] in flavors
    assert any(f.vcpus < 8 for f in flavors.values()), "a small non-conforming flavor exists"
    limits = zuul.compute.get_limits().absolute
    assert limits.instances == QUOTAS["zuul"]["instances"] >= 100


def test_image_upload_and_boot_from_it_with_a_floating_ip(sandbox, zuul, image):
    assert image.status == "active"
    server = boot(zuul, image, TEST_NODE_FLAVOR["name"])
    try:
        port = next(zuul.network.ports(device_id=server.id))
        # Bound by the sandbox's agentless driver (binding details are visible to the admin only).
        assert sandbox.admin().network.get_port(port.id).binding_vif_type == "ovs"
        public = zuul.network.find_network("public", ignore_missing=False)
        assert public.is_router_external
        fip = zuul.network.create_ip(floating_network_id=public.id, port_id=port.id)
        try:
            fip = zuul.network.get_ip(fip.id)
            assert fip.port_id == port.id
            assert ipaddress.ip_address(fip.floating_ip_address) in ipaddress.ip_network(sandbox.layout.guest_net)
        finally:
            zuul.network.delete_ip(fip)
    finally:
        delete(zuul, server)


def test_server_on_the_public_network_gets_ipv4_and_ipv6(zuul, image):
    server = boot(zuul, image, TEST_NODE_FLAVOR["name"], network_name="public")
    try:
        versions = {a["version"] for a in server.addresses["public"]}
        assert versions == {4, 6}
    finally:
        delete(zuul, server)


def test_500gb_volume_attaches_to_a_mirror_server_in_ci(sandbox, ci, tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\1" * 1024 * 1024)
    image = ci.image.create_image(
        name=unique("image"), filename=str(path), disk_format="raw", container_format="bare", wait=True
    )
    server = boot(ci, image, MIRROR_FLAVOR["name"])
    volume = ci.block_storage.create_volume(size=500, name=unique("volume"))
    try:
        volume = ci.block_storage.wait_for_status(volume, status="available", failures=["error"], interval=1, wait=120)
        ci.compute.create_volume_attachment(server, volume=volume)
        volume = ci.block_storage.wait_for_status(
            volume, status="in-use", failures=["error", "error_attaching"], interval=1, wait=120
        )
        assert volume.size == 500
        assert [a["server_id"] for a in volume.attachments] == [server.id]
        ci.compute.delete_volume_attachment(server, volume)
        ci.block_storage.wait_for_status(volume, status="available", interval=1, wait=120)
    finally:
        delete(ci, server)
        ci.block_storage.delete_volume(volume)
        ci.block_storage.wait_for_delete(volume, interval=1, wait=120)
        ci.image.delete_image(image)


def test_cinders_scheduler_and_volume_are_each_a_service_that_heartbeats(sandbox):
    """sandbox/cinder_daemons.py starts both from one import of Cinder: each must still be a service of its own,
    whose heartbeat (every report_interval, 10 s) moves its own row. In one process they once shared one row's id,
    and the scheduler showed "down" a minute after start, whatever the sandbox's age when this runs."""
    from conformance.resources import Waiter

    admin = sandbox.admin()
    binaries = ("cinder-scheduler", "cinder-volume")

    def rows():
        return {s.binary: s for s in admin.block_storage.services() if s.binary in binaries}

    first = rows()
    assert set(first) == set(binaries) and first["cinder-volume"].host.endswith("@fake")
    assert all(first[b].state == "up" for b in binaries), {b: first[b].state for b in binaries}
    assert Waiter(45).poll(lambda: all(r.updated_at != first[b].updated_at for b, r in rows().items()), 2.0), (
        "a Cinder service stopped its heartbeat"
    )
    table = sandbox.stack.table.load()
    assert "cinder-scheduler+volume" in table and not set(binaries) & set(table)


def test_twenty_servers_boot_concurrently_and_are_deleted(sandbox, image):
    flavor_id = sandbox.connect("sandbox-zuul").compute.find_flavor(TEST_NODE_FLAVOR["name"], ignore_missing=False).id
    network_id = sandbox.connect("sandbox-zuul").network.find_network("private", ignore_missing=False).id
    prefix = unique("burst")

    def create(index):
        conn = sandbox.connect("sandbox-zuul")
        return conn.compute.create_server(
            name=f"{prefix}-{index}", image_id=image.id, flavor_id=flavor_id, networks=[{"uuid": network_id}]
        ).id

    with ThreadPoolExecutor(10) as pool:
        ids = list(pool.map(create, range(20)))
    conn = sandbox.connect("sandbox-zuul")
    try:

        def states():
            return {s.id: s.status for s in conn.compute.servers(name=f"^{prefix}-")}

        settled = openstack.utils.iterate_timeout(300, "20 servers to settle", wait=2)
        for _ in settled:
            seen = states()
            if len(seen) == 20 and all(status in ("ACTIVE", "ERROR") for status in seen.values()):
                break
        assert sorted(seen.values()) == ["ACTIVE"] * 20
    finally:
        for server_id in ids:
            conn.compute.delete_server(server_id)
        for _ in openstack.utils.iterate_timeout(300, "20 servers to go", wait=2):
            if not list(conn.compute.servers(name=f"^{prefix}-")):
                break


# ---- variants: each changes exactly what it says, through the API, and restores -------------------------------


def test_quota_variant_sets_and_restores(sandbox, zuul):
    before = zuul.compute.get_limits().absolute.instances
    with sandbox.quota("zuul", instances=99):
        assert zuul.compute.get_limits().absolute.instances == 99
    assert zuul.compute.get_limits().absolute.instances == before


def test_flavor_variant_replaces_and_restores(sandbox, zuul):
    with sandbox.test_flavor(vcpus=4):
        assert zuul.compute.find_flavor(TEST_NODE_FLAVOR["name"], ignore_missing=False).vcpus == 4
    restored = zuul.compute.find_flavor(TEST_NODE_FLAVOR["name"], ignore_missing=False)
    assert (restored.vcpus, restored.ram, restored.disk) == (8, 8192, 80)


def test_role_variant_grants_and_revokes(sandbox):
    def roles():
        conn = sandbox.connect("sandbox-zuul")
        return conn.session.auth.get_access(conn.session).role_names

    with sandbox.role("zuul", "admin"):
        assert "admin" in roles()
    assert "admin" not in roles()


def test_without_service_removes_and_restores_the_endpoints(sandbox):
    def endpoints():
        conn = sandbox.connect("sandbox-ci")
        return (
            conn.session.auth.get_access(conn.session)
            .service_catalog.get_endpoints(service_type="block-storage")
            .get("block-storage")
        )

    with sandbox.without_service("block-storage"):
        assert not endpoints()
    assert endpoints()


def test_policy_variant_forbids_image_upload_and_restores(sandbox, zuul, tmp_path):
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\2" * 1024 * 1024)
    with sandbox.policy("glance", "deny-upload"):
        with pytest.raises(openstack.exceptions.ForbiddenException):
            zuul.image.create_image(
                name=unique("denied"), filename=str(path), disk_format="raw", container_format="bare", wait=True
            )
    image = zuul.image.create_image(
        name=unique("allowed"), filename=str(path), disk_format="raw", container_format="bare", wait=True
    )
    zuul.image.delete_image(image)
    assert not [i for i in zuul.image.images() if i.name.startswith("sandboxtest-denied")]


def test_without_external_network_and_restore(sandbox, zuul):
    admin = sandbox.admin()
    with sandbox.without_external_network():
        assert not admin.network.find_network("public", ignore_missing=False).is_router_external
        assert not list(zuul.network.networks(is_router_external=True))
    assert admin.network.find_network("public", ignore_missing=False).is_router_external
    assert zuul.network.find_network("public", ignore_missing=False).is_router_external
    router = zuul.network.find_router("router", ignore_missing=False)
    assert router.external_gateway_info["network_id"] == zuul.network.find_network("public", ignore_missing=False).id


def test_paused_freezes_and_resumes_the_process(sandbox):
    proc = ProcessTable(sandbox.layout.processes).running()["nova-compute"]

    def state():
        return Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    # A signal takes effect when the kernel next schedules the target: wait (bounded) for the state to show it.
    with sandbox.paused("nova-compute"):
        assert wait_for(lambda: state() == "T", timeout=10, interval=0.05, raise_on_timeout=False), state()
    assert wait_for(lambda: state() != "T", timeout=10, interval=0.05, raise_on_timeout=False), state()


def test_guest_emulation_prints_probe_lines_from_the_flavor_and_the_variant(sandbox, zuul, image):
    server = boot(zuul, image, TEST_NODE_FLAVOR["name"], user_data=_b64("#!/bin/sh\necho conformance-probe\n"))
    plain = boot(zuul, image, TEST_NODE_FLAVOR["name"])
    try:

        def probe(target):
            text = zuul.compute.get_server_console_output(target)["output"]
            return dict(
                line.split(": ", 1)[1].split("=", 1)
                for line in text.splitlines()
                if line.startswith("conformance-probe: ")
            )

        values = probe(server)
        assert values["nproc"] == "8" and values["emulated"] == "sandbox"
        assert int(values["memtotal_kb"]) < 8192 * 1024
        assert float(values["cpu_mhz"]) >= 2400
        with sandbox.guest(cpu_mhz=1200, steal_percent=30):
            slowed = probe(server)
            assert (float(slowed["cpu_mhz"]), float(slowed["steal_percent"])) == (1200, 30)
        assert probe(server)["cpu_mhz"] == values["cpu_mhz"]
        assert probe(plain) == {}, "no probe lines without the probe's user-data"
    finally:
        delete(zuul, server)
        delete(zuul, plain)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


# ---- command line ----------------------------------------------------------------------------------------------


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_up_on_a_running_sandbox_says_so(sandbox):
    result = run_cli("up", env={"SANDBOX_DIR": str(sandbox.layout.root)})
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_down_when_nothing_runs_says_so(tmp_path):
    result = run_cli("down", env={"SANDBOX_DIR": str(tmp_path / "nothing")})
    assert result.returncode == 0
    assert "not running" in result.stdout


def test_status_lists_every_process_with_memory(sandbox):
    result = run_cli("status", env={"SANDBOX_DIR": str(sandbox.layout.root)})
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("keystone", "nova-compute", "neutron", "cinder-scheduler+volume", "mariadb", "rabbitmq"):
        assert name in result.stdout
    assert "total" in result.stdout and "MB" in result.stdout


def test_service_stop_then_start_brings_an_api_back_as_it_was(sandbox):
    """With another process still stopped (keystone-http, which nothing here uses): `start` minds only the
    process it starts."""
    env = {"SANDBOX_DIR": str(sandbox.layout.root)}
    before = sandbox.stack.table.load()["nova-api"]
    with sandbox.http_keystone():
        for name in ("keystone-http", "nova-api"):
            stopped = run_cli("service", "stop", name, env=env)
            assert stopped.returncode == 0, stopped.stderr
        try:
            status = run_cli("status", env=env)
            assert status.returncode == 1, "a stopped process makes `status` fail"
            assert re.search(r"^nova-api\s+\d+\s+EXITED", status.stdout, re.M), status.stdout
            started = run_cli("service", "start", "nova-api", env=env)
        finally:
            for name in ("nova-api", "keystone-http"):
                if name not in sandbox.stack.table.running():
                    run_cli("service", "start", name, env=env)
    assert started.returncode == 0, started.stderr
    assert "Traceback" not in started.stderr + started.stdout
    # `start` returns once the API answers, started as `up` started it.
    assert sandbox.connect("sandbox-admin").compute.get("/").status_code == 200
    assert run_cli("status", env=env).returncode == 0
    assert sandbox.stack.table.load()["nova-api"].argv == before.argv


def test_the_http_keystone_answers_only_inside_its_variant(sandbox):
    """`up` leaves Keystone's plain http listener out; `with keystone-http` runs it for the command, which can
    authenticate over it with the sandbox-zuul-http entry, and stops it after: `status` lists only what `up`
    started."""
    env = {"SANDBOX_DIR": str(sandbox.layout.root)}
    http_url = sandbox.cloud_config("sandbox-zuul-http")["auth"]["auth_url"]
    assert "keystone-http" not in sandbox.stack.table.load()
    code = (
        "import openstack; c = openstack.connect(cloud='sandbox-zuul-http'); "
        "print(c.session.auth.auth_url, c.compute.get_limits().absolute.instances)"
    )
    result = run_cli("with", "keystone-http", "--", sys.executable, "-c", code, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{http_url} {QUOTAS['zuul']['instances']}"
    assert "keystone-http" not in sandbox.stack.table.load()
    status = run_cli("status", env=env)
    assert status.returncode == 0 and "keystone-http" not in status.stdout, status.stdout
    with sandbox.http_keystone():
        assert "keystone-http" in sandbox.stack.table.running()
        with sandbox.http_keystone():  # nested: the inner one leaves it to the outer one
            pass
        assert "keystone-http" in sandbox.stack.table.running()
    assert "keystone-http" not in sandbox.stack.table.load()


@pytest.mark.parametrize("action", ["stop", "start"])
def test_service_on_an_unknown_process_is_one_line(sandbox, action):
    result = run_cli("service", action, "nova-apii", env={"SANDBOX_DIR": str(sandbox.layout.root)})
    assert result.returncode != 0
    assert result.stderr.strip() == "sandbox: no sandbox process named 'nova-apii'"
    assert result.stdout == ""


def test_with_applies_a_variant_around_a_command_and_restores(sandbox, zuul):
    code = (
        "import openstack; c = openstack.connect(cloud='sandbox-zuul'); "
        "print(c.compute.get_limits().absolute.instances)"
    )
    result = run_cli(
        "with",
        "quota",
        "zuul",
        "instances=42",
        "--",
        sys.executable,
        "-c",
        code,
        env={"SANDBOX_DIR": str(sandbox.layout.root)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "42"
    assert zuul.compute.get_limits().absolute.instances == QUOTAS["zuul"]["instances"]


def test_no_process_listens_on_a_unix_socket_outside_the_sandbox_directory(sandbox):
    """Everything `up` started keeps its sockets in .sandbox/ (MariaDB's), none in the user's home (gunicorn's
    default control socket) or anywhere else. libvirtd and virtlogd name theirs /run/libvirt/..., in their own
    mount namespace where that is .sandbox/data/libvirt/run: a socket counts as inside when the file the process
    reaches by its path is one of .sandbox/'s."""
    import stat

    from sandbox.processes import group_members

    inside = {(st.st_dev, st.st_ino) for st in (os.lstat(p) for p in sandbox.layout.root.rglob("*") if p.is_socket())}

    def reached(pid: int, path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(f"/proc/{pid}/root{path}")  # the path in the process's own mount namespace
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None

    unix_paths = {}  # inode -> path, for the bound (named) Unix sockets of the machine
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[7].startswith("/"):
            unix_paths[fields[6]] = fields[7]
    outside = set()
    for proc in sandbox.stack.table.running().values():
        for pid in group_members(proc.pid) or [proc.pid]:
            try:
                links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                continue
            for link in links:
                path = unix_paths.get(link.removeprefix("socket:[").removesuffix("]"))
                if path and not path.startswith(str(sandbox.layout.root)) and reached(pid, path) not in inside:
                    outside.add(f"{proc.name}: {path}")
    assert outside == set()


def test_process_table_records_start_times(sandbox):
    table = json.loads(sandbox.layout.processes.read_text())
    assert all(entry["start_ticks"] > 0 for entry in table.values())


def test_a_burst_of_100_test_nodes_all_becomes_active(sandbox, run_suite, tmp_path):
    """The sandbox takes the sandbox profile's full burst (100 nodes of the test flavor) without an error:
    the fake hypervisor is sized for it and the APIs' request-line limit fits nova's long neutron queries."""
    report_dir = tmp_path / "reports"
    proc = run_suite("-k", "boot_burst", report_dir=report_dir)
    results = json.loads(next(report_dir.glob("*/results.json")).read_text())["results"]
    burst = next(r for r in results if r["check"] == "burst.failure_rate")
    assert burst["verdict"] == "PASS", proc.stdout[-3000:]
    summary = next(r for r in results if r["check"] == "burst.p95")["data"]["summary"]
    assert (summary["n"], summary["active"], summary["error"]) == (100, 100, 0)
    assert proc.returncode == 0, proc.stdout[-3000:]
