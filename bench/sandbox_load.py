"""Benchmark: the sandbox cloud under the load a conformance run and its peers put on it.

Against a running sandbox (or any cloud in clouds.yaml), in one process:
  (a) K consecutive bursts of N test-node servers through the suite's own burst code (conformance.burst:
      bounded create pool, one bulk listing per tick, bulk delete);
  (b) C client threads, each with its own connection (its own keep-alive socket, no retries: the way Rally
      and Tempest wait), each booting one server, polling it with its own `GET /servers/{id}` every 2 s until
      ACTIVE, deleting it and polling until it is gone.
  (c) with --simultaneous-creates S: S clients, each with its own connection and token, that send one
      `POST /servers` each at the same moment (what a peer load tool does), each waiting for its answer up to
      --create-timeout (180 s, such a tool's read timeout); then the servers are waited for and deleted.
It samples the sandbox's RSS (every process `up` started) while it runs, and prints per burst and per phase
what it saw. The last line is machine-readable:

  bursts=<K> servers=<K*N> active=<a> errors=<e> poll_clients=<C> poll_errors=<p> resets=<r> rss_mb=<m>
  [simultaneous=<S> answered=<n> create_p50_s=<s> create_max_s=<s> over_60s=<n>]

`errors` are burst servers that did not become ACTIVE; `poll_errors` are what the polling clients saw go
wrong (a failed call: connection error or HTTP 5xx, or a server that went ERROR or never became ACTIVE);
`resets` are the failed calls whose connection was reset or aborted by the server; `rss_mb` is the sandbox's
peak RSS during the run ("NA" for a cloud that is not the local sandbox); `answered` counts the simultaneous
creates answered with a 2xx before their timeout, `create_*_s` their times from the common start to the answer
(timeouts count as the timeout), `over_60s` those that took longer than 60 s or got no answer.

Run it inside the sandbox env against a running sandbox:
  tox -e sandbox -- up
  .tox/sandbox/bin/python bench/sandbox_load.py --bursts 5 --size 100 --poll-clients 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import openstack
from benchlib import open_checked, test_node_flavor, test_node_network, uploaded_image, use_sandbox_clouds_yaml
from openstack import exceptions as os_exc

from conformance import interrupt
from conformance.burst import BurstSettings, run_burst
from conformance.profiles import load_profile
from conformance.resources import Tracker, Waiter, new_run_prefix

POLL_INTERVAL_S = 2.0  # Rally's and Tempest's waiters


# ------------------------------------------------------------------------------------------------ sandbox RSS
class RssSampler:
    """Peak RSS of the local sandbox's processes, sampled in the background (None when there is no sandbox)."""

    def __init__(self, every_s: float = 2.0):
        self.every_s = every_s
        self.peak_mb: float | None = None
        self.first_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        try:
            from sandbox.stack import Stack

            stack = Stack(say=lambda _message: None)
            self._stack = stack if stack.is_running() else None
        except ImportError:  # not the sandbox env: a remote cloud
            self._stack = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds each sandbox process (its whole group) has spent so far ({} without a local sandbox)."""
        if self._stack is None:
            return {}
        from sandbox.processes import cpu_seconds

        return {name: cpu_seconds(proc) for name, proc in self._stack.table.running().items()}

    def sample(self) -> float | None:
        if self._stack is None:
            return None
        total = sum(rss for _name, _pid, running, rss in self._stack.status() if running)
        self.peak_mb = max(self.peak_mb or 0.0, total)
        if self.first_mb is None:
            self.first_mb = total
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


# ------------------------------------------------------------------------------------------- polling clients
def is_reset(exc: BaseException) -> bool:
    """A connection the server reset or closed under a request (anywhere in the exception's chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            return True
        text = str(exc)
        if "Connection reset by peer" in text or "Connection aborted" in text or "RemoteDisconnected" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass
class PollOutcome:
    calls: int = 0
    failed_calls: list[str] = field(default_factory=list)  # one line per failed call
    resets: int = 0
    status: str = ""  # the server's last status: ACTIVE, ERROR, TIMEOUT, CREATE_FAILED
    deleted: bool = False

    @property
    def errors(self) -> int:
        return len(self.failed_calls) + (self.status != "ACTIVE")


class PollingClient:
    """One Rally-style user: its own connection, one server, one GET per server every 2 s."""

    def __init__(
        self,
        cloud_name: str,
        index: int,
        tracker: Tracker,
        owner_cloud,
        *,
        image_id: str,
        flavor_id: str,
        network_id: str,
        timeout_s: float,
    ):
        self.index, self.tracker, self.owner_cloud = index, tracker, owner_cloud
        self.image_id, self.flavor_id, self.network_id, self.timeout_s = image_id, flavor_id, network_id, timeout_s
        # connect_retries=0: a reset must show, as it does to Rally's and Tempest's clients.
        self.conn = openstack.connect(cloud=cloud_name, connect_retries=0)
        self.outcome = PollOutcome()

    def _call(self, fn, *args, **kwargs):
        """One API call, counted; returns (ok, result). 404 is an answer, not a failure."""
        self.outcome.calls += 1
        try:
            return True, fn(*args, **kwargs)
        except os_exc.NotFoundException:
            return True, None
        except Exception as exc:  # counted and reported, the client goes on as a waiter would retry
            status = getattr(exc, "status_code", None)
            if status is not None and status < 500:
                raise
            reset = is_reset(exc)
            self.outcome.resets += reset
            kind = "reset" if reset else (f"HTTP {status}" if status else type(exc).__name__)
            self.outcome.failed_calls.append(f"{kind}: {str(exc).splitlines()[0][:200]}")
            return False, None

    def run(self) -> PollOutcome:
        name = self.tracker.name(f"poll-{self.index:03d}")
        item = self.tracker.intent("server", name, self.owner_cloud)
        ok, server = self._call(
            self.conn.compute.create_server,
            name=name,
            image_id=self.image_id,
            flavor_id=self.flavor_id,
            networks=[{"uuid": self.network_id}],
        )
        if not ok or server is None:
            self.outcome.status = "CREATE_FAILED"
            return self.outcome
        item.bind(server.id)
        waiter = Waiter(self.timeout_s)
        status = server.status
        while status not in ("ACTIVE", "ERROR") and waiter.wait(POLL_INTERVAL_S):
            ok, found = self._call(self.conn.compute.get_server, server.id)
            if ok and found is not None:
                status = found.status
        self.outcome.status = status if status in ("ACTIVE", "ERROR") else "TIMEOUT"
        self._call(self.conn.compute.delete_server, server.id, ignore_missing=True)
        gone = Waiter(self.timeout_s)
        while gone.wait(POLL_INTERVAL_S):
            ok, found = self._call(self.conn.compute.get_server, server.id)
            if ok and found is None:
                self.outcome.deleted = True
                self.tracker.forget(item)
                break
            if ok and found is not None and found.status == "ERROR" and not found.task_state:
                self._call(self.conn.compute.delete_server, server.id, ignore_missing=True)
        return self.outcome

    def close(self) -> None:
        self.conn.close()


def run_polling_clients(cloud_name: str, owner_cloud, tracker: Tracker, count: int, **boot) -> list[PollOutcome]:
    clients = []
    try:
        # Sessions first (each authenticates on its first call), then every client starts at once.
        clients = [PollingClient(cloud_name, i, tracker, owner_cloud, **boot) for i in range(count)]
        # On Ctrl-C / SIGTERM every client's wait ends at once (conformance.interrupt); the tracker deletes what
        # they created.
        with ThreadPoolExecutor(count, thread_name_prefix="poll-client") as pool:
            return list(pool.map(PollingClient.run, clients))
    finally:
        for client in clients:
            client.close()


# ---------------------------------------------------------------------------------------- simultaneous creates
@dataclass
class CreateOutcome:
    seconds: float = 0.0  # from the common start to the answer (or to giving up)
    status: int | None = None  # the HTTP status of the answer; None: no answer (timeout or connection error)
    error: str = ""
    server_id: str | None = None


class SimultaneousCreator:
    """One client of a peer load tool: its own connection and token, one `POST /servers` when all are ready."""

    def __init__(
        self,
        cloud_name: str,
        index: int,
        tracker: Tracker,
        owner_cloud,
        *,
        image_id: str,
        flavor_id: str,
        network_id: str,
        timeout_s: float,
    ):
        self.index, self.tracker, self.owner_cloud = index, tracker, owner_cloud
        self.body = {"imageRef": image_id, "flavorRef": flavor_id, "networks": [{"uuid": network_id}]}
        self.timeout_s = timeout_s
        # No retries of any kind: a request the API tier drops or answers late must show.
        self.conn = openstack.connect(cloud=cloud_name, connect_retries=0)
        self.conn.authorize()  # the token first: the creates, not the authentications, start together
        self.conn.compute.get_endpoint()

    def run(self, start: threading.Barrier) -> CreateOutcome:
        name = self.tracker.name(f"simul-{self.index:03d}")
        item = self.tracker.intent("server", name, self.owner_cloud)
        outcome = CreateOutcome()
        start.wait()
        began = time.monotonic()
        try:
            response = self.conn.compute.post(
                "/servers", json={"server": {"name": name, **self.body}}, timeout=self.timeout_s, raise_exc=False
            )
            outcome.status = response.status_code
            if response.ok:
                outcome.server_id = response.json()["server"]["id"]
                item.bind(outcome.server_id)
            else:
                outcome.error = f"HTTP {response.status_code}: {response.text[:200]}"
        except Exception as exc:  # a timeout or a connection the server dropped: no answer
            outcome.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        outcome.seconds = time.monotonic() - began
        return outcome

    def close(self) -> None:
        self.conn.close()


def run_simultaneous_creates(
    cloud_name: str, owner_cloud, tracker: Tracker, count: int, *, timeout_s: float, wait_s: float, **boot
) -> tuple[list[CreateOutcome], dict[str, int]]:
    """`count` creates sent at the same moment; their outcomes, then the servers' statuses after waiting for them
    (one listing per 5 s, as the suite waits)."""
    clients = []
    try:
        with ThreadPoolExecutor(min(count, 20), thread_name_prefix="simul-auth") as pool:
            clients = list(
                pool.map(
                    lambda i: SimultaneousCreator(cloud_name, i, tracker, owner_cloud, timeout_s=timeout_s, **boot),
                    range(count),
                )
            )
        start = threading.Barrier(count)
        with ThreadPoolExecutor(count, thread_name_prefix="simul-create") as pool:
            outcomes = list(pool.map(lambda client: client.run(start), clients))
    finally:
        for client in clients:
            client.close()
    ids = {o.server_id for o in outcomes if o.server_id}
    statuses: dict[str, int] = {}
    waiter = Waiter(wait_s)
    while ids:
        found = {s.id: s.status for s in owner_cloud.conn.compute.servers(name=f"^{tracker.prefix}-") if s.id in ids}
        statuses = dict(Counter(found.values()))
        if all(status in ("ACTIVE", "ERROR") for status in found.values()) or not waiter.wait(5.0):
            break
    return outcomes, statuses


def summarize_creates(outcomes: list[CreateOutcome], limit_s: float = 60.0) -> dict:
    """Counts and times of simultaneous creates: answered (2xx), p50 / p95 / max seconds, over the limit."""
    times = sorted(o.seconds for o in outcomes)
    answered = sum(1 for o in outcomes if o.status is not None and 200 <= o.status < 300)
    return {
        "sent": len(outcomes),
        "answered": answered,
        "p50": round(statistics.median(times), 1) if times else None,
        "p95": round(times[min(len(times) - 1, int(0.95 * len(times)))], 1) if times else None,
        "max": round(times[-1], 1) if times else None,
        "over_limit": sum(1 for o in outcomes if o.status is None or o.seconds > limit_s),
        "errors": Counter(o.error.split(":")[0] for o in outcomes if o.error),
    }


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=5, help="consecutive bursts, K (%(default)s)")
    parser.add_argument("--size", type=int, default=100, help="servers per burst, N (%(default)s)")
    parser.add_argument("--poll-clients", type=int, default=100, help="polling clients, C (%(default)s)")
    parser.add_argument(
        "--simultaneous-creates",
        type=int,
        default=0,
        metavar="S",
        help="clients that each send one POST /servers at the same moment (%(default)s: none)",
    )
    parser.add_argument(
        "--create-timeout",
        type=float,
        default=180.0,
        help="each simultaneous create's read timeout in s (%(default)s, a peer tool's)",
    )
    parser.add_argument("--cloud", default="sandbox-zuul", help="clouds.yaml entry (default %(default)s)")
    parser.add_argument("--profile", default="sandbox", help="profile: flavor, burst concurrency and timeouts")
    args = parser.parse_args(argv)
    # SIGINT / SIGTERM stop the run at its next wait or API call; the finally blocks delete what was created.
    interrupt.install_signal_handlers()
    use_sandbox_clouds_yaml()
    profile = load_profile(args.profile)
    cloud = open_checked(args.cloud)
    flavor, network = test_node_flavor(cloud, profile), test_node_network(cloud)
    timeout_s = float(profile["burst.timeout_s"])
    shared = Tracker(new_run_prefix(), poll_interval_s=2.0)
    print(
        f"bench/sandbox_load.py: cloud {args.cloud}, flavor {flavor.describe()}, network {network.name}, "
        f"{args.bursts} burst(s) of {args.size}, {args.poll_clients} polling client(s), "
        f"{args.simultaneous_creates} simultaneous create(s), run prefix {shared.prefix}",
        flush=True,
    )
    active = errors = 0
    outcomes: list[PollOutcome] = []
    creates: dict | None = None
    with RssSampler() as rss:
        print(f"sandbox RSS at start: {_mb(rss.first_mb)}", flush=True)
        try:
            image_id = uploaded_image(cloud, shared, profile)
            for k in range(1, args.bursts + 1):
                tracker = Tracker(new_run_prefix(), poll_interval_s=2.0)
                settings = BurstSettings(
                    size=args.size,
                    concurrency=int(profile["burst.create_concurrency"]),
                    poll_interval_s=float(profile["burst.poll_interval_s"]),
                    timeout_s=timeout_s,
                )
                cpu_before = rss.cpu()
                try:
                    result = run_burst(
                        cloud, tracker, image_id=image_id, flavor_id=flavor.id, network_id=network.id, settings=settings
                    )
                    # run_burst returns after its deletes: the CPU is the whole burst's, over its whole time.
                    cpu_burst = _cpu_spent(cpu_before, rss.cpu(), result.wall_s)
                finally:
                    _report_left(tracker.cleanup(timeout_s=600))
                interrupt.check()  # a burst cut short returns what it measured; the bench stops here
                summary = result.summary()
                active, errors = active + summary["active"], errors + summary["error"]
                faults = Counter(s.fault for s in result.servers if s.status != "ACTIVE")
                print(
                    f"burst {k}/{args.bursts}: {summary['active']}/{args.size} ACTIVE, p50 {summary['p50']} s, "
                    f"p95 {summary['p95']} s, {summary['boots_per_minute']} boots/min, deleted in "
                    f"{summary['delete_s']} s, RSS {_mb(rss.sample())}"
                    + "".join(f"\n  {n} x {fault}" for fault, n in faults.items())
                    + (f"\n  CPU during the burst, boots and deletes (cores): {cpu_burst}" if cpu_burst else ""),
                    flush=True,
                )
            if args.poll_clients:
                start = time.monotonic()
                outcomes = run_polling_clients(
                    args.cloud,
                    cloud,
                    shared,
                    args.poll_clients,
                    image_id=image_id,
                    flavor_id=flavor.id,
                    network_id=network.id,
                    timeout_s=timeout_s,
                )
                statuses = Counter(o.status for o in outcomes)
                print(
                    f"polling clients: {args.poll_clients} in {time.monotonic() - start:.1f} s, "
                    f"{sum(o.calls for o in outcomes)} calls, servers {dict(statuses)}, "
                    f"{sum(len(o.failed_calls) for o in outcomes)} failed call(s), RSS {_mb(rss.sample())}",
                    flush=True,
                )
                for line, n in Counter(line for o in outcomes for line in o.failed_calls).most_common(10):
                    print(f"  {n} x {line}", flush=True)
            if args.simultaneous_creates:
                tracker = Tracker(new_run_prefix(), poll_interval_s=2.0)
                try:
                    created, statuses = run_simultaneous_creates(
                        args.cloud,
                        cloud,
                        tracker,
                        args.simultaneous_creates,
                        timeout_s=args.create_timeout,
                        wait_s=timeout_s,
                        image_id=image_id,
                        flavor_id=flavor.id,
                        network_id=network.id,
                    )
                finally:
                    _report_left(tracker.cleanup(timeout_s=600))
                creates = summarize_creates(created)
                print(
                    f"simultaneous creates: {creates['sent']} sent at once, {creates['answered']} answered, "
                    f"p50 {creates['p50']} s, p95 {creates['p95']} s, max {creates['max']} s, "
                    f"{creates['over_limit']} over 60 s or unanswered; then servers {statuses}, "
                    f"RSS {_mb(rss.sample())}"
                    + "".join(f"\n  {n} x {error}" for error, n in creates["errors"].items()),
                    flush=True,
                )
        finally:
            _report_left(shared.cleanup(timeout_s=600))
            cloud.close()
    poll_errors = sum(o.errors for o in outcomes)
    resets = sum(o.resets for o in outcomes)
    print(
        f"bursts={args.bursts} servers={args.bursts * args.size} active={active} errors={errors} "
        f"poll_clients={args.poll_clients} poll_errors={poll_errors} resets={resets} rss_mb={_mb(rss.peak_mb, '')}"
        + (
            f" simultaneous={creates['sent']} answered={creates['answered']} create_p50_s={creates['p50']} "
            f"create_max_s={creates['max']} over_60s={creates['over_limit']}"
            if creates
            else ""
        )
    )
    return 0


def _cpu_spent(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """Which sandbox process was busy: each one's CPU over `seconds` of wall time, in cores, busiest first."""
    if not before or not seconds:
        return ""
    used = {name: (after[name] - before.get(name, 0.0)) / seconds for name in after}
    busy = sorted(((name, cores) for name, cores in used.items() if cores >= 0.005), key=lambda item: -item[1])
    return f"total {sum(used.values()):.2f}: " + ", ".join(f"{name} {cores:.2f}" for name, cores in busy)


def _mb(value: float | None, unit: str = " MB") -> str:
    return "NA" if value is None else f"{value:.0f}{unit}"


def _report_left(failures) -> None:
    for failure in failures:
        print(f"LEFT: {failure}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except interrupt.Interrupted as stop:
        print(f"bench/sandbox_load.py: {stop}; what it had created was deleted", flush=True)
        sys.exit(2)
