"""Helpers of the dynamic checks' integration tests: results of a run, and what a run left in the sandbox."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conformance.resources import prefix_of

RUN_RE = re.compile(r"\b(conformance-\d{8}T\d{6}Z-[0-9a-f]{6})\b")
PROJECT_CLOUDS = ("sandbox-zuul", "sandbox-ci")


def results(report_dir: Path) -> list[dict]:
    files = sorted(Path(report_dir).glob("*/results.json"))
    assert files, f"no results.json under {report_dir}"
    return json.loads(files[-1].read_text())["results"]


def verdicts(report_dir: Path) -> dict[tuple[str, str], dict]:
    return {(r["requirement"], r["check"]): r for r in results(report_dir)}


def run_prefix(proc_output: str) -> str | None:
    match = RUN_RE.search(proc_output or "")
    return match.group(1) if match else None


def leftovers(sandbox, run: str | None = None) -> list[str]:
    """Every server, volume, image, floating IP, port, keypair and security group carrying a run prefix (this
    run's only when given) in both projects, listed as the projects' own users."""
    found = []
    for cloud in PROJECT_CLOUDS:
        conn = sandbox.connect(cloud)
        project = conn.current_project_id

        def keep(kind, name, rid, cloud=cloud):
            prefix = prefix_of(name)
            if prefix and (run is None or prefix == run):
                found.append(f"{cloud} {kind} {name} {rid}")

        for s in conn.compute.servers(details=False):
            keep("server", s.name, s.id)
        for v in conn.block_storage.volumes(details=False):
            keep("volume", v.name, v.id)
        for i in conn.image.images(owner=project):
            keep("image", i.name, i.id)
        for f in conn.network.ips(project_id=project):
            keep("floating_ip", f.description, f.id)
        for p in conn.network.ports(project_id=project):
            keep("port", p.name, p.id)
        for k in conn.compute.keypairs():
            keep("keypair", k.name, k.id)
        for g in conn.network.security_groups(project_id=project):
            keep("security_group", g.name, g.id)
        conn.close()
    return found


def burst_servers(sandbox) -> list:
    conn = sandbox.connect("sandbox-zuul")
    try:
        return [s for s in conn.compute.servers(details=False, name="^conformance-.*-burst-")]
    finally:
        conn.close()
