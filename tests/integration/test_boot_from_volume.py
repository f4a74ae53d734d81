"""A donor whose test-node flavor has disk 0 (nodes boot from an 80 GB volume, nodepool's `boot-from-volume`):
every check that boots a node does so from a volume made from the run's image, R8 checks the zuul project's
volume quota, and nothing of the run is left, boot volumes included.

The suite runs once for the module (every check but the ci mirror, a small burst) with the sandbox's
`flavor disk=0` variant; every test reads that run.
"""

from __future__ import annotations

import re

import pytest
import yaml
from helpers import suite
from helpers.cloud import leftovers
from helpers.suite import run_prefix, verdicts

from conformance.profiles import load_profile
from conformance.resources import run_of_volume

BURST = 3
PROFILE = load_profile("sandbox")
VOLUME_GB = PROFILE["flavor.min_disk_gb"]  # each node's boot volume
NODES = PROFILE["quota.instances"]  # R8: quota for this many nodes


@pytest.fixture(scope="module")
def bfv_run(sandbox, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("bfv") / "reports"
    with sandbox.test_flavor(disk=0):
        proc = suite.run(sandbox.clouds_yaml, report_dir, "-k", "not mirror_disk", "--burst-size", str(BURST))
    bundle = next(p for p in report_dir.iterdir() if p.is_dir())
    return proc, verdicts(report_dir), run_prefix(proc.stdout), bundle


def test_every_boot_check_passes_from_a_volume(bfv_run):
    proc, results, _, _ = bfv_run
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    r4 = results[("R4", "flavor")]
    assert r4["verdict"] == "PASS" and r4["data"]["flavor"]["disk"] == 0, r4
    boot = results[("R2", "image.boot")]
    assert boot["verdict"] == "PASS" and f"from a volume of {VOLUME_GB} GB" in boot["measured"], boot
    assert boot["data"]["boot_from_volume"] and len(boot["data"]["volumes"]) == 1, boot
    for key in [("R6", "public_ip"), ("R13", "ops.metadata"), ("R5", "cpu.vcpus"), ("R11", "overcommit.steal")]:
        assert results[key]["verdict"] == "PASS", results[key]
        assert results[key]["data"]["volume_size_gb"] == VOLUME_GB, results[key]
    delete = results[("R13", "ops.delete")]
    assert delete["verdict"] == "PASS" and "boot volume" in delete["measured"], delete


def test_burst_boots_from_volumes_and_deletes_them(bfv_run):
    proc, results, _, _ = bfv_run
    for check in ("burst.p95", "burst.failure_rate", "burst.delete"):
        assert results[("R12", check)]["verdict"] == "PASS", results[("R12", check)]
    summary = results[("R12", "burst.p95")]["data"]["summary"]
    assert summary["active"] == BURST and summary["boot_volume_gb"] == VOLUME_GB
    assert summary["volumes_created"] == BURST and summary["volumes_deleted"] == BURST, summary
    assert summary["volumes_left"] == 0
    # Waiting stays bulk with volumes: listings only, no GET per server or per volume.
    calls = results[("R12", "burst.p95")]["data"]["calls_by_endpoint"]
    assert any(key.endswith("/volumes/detail") for key in calls), calls
    assert not [key for key in calls if key.startswith("GET ") and ("/servers/{id}" in key or "/volumes/{id}" in key)]
    delete = results[("R12", "burst.delete")]
    assert f"{BURST} boot volumes" in delete["measured"], delete
    print("\n" + next(line for line in proc.stdout.splitlines() if line.startswith("R12 burst.p95")))
    print(next(line for line in proc.stdout.splitlines() if line.startswith("R12 burst.delete")))


def test_r8_reports_the_zuul_volume_quota(bfv_run):
    _, results, _, _ = bfv_run
    volumes, gigabytes = results[("R8", "quota.volumes")], results[("R8", "quota.volume_gigabytes")]
    assert volumes["verdict"] == "PASS" and volumes["threshold"] == f">= {NODES}", volumes
    assert gigabytes["verdict"] == "PASS" and gigabytes["threshold"] == f">= {NODES * VOLUME_GB}", gigabytes
    assert volumes["project"] == "zuul" and gigabytes["data"]["needed"] == NODES * VOLUME_GB


def test_no_server_or_volume_of_the_run_is_left(sandbox, bfv_run):
    _, _, run, _ = bfv_run
    assert run, "the run printed no run prefix"
    assert leftovers(sandbox, run) == []
    admin = sandbox.admin()
    try:
        volumes = [v for v in admin.block_storage.volumes(details=True, all_projects=True) if run_of_volume(v) == run]
        servers = list(admin.compute.servers(details=False, all_projects=True, name=f"^{run}"))
    finally:
        admin.close()
    assert volumes == [] and servers == []


def test_onboarding_drafts_boot_from_volume(bfv_run):
    _, _, _, bundle = bfv_run
    nodepool = yaml.safe_load((bundle / "onboarding" / "nodepool-provider.yaml").read_text())
    label = nodepool["providers"][0]["pools"][0]["labels"][0]
    assert label["boot-from-volume"] is True and label["volume-size"] == VOLUME_GB, label
    launcher = yaml.safe_load((bundle / "onboarding" / "zuul-launcher-provider.yaml").read_text())
    section = next(o["section"] for o in launcher if "section" in o)
    assert section["label-defaults"]["boot-from-volume"] is True
    # On the label (label-defaults): Zuul 14.3's OpenStack label does not inherit a flavor's volume-size.
    assert section["label-defaults"]["volume-size"] == VOLUME_GB
    assert "volume-size" not in section["flavors"][0]


def test_no_library_warnings_in_the_output(bfv_run):
    """No deprecation (or other) warning of the client libraries: the only warning a run may show is its own
    WARN verdict (here the --burst-size opt-out), which a run at the profile's burst size does not have."""
    proc, _, _, _ = bfv_run
    section = proc.stdout.partition("warnings summary")[2].partition("-- Docs:")[0]
    warnings = [line.strip() for line in section.splitlines() if re.search(r"\w+Warning: ", line)]
    assert all("ConformanceWarning: R12 burst.size" in line for line in warnings), section
    # Nor printed raw, outside pytest's capture (the lease's thread, the cleanup at the very end).
    raw = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if re.search(r"\w+Warning: ", line) and "ConformanceWarning" not in line
    ]
    assert raw == [], raw


def test_small_zuul_volume_quota_fails_r8_naming_the_quota(sandbox, tmp_path):
    report_dir = tmp_path / "reports"
    with sandbox.test_flavor(disk=0), sandbox.quota("zuul", volumes=20, gigabytes=1000):
        proc = suite.run(sandbox.clouds_yaml, report_dir, "-k", "test_quota")
    results = verdicts(report_dir)
    volumes, gigabytes = results[("R8", "quota.volumes")], results[("R8", "quota.volume_gigabytes")]
    assert proc.returncode == 1
    assert volumes["verdict"] == "FAIL", volumes
    assert "volumes quota is 20" in volumes["reason"], volumes
    assert f"raise the block-storage volumes quota to at least {NODES}" in volumes["reason"], volumes
    assert gigabytes["verdict"] == "FAIL", gigabytes
    assert "gigabytes quota is 1000" in gigabytes["reason"], gigabytes
    assert f"raise the block-storage gigabytes quota to at least {NODES * VOLUME_GB}" in gigabytes["reason"]
    # The other quotas are untouched by the variant; how many nodes fit (the drafts' max-servers) counts volumes.
    instances = results[("R8", "quota.instances")]
    assert instances["verdict"] == "PASS" and instances["data"]["max_servers"] <= 20, instances
