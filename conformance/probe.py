"""The guest probe (R5, R11; R6's reachability): what a test node reports about itself, and the image it boots.

The node boots with cloud-init user-data (probe_user_data) that prints `conformance-probe: key=value` lines on
its console, read back with the console-output API (parse_probe). `probe_image` chooses the image: --probe-image,
else the profile's probe.image when the cloud has it, else the suite's own image (no OS: only a cloud's guest
emulation answers for it). `ssh_handshake` is R6's proof that a node's public address is reachable.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from conformance.errors import first_line

# ------------------------------------------------------------------------------------------ guest probe
PROBE_MARKER = "conformance-probe"
PROBE_KEYS = ("nproc", "memtotal_kb", "cpu_mhz", "cpu_model", "steal_percent", "bench_score")
_PROBE_RE = re.compile(rf"{PROBE_MARKER}: (?P<key>[a-z_0-9]+)=(?P<value>[^\r\n]*)")

# cloud-init runs a user-data that starts with #! as a script at first boot; its lines go to the serial
# console, which Nova's console-output API returns. The benchmark loads every vCPU so steal is measured
# under load: steal is what the hypervisor takes from a busy guest. Each vCPU hashes BENCH_MB (the profile's
# probe.bench_mb_per_vcpu) megabytes; the score is megabytes hashed per second, whatever that size.
BENCH_MB = "@BENCH_MB@"
PROBE_USER_DATA_TEMPLATE = r"""#!/bin/sh
# conformance-probe: facts about this guest for the OpenStack conformance suite (R5 cpu, R11 overcommit)
say() { line="conformance-probe: $1"; echo "$line"
  for t in /dev/ttyS0 /dev/console; do [ -w "$t" ] && echo "$line" > "$t"; done; }
v=$(systemd-detect-virt 2>/dev/null); say "virt=${v:-unknown}"; say "kernel=$(uname -r)"
n=$(nproc); say "nproc=$n"
say "memtotal_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
say "cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
say "cpu_mhz=$(awk -F': *' '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)"
cpu() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
set -- $(cpu); t0=$1; s0=$2; start=$(date +%s%N)
i=0; while [ $i -lt $n ]; do
  dd if=/dev/zero bs=1M count=@BENCH_MB@ 2>/dev/null | sha256sum >/dev/null & i=$((i+1)); done
wait; end=$(date +%s%N); set -- $(cpu); t1=$1; s1=$2
say "steal_percent=$(awk -v a=$((s1-s0)) -v b=$((t1-t0)) 'BEGIN {printf "%.1f", (b>0 ? 100*a/b : 0)}')"
say "bench_score=$(awk -v n=$n -v ns=$((end-start)) 'BEGIN {printf "%.0f", n*@BENCH_MB@/(ns/1e9)}')"
"""


def probe_user_data(bench_mb: int) -> str:
    return PROBE_USER_DATA_TEMPLATE.replace(BENCH_MB, str(int(bench_mb)))


def probe_user_data_b64(bench_mb: int) -> str:
    return base64.b64encode(probe_user_data(bench_mb).encode()).decode()


def parse_probe(console: str) -> dict[str, str]:
    """The last value of each `conformance-probe: key=value` line (the script echoes to several ttys)."""
    facts: dict[str, str] = {}
    for match in _PROBE_RE.finditer(console or ""):
        facts[match.group("key")] = match.group("value").strip()
    return facts


def probe_complete(facts: dict[str, str]) -> bool:
    return all(k in facts for k in PROBE_KEYS)


# What systemd-detect-virt names -> how a report says it. "qemu" is QEMU without hardware virtualisation (TCG):
# it emulates every instruction, and has no steal clock.
VIRT_NAMES = {
    "qemu": "QEMU TCG",
    "kvm": "KVM",
    "xen": "Xen",
    "vmware": "VMware",
    "microsoft": "Hyper-V",
    "amazon": "AWS Nitro",
    "none": "no hypervisor",
}
NO_STEAL_CLOCK = {"qemu": "QEMU TCG (software emulation) has no steal clock: steal reads 0 whatever the host does"}


def guest_kind(facts: dict[str, str]) -> str:
    """What answered the probe: a cloud's guest emulation (the sandbox's fake nodes), or a real guest and its
    hypervisor ("real guest (QEMU TCG)")."""
    if facts.get("emulated"):
        return f"measured by the {facts['emulated']} guest emulation, not a real guest"
    virt = facts.get("virt", "unknown")
    return f"real guest ({VIRT_NAMES.get(virt, virt)})" if virt != "unknown" else "real guest"


# ------------------------------------------------------------------------------------------ probe image
@dataclass
class ProbeImage:
    """An image of the cloud's with an OS (cloud-init, sshd): what R5/R11 read facts from and R6 reaches."""

    id: str
    name: str
    source: str  # "--probe-image" or "profile probe.image"

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "source": self.source}


OWN_IMAGE = "none"  # --probe-image none: the suite's own image, even when the profile names one


def probe_image(cloud, profile, config: pytest.Config) -> tuple[ProbeImage | None, str]:
    """The image probe nodes boot: --probe-image, else the profile's probe.image when the cloud has it. Returns
    (image or None for the suite's own image, a note on why when a profile's image was not used)."""
    chosen = config.getoption("conformance_probe_image")
    if chosen == OWN_IMAGE:
        return None, ""
    name, source = (chosen, "--probe-image") if chosen else (profile.get("probe.image"), "profile probe.image")
    if not name:
        return None, ""
    # By id, else by name; not find_image, whose own name search warns of a deprecation in openstacksdk itself.
    found = [i for i in cloud.call(lambda: list(cloud.conn.image.images())) if name in (i.id, i.name)]
    if len(found) != 1:
        why = "no such image" if not found else f"{len(found)} images have that name"
        if chosen:
            pytest.fail(f"--probe-image {name}: {why} visible to {cloud.scope}", pytrace=False)
        return None, f"the profile's probe image {name} is not in {cloud.scope} ({why}): the suite's own image instead"
    return ProbeImage(found[0].id, found[0].name, source), ""


def ssh_handshake(addr: str, port: int = 22, timeout_s: float = 10.0) -> tuple[str | None, str]:
    """One SSH key exchange with addr:port (ssh-keyscan: no login, no key of ours). Returns (the host key's type
    or None, what went wrong)."""
    keyscan = shutil.which("ssh-keyscan")
    if not keyscan:
        return None, "ssh-keyscan not found (package openssh-client)"
    try:
        done = subprocess.run(
            [keyscan, "-T", str(int(timeout_s)), "-p", str(port), addr],
            capture_output=True,
            text=True,
            timeout=timeout_s + 5,
        )
    except subprocess.TimeoutExpired:
        return None, f"no SSH handshake with {addr}:{port} within {timeout_s:.0f} s"
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            return fields[1], ""
    return None, first_line(Exception(done.stderr.strip() or f"no SSH host key from {addr}:{port}"))
