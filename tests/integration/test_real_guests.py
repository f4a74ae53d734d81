"""The sandbox's real guests: its guest image booted by Nova's libvirt driver under QEMU on the real host, read by
the suite through its own paths (R5/R11 from the real console log, R6's reachability by an SSH handshake).

One suite run for the module, as a donor with a cloud-init image would run it: `--probe-image sandbox-guest`
(the profile's default, named here because tests/conftest.py points other runs at the suite's own image) and
`--probe-reachability`, on the provider-network profile (a floating IP would need NAT, which the sandbox never
sets up). Everything else of the real host (start, isolation, `down`) is checked against the session's sandbox.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import suite
from helpers.cloud import leftovers
from helpers.suite import run_prefix, verdicts

from sandbox import real_host
from sandbox.configs import COMPUTE_HOST, REAL_COMPUTE_HOST, SMALL_FLAVOR, TEST_NODE_FLAVOR

REPO_ROOT = Path(__file__).resolve().parents[2]
PROVIDER_PROFILE = REPO_ROOT / "tests" / "profiles" / "sandbox-provider.yaml"


@pytest.fixture(scope="module")
def real_run(sandbox, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("real-guests")
    proc = suite.run(
        sandbox.clouds_yaml,
        report_dir,
        f"--probe-image={real_host.GLANCE_NAME}",
        "--probe-reachability",
        "-k",
        "test_guest_probe or test_public_ip",
        profile=PROVIDER_PROFILE,
        timeout=1800,
    )
    return proc, verdicts(report_dir)


def boot(conn, image: str, flavor: str, network: str = "public"):
    server = conn.compute.create_server(
        name=f"real-guests-test-{image}",
        image_id=next(conn.image.images(name=image)).id,
        flavor_id=conn.compute.find_flavor(flavor, ignore_missing=False).id,
        networks=[{"uuid": conn.network.find_network(network, ignore_missing=False).id}],
    )
    return conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=180)


def test_the_real_host_runs_beside_the_fake_nodes(sandbox):
    running = sandbox.stack.table.running()
    assert {"virtlogd", "libvirtd", "nova-compute-real"} <= set(running)
    admin = sandbox.admin()
    hosts = {(h.service_details or {}).get("host") for h in admin.compute.hypervisors(details=True)}
    assert {COMPUTE_HOST, REAL_COMPUTE_HOST} <= hosts
    plan = real_host.RealHost.load(sandbox.layout)
    assert plan.enabled and plan.virt_type == ("kvm" if real_host.hardware_virtualisation() else "qemu")
    assert real_host.bridge_exists(sandbox.layout.bridge)
    status = subprocess.run(
        [sys.executable, "-m", "sandbox", "status"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"real host: {plan.virt_type}" in status.stdout and "libvirtd" in status.stdout
    assert f"guests' bridge {sandbox.layout.bridge} on {sandbox.layout.guest_net}," in status.stdout


def test_scheduler_keeps_the_os_less_image_off_the_real_host(sandbox):
    admin = sandbox.admin()
    server = boot(sandbox.connect("sandbox-zuul"), "sandbox-base", TEST_NODE_FLAVOR["name"])
    try:
        assert admin.compute.get_server(server.id).compute_host == COMPUTE_HOST
    finally:
        admin.compute.delete_server(server)
        admin.compute.wait_for_delete(server, wait=120)


def test_the_guest_image_boots_only_on_the_real_host_with_a_tap_on_the_bridge(sandbox):
    admin = sandbox.admin()
    server = boot(sandbox.connect("sandbox-zuul"), real_host.GLANCE_NAME, SMALL_FLAVOR["name"])
    try:
        assert admin.compute.get_server(server.id).compute_host == REAL_COMPUTE_HOST
        port = next(admin.network.ports(device_id=server.id))
        assert port.binding_vif_type == "tap"
        tap = f"tap{port.id[:11]}"
        assert tap in real_host.bridge_ports(sandbox.layout.bridge)
        assert len(real_host.guest_processes(sandbox.layout)) >= 1
    finally:
        admin.compute.delete_server(server)
        admin.compute.wait_for_delete(server, wait=120)
    assert tap not in real_host.bridge_ports(sandbox.layout.bridge)


def test_r5_reads_a_real_kernel(real_run):
    proc, results = real_run
    vcpus = results[("R5", "cpu.vcpus")]
    assert vcpus["verdict"] == "PASS", proc.stdout[-3000:]
    assert vcpus["measured"] == f"{TEST_NODE_FLAVOR['vcpus']} vCPU in the guest"
    data = vcpus["data"]
    assert data["emulated"] is False and data["guest"].startswith("real guest (")
    assert data["probe"]["virt"] in ("qemu", "kvm")
    # The guest's own kernel (Debian's cloud kernel of the image), which the fake nodes' emulation never prints.
    assert data["probe"]["kernel"].endswith("-cloud-amd64")
    assert data["probe_image"]["name"] == real_host.GLANCE_NAME
    assert "real guest (QEMU TCG)" in vcpus["reason"] or data["probe"]["virt"] == "kvm"
    memory = results[("R5", "cpu.memory")]
    assert memory["verdict"] == "PASS" and int(memory["measured"].split()[0]) >= 0.9 * TEST_NODE_FLAVOR["ram"]
    assert "R5 cpu.vcpus" in proc.stdout and "real guest" in proc.stdout


def test_r11_under_tcg_is_not_measurable_rather_than_a_pass(real_run):
    _, results = real_run
    steal = results[("R11", "overcommit.steal")]
    if steal["data"]["probe"]["virt"] == "qemu":
        assert steal["verdict"] == "SKIP"
        assert "no steal clock" in steal["reason"] and steal["measured"].startswith("not measurable")
    else:
        assert steal["verdict"] in ("PASS", "FAIL")


def test_r6_reachability_is_an_ssh_handshake_with_the_probe_image_node(real_run, sandbox):
    proc, results = real_run
    reach = results[("R6", "public_ip.reachable")]
    assert reach["verdict"] == "PASS", reach["reason"]
    assert reach["data"]["host_key_type"].startswith(("ssh-ed25519", "ecdsa-sha2"))
    assert ipaddress.ip_address(reach["data"]["addr"]) in ipaddress.ip_network(sandbox.layout.guest_net)
    # The node also has an address of the public net's IPv6 range, which no route reaches: Nova may list it
    # first, and the check must not wait on it (CI waited its 900 s there and failed).
    assert any(":" in addr for addr in reach["data"]["tried"]), reach["data"]
    assert reach["data"]["probe_image"]["name"] == real_host.GLANCE_NAME
    public = results[("R6", "public_ip")]
    assert public["data"]["mode"] == "provider" and public["data"]["network"]["name"] == "public"
    assert set(public["data"]["project_networks"]) == {"private", "public"}


def test_nothing_of_the_run_is_left_on_the_real_host(real_run, sandbox):
    proc, _ = real_run
    prefix = run_prefix(proc.stdout)
    assert prefix and leftovers(sandbox, prefix) == []
    assert real_host.guest_processes(sandbox.layout) == []
    assert real_host.bridge_ports(sandbox.layout.bridge) == []
