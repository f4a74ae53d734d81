"""R5 (CPU: vCPUs and speed) and R11 (little or no overcommit), measured inside a test node.

The node boots with cloud-init user-data (conformance.dynamic.PROBE_USER_DATA) that prints
`conformance-probe: key=value` lines on the console: nproc, MemTotal, CPU model and MHz, a short CPU benchmark
score and the steal time measured while the benchmark loads every vCPU. They are read with the console-output
API (no SSH, no public address needed). A cloud that only emulates a guest (the sandbox) adds `emulated=...`,
and the report says so."""

from __future__ import annotations

import pytest
from openstack import exceptions as os_exc

from conformance.dynamic import (
    BootFailed,
    boot_server,
    boot_timeout,
    first_line,
    node_setup,
    parse_probe,
    probe_complete,
    probe_user_data_b64,
)
from conformance.resources import Deadline, call

pytestmark = [pytest.mark.requirement("R5"), pytest.mark.requirement("R11"), pytest.mark.dynamic]

OWN_IMAGE_WAIT_S = 60.0  # the suite's image has no OS: only an emulating cloud can answer, and quickly
PROBE_IMAGE_WAIT_S = 900.0  # a real guest boots, runs cloud-init and the ~1 min benchmark


def _skip_both(record, scope, reason, data=None):
    for requirement, check in (("R5", "cpu.probe"), ("R11", "overcommit.probe")):
        record(requirement, check, scope=scope, verdict="SKIP", reason=reason, data=data or {})


def _probe_image(cloud, name_or_id):
    try:
        image = call(cloud, cloud.conn.image.find_image, name_or_id, ignore_missing=False)
    except os_exc.SDKException:  # NotFoundException, or DuplicateResource: not one image to boot
        image = None
    if image is None:
        pytest.fail(f"--probe-image {name_or_id}: no such image visible to {cloud.scope}", pytrace=False)
    return image.id


def test_guest_probe(zuul, profile, record, images, tracker, pytestconfig):
    scope = zuul.scope
    setup = node_setup(zuul, profile, images, pytestconfig)
    chosen = pytestconfig.getoption("conformance_probe_image")
    image_id = _probe_image(zuul, chosen) if chosen else setup.image_id
    try:
        server, _ = boot_server(zuul, tracker, "probe", image_id=image_id, flavor_id=setup.flavor.id,
                                network_id=setup.network.id, timeout_s=boot_timeout(profile),
                                volume_size_gb=setup.volume_size_gb, user_data=probe_user_data_b64())
    except (BootFailed, os_exc.SDKException) as exc:
        _skip_both(record, scope, f"the probe node did not boot: {first_line(exc)}")
        return

    facts: dict[str, str] = {}
    error = {}

    def answered() -> bool:
        try:
            output = call(zuul, zuul.conn.compute.get_server_console_output, server)
        except os_exc.HttpException as exc:
            error["text"] = f"console output refused: HTTP {exc.status_code}: {first_line(exc)}"
            return True
        facts.update(parse_probe((output or {}).get("output", "")))
        return probe_complete(facts)

    Deadline(PROBE_IMAGE_WAIT_S if chosen else OWN_IMAGE_WAIT_S).poll(answered, 5.0)
    if error:
        _skip_both(record, scope, error["text"])
        return
    if not probe_complete(facts):
        hint = "" if chosen else " (the suite's image has no OS: pass --probe-image with a cloud-init image)"
        _skip_both(record, scope, f"no complete probe output on the console{hint}", data={"probe": facts})
        return

    emulated = facts.get("emulated")
    note = f"measured by the {emulated} guest emulation, not a real guest" if emulated else ""
    data = {"probe": facts, "emulated": bool(emulated), **setup.describe()}
    flavor = setup.flavor
    nproc, memtotal_kb = int(facts["nproc"]), int(float(facts["memtotal_kb"]))
    mhz, steal = float(facts["cpu_mhz"] or 0), float(facts["steal_percent"] or 0)

    record("R5", "cpu.vcpus", scope=scope, measured=f"{nproc} vCPU in the guest",
           threshold=f">= {flavor.vcpus} (flavor {flavor.name})", ok=nproc >= flavor.vcpus,
           reason=note, data=data)
    # The kernel keeps some memory for itself; 90 % of the flavor's RAM is what a guest reliably sees.
    record("R5", "cpu.memory", scope=scope, measured=f"{memtotal_kb // 1024} MB MemTotal",
           threshold=f">= 90% of {flavor.ram_mb} MB", ok=memtotal_kb >= 0.9 * flavor.ram_mb * 1024,
           reason=note)
    min_mhz = float(profile["cpu.min_mhz"])
    min_vcpus = int(profile["flavor.min_vcpus"])
    if mhz >= min_mhz:
        verdict, why = "PASS", note
    elif nproc * mhz >= min_vcpus * min_mhz:
        # "8 vCPU at 2.4 GHz (or more or less vCPUs depending on speed)": more, slower vCPUs may do.
        verdict, why = "WARN", f"slower vCPUs made up by their number ({nproc} x {mhz:.0f} MHz)"
    else:
        verdict, why = "FAIL", f"{mhz:.0f} MHz < {min_mhz:.0f} MHz"
    record("R5", "cpu.mhz", scope=scope,
           measured=f"{mhz:.0f} MHz ({facts.get('cpu_model', '?')}), bench {facts.get('bench_score')}",
           threshold=f">= {min_mhz:.0f} MHz", verdict=verdict,
           reason="; ".join(filter(None, [why if verdict != "PASS" else "", note])))
    max_steal = float(profile["overcommit.max_steal_percent"])
    record("R11", "overcommit.steal", scope=scope, measured=f"{steal:.1f}% steal under load",
           threshold=f"<= {max_steal:.0f}%", ok=steal <= max_steal,
           reason="; ".join(filter(None, ["the hypervisor takes CPU time from a busy guest"
                                          if steal > max_steal else "", note])), data=data)
