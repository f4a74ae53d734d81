"""R12: boot N servers at once, measure how fast and how reliably they become ACTIVE, delete them all.

Efficiency is part of the requirement (zuul-launcher's way, not Rally's): creates go through a bounded pool,
and waiting costs **one paginated `GET /servers/detail?name=^<prefix>-burst-` per poll tick** for every
server of the burst, never one GET per server; deletes are waited for the same way. A direct GET is made only
to explain an ERROR whose fault the listing did not carry.

Per server: request -> ACTIVE on the client clock (the create call's start to the poll that first saw ACTIVE:
resolution is the poll interval) and created -> `OS-SRV-USG:launched_at` on the cloud's clock.

Interrupted (conformance.interrupt: SIGINT, SIGTERM, a run deadline), the burst stops at its next wait or call
and returns what it measured so far (`BurstResult.interrupted`, `.phase`): servers ACTIVE with their times,
faults, those still BUILD, creates never sent. The tracker's cleanup deletes the servers.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from openstack import exceptions as os_exc

from conformance.errors import first_line
from conformance.interrupt import Interrupted, Interruption
from conformance.resources import (
    BURST_KEY,
    Tracker,
    Waiter,
    attached_volume_ids,
    boot_disk,
    delete_servers_bulk,
    delete_volumes_bulk,
    server_name_filter,
)
from conformance.results import path_template

TERMINAL = ("ACTIVE", "ERROR")
CREATE_FAILED = "CREATE_FAILED"
TIMED_OUT = "TIMEOUT"
NOT_REQUESTED = "NOT_REQUESTED"  # the run was interrupted before this server's create was sent
FAILED = ("ERROR", CREATE_FAILED, TIMED_OUT)
BASELINE_INTERVAL_S = 2.0  # Rally's / Tempest's waiters: one GET per server every 2 s


@dataclass
class BurstSettings:
    size: int
    concurrency: int = 10
    poll_interval_s: float = 5.0
    timeout_s: float = 1800.0
    delete_timeout_s: float | None = None  # defaults to timeout_s
    # Benchmarks only: wait with one GET per server per tick, as Rally and Tempest do.
    per_server_baseline: bool = False


@dataclass
class ServerTiming:
    index: int
    name: str
    id: str | None = None
    status: str = "REQUESTED"
    requested_at: float | None = None  # client monotonic clock
    active_at: float | None = None
    created: str | None = None  # cloud clock
    launched_at: str | None = None
    fault: str | None = None
    quota: bool = False
    volume_ids: list[str] = field(default_factory=list)  # boot from volume: what Nova made for it

    @property
    def settled(self) -> bool:
        return self.status in TERMINAL or self.status == CREATE_FAILED

    @property
    def request_to_active_s(self) -> float | None:
        if self.active_at is None or self.requested_at is None:
            return None
        return round(self.active_at - self.requested_at, 3)

    @property
    def created_to_launched_s(self) -> float | None:
        created, launched = parse_cloud_time(self.created), parse_cloud_time(self.launched_at)
        if created is None or launched is None:
            return None
        return round((launched - created).total_seconds(), 3)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "request_to_active_s": self.request_to_active_s,
            "created_to_launched_s": self.created_to_launched_s,
            "fault": self.fault,
        }


@dataclass
class BurstResult:
    servers: list[ServerTiming]
    wall_s: float = 0.0  # first create request to every server gone (or the timeouts)
    boot_wall_s: float = 0.0  # first create request to every server settled
    delete_s: float | None = None  # delete phase: first delete call to every server gone
    left_after_delete: list[str] = field(default_factory=list)
    delete_faults: dict[str, str] = field(default_factory=dict)  # id -> why its delete failed
    api_calls: int = 0
    calls_by_endpoint: dict[str, int] = field(default_factory=dict)
    polls: int = 0
    interrupted: Interruption | None = None  # the run was asked to stop: what follows is partial
    phase: str = ""  # where it stopped: "boot" (creating and waiting) or "delete"
    stopped_after_s: float | None = None  # first create request to the interruption
    volume_size_gb: int | None = None  # boot from volume: the size of each server's boot volume
    volumes_left: list[str] = field(default_factory=list)  # boot volumes still there after the delete phase

    @property
    def active(self) -> list[ServerTiming]:
        return [s for s in self.servers if s.status == "ACTIVE"]

    @property
    def quota_errors(self) -> list[ServerTiming]:
        return [s for s in self.servers if s.quota]

    def summary(self) -> dict:
        n = len(self.servers)
        times = sorted(s.request_to_active_s for s in self.active if s.request_to_active_s is not None)
        active = len(self.active)
        statuses = Counter(s.status for s in self.servers)
        failed = sum(statuses[status] for status in FAILED)
        not_requested = statuses[NOT_REQUESTED]
        first = min((s.requested_at for s in self.servers if s.requested_at is not None), default=None)
        last = max((s.active_at for s in self.active if s.active_at is not None), default=None)
        span = (last - first) if first is not None and last is not None else 0.0
        return {
            "n": n,
            "active": active,
            "error": failed,
            "build": n - active - failed - not_requested,  # still building when the burst stopped
            "not_requested": not_requested,
            "quota_errors": len(self.quota_errors),
            "p50": percentile(times, 50),
            "p95": percentile(times, 95),
            "max": times[-1] if times else None,
            "success_rate": round(active / n, 4) if n else 0.0,
            "boots_per_minute": round(active * 60 / span, 2) if span > 0 else 0.0,
            "delete_s": None if self.delete_s is None else round(self.delete_s, 3),
            "wall_s": round(self.wall_s, 3),
            "api_calls": self.api_calls,
            "api_calls_per_server": round(self.api_calls / n, 3) if n else 0.0,
            "polls": self.polls,
            "left_after_delete": len(self.left_after_delete),
            **(self.volume_summary() if self.volume_size_gb else {}),
            "interrupted": None
            if self.interrupted is None
            else {
                **self.interrupted.to_dict(),
                "phase": self.phase,
                "after_s": None if self.stopped_after_s is None else round(self.stopped_after_s, 1),
            },
        }

    def volume_summary(self) -> dict:
        created = {v for s in self.servers for v in s.volume_ids}
        return {
            "boot_volume_gb": self.volume_size_gb,
            "volumes_created": len(created),
            "volumes_deleted": len(created - set(self.volumes_left)),
            "volumes_left": len(self.volumes_left),
        }


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default) on an already sorted list."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return round(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo), 3)


def parse_cloud_time(value: str | None) -> dt.datetime | None:
    """Nova's `created` ends in Z, `launched_at` has no zone: both are UTC."""
    if not value:
        return None
    text = value.strip().replace("Z", "").replace("+00:00", "")
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def is_quota_error(exc: BaseException) -> bool:
    """Nova refuses an over-quota create with 403 (older: 413 OverLimit), 'Quota exceeded for ...'."""
    status = getattr(exc, "status_code", None)
    text = str(exc).lower()
    return status in (403, 413) and ("quota" in text or "overlimit" in text or "limit exceeded" in text)


