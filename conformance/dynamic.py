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
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.image.v2.image import Image

from conformance import resources
from conformance.cloud import Busy, api_error_text
from conformance.images import MIB, make_image
from conformance.resources import (
    RUN_KEY,
    CleanupError,
    Deadline,
    Tracker,
    attached_volume_ids,
    boot_disk,
    call,
)

RUN_PREFIX = pytest.StashKey[str]()
_LEASE = pytest.StashKey[resources.Lease]()
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
                    default=False, help="R6: boot the node from the probe image (--probe-image) and complete an "
                                        "SSH handshake with its public address (off by default)")
    group.addoption("--progress-interval", dest="conformance_progress_interval", type=float, metavar="SECONDS",
                    default=float(os.environ.get("CONFORMANCE_PROGRESS_INTERVAL") or PROGRESS_EVERY_S),
                    help="when the output is not a terminal (a pipe, a log file), write the burst's progress "
                         "line at most this often; 0: at every poll. Env CONFORMANCE_PROGRESS_INTERVAL; "
                         "default: %(default)s")
    group.addoption("--probe-image", dest="conformance_probe_image", metavar="NAME|ID|none",
                    default=os.environ.get("CONFORMANCE_PROBE_IMAGE") or None,
                    help="R5/R11's probe node and R6's --probe-reachability node: an existing image with cloud-init "
                         "and sshd (default: the profile's probe.image when the cloud has it, else the suite's "
                         "own image, which has no OS: only an emulating cloud answers for it; `none`: always "
                         "the suite's own image). Env CONFORMANCE_PROBE_IMAGE")


def _active(config: pytest.Config) -> bool:
    from conformance import plugin

    return plugin._active(config)


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get(WORKER_KEY):
        config.stash[RUN_PREFIX] = workerinput[WORKER_KEY]
    else:
        config.stash[RUN_PREFIX] = _chosen_run_prefix()
    from conformance import plugin

    # The foundation plugin's own state may not be set yet (hook order): ask the same question it asks.
    if plugin.runs_checks(config) and not config.getoption("help", False):
        worker = (workerinput or {}).get("workerid")
        config.stash[_LEASE] = resources.Lease(config.stash[RUN_PREFIX], f"lease-{worker}" if worker else "lease")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """A bad CONFORMANCE_RUN_PREFIX is bad input: one line before anything else is checked or created."""
    _chosen_run_prefix()


