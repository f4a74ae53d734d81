"""The sandbox's real compute host, without starting it: what `up` decides, how it configures Nova, Neutron's
binding and libvirtd, and the suite's reading of a real guest (virt, steal clock, SSH handshake)."""

from __future__ import annotations

import configparser
import socket
import threading
from types import SimpleNamespace

import pytest

from conformance import probe
from sandbox import configs, real_host, stack
from sandbox.layout import GUEST_NETS, Layout
from sandbox.waiting import SandboxError


@pytest.fixture
def layout(tmp_path):
    return Layout(tmp_path / "state")


def conf(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


@pytest.mark.parametrize(
    "flags, kvm_exists, expected",
    [
        ("fpu vme vmx sse2", True, True),
        ("fpu svm sse2", True, True),
        ("fpu sse2 hypervisor", True, False),  # a /dev/kvm of software nested virtualisation: TCG is faster
        ("fpu vmx", False, False),
    ],
)
def test_kvm_only_with_hardware_virtualisation(tmp_path, flags, kvm_exists, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    kvm = tmp_path / "kvm"
    if kvm_exists:
        kvm.write_text("")
    assert real_host.hardware_virtualisation(cpuinfo, kvm) is expected


def test_missing_qemu_and_memory_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(real_host.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(real_host, "available_mb", lambda: 1024)
    missing = real_host.missing_prerequisites()
    assert "qemu-system-x86_64 (apt package qemu-system-x86)" in missing
    assert "libvirtd (apt package libvirt-daemon-system)" in missing
    assert any("MB of free memory" in m and "MemAvailable: 1024 MB" in m for m in missing)


def test_up_refuses_with_one_line_naming_the_fix(monkeypatch, layout):
    monkeypatch.delenv("SANDBOX_REAL_GUESTS", raising=False)
    missing = ["qemu-system-x86_64 (apt package qemu-system-x86)"]
    monkeypatch.setattr(real_host, "missing_prerequisites", lambda: missing)
    monkeypatch.setattr(stack.guest_image, "missing_prerequisites", lambda: [])
    with pytest.raises(SandboxError) as raised:
        stack.Stack(layout, say=lambda line: None)._plan_real_host()
    message = str(raised.value)
    assert "qemu-system-x86" in message and "SANDBOX_REAL_GUESTS=0" in message and "\n" not in message


def test_real_guests_off_is_an_option(monkeypatch, layout):
    monkeypatch.setenv("SANDBOX_REAL_GUESTS", "0")
    monkeypatch.setattr(real_host, "missing_prerequisites", lambda: pytest.fail("not checked when off"))
    plan = stack.Stack(layout, say=lambda line: None)._plan_real_host()
    assert not plan.enabled and plan.reason == "SANDBOX_REAL_GUESTS=0"


def test_glance_ids_are_fixed_per_image_build():
    first, again, other = real_host.glance_ids("aaaa"), real_host.glance_ids("aaaa"), real_host.glance_ids("bbbb")
    assert first == again and first != other
    assert len(set(first.values())) == 3


def test_nova_isolates_the_guest_image_on_the_real_host(layout):
    plan = real_host.RealHost(
        enabled=True,
        virt_type="qemu",
        bridge="sbxbr0",
        image={"name": "sandbox-guest", "key": "k", "ids": real_host.glance_ids("k")},
    )
    nova = conf(configs.nova(layout, {name: "x" for name in ("nova", "placement", "neutron", "cinder")}, plan))
    scheduler = nova["filter_scheduler"]
    assert "IsolatedHostsFilter" in scheduler["enabled_filters"].split(",")
    assert scheduler["isolated_hosts"] == configs.REAL_COMPUTE_HOST
    assert scheduler["isolated_images"] == plan.image["ids"]["disk"]
    assert scheduler["restrict_isolated_hosts_to_isolated_images"] == "true"
    off = conf(
        configs.nova(
            layout,
            {name: "x" for name in ("nova", "placement", "neutron", "cinder")},
            real_host.RealHost(enabled=False),
        )
    )
    assert off["filter_scheduler"]["isolated_images"] == ""  # restrictive: nothing boots on a real host


@pytest.mark.parametrize("virt_type, cpu_mode", [("qemu", "none"), ("kvm", "host-passthrough")])
def test_real_compute_configuration(layout, virt_type, cpu_mode):
    real = conf(configs.nova_real(layout, real_host.RealHost(enabled=True, virt_type=virt_type)))
    assert real["DEFAULT"]["compute_driver"] == "libvirt.LibvirtDriver"
    assert real["DEFAULT"]["host"] == configs.REAL_COMPUTE_HOST
    assert real["DEFAULT"]["force_config_drive"] == "true"
    assert real["libvirt"]["virt_type"] == virt_type and real["libvirt"]["cpu_mode"] == cpu_mode
    assert real["libvirt"]["connection_uri"] == f"qemu:///system?socket={layout.libvirt_socket}"


@pytest.mark.parametrize("daemon", ["virtlogd", "libvirtd"])
def test_libvirt_daemons_run_in_their_own_mounts_with_their_own_pid_files(layout, daemon):
    argv = real_host.daemon_argv(layout)[daemon]
    assert argv[:4] == [argv[0], "--mount", "--propagation", "private"]
    script = argv[argv.index("-c") + 1]
    for target, sub in real_host.LIBVIRT_DIRS.items():
        assert f"mount --bind {layout.libvirt_dir / sub} {target}" in script
    # /run/libvirt is the sandbox's own: a second sandbox's daemons found the default /run/<daemon>.pid locked.
    assert argv[-4:] == ["-f", f"/etc/libvirt/{daemon}.conf", "-p", f"/run/libvirt/{daemon}.pid"]
    assert "/run/libvirt" in real_host.LIBVIRT_DIRS
    real_host.write_libvirt_config(layout)
    qemu = (layout.libvirt_dir / "etc" / "qemu.conf").read_text()
    assert 'user = "root"' in qemu and 'stdio_handler = "logd"' in qemu


def test_the_bridge_holds_the_gateway_and_is_no_uplink(layout, monkeypatch):
    # Halves of RFC 5737's TEST-NET-2: not this machine kind's 192.0.2.0/24 uplink, nor TEST-NET-3, where its
    # package mirror answers.
    assert GUEST_NETS == ("198.51.100.0/25", "198.51.100.128/25")
    monkeypatch.delenv("SANDBOX_GUEST_NET", raising=False)
    assert (layout.guest_net, layout.guest_gateway) == ("198.51.100.0/25", "198.51.100.1")
    monkeypatch.setenv("SANDBOX_GUEST_NET", "198.51.100.128/25")
    assert (layout.guest_net, layout.guest_gateway) == ("198.51.100.128/25", "198.51.100.129")


@pytest.mark.parametrize("value", ["192.0.2.0/24", "203.0.113.0/24", "198.51.100.0/24", "10.0.0.0/8"])
def test_a_guest_net_outside_the_test_net_halves_is_refused(layout, monkeypatch, value):
    monkeypatch.setenv("SANDBOX_GUEST_NET", value)
    refusal = f"SANDBOX_GUEST_NET={value} is not one of 198.51.100.0/25, 198.51.100.128/25"
    with pytest.raises(SandboxError, match=refusal):
        assert layout.guest_net


def test_each_guest_net_has_its_own_database_template(layout, monkeypatch):
    from sandbox.layout import template_key

    keys = set()
    for net in GUEST_NETS:
        monkeypatch.setenv("SANDBOX_GUEST_NET", net)
        keys.add(template_key(layout))
    assert len(keys) == 2


def test_the_public_subnet_is_the_guest_net_with_the_host_addresses_kept_out(layout, monkeypatch):
    from sandbox import seed

    monkeypatch.setenv("SANDBOX_GUEST_NET", "198.51.100.128/25")
    ipv4 = seed.public_subnets(layout)["ipv4"]
    assert ipv4 == {
        "cidr": "198.51.100.128/25",
        "gateway_ip": "198.51.100.129",
        "allocation_pools": [{"start": "198.51.100.138", "end": "198.51.100.250"}],
    }


UPLINK = "2: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n1: lo    inet 127.0.0.1/8 scope host lo\n"


def fake_ip(monkeypatch, tmp_path, held: str) -> list:
    """`ip` answering `ip -o -4 addr show` with the uplink, loopback and `held`; every call recorded."""
    calls = []

    def ip(*args, check=True):
        calls.append(args)
        return SimpleNamespace(stdout=UPLINK + held if args[:2] == ("-o", "-4") else "", returncode=0)

    monkeypatch.setattr(real_host, "_ip", ip)
    monkeypatch.setattr(real_host, "_sysctl", lambda path, value: None)
    monkeypatch.setattr(real_host, "BRIDGE_LOCK", tmp_path / "guest-net.lock")
    return calls


@pytest.mark.parametrize(
    "guest_net, held",
    [
        ("198.51.100.0/25", "7: sbxbr1000    inet 198.51.100.1/25 scope global sbxbr1000"),
        # A sandbox of an older tree holds the whole /24: it overlaps either half.
        ("198.51.100.128/25", "7: sbxbr5    inet 198.51.100.1/24 scope global sbxbr5"),
    ],
)
def test_a_bridge_of_another_sandbox_overlapping_the_guest_net_is_refused(
    monkeypatch, layout, tmp_path, guest_net, held
):
    """Another sandbox (another port offset) already holds addresses of the range: `up` stops with one line,
    creating nothing; the check and the claim share a machine-wide lock."""
    monkeypatch.setenv("SANDBOX_GUEST_NET", guest_net)
    calls = fake_ip(monkeypatch, tmp_path, held + "\n")
    other = held.split()[1]
    with pytest.raises(SandboxError, match=f"{guest_net} overlaps .* on another interface \\({other}\\)"):
        real_host.create_bridge(layout)
    assert calls == [("-o", "-4", "addr", "show")]  # nothing created
    assert (tmp_path / "guest-net.lock").exists()


def test_the_other_half_beside_a_sandbox_is_claimed(monkeypatch, layout, tmp_path):
    monkeypatch.setenv("SANDBOX_PORT_OFFSET", "1000")
    monkeypatch.setenv("SANDBOX_GUEST_NET", "198.51.100.128/25")
    calls = fake_ip(monkeypatch, tmp_path, "7: sbxbr0    inet 198.51.100.1/25 scope global sbxbr0\n")
    real_host.create_bridge(layout)
    assert ("addr", "replace", "198.51.100.129/25", "dev", "sbxbr1000") in calls


def test_binding_is_a_tap_on_the_real_host_and_ovs_elsewhere():
    pytest.importorskip("neutron_lib")
    from neutron_lib.api.definitions import portbindings

    from sandbox.neutron_binding import BindAllMechanismDriver

    bound = []
    for host in (configs.REAL_COMPUTE_HOST, configs.COMPUTE_HOST):
        context = SimpleNamespace(
            host=host, segments_to_bind=[{"id": "seg"}], set_binding=lambda *args, **kwargs: bound.append(args)
        )
        BindAllMechanismDriver().bind_port(context)
    assert [b[1] for b in bound] == [portbindings.VIF_TYPE_TAP, portbindings.VIF_TYPE_OVS]


# ---- the suite's side ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "facts, kind",
    [
        ({"emulated": "sandbox"}, "measured by the sandbox guest emulation, not a real guest"),
        ({"virt": "qemu"}, "real guest (QEMU TCG)"),
        ({"virt": "kvm"}, "real guest (KVM)"),
        ({}, "real guest"),
    ],
)
def test_guest_kind(facts, kind):
    assert probe.guest_kind(facts) == kind


def test_only_tcg_has_no_steal_clock():
    assert "no steal clock" in probe.NO_STEAL_CLOCK["qemu"]
    assert "kvm" not in probe.NO_STEAL_CLOCK


def test_probe_script_reports_the_hypervisor_and_the_kernel():
    facts = probe.parse_probe("conformance-probe: virt=qemu\r\nconformance-probe: kernel=6.1.0-57-cloud-amd64\n")
    assert facts == {"virt": "qemu", "kernel": "6.1.0-57-cloud-amd64"}
    script = probe.probe_user_data(512)
    assert 'say "virt=' in script and 'say "kernel=' in script


def test_a_port_that_accepts_is_not_an_ssh_handshake():
    """What R6's reachability probe checks: a TCP listener that never speaks SSH fails it."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        held = []
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # accept and say nothing
            except OSError:
                continue
        for conn in held:
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        key, why = probe.ssh_handshake("127.0.0.1", port, timeout_s=2)
    finally:
        stop.set()
        thread.join()
        listener.close()
    assert key is None and why
