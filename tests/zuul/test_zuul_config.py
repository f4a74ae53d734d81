"""Zuul's own configuration parser reads the project's zuul.d/ offline (no ZooKeeper, no scheduler: seconds), and
refuses what the real Zuul would refuse. The whole layout (parents, nodesets, secrets, semaphores) is checked on
the real Zuul by test_periodic_job.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from harness import HERE, REPO_ROOT, missing_prerequisites, zuul_home

pytestmark = pytest.mark.skipif(
    bool(missing_prerequisites()), reason="Zuul is not installed (bash sandbox/prereqs.sh --zuul)"
)


def validate(*paths: Path, trusted: bool = False) -> subprocess.CompletedProcess:
    command = [
        str(zuul_home() / "venv" / "bin" / "python"),
        str(HERE / "validate_config.py"),
        *(["--trusted", "--project", "zuul-config"] if trusted else []),
        *map(str, paths),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_project_zuul_d_parses_without_errors():
    proc = validate(REPO_ROOT / "zuul.d")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 error(s)" in proc.stdout


def test_example_cloud_file_parses_without_errors():
    # The file a donor copies: its stanzas (secret, semaphore, job, project) must be valid Zuul as shipped.
    proc = validate(REPO_ROOT / "docs" / "zuul-cloud-example.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_test_tenant_config_parses_as_trusted():
    proc = validate(HERE / "zuul-config" / "zuul.d", trusted=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_misspelled_job_attribute_fails(tmp_path):
    broken = tmp_path / "zuul.d"
    shutil.copytree(REPO_ROOT / "zuul.d", broken)
    jobs = broken / "jobs.yaml"
    assert "    timeout: 5400\n" in jobs.read_text()
    jobs.write_text(jobs.read_text().replace("    timeout: 5400\n", "    timout: 5400\n"))
    proc = validate(broken)
    assert proc.returncode == 1, proc.stdout
    assert "extra keys not allowed @ data['timout']" in proc.stdout
    assert '"cloud-conformance" job stanza' in proc.stdout
    assert "1 error(s)" in proc.stdout


def test_wrong_type_and_deprecated_syntax_fail(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "- job:\n    name: x\n    timeout: ten minutes\n- job:\n    name: y\n    cleanup-run: playbooks/y.yaml\n"
    )
    proc = validate(bad)
    assert proc.returncode == 1
    assert "timeout" in proc.stdout and "cleanup-run job attribute is deprecated" in proc.stdout