def fault_text(fault) -> str | None:
    if not fault:
        return None
    if isinstance(fault, dict):
        message = fault.get("message") or ""
        code = fault.get("code")
        return f"{message} ({code})" if code else message
    return str(fault)


def endpoint_key(method: str, path: str) -> str:
    """`GET /v2.1/servers/{id}`: ids, host and query string dropped, so calls group by what they do."""
    return f"{method.upper()} {path_template(path or '')}"


def format_progress(servers: list[ServerTiming], elapsed_s: float, phase: str = "") -> str:
    counts = Counter(s.status for s in servers)
    active = counts.get("ACTIVE", 0)
    error = counts.get("ERROR", 0) + counts.get(CREATE_FAILED, 0) + counts.get(TIMED_OUT, 0)
    pending = len(servers) - active - error
    seconds = int(elapsed_s)
    clock = f"{seconds // 60:02d}:{seconds % 60:02d}"
    line = f"burst {active}/{len(servers)} ACTIVE, {error} ERROR, {pending} BUILD, {clock}"
    return f"{line} {phase}".rstrip()


class _CallCounter:
    """API calls made during the burst: the cloud layer's records when it has them, else our own count."""

    def __init__(self, cloud):
        self.records = getattr(cloud, "calls", None)
        self.start = len(self.records) if self.records is not None else 0
        self.own: Counter = Counter()
        self._lock = threading.Lock()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.own[key] += n

    def result(self) -> tuple[int, dict[str, int]]:
        if self.records is not None:
            new = list(self.records)[self.start :]
            by = Counter(endpoint_key(getattr(r, "method", "?"), getattr(r, "path", "?")) for r in new)
            # Token and version discovery calls are the cloud layer's business, but they are calls too.
            return len(new), dict(by)
        return sum(self.own.values()), dict(self.own)


