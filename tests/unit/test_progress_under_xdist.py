"""The burst's live line under pytest-xdist (`-n 2`): the worker running the burst writes it on the standard
error it shares with the controller, a line every --progress-interval, marked with the worker's id."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
from conformance.progress import progress_writer


def test_a_burst_in_a_worker(pytestconfig):
    write = progress_writer(pytestconfig, every_s=0)
    for active in (10, 50, 100):
        write(f"burst {active}/100 ACTIVE, 0 ERROR, {100 - active} BUILD")
    write.done()


def test_another_check():
    pass
"""


def test_a_worker_s_progress_lines_reach_the_controller_s_output(tmp_path):
    (tmp_path / "test_check.py").write_text(CHECK)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-q", "test_check.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "burst " in line]
    assert len(lines) == 3, lines
    assert all(line.startswith(("[gw0] burst ", "[gw1] burst ")) for line in lines), lines
    assert lines[-1].endswith("burst 100/100 ACTIVE, 0 ERROR, 0 BUILD")


def test_serial_runs_keep_the_terminal_reporter_s_line(tmp_path):
    (tmp_path / "test_check.py").write_text(CHECK)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_check.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "burst 100/100 ACTIVE, 0 ERROR, 0 BUILD" in result.stdout
    assert "[gw" not in result.stdout + result.stderr
