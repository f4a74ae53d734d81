"""The static checks against the real sandbox: all pass with the sandbox profile, and each non-conforming
variant of the sandbox (changed through its admin API or config) makes exactly its check fail, saying why."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conformance.profiles import profiles_dir

# Only the static check modules: they create nothing, so every variant below is cheap to run.
STATIC = "-k", "test_services or test_keystone_tls or test_flavors or test_quota or test_projects"
SUMMARY_LINE = re.compile(r"^(R\d+) (\S+) +(\S+) +(.*?) +(PASS|FAIL|WARN|SKIP)(?:  (.*))?$")
EXPECTED_CHECKS = {
    ("R1", "service.compute", "zuul/RegionOne"),
    ("R1", "service.image", "zuul/RegionOne"),
    ("R1", "service.network", "zuul/RegionOne"),
    ("R1", "service.compute", "ci/RegionOne"),
    ("R1", "service.image", "ci/RegionOne"),
    ("R1", "service.network", "ci/RegionOne"),
    ("R1", "service.block-storage", "ci/RegionOne"),
    ("R4", "flavor", "zuul/RegionOne"),
    ("R4", "mirror_flavor", "ci/RegionOne"),
    *(
        ("R7", check, f"{role}/RegionOne")
        for check in (
            "keystone.https",
            "keystone.certificate",
            "keystone.tls_version",
            "keystone.cert_expiry",
        )
        for role in ("zuul", "ci")
    ),
    ("R8", "quota.instances", "zuul/RegionOne"),
    ("R8", "quota.cores", "zuul/RegionOne"),
    ("R8", "quota.ram", "zuul/RegionOne"),
    ("R8", "quota.ports", "zuul/RegionOne"),
    ("R8", "quota.floating_ips", "zuul/RegionOne"),
    ("R8", "quota.gigabytes", "ci/RegionOne"),
    ("R9", "projects", "zuul+ci/RegionOne"),
    ("R10", "roles", "zuul/RegionOne"),
    ("R10", "roles", "ci/RegionOne"),
}


def summary(proc) -> dict[tuple[str, str, str], dict]:
    """The per-requirement lines the run printed last, keyed by (requirement, check, scope)."""
    lines = proc.stdout.split("conformance results (profile", 1)[-1].splitlines()[1:]
    results = {}
    for line in lines:
        match = SUMMARY_LINE.match(line)
        if match:
            rid, check, scope, value, verdict, reason = match.groups()
            results[(rid, check, scope)] = {"value": value, "verdict": verdict, "reason": reason or ""}
    assert results, proc.stdout + proc.stderr
    return results


def failures(results) -> dict:
    return {key: r for key, r in results.items() if r["verdict"] == "FAIL"}


def run_static(run_suite, *args, **kwargs):
    return run_suite(*STATIC, *args, timeout=600, **kwargs)


def assert_only_failure(proc, key, *words):
    results = summary(proc)
    failed = failures(results)
    assert list(failed) == [key], proc.stdout[-4000:]
    for word in words:
        assert word in failed[key]["reason"], failed[key]
    assert proc.returncode == 1
    return results


def test_static_checks_pass_on_the_sandbox(run_suite):
    proc = run_static(run_suite)
    results = summary(proc)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert EXPECTED_CHECKS <= set(results)
    assert {r["verdict"] for r in results.values()} == {"PASS"}
    # The summary line names the measured value and the threshold.
    assert re.search(r"^R8 quota\.instances +zuul/RegionOne +\d+ >= 100 +PASS$", proc.stdout, re.M)
    assert re.search(
        r"^R4 flavor +zuul/RegionOne +ci\.standard .*>= 8 vCPU, 8192 MB RAM, 80 GB disk +PASS",
        proc.stdout,
        re.M,
    )
    # The profile's relaxations are printed with their reasons.
    assert "profile relaxes keystone.min_days_to_expiry:" in proc.stdout


def test_parallel_run_gives_the_same_verdicts(run_suite):
    serial = summary(run_static(run_suite))
    parallel_proc = run_static(run_suite, "-n", "2")
    parallel = summary(parallel_proc)
    assert {k: r["verdict"] for k, r in parallel.items()} == {k: r["verdict"] for k, r in serial.items()}
    assert "conformance results" in parallel_proc.stdout


def test_flavor_with_4_vcpus_fails_r4(sandbox, run_suite):
    with sandbox.test_flavor(vcpus=4):
        proc = run_static(run_suite)
    assert_only_failure(proc, ("R4", "flavor", "zuul/RegionOne"), "ci.standard", "4 vCPU < 8")


def test_quota_of_99_instances_fails_r8(sandbox, run_suite):
    with sandbox.quota("zuul", instances=99):
        proc = run_static(run_suite)
    assert_only_failure(proc, ("R8", "quota.instances", "zuul/RegionOne"), "maxTotalInstances is 99", "need 100")


def test_small_ci_volume_quota_fails_r8(sandbox, run_suite):
    with sandbox.quota("ci", gigabytes=100):
        proc = run_static(run_suite)
    assert_only_failure(proc, ("R8", "quota.gigabytes", "ci/RegionOne"), "gigabytes quota is 100", "need 500")


def test_http_only_keystone_fails_r7_and_the_rest_still_runs(sandbox, run_suite):
    with sandbox.http_keystone():
        proc = run_static(run_suite, zuul="sandbox-zuul-http")
    results = assert_only_failure(proc, ("R7", "keystone.https", "zuul/RegionOne"), "is not https", "http://127.0.0.1")
    assert results[("R8", "quota.instances", "zuul/RegionOne")]["verdict"] == "PASS"


def test_verify_false_fails_r7(sandbox, run_suite, tmp_path):
    clouds = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())
    clouds["clouds"]["sandbox-zuul"]["verify"] = False
    insecure = tmp_path / "clouds.yaml"
    insecure.write_text(yaml.safe_dump(clouds))
    proc = run_static(run_suite, env={"OS_CLIENT_CONFIG_FILE": str(insecure)})
    assert_only_failure(proc, ("R7", "keystone.certificate", "zuul/RegionOne"), "verification off")


def test_admin_role_fails_r10(sandbox, run_suite):
    with sandbox.role("zuul", "admin"):
        proc = run_static(run_suite)
    assert_only_failure(proc, ("R10", "roles", "zuul/RegionOne"), "holds the admin", "non-admin credentials")


def test_admin_role_only_warns_when_the_profile_says_so(sandbox, run_suite, tmp_path):
    profile = tmp_path / "warn.yaml"
    profile.write_text(
        f"extends: {profiles_dir() / 'sandbox.yaml'}\nname: warn\n"
        "non_admin: {on_violation: warn}\n"
        "relaxations: [{key: non_admin.on_violation, reason: test}]\n"
    )
    with sandbox.role("zuul", "admin"):
        proc = run_static(run_suite, profile=str(profile))
    results = summary(proc)
    assert failures(results) == {}
    assert results[("R10", "roles", "zuul/RegionOne")]["verdict"] == "WARN"
    assert proc.returncode == 0


def test_missing_block_storage_fails_r1(sandbox, run_suite):
    with sandbox.without_service("block-storage"):
        proc = run_static(run_suite)
    results = assert_only_failure(proc, ("R1", "service.block-storage", "ci/RegionOne"), "no block-storage endpoint")
    assert results[("R8", "quota.gigabytes", "ci/RegionOne")]["verdict"] == "SKIP"


def test_one_project_for_both_roles_fails_r9(run_suite):
    proc = run_static(run_suite, ci="sandbox-zuul")
    failed = failures(summary(proc))
    assert ("R9", "projects", "zuul+ci/RegionOne") in failed, proc.stdout[-3000:]
    assert "same project" in failed[("R9", "projects", "zuul+ci/RegionOne")]["reason"]


@pytest.mark.parametrize("wanted", ["RegionOne"])
def test_region_option_parametrizes_readable_ids(run_suite, wanted):
    proc = run_static(run_suite, "--region", wanted, "--collect-only", "-q")
    assert f"test_quota.py::test_compute_quota[zuul-{wanted}]" in proc.stdout
    assert f"test_services.py::test_services[ci-{wanted}]" in proc.stdout
    assert f"test_projects.py::test_two_projects[{wanted}]" in proc.stdout
