"""Benchmark: the R12 burst's API cost and wall time, bulk polling vs. a per-server polling baseline.

For each N (default 10, 50, 100) it runs, in the same process against the same cloud, back to back:
  * the suite's burst: creates through a bounded pool, one paginated `GET /servers/detail?name=^prefix` per
    poll tick (profile burst.poll_interval_s), deletes waited for the same way;
  * the baseline: the same creates and deletes, but every server waited for with its own `GET /servers/{id}`
    every 2 s (what Rally's boot_and_delete_server / wait_for_server and Tempest's waiters do).
and prints wall time, API calls by method and path, API calls per server, and the ratio. The last line is
machine-readable, for the largest N:
  calls_per_server=<x> baseline_calls_per_server=<y> ratio=<y/x> wall_s=<a> baseline_wall_s=<b>

Run it against the sandbox (started with `tox -e sandbox -- up`), inside the sandbox tox env:
  tox -e sandbox -- status && .tox/sandbox/bin/python bench/burst.py [--sizes 10,50,100]
or with any venv that has the project installed: python bench/burst.py --cloud sandbox-zuul
"""

from __future__ import annotations

import argparse
import sys
import time

from benchlib import open_checked, test_node_flavor, test_node_network, uploaded_image, use_sandbox_clouds_yaml

from conformance import interrupt
from conformance.burst import BurstSettings, run_burst
from conformance.profiles import load_profile
from conformance.resources import Tracker, new_run_prefix


def _line(label: str, n: int, result) -> str:
    summary = result.summary()
    return (
        f"  {label:<9} wall {result.wall_s:7.1f} s  boot {result.boot_wall_s:6.1f} s  "
        f"delete {summary['delete_s'] or 0:6.1f} s  {summary['active']}/{n} ACTIVE  "
        f"p95 {summary['p95'] or 0:6.1f} s  calls {result.api_calls:5d}  "
        f"calls/server {result.api_calls / n:6.2f}  polls {result.polls}"
    )


def _by_endpoint(result) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(result.calls_by_endpoint.items(), key=lambda kv: -kv[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50,100", help="burst sizes, comma-separated (%(default)s)")
    parser.add_argument("--cloud", default="sandbox-zuul", help="clouds.yaml entry (default %(default)s)")
    parser.add_argument("--profile", default="sandbox", help="profile for concurrency, poll interval, flavor")
    parser.add_argument("--timeout", type=float, default=None, help="per-burst timeout (default: profile)")
    parser.add_argument("--only", choices=("bulk", "baseline"), default=None, help="run one side only")
    args = parser.parse_args(argv)
    # SIGINT / SIGTERM stop the burst at its next wait; the finally blocks delete what was created.
    interrupt.install_signal_handlers()
    use_sandbox_clouds_yaml()
    profile = load_profile(args.profile)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    cloud = open_checked(args.cloud)
    flavor = test_node_flavor(cloud, profile)
    network = test_node_network(cloud)
    tracker = Tracker(new_run_prefix(), poll_interval_s=2.0)
    print(
        f"bench/burst.py: cloud {args.cloud} ({cloud.scope}), flavor {flavor.describe()}, network "
        f"{network.name}, concurrency {profile['burst.create_concurrency']}, bulk poll "
        f"{profile['burst.poll_interval_s']} s, baseline poll 2 s, run prefix {tracker.prefix}",
        flush=True,
    )
    last = {}
    try:
        image_id = uploaded_image(cloud, tracker, profile)
        for n in sizes:
            print(f"N={n}", flush=True)
            results = {}
            for label, baseline in (("bulk", False), ("baseline", True)):
                if args.only and args.only != label:
                    continue
                settings = BurstSettings(
                    size=n,
                    concurrency=int(profile["burst.create_concurrency"]),
                    poll_interval_s=float(profile["burst.poll_interval_s"]),
                    timeout_s=args.timeout or float(profile["burst.timeout_s"]),
                    per_server_baseline=baseline,
                )
                run_tracker = Tracker(new_run_prefix(), poll_interval_s=2.0)
                progress = _throttled(f"  {label}")
                try:
                    result = run_burst(
                        cloud,
                        run_tracker,
                        image_id=image_id,
                        flavor_id=flavor.id,
                        network_id=network.id,
                        settings=settings,
                        progress=progress,
                    )
                finally:
                    leftovers = run_tracker.cleanup(timeout_s=600)
                    for failure in leftovers:
                        print(f"  LEFT: {failure}", flush=True)
                results[label] = result
                print(_line(label, n, result), flush=True)
                print(f"    calls: {_by_endpoint(result)}", flush=True)
                if result.interrupted:
                    print(
                        f"  interrupted by {result.interrupted.describe()}: the figures above are partial", flush=True
                    )
                    return 2
            if len(results) == 2:
                bulk, base = results["bulk"], results["baseline"]
                ratio = base.api_calls / bulk.api_calls if bulk.api_calls else float("inf")
                print(
                    f"  ratio    baseline/bulk calls {ratio:.1f}x, wall {bulk.wall_s:.1f} s vs {base.wall_s:.1f} s",
                    flush=True,
                )
                last = {
                    "calls_per_server": bulk.api_calls / n,
                    "baseline_calls_per_server": base.api_calls / n,
                    "ratio": ratio,
                    "wall_s": bulk.wall_s,
                    "baseline_wall_s": base.wall_s,
                }
    finally:
        failures = tracker.cleanup(timeout_s=600)
        for failure in failures:
            print(f"LEFT: {failure}", flush=True)
        cloud.close()
    if last:
        print(
            f"calls_per_server={last['calls_per_server']:.2f} "
            f"baseline_calls_per_server={last['baseline_calls_per_server']:.2f} ratio={last['ratio']:.2f} "
            f"wall_s={last['wall_s']:.1f} baseline_wall_s={last['baseline_wall_s']:.1f}"
        )
    return 0


def _throttled(label: str, every_s: float = 15.0):
    state = {"t": 0.0}

    def write(line: str) -> None:
        now = time.monotonic()
        if now - state["t"] >= every_s:
            state["t"] = now
            print(f"{label}: {line}", flush=True)

    return write


if __name__ == "__main__":
    try:
        sys.exit(main())
    except interrupt.Interrupted as exc:  # stopped before a burst (the upload): already cleaned up
        print(f"bench/burst.py: {exc}", flush=True)
        sys.exit(2)
