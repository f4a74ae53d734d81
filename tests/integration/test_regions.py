"""A multi-region donor: one run checks both regions of the clouds.yaml entries, and every requirement line names
its region. The sandbox's second region (`python -m sandbox with region-two -- ...`) is a second catalog for
the same services, so the run's resources in both regions meet in one Nova, Glance and Cinder: their names (and
the burst's name filter) must keep them apart.

The suite runs once for the module, through the sandbox's command line: every static check, and of the dynamic
ones those whose names could meet in a shared service (R2's image and boot, R12's burst and its name filter,
R13's keypair and security group), with a small burst; R3, R5/R11 and R6 are left out for time."""

from __future__ import annotations

import re
import sys
from collections import defaultdict

import pytest
import yaml
from helpers import suite
from helpers.cloud import leftovers
from helpers.suite import results, run_prefix

from sandbox.api import SECOND_REGION
from sandbox.layout import REGION

REGIONS = {REGION, SECOND_REGION}


@pytest.fixture(scope="module")
def two_regions(sandbox, tmp_path_factory):
    report_dir = tmp_path_factory.mktemp("regions") / "reports"
    # The suite under `python -m sandbox with region-two --`, as a user tries it.
    proc = suite.run(
        sandbox.clouds_yaml,
        report_dir,
        "--burst-size",
        "2",
        "-k",
        "not (mirror_disk or guest_probe or public_ip)",
        env={"SANDBOX_DIR": str(sandbox.layout.root)},
        wrap=(sys.executable, "-m", "sandbox", "with", "region-two", "--"),
        timeout=3600,
    )
    bundle = next(p for p in report_dir.iterdir() if p.is_dir())
    return proc, results(report_dir), run_prefix(proc.stdout), bundle


def test_one_run_passes_in_both_regions(two_regions):
    proc, found, _, _ = two_regions
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert {r["region"] for r in found} == REGIONS
    assert {r["verdict"] for r in found} <= {"PASS", "WARN"}, [r for r in found if r["verdict"] not in ("PASS", "WARN")]


def test_every_scoped_line_exists_for_both_regions(two_regions):
    proc, found, _, _ = two_regions
    regions = defaultdict(set)
    for result in found:
        regions[(result["requirement"], result["check"], result["project"])].add(result["region"])
    one_region = {key: seen for key, seen in regions.items() if seen != REGIONS}
    assert not one_region, one_region
    # The terminal summary says it too: one line per requirement, check and project/region.
    for region in REGIONS:
        assert re.search(rf"^R12 burst\.p95 +zuul/{region} .*PASS$", proc.stdout, re.M), proc.stdout[-4000:]
        assert re.search(rf"^R8 quota\.instances +zuul/{region} .*PASS$", proc.stdout, re.M)


def test_resource_names_tell_the_regions_apart(two_regions):
    _, found, run, _ = two_regions
    bursts = {r["region"]: r["data"]["servers"] for r in found if r["check"] == "burst.p95"}
    for region, servers in bursts.items():
        tag = region.lower()
        assert servers and all(s["name"].startswith(f"{run}-{tag}-burst-") for s in servers), servers
        assert all(s["status"] == "ACTIVE" for s in servers), servers


def test_nothing_of_the_run_is_left(sandbox, two_regions):
    _, _, run, _ = two_regions
    assert run and leftovers(sandbox, run) == []


def test_onboarding_drafts_have_a_provider_per_region(two_regions):
    _, _, _, bundle = two_regions
    nodepool = yaml.safe_load((bundle / "onboarding" / "nodepool-provider.yaml").read_text())
    assert {p["region-name"] for p in nodepool["providers"]} == REGIONS
    clouds = yaml.safe_load((bundle / "onboarding" / "clouds-public.yaml").read_text())["clouds"]
    assert set(clouds["sandbox-zuul"]["regions"]) == REGIONS


def test_the_variant_restores_one_region(sandbox, two_regions):
    clouds = yaml.safe_load(sandbox.clouds_yaml.read_text())["clouds"]
    assert clouds["sandbox-zuul"]["region_name"] == REGION and "regions" not in clouds["sandbox-zuul"]
    admin = sandbox.admin()
    try:
        assert list(admin.identity.endpoints(region_id=SECOND_REGION)) == []
    finally:
        admin.close()
