"""Run prefix, resource tracking and ordered, verified cleanup.

Every resource the suite creates is named `<run prefix>-<suffix>`, with the run prefix
`conformance-<UTC YYYYmmddTHHMMSSZ>-<6 hex>`, so that leftovers of a crashed run can be dated and swept by
name alone (`python -m conformance cleanup`), without any local state of the run.

A check registers its intent *before* the create call (`tracker.intent(kind, name, cloud)`), then binds the id
when the call returns. Should the call fail or be interrupted after the cloud acted, cleanup still finds the
resource by name. `Tracker.cleanup()` deletes in dependency order (detach -> server -> volume / floating IP /
port -> keypair / security group -> image), waits until each resource is gone (bounded), and returns the
failures: callers report them, never swallow them.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from openstack import exceptions as os_exc
from openstack.compute.v2.server import Server

from conformance import interrupt
from conformance.cloud import EndpointDown, is_retryable
from conformance.errors import CloudFault

PREFIX_ROOT = "conformance"
# Anchored at the start: the sweeper and every bulk filter match this and nothing else.
PREFIX_RE = re.compile(r"^conformance-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})(?=-|$)")
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

# Cleanup order: a kind is deleted only after every kind before it is gone.
KIND_ORDER = ("attachment", "server", "volume", "floating_ip", "port", "keypair", "security_group", "image")
# The metadata key (servers, volumes, images) that carries the run prefix; Neutron resources carry it in
# their description (set in the create body: tags would cost one extra call per resource).
RUN_KEY = "conformance_run"
# The burst's servers carry the run prefix under this key too (besides RUN_KEY when a caller sets it).
BURST_KEY = "conformance_burst"

DEFAULT_DELETE_TIMEOUT_S = 300.0
DEFAULT_POLL_INTERVAL_S = 2.0
DELETE_CONCURRENCY = 10


def new_run_prefix(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{PREFIX_ROOT}-{now.strftime(TIMESTAMP_FORMAT)}-{secrets.token_hex(3)}"


def prefix_of(name: str | None) -> str | None:
    """The run prefix a name starts with, or None when it carries none (the sweeper then never touches it)."""
    m = PREFIX_RE.match(name or "")
    return m.group(0) if m else None


def prefix_time(name: str | None) -> dt.datetime | None:
    m = PREFIX_RE.match(name or "")
    if not m:
        return None
    return dt.datetime.strptime(m.group("ts"), TIMESTAMP_FORMAT).replace(tzinfo=dt.timezone.utc)


def region_tag(cloud) -> str:
    """`regionone` for RegionOne: the region as it appears in resource names ("" without a region)."""
    region = getattr(cloud, "region", None) or ""
    return re.sub(r"[^a-z0-9]+", "-", region.lower()).strip("-")


def server_name_filter(prefix: str) -> str:
    """Nova's `name` filter is a regular expression: anchor it and escape the prefix."""
    return "^" + re.escape(prefix)


# --- waiting ------------------------------------------------------------------------------------------------


