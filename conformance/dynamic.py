"""The dynamic checks' pytest plugin (`conformance_dynamic` entry point): options, the run prefix, resource
trackers, the shared uploaded images, live progress, and the helpers every dynamic check boots servers with.

Resources are cleaned at the teardown of the fixture that tracked them (per test, or at session end for the
shared images), also after Ctrl-C and SIGTERM: the foundation plugin turns those into a stop request
(conformance.interrupt), the check under way stops at its next wait or API call, and the same teardowns run.
A cleanup that leaves something behind fails that teardown with the list of what is left: never silent.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.image.v2.image import Image

from conformance import resources
from conformance.images import MIB, make_image
from conformance.resources import RUN_KEY, CleanupError, Deadline, Tracker, call

RUN_PREFIX = pytest.StashKey[str]()
WORKER_KEY = "conformance_run_prefix"
SINGLE_BOOT_POLL_S = 2.0
PROGRESS_EVERY_S = 10.0  # a progress line this often when the output is not a terminal (a pipe, a log)


# ------------------------------------------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance-dynamic", "conformance dynamic checks (they create resources)")
    group.addoption("--burst-size", dest="conformance_burst_size", type=int, metavar="N", default=None,
                    help="boot a smaller burst than the profile's burst.size (an opt-out the report shows)")
    group.addoption("--burst-timeout", dest="conformance_burst_timeout", type=float, metavar="SECONDS",
                    default=None, help="override the profile's burst.timeout_s (boot and delete waits)")
    group.addoption("--network", dest="conformance_network", metavar="NAME|ID", default=None,
                    help="network for test nodes (default: provider network in provider mode, else the "
                         "project's own network)")
    group.addoption("--probe-reachability", dest="conformance_probe_reachability", action="store_true",
                    default=False, help="R6: also TCP-connect to port 22 of the public address (off by "
                                        "default; needs a guest that boots and answers)")
    group.addoption("--progress-interval", dest="conformance_progress_interval", type=float, metavar="SECONDS",
                    default=float(os.environ.get("CONFORMANCE_PROGRESS_INTERVAL") or PROGRESS_EVERY_S),
                    help="when the output is not a terminal (a pipe, a log file), write the burst's progress "
                         "line at most this often; 0: at every poll. Env CONFORMANCE_PROGRESS_INTERVAL; "
                         "default: %(default)s")
    group.addoption("--probe-image", dest="conformance_probe_image", metavar="NAME|ID", default=None,
                    help="R5/R11: an existing image with cloud-init for the in-guest probe (default: the "
                         "suite's uploaded image, which only an emulating cloud answers for)")


def _active(config: pytest.Config) -> bool:
    from conformance import plugin

    return plugin._active(config)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get(WORKER_KEY):
        config.stash[RUN_PREFIX] = workerinput[WORKER_KEY]
    else:
        config.stash[RUN_PREFIX] = resources.new_run_prefix()


def pytest_report_header(config: pytest.Config) -> str | None:
    if _active(config):
        return (f"conformance run prefix: {config.stash[RUN_PREFIX]} (every resource the run creates is named "
                "with it)")
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: every worker names its resources with the controller's run prefix."""
    node.workerinput[WORKER_KEY] = node.config.stash[RUN_PREFIX]


