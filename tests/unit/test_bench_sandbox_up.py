"""bench/sandbox_up.py's plumbing, against a stand-in `python -m sandbox` (the real `up` runs in CI's sandbox
tests and takes a machine of its own): phases parsed from what `up` prints, CPU read from the process table of
what it started, `down` always run, and a failed `up` reported as such."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "sandbox_up.py"

# `up` starts a process group that burns ~0.3 s of CPU, records it as the sandbox does, and prints its phases;
# `down` kills the group and leaves a mark. FAIL_UP makes `up` fail as a broken cloud would.
STAND_IN = r"""
import json, os, signal, subprocess, sys
from pathlib import Path
state = Path(os.environ["SANDBOX_DIR"])
if sys.argv[1] == "up":
    if os.environ.get("FAIL_UP"):
        print("sandbox: keystone exited during start"); sys.exit(1)
    state.mkdir(parents=True, exist_ok=True)
    burner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                               "while time.process_time() < end: pass\ntime.sleep(60)"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ticks = int(Path(f"/proc/{burner.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    while True:
        stat = Path(f"/proc/{burner.pid}/stat").read_text().rsplit(")", 1)[1].split()
        if int(stat[11]) + int(stat[12]) >= 0.3 * os.sysconf("SC_CLK_TCK"):
            break
    (state / "processes.json").write_text(json.dumps({"keystone": {
        "name": "keystone", "pid": burner.pid, "start_ticks": ticks, "argv": [], "log": "", "env": {}}}))
    print("[  0.5s] databases restored from the template")
    print("[ 12.3s] all APIs answer (first answers: keystone 3.9s)")
    print("sandbox up in 13s")
else:
    table = json.loads((state / "processes.json").read_text()) if (state / "processes.json").exists() else {}
    for entry in table.values():
        os.killpg(entry["pid"], signal.SIGKILL)
    (state.parent / "down-ran").write_text("yes")
"""


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("bench_sandbox_up", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tree(tmp_path):
    package = tmp_path / "tree" / "sandbox"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(STAND_IN)
    return package.parent


def test_up_is_measured_then_brought_down(bench, tree, tmp_path):
    result = bench.run_up(tree, tmp_path / "state")
    assert result["phases"] == [
        (0.5, "databases restored from the template"),
        (12.3, "all APIs answer (first answers: keystone 3.9s)"),
    ]
    assert result["cpu"]["keystone"] >= 0.3
    assert result["wall"] > 0
    assert (tmp_path / "down-ran").read_text() == "yes"
    assert json.loads((tmp_path / "state" / "processes.json").read_text())["keystone"]["pid"] > 0


def test_a_failed_up_stops_the_benchmark_and_still_runs_down(bench, tree, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIL_UP", "1")
    with pytest.raises(SystemExit, match="(?s)up failed .*exit 1.*keystone exited during start"):
        bench.run_up(tree, tmp_path / "state")
    assert (tmp_path / "down-ran").read_text() == "yes"