class Waiter:
    """A wait bounded by a monotonic time limit (`Waiter(300).poll(settled, 2.0)`), whose waits are safe points:
    a stop request (conformance.interrupt) ends them at once with Interrupted, except inside a cleanup
    (shielded), which runs until its own limit. Not the run's deadline (conformance.parts.deadline)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.start = clock()
        self.end = self.start + seconds

    def remaining(self) -> float:
        return max(0.0, self.end - self.clock())

    def expired(self) -> bool:
        return self.clock() >= self.end

    def elapsed(self) -> float:
        return self.clock() - self.start

    def wait(self, interval: float) -> bool:
        """Wait `interval` (or what is left); False once the time limit has passed."""
        if self.expired():
            return False
        interrupt.wait(min(interval, self.remaining()))
        return not self.expired()

    def poll(self, predicate: Callable[[], bool], interval: float) -> bool:
        """Call `predicate` every `interval` until it is true (-> True) or the time limit passes (-> False)."""
        while True:
            if predicate():
                return True
            if self.expired():
                return False
            interrupt.wait(min(interval, self.remaining()))


def scope_of(cloud) -> str:
    return getattr(cloud, "scope", None) or getattr(cloud, "name", None) or "cloud"


# --- tracking -----------------------------------------------------------------------------------------------


@dataclass
class Tracked:
    kind: str
    name: str
    cloud: object = field(repr=False)
    id: str | None = None
    # attachment: {"server_id", "volume_id"}; anything else a deleter needs
    extra: dict = field(default_factory=dict)
    deleted: bool = False

    def bind(self, resource_or_id) -> None:
        self.id = getattr(resource_or_id, "id", resource_or_id)

    @property
    def scope(self) -> str:
        return scope_of(self.cloud)

    def describe(self) -> str:
        return f"{self.kind} {self.name} ({self.id or 'no id'}) in {self.scope}"


@dataclass
class CleanupFailure:
    kind: str
    name: str
    id: str | None
    scope: str
    error: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.id or 'no id'}) in {self.scope}: {self.error}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "id": self.id, "scope": self.scope, "error": self.error}


class CleanupError(CloudFault):
    def __init__(self, failures: list[CleanupFailure]):
        self.failures = failures
        super().__init__(
            f"{len(failures)} resource(s) could not be deleted "
            "(sweep with `python -m conformance cleanup`):\n" + "\n".join(f"  {f}" for f in failures)
        )


_live_trackers: list[Tracker] = []
_live_lock = threading.Lock()


class Tracker:
    """Resources of one run (or of one test), deleted together in dependency order."""

    def __init__(
        self,
        prefix: str,
        delete_timeout_s: float = DEFAULT_DELETE_TIMEOUT_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
        log: Callable[[str], None] | None = None,
        lease: Lease | None = None,
    ):
        if not PREFIX_RE.match(prefix):
            raise ValueError(f"not a run prefix: {prefix!r}")
        self.prefix = prefix
        self.lease = lease  # taken before this run's first create (see Lease)
        self.delete_timeout_s = delete_timeout_s
        self.poll_interval_s = poll_interval_s
        self.log = log or (lambda _msg: None)
        self._items: list[Tracked] = []
        self._lock = threading.Lock()
        with _live_lock:
            _live_trackers.append(self)

    def name(self, suffix: str, cloud=None) -> str:
        """`<run prefix>-<suffix>`; with `cloud`, `<run prefix>-<region>-<suffix>`: two regions may share one
        Nova or Glance, and the run's names (and the burst's name filter) must not collide across them."""
        tag = region_tag(cloud)
        return f"{self.prefix}-{tag}-{suffix}" if tag else f"{self.prefix}-{suffix}"

    def intent(self, kind: str, name: str, cloud, **extra) -> Tracked:
        """Register a resource about to be created (before the create call), to be bound to its id after."""
        if kind not in KIND_ORDER:
            raise ValueError(f"unknown resource kind {kind!r}")
        if kind != "attachment" and not name.startswith(self.prefix):
            raise ValueError(f"{kind} name {name!r} lacks the run prefix {self.prefix}")
        if self.lease is not None:
            self.lease.hold(cloud)
        item = Tracked(kind=kind, name=name, cloud=cloud, extra=extra)
        with self._lock:
            self._items.append(item)
        return item

    def forget(self, item: Tracked) -> None:
        """Mark a resource deleted by the check itself (verified gone)."""
        item.deleted = True

    @property
    def items(self) -> list[Tracked]:
        with self._lock:
            return list(self._items)

    def pending(self) -> list[Tracked]:
        return [i for i in self.items if not i.deleted]

    def cleanup(self, timeout_s: float | None = None) -> list[CleanupFailure]:
        """Delete everything not yet deleted, kind by kind; wait until gone. Returns what failed."""
        try:
            waiter = Waiter(timeout_s if timeout_s is not None else self.delete_timeout_s)
            return delete_in_order(self.pending(), waiter, self.poll_interval_s, self.prefix)
        finally:
            with _live_lock:
                if self in _live_trackers and not self.pending():
                    _live_trackers.remove(self)


def delete_in_order(items: list[Tracked], waiter: Waiter, interval: float, prefix: str) -> list[CleanupFailure]:
    """Delete `items` kind by kind in KIND_ORDER, per cloud; `prefix` bounds the bulk server listings.
    Shielded: a stop request does not cut a cleanup short (its time limit bounds it; a second signal exits)."""
    failures: list[CleanupFailure] = []
    with interrupt.shielded():
        for kind in KIND_ORDER:
            of_kind = [i for i in items if i.kind == kind and not i.deleted]
            by_cloud: dict[int, list[Tracked]] = {}
            for item in of_kind:
                by_cloud.setdefault(id(item.cloud), []).append(item)
            for group in by_cloud.values():
                try:
                    failures += DELETERS[kind](group, waiter, interval, prefix)
                except EndpointDown as exc:
                    if not exc.outage.from_start:
                        failures += [_failure(i, exc) for i in group if not i.deleted]
                        continue
                    for item in group:  # never usable (Keystone untrusted): no create of the run went through
                        item.deleted = True
                except Exception as exc:  # one kind failing must not stop the kinds after it
                    failures += [_failure(i, exc) for i in group if not i.deleted]
    return failures


def live_trackers() -> list[Tracker]:
    with _live_lock:
        return list(_live_trackers)


def _failure(item: Tracked, error) -> CleanupFailure:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return CleanupFailure(item.kind, item.name, item.id, item.scope, text.splitlines()[0] if text else "")


# --- the run's lease: a running run is never swept ---------------------------------------------------------

LEASE_TTL_S = 600.0  # a run that stopped renewing (killed, machine gone) becomes sweepable this long after
LEASE_RENEW_S = 60.0
_LEASE_NAME_RE = re.compile(PREFIX_RE.pattern + r"-lease(?:-[a-z0-9]+)?$")
_LEASE_UNTIL_RE = re.compile(r"lease until (?P<until>\d{8}T\d{6}Z)")


def lease_description(until: dt.datetime) -> str:
    return (
        f"conformance run in progress: lease until {until.strftime(TIMESTAMP_FORMAT)} "
        f"(renewed every {LEASE_RENEW_S:.0f} s while the run goes on)"
    )


def lease_until(name: str | None, description: str | None) -> dt.datetime | None:
    """When a lease security group's run stops being protected; None when it is no lease."""
    if not _LEASE_NAME_RE.match(name or ""):
        return None
    found = _LEASE_UNTIL_RE.search(description or "")
    if not found:
        return None
    return dt.datetime.strptime(found.group("until"), TIMESTAMP_FORMAT).replace(tzinfo=dt.timezone.utc)


