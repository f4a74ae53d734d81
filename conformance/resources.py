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

from conformance import interrupt

PREFIX_ROOT = "conformance"
# Anchored at the start: the sweeper and every bulk filter match this and nothing else.
PREFIX_RE = re.compile(r"^conformance-(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{6})(?=-|$)")
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

# Cleanup order: a kind is deleted only after every kind before it is gone.
KIND_ORDER = ("attachment", "server", "volume", "floating_ip", "port", "keypair", "security_group", "image")
# The metadata key (servers, volumes, images) that carries the run prefix; Neutron resources carry it in
# their description (set in the create body: tags would cost one extra call per resource).
RUN_KEY = "conformance_run"

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


def server_name_filter(prefix: str) -> str:
    """Nova's `name` filter is a regular expression: anchor it and escape the prefix."""
    return "^" + re.escape(prefix)


# --- waiting ------------------------------------------------------------------------------------------------

class Deadline:
    """A monotonic deadline whose waits are safe points: a stop request (conformance.interrupt) ends them at once
    with Interrupted, except inside a cleanup (shielded), which runs until its own deadline."""

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
        """Wait `interval` (or what is left); False once the deadline has passed."""
        if self.expired():
            return False
        interrupt.wait(min(interval, self.remaining()))
        return not self.expired()

    def poll(self, predicate: Callable[[], bool], interval: float) -> bool:
        """Call `predicate` every `interval` until it is true (-> True) or the deadline passes (-> False)."""
        while True:
            if predicate():
                return True
            if self.expired():
                return False
            interrupt.wait(min(interval, self.remaining()))


def call(cloud, fn, *args, **kwargs):
    """Run an API call through the cloud layer's retry policy when the cloud object has one. A safe point: no
    call starts once the run was asked to stop (outside a cleanup)."""
    interrupt.check()
    runner = getattr(cloud, "call", None)
    return runner(fn, *args, **kwargs) if runner else fn(*args, **kwargs)


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


class CleanupError(Exception):
    def __init__(self, failures: list[CleanupFailure]):
        self.failures = failures
        super().__init__(
            f"{len(failures)} resource(s) could not be deleted "
            "(sweep with `python -m conformance cleanup`):\n"
            + "\n".join(f"  {f}" for f in failures))


_live_trackers: list[Tracker] = []
_live_lock = threading.Lock()


class Tracker:
    """Resources of one run (or of one test), deleted together in dependency order."""

    def __init__(self, prefix: str, delete_timeout_s: float = DEFAULT_DELETE_TIMEOUT_S,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S, log: Callable[[str], None] | None = None):
        if not PREFIX_RE.match(prefix):
            raise ValueError(f"not a run prefix: {prefix!r}")
        self.prefix = prefix
        self.delete_timeout_s = delete_timeout_s
        self.poll_interval_s = poll_interval_s
        self.log = log or (lambda _msg: None)
        self._items: list[Tracked] = []
        self._lock = threading.Lock()
        with _live_lock:
            _live_trackers.append(self)

    def name(self, suffix: str) -> str:
        return f"{self.prefix}-{suffix}"

    def intent(self, kind: str, name: str, cloud, **extra) -> Tracked:
        """Register a resource about to be created (before the create call), to be bound to its id after."""
        if kind not in KIND_ORDER:
            raise ValueError(f"unknown resource kind {kind!r}")
        if kind != "attachment" and not name.startswith(self.prefix):
            raise ValueError(f"{kind} name {name!r} lacks the run prefix {self.prefix}")
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
            deadline = Deadline(timeout_s if timeout_s is not None else self.delete_timeout_s)
            return delete_in_order(self.pending(), deadline, self.poll_interval_s, self.prefix)
        finally:
            with _live_lock:
                if self in _live_trackers and not self.pending():
                    _live_trackers.remove(self)


def delete_in_order(items: list[Tracked], deadline: Deadline, interval: float, prefix: str
                    ) -> list[CleanupFailure]:
    """Delete `items` kind by kind in KIND_ORDER, per cloud; `prefix` bounds the bulk server listings.
    Shielded: a stop request does not cut a cleanup short (its deadline bounds it; a second signal exits)."""
    failures: list[CleanupFailure] = []
    with interrupt.shielded():
        for kind in KIND_ORDER:
            of_kind = [i for i in items if i.kind == kind and not i.deleted]
            by_cloud: dict[int, list[Tracked]] = {}
            for item in of_kind:
                by_cloud.setdefault(id(item.cloud), []).append(item)
            for group in by_cloud.values():
                try:
                    failures += DELETERS[kind](group, deadline, interval, prefix)
                except Exception as exc:  # one kind failing must not stop the kinds after it
                    failures += [_failure(i, exc) for i in group if not i.deleted]
    return failures


def live_trackers() -> list[Tracker]:
    with _live_lock:
        return list(_live_trackers)


def _failure(item: Tracked, error) -> CleanupFailure:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return CleanupFailure(item.kind, item.name, item.id, item.scope, text.splitlines()[0] if text else "")


# --- deleters: one per kind, each taking the pending items of one cloud -------------------------------------

def _gone(fn, *args) -> bool:
    try:
        fn(*args)
    except os_exc.NotFoundException:
        return True
    return False


def _resolve_by_name(items: list[Tracked], lister: Callable[[], Iterable]) -> None:
    """Bind unbound intents by listing once (the create may have succeeded before being interrupted)."""
    unbound = [i for i in items if i.id is None]
    if not unbound:
        return
    by_name: dict[str, list[str]] = {}
    for res in lister():
        by_name.setdefault(res.name, []).append(res.id)
    for item in unbound:
        ids = by_name.get(item.name) or []
        if not ids:
            item.deleted = True  # never created
        else:
            item.id = ids[0]
            # Several resources with one name (a retried create): track the others too.
            for extra_id in ids[1:]:
                twin = Tracked(item.kind, item.name, item.cloud, extra_id, dict(item.extra))
                items.append(twin)


