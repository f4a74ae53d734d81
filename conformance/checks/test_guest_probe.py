"""R5 (CPU: vCPUs and speed) and R11 (little or no overcommit), measured inside a test node.

The node boots with cloud-init user-data (conformance.probe.probe_user_data) that prints
`conformance-probe: key=value` lines on the console: nproc, MemTotal, CPU model and MHz, a short CPU benchmark
score, the steal time measured while the benchmark loads every vCPU, and the hypervisor the guest sees. They are
read with the console-output API (no SSH, no public address needed). The node boots the probe image (--probe-image,
or the profile's probe.image: the sandbox's real guest image), else the suite's own OS-less image, which only a
cloud's guest emulation answers for (the sandbox's fake nodes add `emulated=...`). The report says which:
"real guest (QEMU TCG)", "real guest (KVM)", or "measured by the sandbox guest emulation". Under QEMU TCG steal is
not measurable (no steal clock): R11 is a SKIP saying so, never a 0 % PASS."""

from __future__ import annotations

import time

import pytest
from openstack import exceptions as os_exc

from conformance.errors import first_line
from conformance.nodes import BootFailed, boot_server, boot_timeout, node_setup
from conformance.probe import (
    NO_STEAL_CLOCK,
    guest_kind,
    parse_probe,
    probe_complete,
    probe_image,
    probe_user_data_b64,
)
from conformance.resources import Waiter

pytestmark = [pytest.mark.requirement("R5"), pytest.mark.requirement("R11"), pytest.mark.dynamic]

OWN_IMAGE_WAIT_S = 60.0  # the suite's image has no OS: only an emulating cloud can answer, and quickly


def _skip_both(record, scope, reason, data=None):
    for requirement, check in (("R5", "cpu.probe"), ("R11", "overcommit.probe")):
        record(requirement, check, scope=scope, verdict="SKIP", reason=reason, data=data or {})


def test_guest_probe(zuul, profile, record, images, tracker, pytestconfig):
    scope = zuul.scope
    setup = node_setup(zuul, profile, images, pytestconfig)
    chosen, fallback = probe_image(zuul, profile, pytestconfig)
    image_id = chosen.id if chosen else setup.image_id
    started = time.monotonic()
    try:
        server, boot_s = boot_server(
            zuul,
            tracker,
            "probe",
            image_id=image_id,
            flavor_id=setup.flavor.id,
            network_id=setup.network.id,
            timeout_s=boot_timeout(profile),
            volume_size_gb=setup.volume_size_gb,
            user_data=probe_user_data_b64(int(profile["probe.bench_mb_per_vcpu"])),
        )
    except (BootFailed, os_exc.SDKException) as exc:
        _skip_both(record, scope, f"the probe node did not boot: {first_line(exc)}")
        return

    facts: dict[str, str] = {}
    error = {}

    def answered() -> bool:
        try:
            output = zuul.call(zuul.conn.compute.get_server_console_output, server)
        except os_exc.HttpException as exc:
            error["text"] = f"console output refused: HTTP {exc.status_code}: {first_line(exc)}"
            return True
        facts.update(parse_probe((output or {}).get("output", "")))
        return probe_complete(facts)

    Waiter(float(profile.get("probe.wait_s", 900)) if chosen else OWN_IMAGE_WAIT_S).poll(answered, 5.0)
    probe_s = time.monotonic() - started
    image_data = {"probe_image": chosen.describe() if chosen else None}
    if error:
        _skip_both(record, scope, error["text"], data=image_data)
        return
    if not probe_complete(facts):
        hint = (
            ""
            if chosen
            else (
                f" ({fallback}; the suite's image has no OS: pass --probe-image with a cloud-init image)"
                if fallback
                else " (the suite's image has no OS: pass --probe-image with a cloud-init image)"
            )
        )
        _skip_both(record, scope, f"no complete probe output on the console{hint}", data={"probe": facts, **image_data})
        return

    emulated = facts.get("emulated")
    kind = guest_kind(facts)
    timing = "" if emulated else f", probe lines {probe_s:.0f} s after the boot request (ACTIVE after {boot_s:.0f} s)"
    note = "; ".join(filter(None, [kind + timing, fallback]))
    data = {
        "probe": facts,
        "emulated": bool(emulated),
        "guest": kind,
        "boot_s": round(boot_s, 1),
        "probe_s": round(probe_s, 1),
        **image_data,
        **setup.describe(),
    }
    flavor = setup.flavor
    nproc, memtotal_kb = int(facts["nproc"]), int(float(facts["memtotal_kb"]))
    mhz, steal = float(facts["cpu_mhz"] or 0), float(facts["steal_percent"] or 0)

    record(
        "R5",
        "cpu.vcpus",
        scope=scope,
        measured=f"{nproc} vCPU in the guest",
        threshold=f">= {flavor.vcpus} (flavor {flavor.name})",
        ok=nproc >= flavor.vcpus,
        reason=note,
        data=data,
    )
    # The kernel keeps some memory for itself; 90 % of the flavor's RAM is what a guest reliably sees.
    record(
        "R5",
        "cpu.memory",
        scope=scope,
        measured=f"{memtotal_kb // 1024} MB MemTotal",
        threshold=f">= 90% of {flavor.ram_mb} MB",
        ok=memtotal_kb >= 0.9 * flavor.ram_mb * 1024,
        reason=note,
    )
    min_mhz = float(profile["cpu.min_mhz"])
    min_vcpus = int(profile["flavor.min_vcpus"])
    if mhz >= min_mhz:
        verdict, why = "PASS", note
    elif nproc * mhz >= min_vcpus * min_mhz:
        # "8 vCPU at 2.4 GHz (or more or less vCPUs depending on speed)": more, slower vCPUs may do.
        verdict, why = "WARN", f"slower vCPUs made up by their number ({nproc} x {mhz:.0f} MHz)"
    else:
        verdict, why = "FAIL", f"{mhz:.0f} MHz < {min_mhz:.0f} MHz"
    record(
        "R5",
        "cpu.mhz",
        scope=scope,
        measured=f"{mhz:.0f} MHz ({facts.get('cpu_model', '?')}), bench {facts.get('bench_score')}",
        threshold=f">= {min_mhz:.0f} MHz",
        verdict=verdict,
        reason="; ".join(filter(None, [why if verdict != "PASS" else "", note])),
    )
    max_steal = float(profile["overcommit.max_steal_percent"])
    no_clock = NO_STEAL_CLOCK.get(facts.get("virt", ""))
    if no_clock:
        record(
            "R11",
            "overcommit.steal",
            scope=scope,
            measured=f"not measurable ({steal:.1f}% read)",
            threshold=f"<= {max_steal:.0f}%",
            verdict="SKIP",
            reason=f"{no_clock}; {note}",
            data=data,
        )
        return
    record(
        "R11",
        "overcommit.steal",
        scope=scope,
        measured=f"{steal:.1f}% steal under load",
        threshold=f"<= {max_steal:.0f}%",
        ok=steal <= max_steal,
        reason="; ".join(
            filter(None, ["the hypervisor takes CPU time from a busy guest" if steal > max_steal else "", note])
        ),
        data=data,
    )
