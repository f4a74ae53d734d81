"""EMULATION of a guest for Nova's fake virt driver: console output that a real probe would print.

The fake driver boots no guest, so the suite's in-guest probe (cloud-init user-data printing
`conformance-probe: key=value` lines on the console) would have nothing to read. This driver answers
`get_console_output` with the lines that probe prints, derived from the server's flavor, but only for servers
whose user-data contains the probe (as on a real cloud). CPU MHz and steal come from `guest.json` in the sandbox
state dir so negative tests can change them (`python -m sandbox guest --cpu-mhz 1200`). Every answer carries
`emulated=sandbox` so a report can never mistake it for a measurement.

It also sizes the fake hypervisor for >= 150 test nodes of 8 vCPU / 8 GB / 80 GB without overcommit, spread over
several nodes as a real cloud's hypervisors are.
"""

import base64
import json
import os

from nova.virt import fake

PROBE_MARKER = "conformance-probe"
DEFAULT_GUEST = {"cpu_mhz": 2600, "steal_percent": 0.0, "cpu_model": "Sandbox Emulated vCPU"}


def guest_settings():
    path = os.environ.get("SANDBOX_GUEST_FILE")
    settings = dict(DEFAULT_GUEST)
    if path and os.path.exists(path):
        with open(path) as f:
            settings.update(json.load(f))
    return settings


def probe_lines(vcpus, memory_mb, settings):
    # A guest kernel keeps some memory for itself: MemTotal is a little below the flavor's RAM.
    memtotal_kb = memory_mb * 1024 - 65536
    # Score of the probe's CPU benchmark scales with clock speed and loses what the hypervisor steals.
    bench_score = int(settings["cpu_mhz"] * (1 - settings["steal_percent"] / 100.0))
    values = {
        "emulated": "sandbox",
        "nproc": vcpus,
        "memtotal_kb": memtotal_kb,
        "cpu_model": settings["cpu_model"],
        "cpu_mhz": settings["cpu_mhz"],
        "steal_percent": settings["steal_percent"],
        "bench_score": bench_score,
    }
    return [f"{PROBE_MARKER}: {key}={value}" for key, value in values.items()]


def has_probe(user_data):
    if not user_data:
        return False
    try:
        text = base64.b64decode(user_data).decode("utf-8", "replace")
    except (ValueError, TypeError):
        text = str(user_data)
    return PROBE_MARKER in text


class EmulatedGuestDriver(fake.FakeDriver):
    # Four hypervisor nodes (four resource providers in Placement), each with room for 48 test nodes of
    # 8 vCPU / 8 GB / 80 GB without overcommit: 192 in all. With a single provider every concurrent boot's
    # allocation claim races for the same provider generation, and nova gives a claim up after 4 conflicts
    # ("No valid host") with no other host to try.
    nodes = 4
    vcpus = 48 * 8
    memory_mb = 48 * 8192
    local_gb = 48 * 80 + 600  # and the mirror's 40 GB root disks

    def init_host(self, host):
        super().init_host(host)
        self._set_nodes([f"{host}-{index}" for index in range(1, self.nodes + 1)])

    def get_console_output(self, context, instance):
        lines = ["[    0.000000] Linux version (sandbox guest emulation)", "cloud-init: modules:final"]
        if has_probe(instance.user_data):
            flavor = instance.flavor
            lines += probe_lines(flavor.vcpus, flavor.memory_mb, guest_settings())
        return "\n".join(lines) + "\n"