class Lease:
    """A running run says so where `python -m conformance cleanup` looks, from any machine: a security group
    `<prefix>-lease` in the first project the run creates something in, whose description holds a time
    LEASE_TTL_S ahead, renewed every LEASE_RENEW_S by a background thread. The sweeper leaves every resource of
    a run with a live lease alone, however old the run is (`--older-than` compares the prefix's start time).
    After a crash the lease lapses and the run's leftovers, the lease included, become sweepable.

    Taken lazily (a run that creates nothing leaves nothing, not even a lease); released after the last
    cleanup. A cloud without a network service gets no lease: the run goes on, unprotected."""

    def __init__(
        self,
        prefix: str,
        suffix: str = "lease",
        ttl_s: float = LEASE_TTL_S,
        renew_s: float = LEASE_RENEW_S,
        now: Callable[[], dt.datetime] | None = None,
    ):
        self.name = f"{prefix}-{suffix}"
        self.ttl_s, self.renew_s = ttl_s, renew_s
        self.now = now or (lambda: dt.datetime.now(dt.timezone.utc))
        self.cloud = None
        self.id: str | None = None
        self.error = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _description(self) -> str:
        return lease_description(self.now() + dt.timedelta(seconds=self.ttl_s))

    def hold(self, cloud) -> None:
        """Take the lease in `cloud`'s project (once; later calls return at once)."""
        with self._lock:
            if self.cloud is not None:
                return
            self.cloud = cloud
            try:
                group = cloud.call(
                    cloud.conn.network.create_security_group, name=self.name, description=self._description()
                )
            except Exception as exc:  # no network service, a policy: the run itself must go on
                self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                return
            self.id = group.id
            self._thread = threading.Thread(target=self._renew, name="conformance-lease", daemon=True)
            self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                # Not through cloud.call(): the next renewal is the retry (the TTL leaves room for several), and a
                # call's safe point would stop the renewals of a run that was asked to stop while it cleans up.
                self.cloud.conn.network.update_security_group(self.id, description=self._description())
            except Exception:  # noqa: BLE001 - the next renewal tries again
                continue

    def release(self, timeout_s: float = DEFAULT_DELETE_TIMEOUT_S) -> list[CleanupFailure]:
        """Stop renewing and delete the lease (last, after every other resource of the run)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.id is None:
            return []
        item = Tracked("security_group", self.name, self.cloud, self.id)
        failures = delete_in_order([item], Waiter(timeout_s), DEFAULT_POLL_INTERVAL_S, self.name)
        if item.deleted:
            self.id = None
        return failures


# --- deleters: one per kind, each taking the pending items of one cloud -------------------------------------


def _gone(fn, *args) -> bool:
    try:
        fn(*args)
    except os_exc.NotFoundException:
        return True
    except Exception as exc:
        if _unanswered(exc):
            return False  # the API did not answer (even after retries): look again at the next tick
        raise
    return False


def _unanswered(exc: BaseException) -> bool:
    """A stalled or overloaded API (timeouts, 503s, broken connections) rather than an answer: a cleanup keeps
    waiting for it until its own time limit instead of giving up at the first unanswered poll. An endpoint marked
    as stopped answering is still tried by a cleanup, so that too is a poll to repeat (not one never usable)."""
    return is_retryable(exc) or (isinstance(exc, EndpointDown) and not exc.outage.from_start)


def _resolve_by_name(items: list[Tracked], lister: Callable[[], Iterable]) -> None:
    """List once and bind unbound intents (the create may have succeeded before being interrupted); track
    every other resource of a tracked name too: a create retried after a timeout or a broken connection
    may have been carried out twice."""
    by_name: dict[str, list[str]] = {}
    for res in lister():
        by_name.setdefault(res.name, []).append(res.id)
    known = {i.id for i in items if i.id}
    for item in list(items):
        ids = by_name.get(item.name) or []
        if item.id is None:
            if not ids:
                item.deleted = True  # never created
                continue
            item.id = ids[0]
            known.add(item.id)
        for extra_id in ids:
            if extra_id not in known:
                known.add(extra_id)
                items.append(Tracked(item.kind, item.name, item.cloud, extra_id, dict(item.extra)))


DELETE_RETRIES = 1  # a delete that ended in ERROR is tried once more, then reported with its fault


def delete_servers_bulk(
    cloud,
    ids: Iterable[str],
    waiter: Waiter,
    interval: float,
    prefix: str,
    concurrency: int = DELETE_CONCURRENCY,
    on_tick: Callable[[int], None] | None = None,
    count: Callable[[str], None] | None = None,
) -> tuple[set[str], dict[str, str]]:
    """Delete servers concurrently; wait with one bulk `GET /servers/detail` per tick (filtered by prefix).

    A server whose delete failed (listed in ERROR with no task running) is deleted once more, then given up
    on with its fault rather than waited for until the time limit. Returns (ids left, {id: why})."""
    conn = cloud.conn
    ids = set(ids)
    count = count or (lambda _key: None)
    tries: dict[str, int] = {}
    why: dict[str, str] = {}

    def delete(server_id):
        count("DELETE /servers/{id}")
        tries[server_id] = tries.get(server_id, 0) + 1
        try:
            cloud.call(conn.compute.delete_server, server_id, ignore_missing=True)
        except os_exc.SDKException as exc:
            text = str(exc).strip() or type(exc).__name__
            why[server_id] = f"delete refused: {text.splitlines()[0]}"

    def delete_all(server_ids):
        if server_ids:
            with ThreadPoolExecutor(max(1, min(concurrency, len(server_ids)))) as pool:
                list(pool.map(delete, server_ids))

    delete_all(ids)
    left = set(ids)
    given_up: set[str] = set()

    def all_gone() -> bool:
        nonlocal left
        count("GET /servers/detail")
        try:
            servers = cloud.call(lambda: list(conn.compute.servers(details=True, name=server_name_filter(prefix))))
        except Exception as exc:
            if _unanswered(exc):
                return False  # look again at the next tick, until the delete time limit
            raise
        listed = {s.id: s for s in servers if s.id in ids}
        left = set(listed)
        failed = [
            s
            for s in listed.values()
            if s.status == "ERROR" and not getattr(s, "task_state", None) and s.id not in given_up
        ]
        retry = [s.id for s in failed if tries.get(s.id, 0) <= DELETE_RETRIES]
        for server in failed:
            if server.id not in retry:
                given_up.add(server.id)
                fault = (server.fault or {}).get("message", "") if isinstance(server.fault, dict) else ""
                why[server.id] = f"delete failed: {fault.splitlines()[0] if fault else 'server in ERROR'}"
        delete_all(retry)
        if on_tick:
            on_tick(len(left))
        return not (left - given_up)

    if ids:
        waiter.wait(interval)  # a delete is never done the instant it is accepted
        waiter.poll(all_gone, interval)
    return left, {i: why[i] for i in left if i in why}


def _delete_servers(items, waiter, interval, prefix):
    cloud = items[0].cloud
    conn = cloud.conn
    _resolve_by_name(
        items, lambda: cloud.call(lambda: list(conn.compute.servers(details=False, name=server_name_filter(prefix))))
    )
    todo = [i for i in items if not i.deleted]
    left, why = delete_servers_bulk(cloud, {i.id for i in todo}, waiter, interval, prefix)
    return _outcome(todo, left, why)


def _outcome(todo: list[Tracked], left: set[str], why: dict[str, str]) -> list[CleanupFailure]:
    """After a bulk delete: what is gone is marked deleted, what is left becomes a failure saying why."""
    failures = []
    for item in todo:
        if item.id in left:
            failures.append(_failure(item, why.get(item.id, "still present after the delete timeout")))
        else:
            item.deleted = True
    return failures


def _delete_attachments(items, waiter, interval, prefix):
    failures = []
    for item in items:
        cloud = item.cloud
        conn = cloud.conn
        server_id, volume_id = item.extra.get("server_id"), item.extra.get("volume_id")
        try:
            # A typed server: with two plain ids openstacksdk looks the server up to guess their order.
            cloud.call(conn.compute.delete_volume_attachment, Server(id=server_id), volume_id, ignore_missing=True)

            def detached(cloud=cloud, conn=conn, volume_id=volume_id):
                try:
                    vol = cloud.call(conn.block_storage.get_volume, volume_id)
                except os_exc.NotFoundException:
                    return True
                return vol.status in ("available", "error") and not vol.attachments

            if waiter.poll(detached, interval):
                item.deleted = True
            else:
                failures.append(_failure(item, "volume still attached after the timeout"))
        except os_exc.NotFoundException:
            item.deleted = True
        except Exception as exc:
            failures.append(_failure(item, exc))
    return failures


def _simple_deleter(lister_attr, getter_attr, deleter_attr, service):
    """Deleter for kinds whose delete is one call, verified with a GET that must answer 404."""

    def deleter(items, waiter, interval, prefix):
        cloud = items[0].cloud
        proxy = getattr(cloud.conn, service)
        if lister_attr:
            _resolve_by_name(items, lambda: cloud.call(lambda: list(getattr(proxy, lister_attr)())))
        failures = []
        for item in [i for i in items if not i.deleted]:
            try:
                cloud.call(getattr(proxy, deleter_attr), item.id, ignore_missing=True)
                if waiter.poll(lambda item=item: _gone(cloud.call, getattr(proxy, getter_attr), item.id), interval):
                    item.deleted = True
                else:
                    failures.append(_failure(item, "still present after the delete timeout"))
            except Exception as exc:
                failures.append(_failure(item, exc))
        return failures

    return deleter


def _list_fips_of_run(cloud, prefix):
    # Floating IPs have no name: the run prefix is in their description.
    return [
        _Named(f.id, f.description or "") for f in cloud.conn.network.ips() if (f.description or "").startswith(prefix)
    ]


@dataclass
class _Named:
    id: str
    name: str


def _delete_fips(items, waiter, interval, prefix):
    cloud = items[0].cloud
    _resolve_by_name(items, lambda: cloud.call(_list_fips_of_run, cloud, prefix))
    return _simple_deleter(None, "get_ip", "delete_ip", "network")(items, waiter, interval, prefix)


def _delete_keypairs(items, waiter, interval, prefix):
    # A keypair's id is its name.
    for item in items:
        item.id = item.id or item.name
    deleter = _simple_deleter(None, "get_keypair", "delete_keypair", "compute")
    return deleter(items, waiter, interval, prefix)


# --- volumes, including the boot volumes Nova makes for boot-from-volume servers ------------------------------

# Statuses in which Cinder accepts a (non-forced) delete; anything else is waited out (deleting, detaching...).
VOLUME_DELETABLE = frozenset(
    {"available", "error", "error_deleting", "error_restoring", "error_extending", "error_managing"}
)


def boot_volume_mapping(image_id: str, size_gb: int) -> list[dict]:
    """block_device_mapping_v2 of a server booting from a new volume made from `image_id`: what nodepool's
    `boot-from-volume: true` / `volume-size` does. Nova deletes the volume with the server."""
    return [
        {
            "boot_index": 0,
            "uuid": image_id,
            "source_type": "image",
            "destination_type": "volume",
            "volume_size": int(size_gb),
            "delete_on_termination": True,
        }
    ]


def boot_disk(
    tracker: Tracker, cloud, server_name: str, image_id: str, volume_size_gb: int | None
) -> tuple[dict, Tracked | None]:
    """create_server arguments for a node's root disk (the image on local disk, or with `volume_size_gb` a new
    volume made from it), and the intent tracking that boot volume (None on local disk). Nova names the
    volume: the intent is bound to the id the server lists, else found by the run's image at cleanup."""
    if not volume_size_gb:
        return {"image_id": image_id}, None
    item = tracker.intent("volume", f"{server_name}-volume", cloud, boot_image=image_id)
    return {"block_device_mapping": boot_volume_mapping(image_id, volume_size_gb)}, item


