"""R12: many test nodes boot concurrently, quickly and reliably (what a Zuul node request burst does).

N servers (profile burst.size, the whole instance quota target; --burst-size opts out to fewer) are created
through a bounded pool from the run's image with the test-node flavor, waited for with one bulk listing per
poll tick, then deleted and waited for the same way. The SLA is the profile's: p95 request -> ACTIVE and the
failure rate.

What the burst could not decide is INCOMPLETE, with the figures measured until then: a run interrupted
(SIGINT, SIGTERM, a deadline) while the servers boot leaves p95 and failure rate open (unless more have failed
already than the SLA allows: that FAILs), while they are deleted the delete. Servers still BUILD when a
--burst-timeout below the profile's burst.timeout_s runs out are neither fast nor failed: open too. At the
profile's own timeout they are failed boots (the profile's timeout defines a hung boot)."""

from __future__ import annotations

from collections import Counter

import pytest

from conformance.burst import TIMED_OUT, BurstResult, BurstSettings, run_burst
from conformance.nodes import node_setup
from conformance.parts.metrics import burst_reporter
from conformance.progress import progress_writer
from conformance.results import split_scope

pytestmark = [pytest.mark.requirement("R12"), pytest.mark.dynamic]


def settings_from(profile, config) -> BurstSettings:
    size = int(profile["burst.size"])
    wanted = config.getoption("conformance_burst_size")
    timeout = config.getoption("conformance_burst_timeout") or float(profile["burst.timeout_s"])
    return BurstSettings(
        size=wanted or size,
        concurrency=int(profile["burst.create_concurrency"]),
        poll_interval_s=float(profile["burst.poll_interval_s"]),
        timeout_s=timeout,
    )


def test_boot_burst(zuul, profile, record, images, tracker, pytestconfig):
    settings = settings_from(profile, pytestconfig)
    profile_size = int(profile["burst.size"])
    setup = node_setup(zuul, profile, images, pytestconfig)
    # The live line on the terminal, and its counts to statsd when a host is given.
    write = burst_reporter(pytestconfig, zuul.name, split_scope(zuul.scope)[1], progress_writer(pytestconfig))
    try:
        result = run_burst(
            zuul,
            tracker,
            image_id=setup.image_id,
            flavor_id=setup.flavor.id,
            network_id=setup.network.id,
            settings=settings,
            progress=write,
            volume_size_gb=setup.volume_size_gb,
        )
    finally:
        write.done()
    summary = result.summary()
    data = {
        "servers": [s.as_dict() for s in result.servers],
        "summary": summary,
        "calls_by_endpoint": result.calls_by_endpoint,
        **setup.describe(),
        "requested_size": settings.size,
        "profile_size": profile_size,
        "poll_interval_s": settings.poll_interval_s,
        "create_concurrency": settings.concurrency,
    }
    scope = zuul.scope
    profile_timeout = float(profile["burst.timeout_s"])
    open_boots = undecided_boots(result, settings.timeout_s, profile_timeout)
    record(
        "R12",
        "burst.p95",
        scope=scope,
        data=data,
        **p95_verdict(summary, float(profile["burst.max_p95_boot_s"]), open_boots, setup.volume_size_gb),
    )
    record(
        "R12",
        "burst.failure_rate",
        scope=scope,
        data={"summary": summary, "faults": dict(Counter(s.fault for s in result.servers if s.fault))},
        **failure_rate_verdict(result, summary, float(profile["burst.max_failure_rate"]), open_boots),
    )
    record(
        "R12",
        "burst.delete",
        scope=scope,
        data={
            "delete_s": summary["delete_s"],
            "left": result.left_after_delete + result.volumes_left,
            "delete_faults": result.delete_faults,
            **result.volume_summary(),
        },
        **delete_verdict(result, summary, settings.delete_timeout_s or settings.timeout_s, profile_timeout),
    )

    if settings.size < profile_size:
        record(
            "R12",
            "burst.size",
            scope=scope,
            measured=f"{settings.size} servers",
            threshold=f"{profile_size} servers (profile burst.size)",
            verdict="WARN",
            reason=f"opted out to a smaller burst with --burst-size {settings.size}",
        )


# ------------------------------------------------------------------------------------- verdicts of the burst
class OpenBoots:
    """Servers whose boot the burst could not decide, and why (falsy when every boot was decided)."""

    def __init__(self, why: str = "", undecided: int = 0):
        self.why, self.undecided = why, undecided

    def __bool__(self) -> bool:
        return bool(self.why)


def stopped_text(result: BurstResult) -> str:
    """`interrupted by SIGINT at 2026-11-29T04:37:44Z, 25 s into the burst (boot phase)`"""
    after = f", {result.stopped_after_s:.0f} s into the burst" if result.stopped_after_s is not None else ""
    return f"interrupted by {result.interrupted.describe()}{after} ({result.phase} phase)"


def undecided_boots(result: BurstResult, timeout_s: float, profile_timeout_s: float) -> OpenBoots:
    if result.interrupted and result.phase == "boot":
        return OpenBoots(stopped_text(result))
    # Below the profile's timeout, a server still building when the time ran out is undecided, not failed.
    timed_out = sum(1 for s in result.servers if s.status == TIMED_OUT)
    if timed_out and timeout_s < profile_timeout_s:
        return OpenBoots(
            f"{timed_out} still BUILD when --burst-timeout {timeout_s:.0f} s (below the profile's "
            f"{profile_timeout_s:.0f} s) ran out: neither ACTIVE nor failed",
            timed_out,
        )
    return OpenBoots()


