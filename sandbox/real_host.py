"""The sandbox's real compute host: nova-compute with the libvirt driver booting real guests under QEMU.

Beside the four fake hypervisor nodes (sandbox/guest_emulation.py) runs one host whose guests are real: QEMU
(TCG, software emulation, unless the CPU shows vmx or svm), started by a private libvirtd and virtlogd, their
disks and console logs in the state dir, their ports taps on a bridge of this machine in a TEST-NET range
(layout.guest_net) with no forwarding, no NAT and no route out.

libvirtd and virtlogd run in a mount namespace of their own where the sandbox's directories are bind-mounted
over /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt: their configuration
(QEMU as root, no cgroups, no namespaces, no security driver: a throwaway host) and their state stay in the
sandbox, never touch a system libvirt, and go with `down`. nova-compute reaches libvirtd through the socket's
real path.

The scheduler keeps this host for the sandbox's guest image (IsolatedHostsFilter): the suite's own OS-less
image and the burst go to the fake nodes, the guest image only here.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from sandbox.configs import REAL_COMPUTE_HOST  # noqa: F401 (the real host's name, for callers)
from sandbox.layout import Layout
from sandbox.waiting import SandboxError, wait_for

# What a real guest host needs: a 1 GiB TCG guest peaked at 1.56 GB RSS in the feasibility run; one test node
# (8 GB flavor, lazily touched) plus libvirtd/virtlogd needs this much free to be worth starting.
MIN_AVAILABLE_MB = 3072
PROGRAMS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "libvirtd": "libvirt-daemon-system",
    "virtlogd": "libvirt-daemon-system",
    "genisoimage": "genisoimage",
    "qemu-img": "qemu-utils",
    "unshare": "util-linux",
    "ip": "iproute2",
}
# Where libvirtd looks on the host (bind-mount targets) -> the sandbox's directory under layout.libvirt_dir.
LIBVIRT_DIRS = {
    "/etc/libvirt": "etc",
    "/run/libvirt": "run",
    "/var/lib/libvirt": "lib",
    "/var/log/libvirt": "log",
    "/var/cache/libvirt": "cache",
}

# The daemons' sockets under layout.libvirt_dir / "run": each is ready when its socket exists.
SOCKETS = {"virtlogd": "virtlogd-sock", "libvirtd": "libvirt-sock"}

LIBVIRTD_CONF = """\
# The sandbox's private libvirtd: root only, on its own socket (run/ below), nothing on the network.
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:stderr"
"""
# QEMU runs as root with no confinement: the guests' files live under the sandbox's state dir, which may be in
# a 0700 directory (a mktemp clone) that libvirt's own qemu user could not enter; cgroups and per-guest
# namespaces are left alone (a container may not allow them).
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "logd"
"""
VIRTLOGD_CONF = 'log_outputs = "3:stderr"\n'


@dataclass
class RealHost:
    """What `up` decided about the real host (saved as layout.real_host_file)."""

    enabled: bool
    virt_type: str = "qemu"  # "kvm" only with hardware virtualisation (vmx/svm)
    bridge: str = ""
    reason: str = ""  # why it is off
    image: dict | None = None  # the guest image's Glance ids and name (guest_image manifest)

    def save(self, layout: Layout) -> None:
        layout.real_host_file.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, layout: Layout) -> RealHost:
        if not layout.real_host_file.exists():
            return cls(enabled=False, reason="not started")
        return cls(**json.loads(layout.real_host_file.read_text()))


def wanted() -> bool:
    """SANDBOX_REAL_GUESTS=0 (or `up --no-real-guests`) runs the sandbox with fake nodes only."""
    return os.environ.get("SANDBOX_REAL_GUESTS", "1").strip().lower() not in ("0", "no", "false", "off")


def hardware_virtualisation(cpuinfo: Path = Path("/proc/cpuinfo"), kvm: Path = Path("/dev/kvm")) -> bool:
    """KVM is worth using only when the CPU itself virtualises: a /dev/kvm of software nested virtualisation
    (no vmx/svm flag) runs guests about 10^4 times slower than TCG."""
    try:
        flags = re.search(r"^flags\s*:(.*)$", cpuinfo.read_text(), re.M)
    except OSError:
        return False
    return bool(flags and {"vmx", "svm"} & set(flags.group(1).split())) and kvm.exists()


