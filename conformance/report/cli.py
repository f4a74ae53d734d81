"""`python -m conformance sign|verify|compare`. Exit codes: 0 valid / no regression, 1 invalid / regression,
2 usage error."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.redact import redact
from conformance.report import bundle, compare, sign
from conformance.report.bundle import read_manifest
from conformance.report.layout import MANIFEST
from conformance.report.verify import UsageError, verify_bundle

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _out(text: str, stream=None) -> None:
    print(redact(text), file=stream or sys.stdout)


def _parse(parser: argparse.ArgumentParser, argv) -> argparse.Namespace | int:
    """argparse exits on errors; the dispatcher wants an exit code back instead."""
    try:
        return parser.parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK


def sign_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance sign",
        description="Sign a report bundle: rewrite MANIFEST.sha256 and sign it.",
    )
    parser.add_argument("bundle", type=Path, help="the bundle directory")
    parser.add_argument(
        "--key",
        required=True,
        help="ssh: private key file (or KEY.pub with the key in ssh-agent); gpg: key id/fingerprint",
    )
    parser.add_argument("--format", choices=sign.FORMATS, default="ssh", help="signature format (default ssh)")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    if not args.bundle.is_dir():
        _out(f"error: {args.bundle} is not a bundle directory", sys.stderr)
        return EXIT_USAGE
    try:
        info, problems = bundle.sign_bundle(args.bundle, args.key, args.format)
    except sign.SignError as exc:
        _out(f"error: {exc}", sys.stderr)
        return EXIT_USAGE
    if problems:
        _out(f"not signed: {args.bundle} no longer matches its manifest:", sys.stderr)
        for problem in problems:
            _out(f"  {problem}", sys.stderr)
        return EXIT_INVALID
    _out(
        f"signed {args.bundle / bundle.MANIFEST} ({info['format']}, key {info['fingerprint']}) -> "
        f"{args.bundle / info['file']}"
    )
    return EXIT_OK


def verify_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance verify",
        description="Verify a report bundle: the signature over MANIFEST.sha256 and every file's sha256.",
    )
    parser.add_argument("bundle", type=Path, help="the bundle directory")
    parser.add_argument(
        "--allowed-signers",
        type=Path,
        help="ssh-keygen allowed_signers file (principal, key) of the donors you trust",
    )
    parser.add_argument("--key", type=Path, help="the signer's public key: SSH KEY.pub or an exported OpenPGP key")
    parser.add_argument("--identity", help="ssh: the principal to verify as (default: found in allowed_signers)")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        result = verify_bundle(args.bundle, allowed_signers=args.allowed_signers, key=args.key, identity=args.identity)
    except UsageError as exc:
        _out(f"error: {exc}", sys.stderr)
        return EXIT_USAGE
    for check in result.signatures:
        if check.valid:
            _out(f"good {check.format} signature {check.file} by {check.signer}")
    for note in result.notes:
        _out(f"note: {note}")
    if result.valid:
        _out(
            f"VALID: {args.bundle}: signature good, all files match {len(_manifest_entries(args.bundle))} "
            f"manifest entries"
        )
        return EXIT_OK
    _out(f"INVALID: {args.bundle}", sys.stderr)
    for problem in result.problems:
        _out(f"  {problem}", sys.stderr)
    return EXIT_INVALID


def _manifest_entries(bundle_dir: Path) -> dict:
    return read_manifest(bundle_dir / MANIFEST)[0]


def compare_main(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance compare",
        description="Compare two runs per requirement and the burst's p95 / failure rate; exit 1 on regression.",
    )
    parser.add_argument("old", type=Path, help="the earlier run: bundle directory or results.json")
    parser.add_argument("new", type=Path, help="the later run: bundle directory or results.json")
    parser.add_argument(
        "--p95-tolerance",
        type=float,
        default=compare.P95_TOLERANCE,
        help="relative p95 slowdown tolerated (default %(default)s)",
    )
    parser.add_argument(
        "--p95-min-delta",
        type=float,
        default=compare.P95_MIN_DELTA_S,
        help="p95 slowdown in seconds always tolerated (default %(default)s)",
    )
    parser.add_argument(
        "--failure-rate-tolerance",
        type=float,
        default=compare.FAILURE_RATE_TOLERANCE,
        help="absolute failure-rate increase tolerated (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = _parse(parser, argv)
    if isinstance(args, int):
        return args
    try:
        old, new = compare.load(args.old), compare.load(args.new)
    except compare.CompareInputError as exc:
        _out(f"error: {exc}", sys.stderr)
        return EXIT_USAGE
    result = compare.compare(
        old,
        new,
        p95_tolerance=args.p95_tolerance,
        p95_min_delta=args.p95_min_delta,
        failure_rate_tolerance=args.failure_rate_tolerance,
    )
    _out(json.dumps(result, indent=2) if args.json else compare.render(result).rstrip("\n"))
    return EXIT_INVALID if result["regression"] else EXIT_OK