def attached_volume_ids(server) -> list[str]:
    """Volume ids of a server's `os-extended-volumes:volumes_attached` (a boot volume shows there as soon as
    Nova has created it, also on a server that went ERROR)."""
    found = []
    for entry in getattr(server, "attached_volumes", None) or []:
        volume_id = entry.get("id") if isinstance(entry, dict) else getattr(entry, "id", None)
        if volume_id:
            found.append(volume_id)
    return found


def run_of_volume(volume) -> str | None:
    """The run prefix a volume carries: in its name, or (a boot volume Nova made, which has no name) in the
    image metadata Cinder copied from the run's uploaded image (its `conformance_run` property, its name)."""
    run = prefix_of(getattr(volume, "name", None))
    if run:
        return run
    image_meta = getattr(volume, "volume_image_metadata", None) or {}
    return prefix_of(image_meta.get(RUN_KEY)) or prefix_of(image_meta.get("image_name"))


def _volume_image_id(volume) -> str | None:
    return (getattr(volume, "volume_image_metadata", None) or {}).get("image_id")


def _list_volumes(cloud, count: Callable[[str], None] | None = None) -> list:
    if count:
        count("GET /volumes/detail")
    return cloud.call(lambda: list(cloud.conn.block_storage.volumes(details=True)))


