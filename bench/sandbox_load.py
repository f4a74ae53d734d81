"""Benchmark: the sandbox cloud under the load a conformance run and its peers put on it.

Against a running sandbox (or any cloud in clouds.yaml), in one process:
  (a) K consecutive bursts of N test-node servers through the suite's own burst code (conformance.burst:
      bounded create pool, one bulk listing per tick, bulk delete);
  (b) C client threads, each with its own connection (its own keep-alive socket, no retries: the way Rally
      and Tempest wait), each booting one server, polling it with its own `GET /servers/{id}` every 2 s until
      ACTIVE, deleting it and polling until it is gone.
It samples the sandbox's RSS (every process `up` started) while it runs, and prints per burst and per phase
what it saw. The last line is machine-readable:

  bursts=<K> servers=<K*N> active=<a> errors=<e> poll_clients=<C> poll_errors=<p> resets=<r> rss_mb=<m>

`errors` are burst servers that did not become ACTIVE; `poll_errors` are what the polling clients saw go
wrong (a failed call: connection error or HTTP 5xx, or a server that went ERROR or never became ACTIVE);
`resets` are the failed calls whose connection was reset or aborted by the server; `rss_mb` is the sandbox's
peak RSS during the run ("NA" for a cloud that is not the local sandbox).

Run it inside the sandbox env against a running sandbox:
  tox -e sandbox -- up
  .tox/sandbox/bin/python bench/sandbox_load.py --bursts 5 --size 100 --poll-clients 100
"""

from __future__ import annotations

import argparse
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

    def __init__(self, cloud_name: str, index: int, tracker: Tracker, owner_cloud, *, image_id: str,
                 flavor_id: str, network_id: str, timeout_s: float):
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
        ok, server = self._call(self.conn.compute.create_server, name=name, image_id=self.image_id,
                                flavor_id=self.flavor_id, networks=[{"uuid": self.network_id}])
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


# ------------------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bursts", type=int, default=5, help="consecutive bursts, K (%(default)s)")
    parser.add_argument("--size", type=int, default=100, help="servers per burst, N (%(default)s)")
    parser.add_argument("--poll-clients", type=int, default=100, help="polling clients, C (%(default)s)")
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
    print(f"bench/sandbox_load.py: cloud {args.cloud}, flavor {flavor.describe()}, network {network.name}, "
          f"{args.bursts} burst(s) of {args.size}, {args.poll_clients} polling client(s), run prefix "
          f"{shared.prefix}", flush=True)
    active = errors = 0
    outcomes: list[PollOutcome] = []
    with RssSampler() as rss:
        print(f"sandbox RSS at start: {_mb(rss.first_mb)}", flush=True)
        try:
            image_id = uploaded_image(cloud, shared, profile)
            for k in range(1, args.bursts + 1):
                tracker = Tracker(new_run_prefix(), poll_interval_s=2.0)
                settings = BurstSettings(size=args.size, concurrency=int(profile["burst.create_concurrency"]),
                                         poll_interval_s=float(profile["burst.poll_interval_s"]),
                                         timeout_s=timeout_s)
                try:
                    result = run_burst(cloud, tracker, image_id=image_id, flavor_id=flavor.id,
                                       network_id=network.id, settings=settings)
                finally:
                    _report_left(tracker.cleanup(timeout_s=600))
                interrupt.check()  # a burst cut short returns what it measured; the bench stops here
                summary = result.summary()
                active, errors = active + summary["active"], errors + summary["error"]
                faults = Counter(s.fault for s in result.servers if s.status != "ACTIVE")
                print(f"burst {k}/{args.bursts}: {summary['active']}/{args.size} ACTIVE, p50 {summary['p50']} s, "
                      f"p95 {summary['p95']} s, {summary['boots_per_minute']} boots/min, deleted in "
                      f"{summary['delete_s']} s, RSS {_mb(rss.sample())}"
                      + "".join(f"\n  {n} x {fault}" for fault, n in faults.items()), flush=True)
            if args.poll_clients:
                start = time.monotonic()
                outcomes = run_polling_clients(args.cloud, cloud, shared, args.poll_clients, image_id=image_id,
                                               flavor_id=flavor.id, network_id=network.id, timeout_s=timeout_s)
                statuses = Counter(o.status for o in outcomes)
                print(f"polling clients: {args.poll_clients} in {time.monotonic() - start:.1f} s, "
                      f"{sum(o.calls for o in outcomes)} calls, servers {dict(statuses)}, "
                      f"{sum(len(o.failed_calls) for o in outcomes)} failed call(s), RSS {_mb(rss.sample())}",
                      flush=True)
                for line, n in Counter(line for o in outcomes for line in o.failed_calls).most_common(10):
                    print(f"  {n} x {line}", flush=True)
        finally:
            _report_left(shared.cleanup(timeout_s=600))
            cloud.close()
    poll_errors = sum(o.errors for o in outcomes)
    resets = sum(o.resets for o in outcomes)
    print(f"bursts={args.bursts} servers={args.bursts * args.size} active={active} errors={errors} "
          f"poll_clients={args.poll_clients} poll_errors={poll_errors} resets={resets} rss_mb={_mb(rss.peak_mb, '')}")
    return 0


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