_UNCLEANED: list[resources.CleanupFailure] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    # Last resort (a fixture teardown that never ran): anything still tracked is deleted now.
    if _active(config) and resources.live_trackers():
        failures = resources.cleanup_all()
        if failures:
            sys.__stderr__.write(str(CleanupError(failures)) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    if not _active(config) or hasattr(config, "workerinput"):
        return
    prefix = config.stash.get(RUN_PREFIX, "")
    if _UNCLEANED:
        terminalreporter.write_line(f"conformance cleanup: {len(_UNCLEANED)} resource(s) of run {prefix} "
                                    "could not be deleted (`python -m conformance cleanup` sweeps them):",
                                    red=True, bold=True)
        for failure in _UNCLEANED:
            terminalreporter.write_line(f"  {failure}", red=True)
    elif getattr(config.option, "dist", "no") == "no":
        # Under xdist the workers clean up; their failures show as teardown errors of the checks.
        terminalreporter.write_line(f"conformance cleanup: run {prefix}: every resource the run created "
                                    "was deleted")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def run_prefix(pytestconfig) -> str:
    """`conformance-<UTC timestamp>-<6 hex>`: every resource of this run is named with it."""
    return pytestconfig.stash[RUN_PREFIX]


@pytest.fixture(scope="session")
def run_id(run_prefix) -> str:
    return run_prefix


def _finish(tracker: Tracker) -> None:
    failures = tracker.cleanup()
    if failures:
        _UNCLEANED.extend(failures)
        raise CleanupError(failures)


@pytest.fixture(scope="session")
def session_tracker(run_prefix, profile):
    """Resources shared by the whole run (the uploaded images): deleted at session end."""
    tracker = Tracker(run_prefix, delete_timeout_s=_delete_timeout(profile),
                      poll_interval_s=_interval(profile))
    yield tracker
    _finish(tracker)


@pytest.fixture
def tracker(run_prefix, profile):
    """Resources of one check: deleted in dependency order at its teardown, pass or fail."""
    tracker = Tracker(run_prefix, delete_timeout_s=_delete_timeout(profile),
                      poll_interval_s=_interval(profile))
    yield tracker
    _finish(tracker)


def _interval(profile) -> float:
    return min(float(profile.get("burst.poll_interval_s", 5)), SINGLE_BOOT_POLL_S)


def _delete_timeout(profile) -> float:
    return float(profile.get("burst.timeout_s", 1800))


@pytest.fixture(scope="session")
def image_file(tmp_path_factory, profile):
    """The suite's own small qcow2 (profile image.size_mb of allocated data)."""
    return make_image(tmp_path_factory.mktemp("image"), int(profile["image.size_mb"]))


@dataclass
class UploadedImage:
    scope: str
    id: str | None = None
    name: str = ""
    upload_s: float | None = None
    active_s: float | None = None
    size: int | None = None
    checksum: str | None = None
    os_hash_value: str | None = None
    status: str = ""
    error: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return bool(self.id) and self.status == "active" and not self.error


class ImageCache:
    """One upload per project and region per run, shared by every check that boots (R2 measures it)."""

    def __init__(self, tracker: Tracker, image_file, timeout_s: float):
        self.tracker, self.file, self.timeout_s = tracker, image_file, timeout_s
        self._images: dict[str, UploadedImage] = {}

    def get(self, cloud) -> UploadedImage:
        if cloud.scope not in self._images:
            self._images[cloud.scope] = upload_image(cloud, self.tracker, self.file, self.timeout_s)
        return self._images[cloud.scope]


@pytest.fixture(scope="session")
def images(session_tracker, image_file, profile) -> ImageCache:
    return ImageCache(session_tracker, image_file, float(profile["image.max_upload_s"]) * 2)


@pytest.fixture(scope="session")
def zuul_image(images, zuul) -> UploadedImage:
    return images.get(zuul)


def require_image(image: UploadedImage) -> str:
    """The image id for a boot; skips the check (cannot decide) when the upload itself failed (R2's FAIL)."""
    if not image.usable:
        pytest.skip(f"no image to boot: the upload failed ({image.error or image.status}; see R2)")
    return image.id


def upload_image(cloud, tracker: Tracker, image_file, timeout_s: float) -> UploadedImage:
    """Create, upload and wait for `active`; verify size and hashes against the local file."""
    conn = cloud.conn
    name = tracker.name(f"image-{cloud.role}")
    result = UploadedImage(scope=cloud.scope, name=name)
    item = tracker.intent("image", name, cloud)
    start = time.monotonic()
    try:
        # The record, then the data (two calls, as Glance's API has it): the upload is timed on its own.
        # Unknown attributes become image properties, so the run prefix is both a tag and a property.
        record = Image.new(name=name, disk_format=image_file.disk_format, container_format="bare",
                           visibility="private", tags=[tracker.prefix], **{RUN_KEY: tracker.prefix})
        image = call(cloud, record.create, conn.image)
        item.bind(image)
        result.id = image.id
        upload_start = time.monotonic()
        with open(image_file.path, "rb") as data:
            # Not retried: a retry would resend a half-consumed stream.
            image.upload(conn.image, data=data, size=image_file.size)
        result.upload_s = time.monotonic() - upload_start
        deadline = Deadline(timeout_s)
        state = {}

        def active() -> bool:
            state["image"] = call(cloud, conn.image.get_image, image.id)
            if state["image"].status in ("killed", "deleted", "deactivated"):
                raise RuntimeError(f"image went {state['image'].status}")
            return state["image"].status == "active"

        ok = deadline.poll(active, 1.0)
        image = state.get("image", image)
        result.active_s = time.monotonic() - start
        result.status = image.status
        result.size, result.checksum, result.os_hash_value = image.size, image.checksum, image.hash_value
        if not ok:
            result.error = f"not active after {timeout_s:.0f} s (status {image.status})"
        if result.size != image_file.size:
            result.problems.append(f"size {result.size} != uploaded {image_file.size}")
        if result.checksum and result.checksum != image_file.md5:
            result.problems.append("checksum (md5) differs from the uploaded data")
        algo = getattr(image, "hash_algo", None)
        if result.os_hash_value and algo == "sha512" and result.os_hash_value != image_file.sha512:
            result.problems.append("os_hash_value (sha512) differs from the uploaded data")
        if not (result.checksum or result.os_hash_value):
            result.problems.append("Glance reported neither checksum nor os_hash_value")
    except (os_exc.HttpException, ksa_exc.HttpError) as exc:
        status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
        result.error = f"HTTP {status}: {first_line(exc)}"
        result.status = result.status or "failed"
    return result


def mb_per_s(size: int | None, seconds: float | None) -> float | None:
    if not size or not seconds:
        return None
    return round(size / MIB / seconds, 2)


# ------------------------------------------------------------------------------------------ cloud helpers
def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def find_flavor(cloud, spec: dict, allow_zero_disk: bool = False):
    """The smallest flavor meeting `spec` (the cloud layer's choice), or skip when none does (R4 says why)."""
    from conformance.cloud import choose_flavor

    choice = choose_flavor(cloud.flavors(), spec, allow_zero_disk)
    if choice.best is None or choice.boot_from_volume:
        why = "; ".join(choice.shortfalls) or "no flavor with local disk"
        pytest.skip(f"no flavor meets {spec} ({why}; see R4)")
    return choice.best


def node_flavor(cloud, profile):
    spec = {k: profile[f"flavor.{k}"] for k in ("min_ram_mb", "min_vcpus", "min_disk_gb")}
    return find_flavor(cloud, spec)


def external_networks(cloud) -> list:
    return [n for n in call(cloud, lambda: list(cloud.conn.network.networks(is_router_external=True)))]


def project_network(cloud, option: str | None = None):
    """The network test nodes boot on: --network, else the project's own (non-external) network."""
    conn = cloud.conn
    networks = call(cloud, lambda: list(conn.network.networks()))
    if option:
        for net in networks:
            if option in (net.id, net.name):
                return net
        pytest.fail(f"--network {option}: no such network visible to {cloud.scope}", pytrace=False)
    usable = [n for n in networks if not n.is_router_external and n.subnet_ids]
    own = [n for n in usable if n.project_id == cloud.project_id]
    shared = [n for n in usable if n.is_shared]
    candidates = own or shared
    if not candidates:
        pytest.skip(f"no network for test nodes in {cloud.scope} (pass --network)")
    return sorted(candidates, key=lambda n: n.name or "")[0]


def boot_server(cloud, tracker: Tracker, suffix: str, *, image_id: str, flavor_id: str,
                network_id: str | None, timeout_s: float, interval_s: float = SINGLE_BOOT_POLL_S,
                **create_kwargs):
    """Boot one server and wait for ACTIVE (one GET per tick: a single server). Returns (server, seconds).
    Raises BootFailed with the fault on ERROR or timeout; the server stays tracked for cleanup."""
    conn = cloud.conn
    name = tracker.name(suffix)
    item = tracker.intent("server", name, cloud)
    metadata = {RUN_KEY: tracker.prefix, **create_kwargs.pop("metadata", {})}
    networks = [{"uuid": network_id}] if network_id else "auto"
    start = time.monotonic()
    server = call(cloud, conn.compute.create_server, name=name, image_id=image_id, flavor_id=flavor_id,
                  networks=networks, metadata=metadata, **create_kwargs)
    item.bind(server)
    state = {"server": server}

    def settled() -> bool:
        state["server"] = call(cloud, conn.compute.get_server, server.id)
        return state["server"].status in ("ACTIVE", "ERROR")

    ok = Deadline(timeout_s).poll(settled, interval_s)
    server = state["server"]
    seconds = time.monotonic() - start
    if server.status == "ERROR":
        from conformance.burst import fault_text
        raise BootFailed(f"server {name} went ERROR: {fault_text(server.fault) or 'no fault message'}")
    if not ok:
        raise BootFailed(f"server {name} not ACTIVE after {timeout_s:.0f} s (status {server.status})")
    return server, seconds


class BootFailed(Exception):
    pass


def delete_and_wait(tracker: Tracker, item_or_kind, timeout_s: float) -> float:
    """Run the tracker's deleter for one kind now (a check that measures deletion); returns seconds."""
    start = time.monotonic()
    failures = tracker_cleanup_kind(tracker, item_or_kind, timeout_s)
    if failures:
        raise CleanupError(failures)
    return time.monotonic() - start


def tracker_cleanup_kind(tracker: Tracker, kind: str, timeout_s: float):
    items = [i for i in tracker.pending() if i.kind == kind]
    if not items:
        return []
    return resources.DELETERS[kind](items, Deadline(timeout_s), tracker.poll_interval_s, tracker.prefix)


def server_addresses(server) -> list[dict]:
    """[{addr, version, type ('fixed'|'floating'), network}] from a server's `addresses`."""
    found = []
    for network, entries in (server.addresses or {}).items():
        for entry in entries or []:
            found.append({"addr": entry.get("addr"), "version": entry.get("version"),
                          "type": entry.get("OS-EXT-IPS:type", "fixed"), "network": network})
    return found


# ----------------------------------------------------------------------------------------------- progress
def progress_writer(config: pytest.Config, every_s: float | None = None):
    """A function writing the burst's live line: rewritten in place on a terminal, one flushed line every
    `every_s` (--progress-interval) otherwise: a pipe, a file, tox's or Zuul's console log. Silent in xdist
    workers (their output does not reach the terminal). Call from the main thread (it suspends pytest's output
    capture)."""
    if every_s is None:
        every_s = config.getoption("conformance_progress_interval", PROGRESS_EVERY_S)
    if hasattr(config, "workerinput"):
        silent = lambda line: None  # noqa: E731
        silent.done = lambda: None
        return silent
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    tty = bool(reporter.isatty) if reporter is not None else sys.__stderr__.isatty()
    last = {"t": None, "line": "", "shown": True}

    def out(line: str, rewrite: bool = False, end: bool = False) -> None:
        # While a check runs, pytest points descriptors 1 and 2 at temporary files (its capture): the terminal
        # reporter's stream is reached with capturing suspended, as pytest's own live logging does. A pipe is
        # block-buffered, so every line is flushed: without that it left only with the run's last output.
        suspended = capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()
        with suspended:
            if reporter is None:
                sys.__stderr__.write(line + "\n")
                sys.__stderr__.flush()
                return
            if rewrite:
                reporter.rewrite(line, erase=True)
                if end:
                    reporter.write_line("")
            else:
                reporter.write_line(line)
            reporter.flush()

    def write(line: str) -> None:
        now = time.monotonic()
        last["line"], last["shown"] = line, False
        if tty:
            out(line, rewrite=True)
        elif last["t"] is None or now - last["t"] >= every_s:
            last["t"], last["shown"] = now, True
            out(line)

    def done() -> None:
        """The final state: ends the rewritten line on a terminal, or shows the last line if it was not yet."""
        if last["line"] and (tty or not last["shown"]):
            out(last["line"], rewrite=tty, end=tty)
            last["shown"] = True

    write.done = done
    return write


# ------------------------------------------------------------------------------------------ guest probe
PROBE_MARKER = "conformance-probe"
PROBE_KEYS = ("nproc", "memtotal_kb", "cpu_mhz", "cpu_model", "steal_percent", "bench_score")
_PROBE_RE = re.compile(rf"{PROBE_MARKER}: (?P<key>[a-z_0-9]+)=(?P<value>[^\r\n]*)")

# cloud-init runs a user-data that starts with #! as a script at first boot; its lines go to the serial
# console, which Nova's console-output API returns. The benchmark loads every vCPU so steal is measured
# under load: steal is what the hypervisor takes from a busy guest.
PROBE_USER_DATA = r"""#!/bin/sh
# conformance-probe: facts about this guest for the OpenStack conformance suite (R5 cpu, R11 overcommit)
say() { line="conformance-probe: $1"; echo "$line"
  for t in /dev/ttyS0 /dev/console; do [ -w "$t" ] && echo "$line" > "$t"; done; }
n=$(nproc); say "nproc=$n"
say "memtotal_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
say "cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
say "cpu_mhz=$(awk -F': *' '/^cpu MHz/ {print $2; exit}' /proc/cpuinfo)"
cpu() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
set -- $(cpu); t0=$1; s0=$2; start=$(date +%s%N)
i=0; while [ $i -lt $n ]; do
  dd if=/dev/zero bs=1M count=512 2>/dev/null | sha256sum >/dev/null & i=$((i+1)); done
wait; end=$(date +%s%N); set -- $(cpu); t1=$1; s1=$2
say "steal_percent=$(awk -v a=$((s1-s0)) -v b=$((t1-t0)) 'BEGIN {printf "%.1f", (b>0 ? 100*a/b : 0)}')"
say "bench_score=$(awk -v n=$n -v ns=$((end-start)) 'BEGIN {printf "%.0f", n*512/(ns/1e9)}')"
"""


def probe_user_data_b64() -> str:
    return base64.b64encode(PROBE_USER_DATA.encode()).decode()


def parse_probe(console: str) -> dict[str, str]:
    """The last value of each `conformance-probe: key=value` line (the script echoes to several ttys)."""
    facts: dict[str, str] = {}
    for match in _PROBE_RE.finditer(console or ""):
        facts[match.group("key")] = match.group("value").strip()
    return facts


def probe_complete(facts: dict[str, str]) -> bool:
    return all(k in facts for k in PROBE_KEYS)


@dataclass
class NodeSetup:
    """What a test node boots with: the run's image, the smallest R4 flavor, the network."""

    image_id: str
    flavor: Any
    network: Any


def node_setup(cloud, profile, images: ImageCache, config: pytest.Config, network=None) -> NodeSetup:
    image_id = require_image(images.get(cloud))
    flavor = node_flavor(cloud, profile)
    network = network or project_network(cloud, config.getoption("conformance_network"))
    return NodeSetup(image_id, flavor, network)


def boot_timeout(profile) -> float:
    """One server: the burst's p95 SLA is the most a single boot may reasonably take."""
    return float(profile.get("burst.max_p95_boot_s", 600))