def available_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def missing_prerequisites() -> list[str]:
    """What a real host needs and this machine lacks, each with how to get it."""
    missing = [
        f"{program} (apt package {package})"
        for program, package in PROGRAMS.items()
        if not shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin")
    ]
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun (the tun module) for the guests' taps")
    if os.geteuid() != 0:
        missing.append("root (bridges, taps and a private mount namespace for libvirtd)")
    try:
        import libvirt  # noqa: F401
    except ImportError:
        missing.append("the libvirt-python package (pip install -e '.[sandbox]' -c constraints.txt)")
    if available_mb() < MIN_AVAILABLE_MB:
        missing.append(f"{MIN_AVAILABLE_MB} MB of free memory for a real guest (MemAvailable: {available_mb()} MB)")
    return missing


def write_libvirt_config(layout: Layout) -> None:
    base = layout.libvirt_dir
    for sub in LIBVIRT_DIRS.values():
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    (base / "etc" / "qemu.conf").write_text(QEMU_CONF)
    (base / "etc" / "virtlogd.conf").write_text(VIRTLOGD_CONF)


def in_private_mounts(layout: Layout, argv: list[str]) -> list[str]:
    """argv run in a new mount namespace where the sandbox's libvirt directories replace the system ones.
    The shell execs the daemon: the recorded PID is the daemon's."""
    binds = []
    for target, sub in LIBVIRT_DIRS.items():
        binds.append(f"mkdir -p {target} && mount --bind {layout.libvirt_dir / sub} {target}")
    script = " && ".join(binds) + ' && exec "$@"'
    return [
        shutil.which("unshare") or "/usr/bin/unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        script,
        "libvirt-daemon",
        *argv,
    ]


def daemon_argv(layout: Layout) -> dict[str, list[str]]:
    """virtlogd first (libvirtd hands it the guests' console output), then libvirtd. Their PID files go to the
    private /run/libvirt: by default both write /run/<daemon>.pid, which a second sandbox's daemon then found
    locked and exited ("Failed to acquire pid file")."""
    return {
        "virtlogd": in_private_mounts(
            layout,
            [
                shutil.which("virtlogd", path="/usr/sbin:/usr/bin") or "virtlogd",
                *("-f", "/etc/libvirt/virtlogd.conf", "-p", "/run/libvirt/virtlogd.pid"),
            ],
        ),
        "libvirtd": in_private_mounts(
            layout,
            [
                shutil.which("libvirtd", path="/usr/sbin:/usr/bin") or "libvirtd",
                *("-f", "/etc/libvirt/libvirtd.conf", "-p", "/run/libvirt/libvirtd.pid"),
            ],
        ),
    }


def connection_uri(layout: Layout) -> str:
    return f"qemu:///system?socket={layout.libvirt_socket}"


# ------------------------------------------------------------------------------------------------ the bridge
def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def bridge_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


BRIDGE_LOCK = Path("/run/lock/opendev-sandbox-guest-net.lock")  # one per machine, like each guest net


def _ipv4_addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(interface, address/prefix) of every IPv4 address of this machine, from `ip -o -4 addr show` lines like
    `7: sbxbr0    inet 198.51.100.1/25 scope global sbxbr0`."""
    found = []
    for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            found.append((fields[1].rstrip(":"), ipaddress.ip_interface(fields[3])))
    return found


def _sysctl(path: str, value: str) -> None:
    Path("/proc/sys", path).write_text(value)


def create_bridge(layout: Layout) -> None:
    """The guests' L2: a bridge holding the gateway address of the layout's guest net, IPv4 forwarding off for
    what arrives on it, IPv6 off, no route beyond its own subnet."""
    name = layout.bridge
    # Checked and claimed under one machine-wide lock: two sandboxes starting at once (other port offsets) each
    # saw the address free, both bridges got it, and the host's route to the guests went to the other one (SSH
    # to a guest then timed out while its console log was fine).
    with open(BRIDGE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        clash = [
            (interface, address)
            for interface, address in _ipv4_addresses()
            if interface != name and address.network.overlaps(ipaddress.ip_network(layout.guest_net))
        ]
        if clash:
            interface, address = clash[0]
            raise SandboxError(
                f"{layout.guest_net} overlaps {address} on another interface ({interface}): the real host's "
                "bridge needs it (another sandbox with real guests? SANDBOX_GUEST_NET takes the other half); "
                "or SANDBOX_REAL_GUESTS=0"
            )
        if not bridge_exists(name):
            _ip("link", "add", "name", name, "type", "bridge")
        _sysctl(f"net/ipv6/conf/{name}/disable_ipv6", "1")
        _sysctl(f"net/ipv4/conf/{name}/forwarding", "0")
        prefix = layout.guest_net.split("/")[1]
        _ip("addr", "replace", f"{layout.guest_gateway}/{prefix}", "dev", name)
        _ip("link", "set", name, "up")


def bridge_ports(name: str) -> list[str]:
    path = Path(f"/sys/class/net/{name}/brif")
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def attach_tap(bridge: str, tap: str) -> None:
    _ip("link", "set", tap, "master", bridge)
    _ip("link", "set", tap, "up")


def remove_bridge(layout: Layout) -> list[str]:
    """Delete the bridge and any tap still on it (a guest that `down` had to kill); returns what was removed."""
    name = layout.bridge
    removed = []
    for port in bridge_ports(name):
        if _ip("link", "del", port, check=False).returncode == 0:
            removed.append(port)
    if bridge_exists(name):
        _ip("link", "del", name, check=False)
        removed.append(name)
    return removed


# ------------------------------------------------------------------------------------------------ the guests
def guest_processes(layout: Layout) -> list[int]:
    """PIDs of QEMU processes whose guests are this sandbox's (their disks live under its state dir)."""
    marker = str(layout.real_instances).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline.split(b"\0", 1)[0] and marker in cmdline:
            found.append(int(entry.name))
    return found


