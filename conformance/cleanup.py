"""`python -m conformance cleanup`: delete what crashed runs left behind, in both projects, by run prefix.

Needs no state from the crashed run: every resource the suite creates is named `conformance-<UTC timestamp>-
<6 hex>-...` (floating IPs carry it in their description, the boot volumes Nova makes from the run's image in
their image metadata), so the name alone says it is the suite's and how old it is. Anything without that prefix
is never touched. Deletion uses the same ordered, verified deleters as a run's own teardown (servers first,
images last).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from dataclasses import dataclass

from conformance import cloud as cloudlayer
from conformance import resources
from conformance.errors import BadInput
from conformance.redact import redact
from conformance.resources import (
    PREFIX_ROOT,
    Tracked,
    Waiter,
    lease_until,
    prefix_of,
    prefix_time,
    run_of_volume,
)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """`90`, `90s`, `30m`, `1h30m`, `2d` -> timedelta."""
    text = (text or "").strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 30m, 1h30m, 2d)")
    return dt.timedelta(seconds=total)


@dataclass
class Found:
    kind: str
    name: str
    id: str
    cloud: object
    note: str = ""

    @property
    def created(self) -> dt.datetime | None:
        return prefix_time(self.name)


def _mine(name: str | None) -> bool:
    return prefix_of(name) is not None


def _volume_label(volume) -> str:
    if _mine(volume.name):
        return volume.name
    run = run_of_volume(volume)
    return f"{run}-boot-volume" if run else (volume.name or "")


def find_leftovers(cloud) -> list[Found]:
    """Every resource in this project whose name (description for floating IPs) carries a run prefix."""
    conn = cloud.conn
    project_id = cloud.project_id
    found: list[Found] = []

    def add(kind, items, label=lambda r: r.name, note=lambda r: ""):
        for item in items:
            if _mine(label(item)):
                found.append(Found(kind, label(item), item.id, cloud, note(item) or ""))

    # Nova's name filter is a regular expression: narrow the listing on the server side too.
    add("server", cloud.call(lambda: list(conn.compute.servers(details=False, name=f"^{PREFIX_ROOT}-"))))
    if cloud.endpoint("block-storage") or cloud.endpoint("volumev3"):
        # A boot volume Nova made for a boot-from-volume server has no name: its run is in its image metadata.
        add("volume", cloud.call(lambda: list(conn.block_storage.volumes(details=True))), label=_volume_label)
    add(
        "floating_ip",
        cloud.call(lambda: list(conn.network.ips(project_id=project_id))),
        label=lambda r: r.description or "",
    )
    add("port", cloud.call(lambda: list(conn.network.ports(project_id=project_id))))
    add("keypair", cloud.call(lambda: list(conn.compute.keypairs())))
    add(
        "security_group",
        cloud.call(lambda: list(conn.network.security_groups(project_id=project_id))),
        note=lambda r: getattr(r, "description", ""),
    )  # a run's lease lives in the description
    # Only images this project owns: a shared or public image of someone else is never ours to delete.
    add("image", cloud.call(lambda: list(conn.image.images(owner=project_id))))
    return found


def live_leases(found: list[Found], now: dt.datetime) -> dict[str, dt.datetime]:
    """Run prefix -> until when its lease protects it, for the runs still renewing one (see resources.Lease)."""
    live: dict[str, dt.datetime] = {}
    for item in found:
        until = lease_until(item.name, item.note) if item.kind == "security_group" else None
        if until is not None and until > now:
            prefix = prefix_of(item.name)
            live[prefix] = max(until, live.get(prefix, until))
    return live


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance cleanup",
        description="Delete resources left by crashed conformance runs (named "
        "conformance-<UTC time>-<hex>-...) in the zuul and ci projects. "
        "Nothing without that prefix is ever touched.",
    )
    parser.add_argument(
        "--zuul-cloud",
        default=os.environ.get("CONFORMANCE_ZUUL_CLOUD") or "openstackzuul",
        metavar="NAME",
        help="clouds.yaml entry of the zuul project (default: %(default)s)",
    )
    parser.add_argument(
        "--ci-cloud",
        default=os.environ.get("CONFORMANCE_CI_CLOUD") or "openstackci",
        metavar="NAME",
        help="clouds.yaml entry of the ci project (default: %(default)s)",
    )
    parser.add_argument(
        "--region",
        action="append",
        metavar="NAME",
        help="region to sweep (repeatable; default: every region of each entry)",
    )
    parser.add_argument(
        "--older-than",
        type=parse_duration,
        default=dt.timedelta(0),
        metavar="DURATION",
        help="only runs started longer ago than this, by the prefix's timestamp (e.g. 2h; "
        "default 0: every run). A run in progress is left alone whatever its age: it "
        "renews a lease while it runs",
    )
    parser.add_argument(
        "--run",
        action="append",
        metavar="PREFIX",
        help="only this run (its prefix conformance-<UTC time>-<hex>; repeatable); swept even "
        "if its lease has not lapsed yet (a run you know was killed)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="give up waiting for deletions after this long (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    for run in args.run or []:
        if prefix_of(run) != run:
            parser.error(f"--run {run}: not a run prefix (conformance-YYYYmmddTHHMMSSZ-<6 hex>)")

    now = dt.datetime.now(dt.timezone.utc)
    cutoff = now - args.older_than
    selected: list[Found] = []
    skipped_young = 0
    clouds = []
    try:
        for role, name in (("zuul", args.zuul_cloud), ("ci", args.ci_cloud)):
            regions = args.region or cloudlayer.cloud_regions(name)
            for region in regions:
                cloud = cloudlayer.open_cloud(name, region or None, role, timeout=cloudlayer.DEFAULT_API_TIMEOUT_S)
                cloudlayer.check_access(cloud)
                clouds.append(cloud)
    except (BadInput, cloudlayer.EndpointDown) as exc:  # EndpointDown: Keystone untrusted, the line names the fix
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2

    seen_projects = set()
    found: list[Found] = []
    for cloud in clouds:
        key = (cloud.project_id, cloud.region)
        if key in seen_projects:  # both roles pointing at one project: sweep it once
            continue
        seen_projects.add(key)
        found += find_leftovers(cloud)
    live = live_leases(found, now)
    running: dict[str, int] = {}
    for item in found:
        prefix = prefix_of(item.name)
        if args.run and prefix not in args.run:
            continue
        if prefix in live and not args.run:
            running[prefix] = running.get(prefix, 0) + 1
            continue
        created = item.created
        if created is not None and created > cutoff:
            skipped_young += 1
            continue
        selected.append(item)

    for item in selected:
        age = now - item.created if item.created else None
        age_text = f"{age.total_seconds() / 3600:.1f} h old" if age is not None else "age unknown"
        verb = "would delete" if args.dry_run else "deleting"
        print(f"{verb}: {item.kind:<14} {item.name}  {item.id}  {item.cloud.scope}  ({age_text})")
    for prefix, count in sorted(running.items()):
        print(
            f"left alone: run {prefix} is in progress (its lease runs until "
            f"{live[prefix].strftime('%Y-%m-%dT%H:%M:%SZ')}): {count} resource(s)"
        )
    for prefix in sorted(set(args.run or []) & set(live)):
        print(
            f"note: run {prefix} still holds a lease (until {live[prefix].strftime('%Y-%m-%dT%H:%M:%SZ')}); "
            "swept anyway because --run names it"
        )
    if skipped_young:
        print(f"skipped {skipped_young} resource(s) of runs younger than --older-than")
    if not selected:
        print(
            "nothing to delete: no resources with the conformance run prefix"
            + (" older than the cutoff" if args.older_than else "")
        )
        return 0
    if args.dry_run:
        print(f"dry run: {len(selected)} resource(s) would be deleted")
        return 0

    items = [Tracked(kind=f.kind, name=f.name, cloud=f.cloud, id=f.id) for f in selected]
    failures = resources.delete_in_order(items, Waiter(args.timeout), 2.0, f"{PREFIX_ROOT}-")
    deleted = sum(1 for i in items if i.deleted)
    print(f"deleted {deleted} resource(s)")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    for cloud in clouds:
        cloud.close()
    return 1 if failures else 0
