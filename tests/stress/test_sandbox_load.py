"""The sandbox under a peer tool's load: 100 clients, each with its own connection, booting one server and polling
it every 2 s (as Rally and Tempest wait), through bench/sandbox_load.py's command line.

A real cloud's API tier takes this; the sandbox must too, or every test that stresses it measures the sandbox.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_CLIENTS = 100


def _last_line_figures(stdout: str) -> dict[str, str]:
    last = stdout.strip().splitlines()[-1]
    return dict(re.findall(r"(\w+)=(\S+)", last))


def test_100_polling_clients_see_no_reset_no_5xx_and_no_error_server(sandbox):
    before = {name: (pid, running) for name, pid, running, _rss in sandbox.status()}
    proc = subprocess.run(
        [sys.executable, "bench/sandbox_load.py", "--bursts", "0", "--poll-clients", str(POLL_CLIENTS)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=REPO_ROOT,
        env={**os.environ, "OS_CLIENT_CONFIG_FILE": str(sandbox.clouds_yaml)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = _last_line_figures(proc.stdout)
    assert figures["poll_clients"] == str(POLL_CLIENTS)
    # poll_errors counts failed calls (resets, 5xx) and servers that did not become ACTIVE.
    assert (figures["poll_errors"], figures["resets"]) == ("0", "0"), proc.stdout[-3000:]
    assert "LEFT:" not in proc.stdout

    prefix = re.search(r"run prefix (conformance-\S+)", proc.stdout).group(1)
    admin = sandbox.admin()
    assert [s.name for s in admin.compute.servers(all_projects=True) if s.name.startswith(prefix)] == []
    after = {name: (pid, running) for name, pid, running, _rss in sandbox.status()}
    assert after == before, "the load changed the sandbox's processes (one died or was restarted)"