def _chosen_run_prefix() -> str:
    """CONFORMANCE_RUN_PREFIX when the caller names the run (the Zuul job does, so that its cleanup-run can
    sweep the run whatever happened to it), else a new prefix."""
    given = os.environ.get("CONFORMANCE_RUN_PREFIX", "").strip()
    if not given:
        return resources.new_run_prefix()
    if resources.prefix_of(given) != given:
        raise pytest.UsageError(f"CONFORMANCE_RUN_PREFIX={given!r} is not a run prefix "
                                "(conformance-<YYYYmmddTHHMMSSZ>-<6 hex digits>)")
    return given


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
    lease = config.stash.get(_LEASE, None)
    if lease is not None:  # after every other cleanup: until now, the sweeper had to leave this run alone
        failures = lease.release()
        if failures:
            sys.__stderr__.write(str(CleanupError(failures)) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    from conformance.plugin import inspect_only

    if not _active(config) or hasattr(config, "workerinput") or inspect_only(config):
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
def session_tracker(run_prefix, profile, pytestconfig):
    """Resources shared by the whole run (the uploaded images): deleted at session end."""
    tracker = Tracker(run_prefix, delete_timeout_s=_delete_timeout(profile),
                      poll_interval_s=_interval(profile), lease=pytestconfig.stash.get(_LEASE, None))
    yield tracker
    _finish(tracker)


@pytest.fixture
def tracker(run_prefix, profile, pytestconfig):
    """Resources of one check: deleted in dependency order at its teardown, pass or fail."""
    tracker = Tracker(run_prefix, delete_timeout_s=_delete_timeout(profile),
                      poll_interval_s=_interval(profile), lease=pytestconfig.stash.get(_LEASE, None))
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
    name = tracker.name(f"image-{cloud.role}", cloud)
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
        send_image_data(cloud, image, image_file)
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
    except (os_exc.SDKException, ksa_exc.ClientException, requests.RequestException) as exc:
        # Quoted as the API said it (after the cloud layer's retries); the image, if created, stays tracked.
        result.error = api_error_text(exc) or first_line(exc)
        result.status = result.status or "failed"
    return result


class ImageData:
    """The image file as a request body that can be sent again: every iteration reads it from the start
    (keystoneauth itself re-sends the body once when a connection breaks; a half-read file would send a
    truncated image). Its length gives the request its Content-Length."""

    def __init__(self, path, size: int, chunk: int = MIB):
        self.path, self.size, self.chunk = path, size, chunk

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        with open(self.path, "rb") as data:
            while block := data.read(self.chunk):
                yield block


UPLOAD_IN_PROGRESS = ("saving", "uploading", "importing")


def send_image_data(cloud, image, image_file) -> None:
    """PUT the image data, through the cloud layer's retries: a 429/502/503/504 or a broken connection is
    retried with the data sent again from its start. After a broken attempt Glance may still be undoing it
    (409 while `saving`: retried later) or may have finished it (`active`: done)."""
    conn = cloud.conn

    def once():
        response = image.upload(conn.image, data=ImageData(image_file.path, image_file.size),
                                size=image_file.size)
        if response.status_code < 400:
            return
        if response.status_code == 409:
            status = conn.image.get_image(image.id).status
            if status == "active":
                return
            if status in UPLOAD_IN_PROGRESS:
                raise Busy(response)
        os_exc.raise_from_response(response)

    call(cloud, once)


def mb_per_s(size: int | None, seconds: float | None) -> float | None:
    if not size or not seconds:
        return None
    return round(size / MIB / seconds, 2)


# ------------------------------------------------------------------------------------------ cloud helpers
def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def find_flavor(cloud, spec: dict, allow_zero_disk: bool = False):
    """R4's choice: the smallest flavor meeting `spec` (a disk-0 one only when `allow_zero_disk`: its nodes
    boot from a volume), or skip when none does (R4 says why). Returns the cloud layer's FlavorChoice."""
    from conformance.cloud import choose_flavor

    choice = choose_flavor(cloud.flavors(), spec, allow_zero_disk)
    if choice.best is None:
        why = "; ".join(choice.shortfalls) or "the project sees no flavors"
        pytest.skip(f"no flavor meets {spec} ({why}; see R4)")
    return choice


def node_flavor(cloud, profile):
    """The test-node flavor (R4's choice) and the boot volume size its nodes need: the profile's min_disk_gb
    when the flavor has disk 0 and the profile allows boot from volume, else None (local disk)."""
    spec = {k: profile[f"flavor.{k}"] for k in ("min_ram_mb", "min_vcpus", "min_disk_gb")}
    choice = find_flavor(cloud, spec, bool(profile.get("flavor.allow_boot_from_volume", False)))
    return choice.best, (int(spec["min_disk_gb"]) if choice.boot_from_volume else None)


def external_networks(cloud) -> list:
    return [n for n in call(cloud, lambda: list(cloud.conn.network.networks(is_router_external=True)))]


def public_ip_mode(profile, externals: list) -> str:
    """How R6 gives a test node its public address: the profile's public_ip.mode, `auto` decided by the cloud
    (a shared external network: nodes boot on it, `provider`; else a floating IP from it, `floating`)."""
    mode = profile["public_ip.mode"]
    if mode == "auto":
        mode = "provider" if any(n.is_shared for n in externals) else "floating"
    return mode


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
                volume_size_gb: int | None = None, **create_kwargs):
    """Boot one server (from a new volume of `volume_size_gb` when given) and wait for ACTIVE (one GET per tick:
    a single server). Returns (server, seconds). Raises BootFailed with the fault on ERROR or timeout; the
    server and its boot volume stay tracked for cleanup."""
    conn = cloud.conn
    name = tracker.name(suffix, cloud)
    item = tracker.intent("server", name, cloud)
    metadata = {RUN_KEY: tracker.prefix, **create_kwargs.pop("metadata", {})}
    networks = [{"uuid": network_id}] if network_id else "auto"
    disk, volume = boot_disk(tracker, cloud, name, image_id, volume_size_gb)
    start = time.monotonic()
    server = call(cloud, conn.compute.create_server, name=name, flavor_id=flavor_id, networks=networks,
                  metadata=metadata, **disk, **create_kwargs)
    item.bind(server)
    state = {"server": server}

    def settled() -> bool:
        state["server"] = call(cloud, conn.compute.get_server, server.id)
        if volume is not None and volume.id is None:
            volume.id = next(iter(attached_volume_ids(state["server"])), None)
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