def _resolve_boot_volumes(cloud, items: list[Tracked]) -> None:
    """Bind boot-volume intents whose server never showed its volume (a boot that failed or was interrupted):
    volumes made from the run's own image (unique to this run and process) that no server holds any more."""
    unbound = [i for i in items if i.id is None]
    if not unbound:
        return
    images = {i.extra["boot_image"] for i in unbound}
    bound = {i.id for i in items if i.id}
    found = [
        v
        for v in _list_volumes(cloud)
        if _volume_image_id(v) in images and v.id not in bound and not getattr(v, "attachments", None)
    ]
    for item in unbound:
        if not found:
            item.deleted = True  # never created (or Nova already deleted it with its server)
            continue
        item.id = found.pop(0).id
    for extra in found:  # more leftovers than intents (a retried boot): delete them too
        twin = unbound[0]
        items.append(Tracked(twin.kind, twin.name, twin.cloud, extra.id, dict(twin.extra)))


def delete_volumes_bulk(
    cloud,
    ids: Iterable[str],
    waiter: Waiter,
    interval: float,
    on_tick: Callable[[int], None] | None = None,
    count: Callable[[str], None] | None = None,
) -> tuple[set[str], dict[str, str]]:
    """Delete volumes and wait until they are gone, with one `GET /volumes/detail` per tick for all of them.

    A volume Cinder would accept a delete for is deleted (again once if the delete ended in error); one that
    is already `deleting` (a boot volume Nova deletes with its server) or still detaching is waited for.
    Returns (ids left, {id: why})."""
    conn = cloud.conn
    ids = set(ids)
    count = count or (lambda _key: None)
    tries: dict[str, int] = {}
    why: dict[str, str] = {}
    left = set(ids)
    given_up: set[str] = set()

    def all_gone() -> bool:
        nonlocal left
        listed = {v.id: v for v in _list_volumes(cloud, count) if v.id in ids}
        left = set(listed)
        for volume in listed.values():
            if volume.status not in VOLUME_DELETABLE:
                continue
            if tries.get(volume.id, 0) > DELETE_RETRIES:
                given_up.add(volume.id)
                why.setdefault(volume.id, f"delete failed: volume {volume.status}")
                continue
            tries[volume.id] = tries.get(volume.id, 0) + 1
            count("DELETE /volumes/{id}")
            try:
                cloud.call(conn.block_storage.delete_volume, volume.id, ignore_missing=True)
            except os_exc.HttpException as exc:
                text = str(exc).strip() or type(exc).__name__
                why[volume.id] = f"delete refused: {text.splitlines()[0]}"
        if on_tick:
            on_tick(len(left))
        return not (left - given_up)

    if ids and not waiter.poll(all_gone, interval):
        all_gone()  # one last look at the time limit
    return left, {i: why.get(i, "") for i in left if why.get(i)}


