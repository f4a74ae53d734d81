"""`python -m conformance fleet SOURCE... --out DIR`. Exit 0 when the site is built (rejected bundles are
listed in it and on stderr), 2 on a usage error (no such source, unreachable Zuul API, unusable --out)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from conformance.errors import BadInput
from conformance.fleet.site import OutError, write_site
from conformance.fleet.sources import FleetCache, SourceError, local_runs, zuul_runs
from conformance.profiles import DEFAULT_PROFILE, load_profile
from conformance.redact import redact

EXIT_OK, EXIT_USAGE = 0, 2


def _out(text: str, stream=None) -> None:
    print(redact(text), file=stream or sys.stdout)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m conformance fleet",
        description="Build a static site of many runs: one row per cloud and region, a page per region with "
        "every run and what changed between them, and fleet.json.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="a bundle directory, a folder of bundles, or a Zuul tenant API URL "
        "(https://zuul.example.org/api/tenant/TENANT) with --job",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write the site into")
    p.add_argument(
        "--allowed-signers",
        type=Path,
        metavar="FILE",
        help="verify each bundle's SSH signature against this ssh-keygen allowed_signers file",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="NAME|PATH",
        help="profile whose fleet.stale_after_hours flags stale regions (default: opendev-donor)",
    )
    p.add_argument("--job", metavar="PATTERN", help="Zuul sources: the job name, '*' as wildcard")
    p.add_argument(
        "--builds", type=int, default=100, metavar="N", help="Zuul sources: newest N builds (default %(default)s)"
    )
    return p


def main(argv) -> int:
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    if args.allowed_signers is not None and not args.allowed_signers.is_file():
        _out(f"error: allowed signers file {args.allowed_signers} does not exist", sys.stderr)
        return EXIT_USAGE
    if args.builds < 1:
        _out("error: --builds must be at least 1", sys.stderr)
        return EXIT_USAGE
    urls = [s for s in args.sources if s.startswith(("http://", "https://"))]
    if urls and not args.job:
        _out(f"error: {urls[0]} is a Zuul API: give --job PATTERN (the job whose builds to read)", sys.stderr)
        return EXIT_USAGE
    try:
        profile = load_profile(args.profile or DEFAULT_PROFILE)
    except BadInput as exc:
        _out(f"error: --profile: {exc}", sys.stderr)
        return EXIT_USAGE
    stale_after = profile.get("fleet.stale_after_hours")
    if stale_after is None:
        _out(f"error: --profile: profile {profile.name!r} has no fleet.stale_after_hours", sys.stderr)
        return EXIT_USAGE
    started = time.monotonic()
    # What earlier builds of this site verified (<out>/.fleet-cache.json): a rebuild checks only what is new.
    cache = FleetCache.load(args.out, allowed_signers=args.allowed_signers)
    with tempfile.TemporaryDirectory(prefix="conformance-fleet-") as downloads:
        runs = []
        try:
            for source in args.sources:
                if source in urls:
                    workdir = Path(downloads) / str(len(runs))
                    runs += zuul_runs(
                        source,
                        args.job,
                        workdir,
                        allowed_signers=args.allowed_signers,
                        limit=args.builds,
                        cache=cache,
                    )
                else:
                    runs += local_runs(Path(source), allowed_signers=args.allowed_signers, cache=cache)
            fleet = write_site(
                runs,
                args.out,
                stale_after_hours=float(stale_after),
                profile=profile.name,
                signatures_checked=args.allowed_signers is not None,
                cache=cache,
            )
        except (SourceError, OutError) as exc:
            _out(f"error: {exc}", sys.stderr)
            return EXIT_USAGE
    try:
        cache.save()
    except OSError as exc:  # the site is built; the next build checks everything again
        _out(f"warning: {cache.path}: {exc}", sys.stderr)
    for rejected in fleet["rejected"]:
        _out(f"rejected: {rejected['source']}: {rejected['reason']}", sys.stderr)
    summary = fleet["summary"]
    _out(
        f"fleet: {summary['scopes']} region(s) of {summary['clouds']} cloud(s), {summary['runs']} run(s), "
        f"{summary['failing']} failing, {summary['stale']} stale, {summary['rejected']} rejected "
        f"-> {args.out / 'index.html'} ({time.monotonic() - started:.1f} s; {cache.bundles} bundle(s) checked: "
        f"{cache.verified} signature(s) verified, {cache.schema_checked} results.json schema-checked, "
        f"the rest known from earlier builds)"
    )
    return EXIT_OK
