"""sandbox/prereqs.sh's command line (what it installs is exercised by CI's own run of `prereqs.sh --zuul`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PREREQS = Path(__file__).resolve().parents[2] / "sandbox" / "prereqs.sh"


def test_an_unknown_argument_is_one_line_and_exit_2_before_anything_is_installed():
    result = subprocess.run(["bash", str(PREREQS), "--with-everything"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "prereqs: unknown argument --with-everything (usage: bash sandbox/prereqs.sh [--zuul])\n"


@pytest.mark.parametrize(
    ("args", "env", "zuul"), [([], {}, False), (["--zuul"], {}, True), ([], {"CONFORMANCE_PREREQS_ZUUL": "1"}, True)]
)
def test_zuul_is_installed_only_when_asked(tmp_path, args, env, zuul):
    """The demo's line (`bash sandbox/prereqs.sh`) does not pay for Zuul's 2.2 GB; `--zuul` (CI) does. Run on a
    copy whose tests/zuul/prereqs.sh only says it ran (this machine has the apt packages and tox already)."""
    (tmp_path / "sandbox").mkdir()
    (tmp_path / "tests" / "zuul").mkdir(parents=True)
    shutil.copy(PREREQS, tmp_path / "sandbox" / "prereqs.sh")
    (tmp_path / "tests" / "zuul" / "prereqs.sh").write_text("echo 'zuul prereqs: stand-in ran'\n")
    # As from a root shell, not from this test's virtualenv (whose python3 has no tox_uv: the copy would install it).
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep) if d != venv_bin)
    shell = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": path}
    probe = "command -v tox >/dev/null && python3 -c 'import tox_uv'"
    if subprocess.run(["bash", "-c", probe], env=shell, capture_output=True).returncode != 0:
        pytest.skip("tox with tox-uv is not installed for this machine's python3: the copy would install it")
    result = subprocess.run(
        ["bash", str(tmp_path / "sandbox" / "prereqs.sh"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**shell, **env},
    )
    assert result.returncode == 0, result.stderr
    assert ("zuul prereqs: stand-in ran" in result.stdout) is zuul, result.stdout
    assert "prereqs: ready" in result.stdout
