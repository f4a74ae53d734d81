"""Benchmark: the fleet site from many signed bundles (default 1,000), built cold and rebuilt warm.

The bundles are written by the suite's own bundle writer from made-up runs (conformance.report.sample) and signed
with an SSH key (ssh-keygen -Y sign, as `--sign-key` does): 20 clouds x 2 regions, 25 daily runs each, verdicts
and burst times varying, so every part of the site has work (trends, one `compare` per consecutive pair, rejected
bundles: one in 100 is tampered after signing). Then, each as its own `python -m conformance fleet FOLDER --out
SITE --allowed-signers FILE` process, as an operator runs it:
  * cold: a new site folder (no cache): every signature verified, every file hashed, every results.json
    checked against the schema;
  * warm: one more bundle written (the next periodic build), the same site folder rebuilt: only the new bundle
    is verified and schema-checked (the tampered ones, never cached, are checked again), every file is hashed;
  * with --baseline, also the previous way of checking, on the same bundles into a new folder: ssh-keygen three
    times per bundle in 4 threads, no cache (conformance.fleet before the cache: sign.CHECK_IN_PROCESS off, the
    bundles loaded in threads as local_runs did).
Each is timed from outside (wall, and CPU seconds of the process and everything it started: pool workers,
ssh-keygen), with the site's size: total, pages + fleet.json, and the copied report.html files.
The last line is machine-readable:
  bundles=<n> cold_s=<s> cold_cpu_s=<s> warm_s=<s> warm_cpu_s=<s> site_bytes=<b> pages_bytes=<b>
  [baseline_s=<s> baseline_cpu_s=<s> ratio_cold=<x>]

Run: python bench/fleet.py [--bundles 1000] [--baseline] (any venv with the project installed; no cloud needed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance.report import bundle, model
from conformance.report.sample import sample_session_results

CLOUDS, REGIONS = 20, ("RegionOne", "RegionTwo")
START = dt.datetime(2026, 10, 1, 3, 0, tzinfo=dt.timezone.utc)
# The previous way of checking, for --baseline: ssh-keygen for every signature, the bundles in 4 threads.
BASELINE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from conformance.fleet import site, sources
from conformance.report import sign
sign.CHECK_IN_PROCESS = False
folder, out, allowed = map(Path, sys.argv[1:])
dirs = sources.bundle_dirs(folder)
with ThreadPoolExecutor(max_workers=4) as pool:
    runs = list(pool.map(lambda path: sources.load_bundle(path, allowed_signers=allowed), dirs))
fleet = site.write_site(runs, out, stale_after_hours=48.0, profile="opendev-donor", signatures_checked=True)
print(f"fleet: {fleet['summary']['runs']} run(s), {fleet['summary']['rejected']} rejected (ssh-keygen, threads)")
"""


def synthetic_doc(index: int) -> dict:
    """Run `index`: cloud and region by index, one run per region and day, some failing."""
    cloud = f"donor{index % CLOUDS:02d}"
    region = REGIONS[(index // CLOUDS) % len(REGIONS)]
    day = index // (CLOUDS * len(REGIONS))
    verdicts = {"R8": "FAIL"} if (index * 7) % 11 == 0 else {}
    sr = sample_session_results(verdicts=verdicts, slow_from=(index * 13) % 40)
    sr.started_at = START + dt.timedelta(days=day, minutes=index % 60)
    sr.finished_at = sr.started_at + dt.timedelta(minutes=35 + index % 20)
    for result in sr.results:
        if result["region"]:
            result["region"] = region
    for call in sr.calls:
        call["scope"] = f"zuul/{region}"
    sr.clouds["zuul"]["cloud"] = cloud
    sr.clouds["zuul"]["regions"] = [region]
    doc = model.build_document(sr, bundle_name=f"{bundle.bundle_name(cloud, sr.started_at)}-{region}", exit_status=1)
    doc["burst"]["scope"] = f"zuul/{region}"
    return doc


def make_bundles(folder: Path, indices: range, key: Path) -> float:
    started = time.monotonic()
    for index in indices:
        doc = synthetic_doc(index)
        path = bundle.write_bundle(doc, folder / doc["bundle"], sign_key=str(key)).path
        if index % 100 == 99:  # tampered after signing: the site must list it as rejected
            (path / "results.json").write_text((path / "results.json").read_text().replace('"FAIL"', '"PASS"'))
    return time.monotonic() - started


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _children_cpu() -> float:
    """CPU seconds of the finished processes this one waited for, and of theirs (pool workers, ssh-keygen):
    unlike the wall time, not inflated by other work on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str]) -> tuple[float, float, str]:
    started, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True)
    elapsed, cpu = time.monotonic() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... exited {done.returncode}: {done.stdout}{done.stderr[-2000:]}")
    return elapsed, cpu, done.stdout.strip().splitlines()[-1]


def fleet(folder: Path, out: Path, allowed: Path) -> tuple[float, float, str]:
    return timed(
        [
            sys.executable,
            "-m",
            "conformance",
            "fleet",
            str(folder),
            "--out",
            str(out),
            "--allowed-signers",
            str(allowed),
        ]
    )


def report(label: str, out: Path, elapsed: float, cpu: float, summary: str) -> tuple[int, int]:
    total = size(out)
    reports = size(out / "runs")
    cache = out / ".fleet-cache.json"
    pages = total - reports - (cache.stat().st_size if cache.exists() else 0)
    print(f"{label}: {summary}")
    print(
        f"  {elapsed:.2f} s wall, {cpu:.2f} s CPU (load average {os.getloadavg()[0]:.1f}); site {total / 1e6:.1f} MB: "
        f"pages + fleet.json {pages / 1e6:.1f} MB (index.html {(out / 'index.html').stat().st_size / 1e3:.0f} kB, "
        f"fleet.json {(out / 'fleet.json').stat().st_size / 1e6:.1f} MB), copied report.html {reports / 1e6:.1f} MB"
    )
    return total, pages


def run(count: int, baseline: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        tmp = Path(tmp)
        key = tmp / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench@example.org", "-f", str(key)], check=True
        )
        allowed = tmp / "allowed_signers"
        allowed.write_text(f"bench@example.org {Path(f'{key}.pub').read_text()}")
        folder, out = tmp / "bundles", tmp / "site"
        made = make_bundles(folder, range(count), key)
        print(f"{count} signed bundles written in {made:.1f} s ({size(folder) / 1e6:.1f} MB)")

        cold = fleet(folder, out, allowed)
        total, pages = report(f"cold, {count} bundles", out, *cold)
        if baseline:
            old = timed([sys.executable, "-c", BASELINE, str(folder), str(tmp / "baseline-site"), str(allowed)])
            report(f"baseline (ssh-keygen, threads, no cache), {count} bundles", tmp / "baseline-site", *old)
        make_bundles(folder, range(count, count + 1), key)  # the next periodic build's bundle
        warm = fleet(folder, out, allowed)
        report(f"warm, {count + 1} bundles (1 new)", out, *warm)
        line = (
            f"bundles={count} cold_s={cold[0]:.2f} cold_cpu_s={cold[1]:.2f} warm_s={warm[0]:.2f} "
            f"warm_cpu_s={warm[1]:.2f} site_bytes={total} pages_bytes={pages}"
        )
        if baseline:
            line += f" baseline_s={old[0]:.2f} baseline_cpu_s={old[1]:.2f} ratio_cold={old[0] / cold[0]:.1f}"
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also build with the previous way of checking (ssh-keygen per bundle, no cache)",
    )
    args = parser.parse_args()
    run(args.bundles, args.baseline)
    sys.exit(0)