def run_burst(
    cloud,
    tracker: Tracker,
    *,
    image_id: str,
    flavor_id: str,
    network_id: str | None,
    settings: BurstSettings,
    metadata: dict | None = None,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    volume_size_gb: int | None = None,
) -> BurstResult:
    """Boot `settings.size` servers concurrently (each from a new volume of `volume_size_gb` when given), wait
    for all, delete all, wait until gone (and their boot volumes)."""
    conn = cloud.conn
    burst_prefix = tracker.name("burst-", cloud)
    name_filter = server_name_filter(burst_prefix)
    width = max(3, len(str(settings.size - 1)))
    servers = [ServerTiming(i, f"{burst_prefix}{i:0{width}d}") for i in range(settings.size)]
    by_name = {s.name: s for s in servers}
    tracked = {s.name: tracker.intent("server", s.name, cloud) for s in servers}  # intent before any create
    # Root disks: the image, or a boot volume Nova makes and names (tracked per server, bound from the listing).
    disks = {s.name: boot_disk(tracker, cloud, s.name, image_id, volume_size_gb) for s in servers}
    volumes = {name: item for name, (_, item) in disks.items() if item is not None}
    counter = _CallCounter(cloud)
    result = BurstResult(servers=servers, volume_size_gb=volume_size_gb)
    progress = progress or (lambda _line: None)
    interval = BASELINE_INTERVAL_S if settings.per_server_baseline else settings.poll_interval_s
    networks = [{"uuid": network_id}] if network_id else "auto"
    meta = {**(metadata or {}), BURST_KEY: tracker.prefix}

    def create(timing: ServerTiming) -> None:
        timing.requested_at = clock()
        timing.status = "BUILD"
        try:
            counter.count("POST /servers")
            server = cloud.call(
                conn.compute.create_server,
                name=timing.name,
                flavor_id=flavor_id,
                networks=networks,
                metadata=meta,
                **disks[timing.name][0],
            )
        except Interrupted:  # the call's safe point: this create was never sent
            timing.status, timing.requested_at = NOT_REQUESTED, None
            return
        except Exception as exc:  # reported per server; the burst goes on
            timing.status = CREATE_FAILED
            timing.quota = is_quota_error(exc)
            timing.fault = ("quota exceeded: " if timing.quota else "create failed: ") + first_line(exc)
            return
        if timing.id is None:
            timing.id = server.id
        tracked[timing.name].bind(timing.id)

    def apply(listed) -> None:
        now = clock()
        for server in listed:
            timing = by_name.get(server.name)
            if timing is None or timing.settled:
                continue
            if timing.id is None:  # seen in the listing before its create call returned
                timing.id = server.id
                tracked[timing.name].bind(server.id)
            timing.created = server.created_at
            if volumes and not timing.volume_ids:
                timing.volume_ids = attached_volume_ids(server)
                for volume_id in timing.volume_ids[:1]:
                    volumes[timing.name].bind(volume_id)
            if server.status == "ACTIVE":
                timing.status, timing.active_at = "ACTIVE", now
                timing.launched_at = server.launched_at
            elif server.status == "ERROR":
                timing.status = "ERROR"
                timing.fault = fault_text(server.fault)

    def bulk_snapshot():
        counter.count("GET /servers/detail")
        return cloud.call(lambda: list(conn.compute.servers(details=True, name=name_filter)))

    def per_server_snapshot(pool):
        def get(timing):
            counter.count("GET /servers/{id}")
            try:
                return cloud.call(conn.compute.get_server, timing.id)
            except os_exc.NotFoundException:
                return None

        waiting = [s for s in servers if s.id and not s.settled]
        return [s for s in pool.map(get, waiting) if s is not None]

    start = clock()
    creator = ThreadPoolExecutor(max(1, settings.concurrency), thread_name_prefix="burst-create")
    getter = ThreadPoolExecutor(max(1, settings.concurrency), thread_name_prefix="burst-get")
    listed_ids: set[str] = set()
    result.phase = "boot"
    try:
        futures = [creator.submit(create, s) for s in servers]
        waiter = Waiter(settings.timeout_s, clock=clock)
        while True:
            more = waiter.wait(interval)
            listed = per_server_snapshot(getter) if settings.per_server_baseline else bulk_snapshot()
            result.polls += 1
            listed_ids |= {s.id for s in listed}
            apply(listed)
            progress(format_progress(servers, clock() - start))
            if all(f.done() for f in futures) and all(s.settled for s in servers):
                break
            if not more:
                break
        creator.shutdown(wait=True)
        result.boot_wall_s = clock() - start
        for timing in servers:
            if not timing.settled:
                timing.status = TIMED_OUT
                timing.fault = f"not ACTIVE after {settings.timeout_s:.0f} s (last seen BUILD)"
        _explain_errors(cloud, servers, counter)

        # Delete phase: every server of the burst, including any the listing found without a create answer.
        result.phase = "delete"
        delete_start = clock()
        ids = {s.id for s in servers if s.id} | listed_ids
        delete_waiter = Waiter(settings.delete_timeout_s or settings.timeout_s, clock=clock)

        def delete_tick(n_left):
            progress(format_progress(servers, clock() - start, f"| delete: {n_left} left"))

        if settings.per_server_baseline:
            left, why = (
                _delete_and_wait_per_server(
                    cloud, ids, delete_waiter, interval, settings, counter, getter, delete_tick
                ),
                {},
            )
        else:
            left, why = delete_servers_bulk(
                cloud,
                ids,
                delete_waiter,
                interval,
                burst_prefix,
                concurrency=settings.concurrency,
                on_tick=delete_tick,
                count=counter.count,
            )
        result.left_after_delete = sorted(left)
        result.delete_faults = why
        for timing in servers:
            if timing.id and timing.id not in left:  # without an id, the tracker looks the name up
                tracker.forget(tracked[timing.name])
        if volumes:
            # Nova deletes each boot volume with its server: wait for them the same way (one listing a tick).
            volume_ids = {v for s in servers for v in s.volume_ids}
            volumes_left, volume_why = delete_volumes_bulk(
                cloud, volume_ids, delete_waiter, interval, count=counter.count
            )
            result.volumes_left = sorted(volumes_left)
            result.delete_faults.update(volume_why)
            for timing in servers:
                if timing.volume_ids and not set(timing.volume_ids) & volumes_left:
                    tracker.forget(volumes[timing.name])
        result.delete_s = clock() - delete_start
        result.phase = ""
    except Interrupted as exc:
        # Keep what was measured: the caller records it (INCOMPLETE); the tracker's cleanup deletes the servers.
        result.interrupted, result.stopped_after_s = exc.interruption, clock() - start
        _settle_creates(creator, servers)
        if result.phase == "delete" and result.delete_s is None:
            result.delete_s = clock() - delete_start
    except BaseException:
        # Let the creates in flight return (their ids get bound); the tracker's cleanup deletes by name.
        creator.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        getter.shutdown(wait=False, cancel_futures=True)
        result.wall_s = clock() - start
        result.api_calls, result.calls_by_endpoint = counter.result()
    return result