# ------------------------------------------------------------------------------------------ probe image
@dataclass
class ProbeImage:
    """An image of the cloud's with an OS (cloud-init, sshd): what R5/R11 read facts from and R6 reaches."""

    id: str
    name: str
    source: str  # "--probe-image" or "profile probe.image"

    def describe(self) -> dict:
        return {"id": self.id, "name": self.name, "source": self.source}


OWN_IMAGE = "none"  # --probe-image none: the suite's own image, even when the profile names one


def probe_image(cloud, profile, config: pytest.Config) -> tuple[ProbeImage | None, str]:
    """The image probe nodes boot: --probe-image, else the profile's probe.image when the cloud has it. Returns
    (image or None for the suite's own image, a note on why when a profile's image was not used)."""
    chosen = config.getoption("conformance_probe_image")
    if chosen == OWN_IMAGE:
        return None, ""
    name, source = (chosen, "--probe-image") if chosen else (profile.get("probe.image"), "profile probe.image")
    if not name:
        return None, ""
    # By id, else by name; not find_image, whose own name search warns of a deprecation in openstacksdk itself.
    found = [i for i in call(cloud, lambda: list(cloud.conn.image.images())) if name in (i.id, i.name)]
    if len(found) != 1:
        why = "no such image" if not found else f"{len(found)} images have that name"
        if chosen:
            pytest.fail(f"--probe-image {name}: {why} visible to {cloud.scope}", pytrace=False)
        return None, f"the profile's probe image {name} is not in {cloud.scope} ({why}): the suite's own image instead"
    return ProbeImage(found[0].id, found[0].name, source), ""


def ssh_handshake(addr: str, port: int = 22, timeout_s: float = 10.0) -> tuple[str | None, str]:
    """One SSH key exchange with addr:port (ssh-keyscan: no login, no key of ours). Returns (the host key's type
    or None, what went wrong)."""
    keyscan = shutil.which("ssh-keyscan")
    if not keyscan:
        return None, "ssh-keyscan not found (package openssh-client)"
    try:
        done = subprocess.run([keyscan, "-T", str(int(timeout_s)), "-p", str(port), addr], capture_output=True,
                              text=True, timeout=timeout_s + 5)
    except subprocess.TimeoutExpired:
        return None, f"no SSH handshake with {addr}:{port} within {timeout_s:.0f} s"
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            return fields[1], ""
    return None, first_line(Exception(done.stderr.strip() or f"no SSH host key from {addr}:{port}"))


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
v=$(systemd-detect-virt 2>/dev/null); say "virt=${v:-unknown}"; say "kernel=$(uname -r)"
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


# What systemd-detect-virt names -> how a report says it. "qemu" is QEMU without hardware virtualisation (TCG):
# it emulates every instruction, and has no steal clock.
VIRT_NAMES = {"qemu": "QEMU TCG", "kvm": "KVM", "xen": "Xen", "vmware": "VMware", "microsoft": "Hyper-V",
              "amazon": "AWS Nitro", "none": "no hypervisor"}
NO_STEAL_CLOCK = {"qemu": "QEMU TCG (software emulation) has no steal clock: steal reads 0 whatever the host does"}


def guest_kind(facts: dict[str, str]) -> str:
    """What answered the probe: a cloud's guest emulation (the sandbox's fake nodes), or a real guest and its
    hypervisor ("real guest (QEMU TCG)")."""
    if facts.get("emulated"):
        return f"measured by the {facts['emulated']} guest emulation, not a real guest"
    virt = facts.get("virt", "unknown")
    return f"real guest ({VIRT_NAMES.get(virt, virt)})" if virt != "unknown" else "real guest"


@dataclass
class NodeSetup:
    """What a test node boots with: the run's image, the smallest R4 flavor, the network, and the size of the
    volume it boots from (None: the flavor's local disk)."""

    image_id: str
    flavor: Any
    network: Any
    volume_size_gb: int | None = None

    def describe(self) -> dict:
        """For a result's data: how the node booted."""
        return {"flavor": self.flavor.name, "boot_from_volume": bool(self.volume_size_gb),
                "volume_size_gb": self.volume_size_gb}


def node_setup(cloud, profile, images: ImageCache, config: pytest.Config, network=None) -> NodeSetup:
    image_id = require_image(images.get(cloud))
    flavor, volume_size_gb = node_flavor(cloud, profile)
    network = network or project_network(cloud, config.getoption("conformance_network"))
    return NodeSetup(image_id, flavor, network, volume_size_gb)


def boot_timeout(profile) -> float:
    """One server: the burst's p95 SLA is the most a single boot may reasonably take."""
    return float(profile.get("burst.max_p95_boot_s", 600))
