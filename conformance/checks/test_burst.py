"""R12: many test nodes boot concurrently, quickly and reliably (what a Zuul node request burst does).

N servers (profile burst.size, the whole instance quota target; --burst-size opts out to fewer) are created
through a bounded pool from the run's image with the test-node flavor, waited for with one bulk listing per
poll tick, then deleted and waited for the same way. The SLA is the profile's: p95 request -> ACTIVE and the
failure rate."""

from __future__ import annotations

from collections import Counter

import pytest

from conformance.burst import BurstSettings, run_burst
from conformance.dynamic import node_setup, progress_writer
from conformance.metrics.plugin import burst_reporter
from conformance.results import split_scope

pytestmark = [pytest.mark.requirement("R12"), pytest.mark.dynamic]


def settings_from(profile, config) -> BurstSettings:
    size = int(profile["burst.size"])
    wanted = config.getoption("conformance_burst_size")
    timeout = config.getoption("conformance_burst_timeout") or float(profile["burst.timeout_s"])
    return BurstSettings(size=wanted or size, concurrency=int(profile["burst.create_concurrency"]),
                         poll_interval_s=float(profile["burst.poll_interval_s"]), timeout_s=timeout)


def test_boot_burst(zuul, profile, record, images, tracker, pytestconfig):
    settings = settings_from(profile, pytestconfig)
    profile_size = int(profile["burst.size"])
    setup = node_setup(zuul, profile, images, pytestconfig)
    # The live line on the terminal, and its counts to statsd when a host is given.
    write = burst_reporter(pytestconfig, zuul.name, split_scope(zuul.scope)[1], progress_writer(pytestconfig))
    try:
        result = run_burst(zuul, tracker, image_id=setup.image_id, flavor_id=setup.flavor.id,
                           network_id=setup.network.id, settings=settings, progress=write,
                           volume_size_gb=setup.volume_size_gb)
    finally:
        write.done()
    summary = result.summary()
    faults = Counter(s.fault for s in result.servers if s.fault)
    data = {"servers": [s.as_dict() for s in result.servers], "summary": summary,
            "calls_by_endpoint": result.calls_by_endpoint, **setup.describe(),
            "requested_size": settings.size, "profile_size": profile_size,
            "poll_interval_s": settings.poll_interval_s, "create_concurrency": settings.concurrency}
    scope = zuul.scope
    max_p95 = float(profile["burst.max_p95_boot_s"])
    max_failure = float(profile["burst.max_failure_rate"])
    p95 = summary["p95"]
    record("R12", "burst.p95", scope=scope,
           measured="no server became ACTIVE" if p95 is None else
           f"p95 {p95:.1f} s (p50 {summary['p50']:.1f}, max {summary['max']:.1f}; "
           f"{summary['boots_per_minute']} boots/min"
           + (f", from {setup.volume_size_gb} GB volumes)" if setup.volume_size_gb else ")"),
           threshold=f"p95 <= {max_p95:.0f} s", ok=p95 is not None and p95 <= max_p95,
           reason="" if p95 is not None and p95 <= max_p95 else "boots slower than the SLA", data=data)

    failure_rate = 1 - summary["success_rate"]
    top = "; ".join(f"{n} x {fault}" for fault, n in faults.most_common(3))
    quota = f"{summary['quota_errors']} refused by quota; " if summary["quota_errors"] else ""
    record("R12", "burst.failure_rate", scope=scope,
           measured=f"{summary['active']}/{summary['n']} ACTIVE ({failure_rate:.1%} failed)",
           threshold=f"<= {max_failure:.1%} failed", ok=failure_rate <= max_failure,
           reason=(quota + top) if failure_rate > max_failure else "",
           data={"summary": summary, "faults": dict(faults)})

    left = result.left_after_delete + result.volumes_left
    gone = "all gone" if not left else f"{len(left)} left"
    if setup.volume_size_gb:
        gone += f" (servers and {summary['volumes_created']} boot volumes)"
    record("R12", "burst.delete", scope=scope, measured=f"{gone} after {summary['delete_s'] or 0:.1f} s",
           threshold=f"all gone within {settings.delete_timeout_s or settings.timeout_s:.0f} s", ok=not left,
           reason=f"still present: {', '.join(left[:5])}"
                  + (f" ({next(iter(result.delete_faults.values()))})" if result.delete_faults else "")
                  if left else "",
           data={"delete_s": summary["delete_s"], "left": left, "delete_faults": result.delete_faults,
                 **result.volume_summary()})

    if settings.size < profile_size:
        record("R12", "burst.size", scope=scope, measured=f"{settings.size} servers",
               threshold=f"{profile_size} servers (profile burst.size)", verdict="WARN",
               reason=f"opted out to a smaller burst with --burst-size {settings.size}")