DELETE_RETRIES = 1  # a delete that ended in ERROR is tried once more, then reported with its fault


def delete_servers_bulk(cloud, ids: Iterable[str], deadline: Deadline, interval: float, prefix: str,
                        concurrency: int = DELETE_CONCURRENCY, on_tick: Callable[[int], None] | None = None,
                        count: Callable[[str], None] | None = None) -> tuple[set[str], dict[str, str]]:
    """Delete servers concurrently; wait with one bulk `GET /servers/detail` per tick (filtered by prefix).

    A server whose delete failed (listed in ERROR with no task running) is deleted once more, then given up
    on with its fault rather than waited for until the deadline. Returns (ids left, {id: why})."""
    conn = cloud.conn
    ids = set(ids)
    count = count or (lambda _key: None)
    tries: dict[str, int] = {}
    why: dict[str, str] = {}

    def delete(server_id):
        count("DELETE /servers/{id}")
        tries[server_id] = tries.get(server_id, 0) + 1
        try:
            call(cloud, conn.compute.delete_server, server_id, ignore_missing=True)
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
        listed = {s.id: s for s in call(cloud, lambda: list(
            conn.compute.servers(details=True, name=server_name_filter(prefix)))) if s.id in ids}
        left = set(listed)
        failed = [s for s in listed.values() if s.status == "ERROR" and not getattr(s, "task_state", None)
                  and s.id not in given_up]
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
        deadline.wait(interval)  # a delete is never done the instant it is accepted
        deadline.poll(all_gone, interval)
    return left, {i: why[i] for i in left if i in why}


def _delete_servers(items, deadline, interval, prefix):
    cloud = items[0].cloud
    conn = cloud.conn
    _resolve_by_name(items, lambda: call(cloud, lambda: list(
        conn.compute.servers(details=False, name=server_name_filter(prefix)))))
    todo = [i for i in items if not i.deleted]
    left, why = delete_servers_bulk(cloud, {i.id for i in todo}, deadline, interval, prefix)
    failures = []
    for item in todo:
        if item.id in left:
            failures.append(_failure(item, why.get(item.id, "still present after the delete timeout")))
        else:
            item.deleted = True
    return failures


def _delete_attachments(items, deadline, interval, prefix):
    failures = []
    for item in items:
        cloud = item.cloud
        conn = cloud.conn
        server_id, volume_id = item.extra.get("server_id"), item.extra.get("volume_id")
        try:
            call(cloud, conn.compute.delete_volume_attachment, server_id, volume_id, ignore_missing=True)

            def detached(cloud=cloud, conn=conn, volume_id=volume_id):
                try:
                    vol = call(cloud, conn.block_storage.get_volume, volume_id)
                except os_exc.NotFoundException:
                    return True
                return vol.status in ("available", "error") and not vol.attachments

            if deadline.poll(detached, interval):
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

    def deleter(items, deadline, interval, prefix):
        cloud = items[0].cloud
        proxy = getattr(cloud.conn, service)
        if lister_attr:
            _resolve_by_name(items, lambda: call(cloud, lambda: list(getattr(proxy, lister_attr)())))
        failures = []
        for item in [i for i in items if not i.deleted]:
            try:
                call(cloud, getattr(proxy, deleter_attr), item.id, ignore_missing=True)
                if deadline.poll(lambda item=item: _gone(call, cloud, getattr(proxy, getter_attr), item.id),
                                 interval):
                    item.deleted = True
                else:
                    failures.append(_failure(item, "still present after the delete timeout"))
            except Exception as exc:
                failures.append(_failure(item, exc))
        return failures

    return deleter


def _list_fips_of_run(cloud, prefix):
    # Floating IPs have no name: the run prefix is in their description.
    return [_Named(f.id, f.description or "") for f in cloud.conn.network.ips()
            if (f.description or "").startswith(prefix)]


@dataclass
class _Named:
    id: str
    name: str


def _delete_fips(items, deadline, interval, prefix):
    cloud = items[0].cloud
    _resolve_by_name(items, lambda: call(cloud, _list_fips_of_run, cloud, prefix))
    return _simple_deleter(None, "get_ip", "delete_ip", "network")(items, deadline, interval, prefix)


def _delete_keypairs(items, deadline, interval, prefix):
    # A keypair's id is its name.
    for item in items:
        item.id = item.id or item.name
    deleter = _simple_deleter(None, "get_keypair", "delete_keypair", "compute")
    return deleter(items, deadline, interval, prefix)


DELETERS = {
    "attachment": _delete_attachments,
    "server": _delete_servers,
    "volume": _simple_deleter("volumes", "get_volume", "delete_volume", "block_storage"),
    "floating_ip": _delete_fips,
    "port": _simple_deleter("ports", "get_port", "delete_port", "network"),
    "keypair": _delete_keypairs,
    "security_group": _simple_deleter("security_groups", "get_security_group", "delete_security_group",
                                      "network"),
    "image": _simple_deleter("images", "get_image", "delete_image", "image"),
}


def cleanup_all(timeout_s: float | None = None) -> list[CleanupFailure]:
    """Last resort at exit: clean every tracker that still holds resources."""
    failures = []
    for tracker in live_trackers():
        if tracker.pending():
            failures += tracker.cleanup(timeout_s)
    return failures


def elapsed_since(start: float) -> str:
    seconds = int(time.monotonic() - start)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"
