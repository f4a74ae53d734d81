"""Runs that must leave the cloud and reports/ as they found them: `-m "not dynamic"` (the checks that create
nothing), and pytest's inspection options (no check runs, so no bundle). Plus two static findings a donor's
cloud shape decides: R7's advice on a private CA, and R8's floating IP quota whenever R6 uses floating IPs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from helpers import suite
from helpers.cloud import resource_counts
from helpers.suite import results, verdicts

from conformance.profiles import profiles_dir

STATIC_CHECKS = {
    "test_services",
    "test_keystone_https",
    "test_node_flavor",
    "test_mirror_flavor",
    "test_compute_quota",
    "test_network_quota",
    "test_ci_volume_quota",
    "test_two_projects",
    "test_non_admin",
}
DYNAMIC_CHECKS = {
    "test_image_upload_and_boot",
    "test_mirror_disk",
    "test_guest_probe",
    "test_public_ip",
    "test_nodepool_operations",
    "test_boot_burst",
}


def _collected(proc) -> set[str]:
    """Check functions of `--collect-only -q` output (node ids without module and parameters)."""
    return {
        line.split("::")[-1].split("[")[0]
        for line in proc.stdout.splitlines()
        if line.startswith("conformance/checks/")
    }


def test_not_dynamic_creates_nothing(sandbox, tmp_path):
    before = resource_counts(sandbox)
    started = time.monotonic()
    proc = suite.run(sandbox.clouds_yaml, tmp_path / "reports", "-m", "not dynamic")
    seconds = time.monotonic() - started
    after = resource_counts(sandbox)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert after == before
    ran = {r["test"].split("::")[-1].split("[")[0] for r in results(tmp_path / "reports")}
    assert ran and ran <= STATIC_CHECKS, ran
    assert "6 deselected" in proc.stdout
    assert "warnings summary" not in proc.stdout, proc.stdout  # a clean run: no library's deprecation notices
    print(
        f"\n-m 'not dynamic' against the sandbox: {seconds:.1f} s (pytest: "
        f"{proc.stdout.strip().splitlines()[-1].strip('= ')})"
    )


def test_dynamic_marker_selects_exactly_the_checks_that_create(sandbox, tmp_path):
    static = suite.run(sandbox.clouds_yaml, tmp_path / "reports", "--collect-only", "-q", "-m", "not dynamic")
    dynamic = suite.run(sandbox.clouds_yaml, tmp_path / "reports", "--collect-only", "-q", "-m", "dynamic")
    assert _collected(static) == STATIC_CHECKS, static.stdout
    assert _collected(dynamic) == DYNAMIC_CHECKS, dynamic.stdout


@pytest.mark.parametrize(
    "args",
    [["--collect-only"], ["--markers"], ["--fixtures"], ["--help"], ["-k", "no_check_has_this_name"]],
    ids=["collect-only", "markers", "fixtures", "help", "nothing-selected"],
)
def test_a_run_that_checks_nothing_writes_no_bundle(sandbox, tmp_path, args):
    earlier = tmp_path / "reports" / "sandbox-zuul-20260101T000000Z"
    earlier.mkdir(parents=True)
    (earlier / "results.json").write_text("{}")
    # A --report-dir that does not exist must not be made; one that does (with an earlier bundle) stays as it is
    # (the second costs another run: only where the run gets as far as making a bundle directory).
    report_dirs = [tmp_path / "reports" / "new"] + ([tmp_path / "reports"] if "-k" in args else [])
    for report_dir in report_dirs:
        proc = suite.run(sandbox.clouds_yaml, report_dir, *args, timeout=300)
        assert proc.returncode in (0, 5), proc.stdout[-3000:] + proc.stderr[-2000:]
        assert f"bundle: {report_dir}" not in proc.stdout
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == [
            Path("reports"),
            earlier.relative_to(tmp_path),
            earlier.relative_to(tmp_path) / "results.json",
        ]
    if args == ["--markers"]:
        assert "@pytest.mark.dynamic:" in proc.stdout
    if args == ["--collect-only"]:  # nothing ran: no results table, no cleanup line either
        assert "conformance results" not in proc.stdout and "conformance cleanup" not in proc.stdout


def test_r7_names_the_cacert_fix_for_a_private_ca(sandbox, tmp_path):
    clouds = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())
    del clouds["clouds"]["sandbox-zuul"]["cacert"]  # the donor forgot it: the system store knows no sandbox CA
    without_ca = tmp_path / "clouds.yaml"
    without_ca.write_text(yaml.safe_dump(clouds))
    proc = suite.run(
        sandbox.clouds_yaml,
        tmp_path / "reports",
        "-k",
        "test_keystone_tls",
        env={"OS_CLIENT_CONFIG_FILE": str(without_ca)},
        timeout=600,
    )
    found = {(r["check"], r["project"]): r for r in results(tmp_path / "reports")}
    certificate = found[("keystone.certificate", "zuul")]
    assert certificate["verdict"] == "FAIL", certificate
    assert "CA system store" in certificate["reason"] and "`cacert`" in certificate["reason"], certificate
    assert "OpenDev accepts" in certificate["reason"]
    assert found[("keystone.certificate", "ci")]["verdict"] == "PASS"  # its entry names the CA
    assert proc.returncode == 1


def test_floating_ip_quota_is_checked_when_auto_mode_gives_floating_ips(sandbox, tmp_path):
    """public_ip.mode auto on a cloud whose external network is not shared: R6 uses floating IPs, so R8 checks
    their quota, whatever the mode is called."""
    profile = tmp_path / "auto.yaml"
    profile.write_text(f"extends: {profiles_dir() / 'sandbox.yaml'}\nname: auto-ip\npublic_ip: {{mode: auto}}\n")
    with sandbox.unshared_external_network():
        proc = suite.run(
            sandbox.clouds_yaml, tmp_path / "reports", "-k", "test_network_quota", profile=profile, timeout=600
        )
    fips = verdicts(tmp_path / "reports").get(("R8", "quota.floating_ips"))
    assert fips is not None, proc.stdout[-3000:]
    assert fips["verdict"] == "PASS" and fips["threshold"] == ">= 100", fips
