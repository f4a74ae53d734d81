"""The report part in a real pytest run (a subprocess, like tox): a fake check module records results the way the
main part's `record` fixture does (user_properties), and the run writes, signs and compares its bundle.

The fake checks are not conformance.checks, so the main part and the other parts stay inert (nothing needs a
cloud) and `--report-bundle=yes` has the report part write the bundle; the integration test runs the real suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.__main__ import main

SECRET = "Pl4nted-Secr3t-value"

CHECKS = f"""
import json
from conformance.redact import register_secret

register_secret({SECRET!r})


def record(request, rid, verdict, data=None, measured="1"):
    request.node.user_properties.append(("conformance.result", json.dumps({{
        "requirement": rid, "check": "fake." + rid, "project": "zuul", "region": "RegionOne",
        "measured": measured, "threshold": ">= 1", "verdict": verdict, "reason": "", "data": data or {{}},
        "test": request.node.nodeid}})))


def test_flavor(request):
    record(request, "R4", "PASS", {{"flavor": {{"name": "ci.standard", "ram": 8192, "vcpus": 8, "disk": 0}}}})
    request.node.user_properties.append(("conformance.calls", json.dumps(
        [{{"method": "GET", "path": "/v2.1/flavors/detail", "status": 200, "seconds": 0.1,
          "service": "compute"}}])))
    print("the password is", {SECRET!r})


def test_quota(request):
    verdict = "FAIL" if __import__("os").environ.get("FAKE_QUOTA_FAIL") else "PASS"
    record(request, "R8", verdict, {{"max_instances": 120}}, measured="120")
    assert verdict == "PASS", "quota too low; token " + {SECRET!r}
"""


def clean_env(**extra) -> dict:
    """This process's environment without the suite's own settings (CONFORMANCE_REPORT_DIR...)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CONFORMANCE_")}, **extra}


def run(tmp_path: Path, *args, env=None) -> subprocess.CompletedProcess:
    (tmp_path / "test_fake_checks.py").write_text(CHECKS)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--report-bundle=yes",
        "test_fake_checks.py",
        *map(str, args),
    ]
    return subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=clean_env(**(env or {}))
    )


def only_bundle(tmp_path: Path) -> Path:
    bundles = sorted((tmp_path / "reports").iterdir())
    assert len(bundles) == 1, bundles
    return bundles[0]


def test_run_writes_complete_bundle_without_secrets(tmp_path):
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = only_bundle(tmp_path)
    assert path.name.startswith("openstackzuul-") and path.name.endswith("Z")  # --zuul-cloud's default
    names = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
    assert {
        "report.html",
        "results.json",
        "junit.xml",
        "MANIFEST.sha256",
        "onboarding/clouds-public.yaml",
        "onboarding/zuul-launcher-provider.yaml",
        "onboarding/nodepool-provider.yaml",
    } <= names
    doc = json.loads((path / "results.json").read_text())
    assert [r["requirement"] for r in doc["results"]] == ["R4", "R8"]
    html = (path / "report.html").read_text()
    assert 'id="conformance-matrix"' in html and "test_fake_checks.py::test_flavor" in html
    assert "<style" in html and 'href="assets/' not in html  # self-contained
    assert "testcase" in (path / "junit.xml").read_text()
    assert f"bundle: {path}" in proc.stdout
    for file in path.rglob("*"):
        if file.is_file():
            assert SECRET not in file.read_text(), file
    assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["in-process", "xdist"])
def test_failure_text_and_captured_output_are_redacted(tmp_path, workers):
    # Under xdist the secret is registered only in the worker that imported the check module: the worker
    # must redact before its report travels to the controller.
    proc = run(tmp_path, "-rA", *workers, env={"FAKE_QUOTA_FAIL": "1"})
    assert proc.returncode == 1
    assert "quota too low; token ***" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr
    path = only_bundle(tmp_path)
    for file in path.rglob("*"):
        if file.is_file():
            assert SECRET not in file.read_text(), file


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_sign_key_on_the_run(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    proc = run(tmp_path, "--sign-key", key)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = only_bundle(tmp_path)
    assert fingerprint in (path / "report.html").read_text()
    assert main(["verify", str(path), "--key", str(key) + ".pub"]) == 0
    assert f"signed (ssh) by {fingerprint}" in proc.stdout


def test_bad_sign_key_is_a_usage_error_before_the_run(tmp_path):
    proc = run(tmp_path, "--sign-key", tmp_path / "missing-key")
    assert proc.returncode == 4  # pytest's usage error
    assert "--sign-key" in proc.stderr
    assert not (tmp_path / "reports").exists()


def test_baseline_regression_fails_the_run(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    assert run(first).returncode == 0
    baseline = only_bundle(first)
    second = tmp_path / "second"
    second.mkdir()
    proc = run(second, "--baseline", baseline, "-k", "flavor")
    assert proc.returncode == 0, proc.stdout  # R8 not run: a change in coverage, not a regression
    assert "R8   PASS -> NOT_RUN" in proc.stdout
    shutil.rmtree(second / "reports")
    proc = run(second, "--baseline", baseline, env={"FAKE_QUOTA_FAIL": "1"})
    assert proc.returncode == 1
    assert "REGRESSION" in proc.stdout
    comparison = json.loads((only_bundle(second) / "comparison.json").read_text())
    assert comparison["regressions"][0] == "R8: PASS -> FAIL"


def test_inactive_without_conformance_checks(tmp_path):
    (tmp_path / "test_plain.py").write_text("def test_ok():\n    pass\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "test_plain.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
    )
    assert proc.returncode == 0
    assert not (tmp_path / "reports").exists()
    assert "conformance report bundle" not in proc.stdout


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_sign_after_the_run_names_the_key_in_pytest_html_report(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    assert run(tmp_path).returncode == 0
    path = only_bundle(tmp_path)
    assert "Not signed at the end of the run" in (path / "report.html").read_text()
    assert main(["sign", str(path), "--key", str(key)]) == 0
    html = (path / "report.html").read_text()
    assert "Not signed" not in html and 'id="conformance-signing-key">SHA256:' in html
    assert main(["verify", str(path), "--key", str(key) + ".pub"]) == 0
