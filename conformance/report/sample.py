"""A made-up run in the shape of the main part's SessionResults, for the report's tests and docs.

No cloud is involved: the numbers are invented but shaped like the real checks' results (R4 flavor, R6 public
IP, R8 quota, R12 burst with per-server times).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from types import SimpleNamespace

START = dt.datetime(2026, 11, 28, 12, 0, 0, tzinfo=dt.timezone.utc)


@dataclass
class FakeSessionResults:
    results: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    profile: object = None
    clouds: dict = field(default_factory=dict)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    interrupted: dict | None = None


def _result(rid, check, measured, threshold, verdict, *, project="zuul", region="RegionOne", reason="", data=None):
    return {
        "requirement": rid,
        "check": check,
        "project": project,
        "region": region,
        "measured": str(measured),
        "threshold": threshold,
        "verdict": verdict,
        "reason": reason,
        "data": data or {},
        "test": f"conformance/checks/test_sample.py::test_{check.replace('.', '_')}",
    }


def burst_servers(count=20, failed=1, slow_from=0.0):
    servers = []
    for i in range(count):
        ok = i >= failed
        servers.append(
            {
                "name": f"conformance-20261128T120000Z-abcd-burst-{i:03d}",
                "status": "ACTIVE" if ok else "ERROR",
                "request_to_active_s": round(20 + (i * 37 % 50) + slow_from, 1) if ok else None,
                "created_to_launched_s": round(15 + (i * 37 % 45), 1) if ok else None,
                "fault": None if ok else "No valid host was found.",
            }
        )
    return servers


def sample_session_results(*, verdicts=None, burst=True, secret=None, flavor_disk=80, slow_from=0.0, interrupted=False):
    """`verdicts` overrides per requirement ID; `secret` is planted where a careless check could leak it;
    `interrupted`: a SIGINT 25 minutes in cut the burst short while it booted (INCOMPLETE)."""
    verdicts = verdicts or {}
    profile_data = {
        "flavor": {"min_ram_mb": 8192, "min_disk_gb": 80},
        "burst": {"max_p95_boot_s": 600, "max_failure_rate": 0.02},
    }
    profile = SimpleNamespace(
        name="sandbox",
        sha256="0" * 63 + "1",
        data=profile_data,
        relaxations=(SimpleNamespace(key="public_ip.accept_documentation_ranges", reason="documentation ranges"),),
    )
    servers = burst_servers(slow_from=slow_from) if burst else []
    results = [
        _result("R1", "services.compute", "compute, image, network", "all answer", verdicts.get("R1", "PASS")),
        _result(
            "R4",
            "flavor.test_node",
            "ci.standard",
            ">= 8192 MB, 8 vCPU, 80 GB",
            verdicts.get("R4", "PASS"),
            data={"flavor": {"name": "ci.standard", "ram": 8192, "vcpus": 8, "disk": flavor_disk}},
        ),
        _result(
            "R6",
            "public_ip.node",
            "203.0.113.10",
            "ipv4 or ipv6",
            verdicts.get("R6", "PASS"),
            data={"ipv4": True, "ipv6": False, "mode": "floating"},
        ),
        _result(
            "R8",
            "quota.instances",
            150,
            ">= 100",
            verdicts.get("R8", "PASS"),
            data={"flavor": "ci.standard", "limit": 150, "needed": 100, "used": 0, "max_servers": 150},
        ),
        _result(
            "R10",
            "non_admin.roles",
            "member",
            "no admin",
            verdicts.get("R10", "PASS"),
            project="ci",
            region="",
        ),
    ]
    if burst:
        # Shaped like the dynamic checks' results: servers on the p95 result, the summary on the failure rate.
        results += [
            _result(
                "R12",
                "burst.p95",
                "p95 66.2 s",
                "p95 <= 600 s",
                verdicts.get("R12", "PASS"),
                data={"servers": servers},
            ),
            _result(
                "R12",
                "burst.failure_rate",
                "1/20 failed (5.0%)",
                "<= 2.0% failed",
                verdicts.get("R12", "FAIL"),
                reason="1 x No valid host was found.",
                data={"summary": {"n": len(servers), "boots_per_minute": 12.5, "success_rate": 0.95}},
            ),
        ]
    else:
        results.append(_result("R12", "burst.p95", "", "", "SKIP", reason="burst not run (--burst-size 0)"))
    stop = None
    if interrupted and burst:
        stop = {"reason": "SIGINT", "at": "2026-11-28T12:25:00Z", "detail": "", "during": "checks", "after_s": 1500.0}
        for result in results[-2:]:
            result["verdict"], result["reason"] = "INCOMPLETE", "interrupted by SIGINT at 2026-11-28T12:25:00Z"
        results[-1]["data"]["summary"]["interrupted"] = {**stop, "phase": "boot", "after_s": 90.0}
    if secret:
        results[0]["reason"] = f"debug: token {secret}"
        results[0]["data"] = {"password": secret, "note": f"Authorization {secret}"}
    calls = [
        {
            "method": "GET",
            "path": f"/v2.1/servers/{i:08d}-aaaa-bbbb-cccc-{i:012d}",
            "status": 200,
            "seconds": 0.05 + i / 1000,
            "service": "compute",
        }
        for i in range(30)
    ]
    calls += [
        {
            "method": "POST",
            "path": "/v2.1/servers",
            "status": 202 if i else 500,
            "seconds": 0.4 + i / 100,
            "service": "compute",
        }
        for i in range(20)
    ]
    calls += [{"method": "POST", "path": "/v3/auth/tokens", "status": 201, "seconds": 0.2, "service": "identity"}]
    facts = {
        "zuul": {
            "cloud": "sandbox-zuul",
            "auth_url": "https://127.0.0.1:5000/v3",
            "regions": ["RegionOne"],
            "project_name": "zuul",
            "project_id": "a" * 32,
            "project_domain": "Default",
            "user_domain": "Default",
            "identity_api_version": "3",
            "compute_api_version": "2.1",
        },
        "ci": {
            "cloud": "sandbox-ci",
            "auth_url": "https://127.0.0.1:5000/v3",
            "regions": ["RegionOne"],
            "project_name": "ci",
            "project_id": "b" * 32,
            "project_domain": "Default",
            "user_domain": "Default",
            "identity_api_version": "3",
            "compute_api_version": "2.1",
        },
    }
    if secret:
        calls.append(
            {
                "method": "GET",
                "path": f"/v3/auth/tokens?nocatalog&t={secret}",
                "status": 200,
                "seconds": 0.1,
                "service": "identity",
            }
        )
        facts["zuul"]["note"] = secret
    return FakeSessionResults(results, calls, profile, facts, START, START + dt.timedelta(minutes=42), stop)