def so_far(summary: dict, undecided: int = 0, with_times: bool = False) -> str:
    """`3/8 ACTIVE, 0 failed, 5 BUILD, 0 not requested (p50 12.0 s, max 15.2 s)`: the counts at the stop."""
    text = (
        f"{summary['active']}/{summary['n']} ACTIVE, {summary['error'] - undecided} failed, "
        f"{summary['build'] + undecided} BUILD, {summary['not_requested']} not requested"
    )
    if with_times and summary["p50"] is not None:
        text += f" (p50 {summary['p50']:.1f} s, max {summary['max']:.1f} s)"
    return text


def p95_verdict(summary: dict, max_p95: float, open_boots: OpenBoots, volume_size_gb: int | None = None) -> dict:
    threshold = f"p95 <= {max_p95:.0f} s"
    if open_boots:
        return {
            "measured": so_far(summary, open_boots.undecided, with_times=True),
            "threshold": threshold,
            "verdict": "INCOMPLETE",
            "reason": open_boots.why,
        }
    p95 = summary["p95"]
    if p95 is None:
        # Nothing booted, so there is no boot time: FAIL (no boot met the SLA), and say so rather than "slower".
        quota = f", {summary['quota_errors']} refused by quota" if summary["quota_errors"] else ""
        return {
            "measured": f"no server became ACTIVE (0/{summary['n']})",
            "threshold": threshold,
            "ok": False,
            "reason": f"no boot to time: {summary['error']} of {summary['n']} failed{quota} (see burst.failure_rate)",
        }
    ok = p95 <= max_p95
    measured = (
        f"p95 {p95:.1f} s (p50 {summary['p50']:.1f}, max {summary['max']:.1f}; "
        f"{summary['boots_per_minute']} boots/min" + (f", from {volume_size_gb} GB volumes)" if volume_size_gb else ")")
    )
    return {"measured": measured, "threshold": threshold, "ok": ok, "reason": "" if ok else "boots slower than the SLA"}


def failure_rate_verdict(result: BurstResult, summary: dict, max_failure: float, open_boots: OpenBoots) -> dict:
    threshold = f"<= {max_failure:.1%} failed"
    # Undecided servers carry a "not ACTIVE after" note, not a fault of the cloud.
    faults = Counter(
        s.fault for s in result.servers if s.fault and not (open_boots.undecided and s.status == TIMED_OUT)
    )
    top = "; ".join(f"{n} x {fault}" for fault, n in faults.most_common(3))
    quota = f"{summary['quota_errors']} refused by quota; " if summary["quota_errors"] else ""
    if open_boots:
        failed = summary["error"] - open_boots.undecided
        measured = so_far(summary, open_boots.undecided)
        if failed / summary["n"] > max_failure:  # decided, however the open boots would have ended
            return {
                "measured": measured,
                "threshold": threshold,
                "ok": False,
                "reason": f"{failed} of {summary['n']} failed before the burst stopped; {quota}{top}",
            }
        return {
            "measured": measured,
            "threshold": threshold,
            "verdict": "INCOMPLETE",
            "reason": "; ".join(filter(None, [open_boots.why, top])),
        }
    failure_rate = 1 - summary["success_rate"]
    return {
        "measured": f"{summary['active']}/{summary['n']} ACTIVE ({failure_rate:.1%} failed)",
        "threshold": threshold,
        "ok": failure_rate <= max_failure,
        "reason": (quota + top) if failure_rate > max_failure else "",
    }


def delete_verdict(result: BurstResult, summary: dict, timeout_s: float, profile_timeout_s: float) -> dict:
    threshold = f"all gone within {timeout_s:.0f} s"
    left = result.left_after_delete + result.volumes_left
    if result.interrupted:
        measured = (
            "not measured: the burst stopped before its deletes"
            if result.phase == "boot"
            else f"deletes under way for {summary['delete_s'] or 0:.1f} s"
        )
        return {
            "measured": measured,
            "threshold": threshold,
            "verdict": "INCOMPLETE",
            "reason": f"{stopped_text(result)}; the run's cleanup deletes the servers",
        }
    gone = "all gone" if not left else f"{len(left)} left"
    if result.volume_size_gb:
        gone += f" (servers and {summary['volumes_created']} boot volumes)"
    if left and timeout_s < profile_timeout_s and not result.delete_faults:
        return {
            "measured": f"{gone} after {summary['delete_s'] or 0:.1f} s",
            "threshold": threshold,
            "verdict": "INCOMPLETE",
            "reason": f"still deleting when --burst-timeout {timeout_s:.0f} s (below "
            f"the profile's {profile_timeout_s:.0f} s) ran out; the run's cleanup deletes them",
        }
    reason = ""
    if left:
        reason = f"still present: {', '.join(left[:5])}"
        if result.delete_faults:
            reason += f" ({next(iter(result.delete_faults.values()))})"
    return {
        "measured": f"{gone} after {summary['delete_s'] or 0:.1f} s",
        "threshold": threshold,
        "ok": not left,
        "reason": reason,
    }
