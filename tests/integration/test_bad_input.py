"""Bad input gives one line and a non-zero exit, no traceback, and creates nothing: through the real
command line.

Only the wrong-password and unknown-region cases need the sandbox; the others use clouds.yaml files pointing
at closed or silent ports on 127.0.0.1 and at a `.invalid` host name (which never resolves).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import suite

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "not-a-real-password-4711"


def entry(auth_url: str, password: str = PASSWORD) -> dict:
    return {
        "auth": {
            "auth_url": auth_url,
            "username": "u",
            "password": password,
            "project_name": "p",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": "RegionOne",
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(
    tmp_path: Path,
    *args: str,
    clouds: dict | None = None,
    clouds_file: Path | None = None,
    zuul: str = "zuul",
    ci: str = "ci",
    profile: str = "sandbox",
) -> tuple[subprocess.CompletedProcess, float]:
    if clouds_file is None:
        clouds_file = tmp_path / "clouds.yaml"
        clouds_file.write_text(yaml.safe_dump({"clouds": clouds or {}}))
    started = time.monotonic()
    proc = suite.run(
        clouds_file, tmp_path / "reports", *args, zuul=zuul, ci=ci, profile=profile, cwd=tmp_path, timeout=120
    )
    return proc, time.monotonic() - started


def assert_one_line_error(proc: subprocess.CompletedProcess, tmp_path: Path, *fragments: str) -> str:
    output = proc.stdout + proc.stderr
    assert proc.returncode not in (0, 1), output  # a usage error, not a test failure
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1, output
    other = [line for line in output.splitlines() if line.strip() and not line.startswith("ERROR:")]
    assert other == [], f"only the error line may be printed: {other}"
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert PASSWORD not in output
    assert not (tmp_path / "reports").exists(), "bad input must create nothing"
    return errors[0]


def test_unknown_cloud_name(tmp_path):
    proc, _ = run_cli(tmp_path, clouds={"zuul": entry("https://127.0.0.1:1/v3")}, ci="nope")
    assert_one_line_error(proc, tmp_path, "--ci-cloud nope", "'nope' is not in", "clouds there: zuul")


def test_missing_clouds_yaml(tmp_path):
    proc, _ = run_cli(tmp_path, clouds_file=tmp_path / "absent.yaml")
    assert_one_line_error(proc, tmp_path, "clouds.yaml not found", "absent.yaml")


def test_unparsable_clouds_yaml(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("clouds:\n  zuul:\n    auth: {auth_url: [oops\n")
    proc, _ = run_cli(tmp_path, clouds_file=broken)
    assert_one_line_error(proc, tmp_path, "broken.yaml is not valid YAML at line")


def test_clouds_yaml_without_clouds(tmp_path):
    odd = tmp_path / "odd.yaml"
    odd.write_text("- just\n- a list\n")
    proc, _ = run_cli(tmp_path, clouds_file=odd)
    assert_one_line_error(proc, tmp_path, "has no 'clouds:' mapping")


def test_connection_refused(tmp_path):
    port = closed_port()
    clouds = {"zuul": entry(f"https://127.0.0.1:{port}/v3"), "ci": entry(f"https://127.0.0.1:{port}/v3")}
    proc, _ = run_cli(tmp_path, clouds=clouds)
    assert_one_line_error(proc, tmp_path, "--zuul-cloud zuul", "cannot reach Keystone", "connection refused")


def test_host_name_does_not_resolve(tmp_path):
    clouds = {"zuul": entry("https://keystone.conformance.invalid/v3"), "ci": entry("https://127.0.0.1:1/v3")}
    proc, _ = run_cli(tmp_path, clouds=clouds)
    assert_one_line_error(proc, tmp_path, "keystone.conformance.invalid does not resolve")


def test_keystone_that_never_answers_times_out_within_seconds(tmp_path):
    with socket.socket() as silent:  # accepts connections (kernel backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        clouds = {"zuul": entry(f"https://127.0.0.1:{port}/v3"), "ci": entry(f"https://127.0.0.1:{port}/v3")}
        proc, _ = run_cli(tmp_path, clouds=clouds)
    # "timed out" comes from the reachability probe (bounded to 3 s, not retried), not from the subprocess
    # timeout; how long it takes is the benchmark's business, not an assertion on a shared machine.
    assert_one_line_error(proc, tmp_path, "cannot reach Keystone", "timed out")


def test_invalid_profile_names_the_key(tmp_path):
    profile = tmp_path / "typo.yaml"
    profile.write_text("extends: opendev-donor\nname: typo\nflavor:\n  min_rma_mb: 8192\n")
    proc, _ = run_cli(tmp_path, clouds={"zuul": entry("https://127.0.0.1:1/v3")}, profile=str(profile))
    assert_one_line_error(proc, tmp_path, "invalid profile", "flavor.min_rma_mb: unknown key")


def test_unknown_profile_name(tmp_path):
    proc, _ = run_cli(tmp_path, clouds={"zuul": entry("https://127.0.0.1:1/v3")}, profile="no-such-profile")
    assert_one_line_error(proc, tmp_path, "unknown profile 'no-such-profile'", "opendev-donor")


@pytest.fixture
def sandbox_clouds(sandbox) -> dict:
    return yaml.safe_load(Path(sandbox.clouds_yaml).read_text())["clouds"]


def test_wrong_password(tmp_path, sandbox_clouds):
    wrong = {**sandbox_clouds["sandbox-zuul"]}
    wrong["auth"] = {**wrong["auth"], "password": PASSWORD}
    clouds = {"zuul": wrong, "ci": sandbox_clouds["sandbox-ci"]}
    proc, _ = run_cli(tmp_path, clouds=clouds)
    assert_one_line_error(proc, tmp_path, "--zuul-cloud zuul", "authentication failed (401")
    assert sandbox_clouds["sandbox-ci"]["auth"]["password"] not in proc.stdout + proc.stderr


def test_unknown_region(tmp_path, sandbox_clouds):
    clouds = {"zuul": sandbox_clouds["sandbox-zuul"], "ci": sandbox_clouds["sandbox-ci"]}
    proc, _ = run_cli(tmp_path, "--region", "Atlantis", clouds=clouds)
    # openstacksdk knows the entry's regions (region_name) and words it; the catalog check covers the rest.
    assert_one_line_error(proc, tmp_path, "--zuul-cloud zuul", "Atlantis", "RegionOne")


def test_help_lists_the_options_with_their_env_vars(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert proc.returncode == 0
    for option, env in [
        ("--zuul-cloud", "CONFORMANCE_ZUUL_CLOUD"),
        ("--ci-cloud", "CONFORMANCE_CI_CLOUD"),
        ("--region", "CONFORMANCE_REGION"),
        ("--profile", "CONFORMANCE_PROFILE"),
        ("--report-dir", "CONFORMANCE_REPORT_DIR"),
        ("--statsd-host", "STATSD_HOST"),  # Zuul's and the statsd client's own variables
        ("--statsd-port", "STATSD_PORT"),
        ("--statsd-prefix", "STATSD_PREFIX"),
        ("--deadline", "CONFORMANCE_DEADLINE"),
        ("--probe-image", "CONFORMANCE_PROBE_IMAGE"),
    ]:
        assert option in proc.stdout and env in proc.stdout


def test_run_prefix_that_is_not_one(tmp_path, monkeypatch):
    # A caller that names the run (the Zuul job) must give a real prefix: the cleanup sweeps by it.
    monkeypatch.setenv("CONFORMANCE_RUN_PREFIX", "conformance-tomorrow")
    proc, _ = run_cli(tmp_path, clouds={"zuul": entry("https://127.0.0.1:1/v3")})
    assert_one_line_error(proc, tmp_path, "CONFORMANCE_RUN_PREFIX='conformance-tomorrow' is not a run prefix")


def test_statsd_port_out_of_range(tmp_path, sandbox_clouds):
    clouds = {"zuul": sandbox_clouds["sandbox-zuul"], "ci": sandbox_clouds["sandbox-ci"]}
    proc, _ = run_cli(tmp_path, "--statsd-host=127.0.0.1", "--statsd-port=70000", clouds=clouds)
    assert_one_line_error(proc, tmp_path, "statsd port 70000", "not a UDP port")


def test_deadline_must_be_seconds_above_zero(tmp_path):
    for value, words in (
        ("0", "argument --deadline: 0: must be more than 0 seconds"),
        ("soon", "argument --deadline: not a number of seconds: 'soon'"),
    ):
        proc, _ = run_cli(tmp_path, "--deadline", value, clouds={"zuul": entry("https://127.0.0.1:1/v3")})
        assert proc.returncode == 4 and words in proc.stderr, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        assert not (tmp_path / "reports").exists(), "bad input must create nothing"