def _delete_volumes(items, waiter, interval, prefix):
    cloud = items[0].cloud
    named = [i for i in items if "boot_image" not in i.extra]
    boot = [i for i in items if "boot_image" in i.extra]
    _resolve_by_name(named, lambda: cloud.call(lambda: list(cloud.conn.block_storage.volumes())))
    _resolve_boot_volumes(cloud, boot)
    todo = [i for i in named + boot if not i.deleted]
    left, why = delete_volumes_bulk(cloud, {i.id for i in todo}, waiter, interval)
    return _outcome(todo, left, why)


DELETERS = {
    "attachment": _delete_attachments,
    "server": _delete_servers,
    "volume": _delete_volumes,
    "floating_ip": _delete_fips,
    "port": _simple_deleter("ports", "get_port", "delete_port", "network"),
    "keypair": _delete_keypairs,
    "security_group": _simple_deleter("security_groups", "get_security_group", "delete_security_group", "network"),
    "image": _simple_deleter("images", "get_image", "delete_image", "image"),
}


def cleanup_all(timeout_s: float | None = None) -> list[CleanupFailure]:
    """Last resort at exit: clean every tracker that still holds resources."""
    failures = []
    for tracker in live_trackers():
        if tracker.pending():
            failures += tracker.cleanup(timeout_s)
    return failures
