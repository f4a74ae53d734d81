"""Benchmark: build the fleet site from many bundles (default 1,000 synthetic ones) and measure it.

The bundles are written by the suite's own bundle writer from made-up runs (conformance.report.sample): 20
clouds x 2 regions, 25 daily runs each, verdicts and burst times varying, so every part of the site has work
(trends, one `compare` per consecutive pair, rejected bundles: one in 100 is tampered). Then, side by side:
  * `python -m conformance fleet FOLDER --out SITE` (manifests checked, no signatures), and
  * with --signed: the same bundles signed with an SSH key, checked with --allowed-signers (ssh-keygen runs
    three times per bundle),
each timed in this process (wall and CPU seconds, ssh-keygen's included), with the site's size: total,
pages + fleet.json, and the copied report.html files.
The last line is machine-readable:
  bundles=<n> build_s=<s> cpu_s=<s> per_bundle_ms=<ms> site_bytes=<b> pages_bytes=<b> [signed_build_s=<s> ...]

Run: python bench/fleet.py [--bundles 1000] [--signed] (any venv with the project installed; no cloud needed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conformance.__main__ import main
from conformance.report import bundle, model
from conformance.report.sample import sample_session_results

CLOUDS, REGIONS = 20, ("RegionOne", "RegionTwo")
START = dt.datetime(2026, 10, 1, 3, 0, tzinfo=dt.timezone.utc)


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


def make_bundles(folder: Path, count: int, key: Path | None) -> float:
    started = time.monotonic()
    for index in range(count):
        doc = synthetic_doc(index)
        path = bundle.write_bundle(doc, folder / doc["bundle"], sign_key=str(key) if key else None).path
        if index % 100 == 99:  # tampered after signing: the site must list it as rejected
            (path / "results.json").write_text((path / "results.json").read_text().replace('"FAIL"', '"PASS"'))
    return time.monotonic() - started


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _cpu() -> float:
    """CPU seconds of this process and of the children it waited for (ssh-keygen): unlike the wall time, not
    inflated by other work on a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def build(folder: Path, out: Path, *extra: str) -> tuple[float, float, str]:
    printed = io.StringIO()
    started, cpu = time.monotonic(), _cpu()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = main(["fleet", str(folder), "--out", str(out), *extra])
    elapsed, cpu = time.monotonic() - started, _cpu() - cpu
    if code != 0:
        raise SystemExit(f"fleet exited {code}: {printed.getvalue()}")
    return elapsed, cpu, printed.getvalue().strip()


def report(label: str, out: Path, elapsed: float, cpu: float, count: int, summary: str) -> tuple[int, int]:
    total = size(out)
    reports = size(out / "runs")
    pages = total - reports
    print(f"{label}: {summary}")
    print(
        f"  build {elapsed:.1f} s wall, {cpu:.1f} s CPU ({elapsed * 1000 / count:.1f} ms per bundle; load average "
        f"{os.getloadavg()[0]:.1f}); site {total / 1e6:.1f} MB: "
        f"pages + fleet.json {pages / 1e6:.1f} MB (index.html {(out / 'index.html').stat().st_size / 1e3:.0f} kB, "
        f"fleet.json {(out / 'fleet.json').stat().st_size / 1e6:.1f} MB), copied report.html {reports / 1e6:.1f} MB"
    )
    return total, pages


def run(count: int, signed: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        tmp = Path(tmp)
        made = make_bundles(tmp / "bundles", count, None)
        print(f"{count} synthetic bundles written in {made:.1f} s ({size(tmp / 'bundles') / 1e6:.1f} MB)")
        elapsed, cpu, summary = build(tmp / "bundles", tmp / "site")
        total, pages = report("unsigned, manifests checked", tmp / "site", elapsed, cpu, count, summary)
        line = (f"bundles={count} build_s={elapsed:.2f} cpu_s={cpu:.2f} per_bundle_ms={elapsed * 1000 / count:.1f} "
                f"site_bytes={total} pages_bytes={pages}")
        if signed:
            key = tmp / "id_ed25519"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench@example.org", "-f", str(key)],
                           check=True)
            allowed = tmp / "allowed_signers"
            allowed.write_text(f"bench@example.org {Path(f'{key}.pub').read_text()}")
            made = make_bundles(tmp / "signed", count, key)
            print(f"{count} signed bundles written in {made:.1f} s")
            signed = build(tmp / "signed", tmp / "signed-site", "--allowed-signers", str(allowed))
            report("signed, signatures verified", tmp / "signed-site", *signed[:2], count, signed[2])
            line += f" signed_build_s={signed[0]:.2f} signed_cpu_s={signed[1]:.2f}"
            line += f" ratio_signed={signed[0] / elapsed:.1f}"
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", type=int, default=1000)
    parser.add_argument("--signed", action="store_true", help="also sign the bundles and verify the signatures")
    args = parser.parse_args()
    run(args.bundles, args.signed)
    sys.exit(0)