def kill_guests(layout: Layout, timeout: float = 10) -> list[int]:
    """Stop what libvirtd leaves running when it stops: its QEMU processes (they are daemons of their own)."""
    pids = guest_processes(layout)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in guest_processes(layout):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if wait_for(
            lambda: not guest_processes(layout),
            timeout=timeout,
            interval=0.2,
            what="QEMU to exit",
            raise_on_timeout=False,
        ):
            break
    return pids


def guests(layout: Layout) -> list[dict]:
    """The real host's guests as libvirt sees them: name, Nova's instance uuid, state and QEMU's RSS in MB."""
    if not layout.libvirt_socket.exists():
        return []
    import libvirt

    libvirt.registerErrorHandler(lambda *args: None, None)  # one line from us, not libvirt's own stderr
    try:
        conn = libvirt.open(connection_uri(layout))
    except libvirt.libvirtError:
        return []
    try:
        states = {
            libvirt.VIR_DOMAIN_RUNNING: "running",
            libvirt.VIR_DOMAIN_PAUSED: "paused",
            libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
            libvirt.VIR_DOMAIN_CRASHED: "crashed",
        }
        rows = []
        for domain in conn.listAllDomains():
            state = states.get(domain.state()[0], "other")
            rows.append(
                {
                    "name": domain.name(),
                    "uuid": domain.UUIDString(),
                    "state": state,
                    "rss_mb": _qemu_rss_mb(domain.name()),
                }
            )
        return rows
    finally:
        conn.close()


def _qemu_rss_mb(domain_name: str) -> float:
    needle = f"guest={domain_name},".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    for line in (entry / "status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            return int(line.split()[1]) / 1024
            except OSError:
                continue
    return 0.0


# ----------------------------------------------------------------------------------------- the guest image
GLANCE_NAME = "sandbox-guest"
_ID_NAMESPACE = uuid.UUID("7b0f6a52-3c55-4b5e-9a53-2a0c1c5e7d11")


def glance_ids(image_key: str) -> dict[str, str]:
    """Fixed Glance ids for one build of the guest image: nova-scheduler's isolation names the disk's id in its
    configuration, written before Glance has the image."""
    return {part: str(uuid.uuid5(_ID_NAMESPACE, f"{image_key}/{part}")) for part in ("disk", "kernel", "ramdisk")}


def upload_guest_image(conn, image, ids: dict[str, str]) -> None:
    """The guest image in Glance as a public image that boots its kernel directly (kernel_id, ramdisk_id,
    os_command_line: no firmware and boot loader to emulate, ~90 s saved per boot under TCG)."""
    parts = {
        "kernel": dict(filename=str(image.kernel), disk_format="aki", container_format="aki"),
        "ramdisk": dict(filename=str(image.initrd), disk_format="ari", container_format="ari"),
    }
    for part, spec in parts.items():
        conn.image.create_image(name=f"{GLANCE_NAME}-{part}", id=ids[part], visibility="public", wait=True, **spec)
    conn.image.create_image(
        name=GLANCE_NAME,
        id=ids["disk"],
        filename=str(image.image),
        disk_format="qcow2",
        container_format="bare",
        visibility="public",
        wait=True,
        kernel_id=ids["kernel"],
        ramdisk_id=ids["ramdisk"],
        os_command_line=image.cmdline,
        os_distro="debian",
        os_version="12",
    )