def _settle_creates(creator: ThreadPoolExecutor, servers: list[ServerTiming]) -> None:
    """After an interruption: creates not started are cancelled, those in flight return (their ids get bound)."""
    creator.shutdown(wait=True, cancel_futures=True)
    for timing in servers:
        if timing.status == "REQUESTED":  # still queued when cancelled
            timing.status = NOT_REQUESTED


def _delete_and_wait_per_server(cloud, ids, waiter, interval, settings, counter, pool, tick) -> set[str]:
    """The baseline's way (benchmarks only): every server polled with its own GET until it answers 404."""
    conn = cloud.conn

    def delete(server_id):
        counter.count("DELETE /servers/{id}")
        try:
            cloud.call(conn.compute.delete_server, server_id, ignore_missing=True)
        except os_exc.SDKException:
            pass  # the server stays listed and is reported as left

    with ThreadPoolExecutor(max(1, settings.concurrency), thread_name_prefix="burst-delete") as deleter:
        list(deleter.map(delete, ids))
    left = set(ids)

    tries: dict[str, int] = {}
    given_up: set[str] = set()

    def exists(server_id):
        counter.count("GET /servers/{id}")
        try:
            server = cloud.call(conn.compute.get_server, server_id)
        except os_exc.NotFoundException:
            return False
        # Same rule as the bulk side: a delete that ended in ERROR is retried once, then given up on.
        if server.status == "ERROR" and not getattr(server, "task_state", None):
            tries[server_id] = tries.get(server_id, 0) + 1
            if tries[server_id] > 1:
                given_up.add(server_id)  # reported as left, no longer polled
                return False
            delete(server_id)
        return True

    def gone() -> bool:
        nonlocal left
        remaining = list(left - given_up)
        present = pool.map(exists, remaining)
        left = {sid for sid, here in zip(remaining, present, strict=True) if here} | given_up
        tick(len(left))
        return not (left - given_up)

    while waiter.wait(interval):
        if gone():
            return left
    gone()  # one last look at the time limit
    return left


def _explain_errors(cloud, servers, counter) -> None:
    """The listing usually carries the fault; when it doesn't, one GET per ERROR server explains it."""
    for timing in servers:
        if timing.status == "ERROR" and not timing.fault and timing.id:
            counter.count("GET /servers/{id}")
            try:
                server = cloud.call(cloud.conn.compute.get_server, timing.id)
                timing.fault = fault_text(server.fault) or "ERROR without a fault message"
            except os_exc.SDKException as exc:
                timing.fault = f"ERROR (fault unavailable: {first_line(exc)})"
