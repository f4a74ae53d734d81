"""The plugin's dynamic part: the dynamic checks' options, the run prefix, the run's lease, resource trackers and
the shared uploaded images.

Resources are cleaned at the teardown of the fixture that tracked them (per test, or at session end for the
shared images), also after Ctrl-C and SIGTERM: the main part turns those into a stop request
(conformance.interrupt), the check under way stops at its next wait or API call, and the same teardowns run.
A cleanup that leaves something behind fails that teardown with the list of what is left: never silent.

What the checks boot with is conformance.nodes, the image and its upload conformance.images, the guest probe
conformance.probe, the burst's live line conformance.progress.
"""

from __future__ import annotations

import os
import sys

import pytest

from conformance import resources, state
from conformance.images import ImageCache, UploadedImage, make_image
from conformance.nodes import SINGLE_BOOT_POLL_S
from conformance.progress import PROGRESS_EVERY_S
from conformance.resources import CleanupError, Tracker

WORKER_KEY = "conformance_run_prefix"


# ------------------------------------------------------------------------------------------------- options
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance-dynamic", "conformance dynamic checks (they create resources)")
    group.addoption(
        "--burst-size",
        dest="conformance_burst_size",
        type=int,
        metavar="N",
        default=None,
        help="boot a smaller burst than the profile's burst.size (an opt-out the report shows)",
    )
    group.addoption(
        "--burst-timeout",
        dest="conformance_burst_timeout",
        type=float,
        metavar="SECONDS",
        default=None,
        help="override the profile's burst.timeout_s (boot and delete waits)",
    )
    group.addoption(
        "--network",
        dest="conformance_network",
        metavar="NAME|ID",
        default=None,
        help="network for test nodes (default: provider network in provider mode, else the project's own network)",
    )
    group.addoption(
        "--probe-reachability",
        dest="conformance_probe_reachability",
        action="store_true",
        default=False,
        help="R6: boot the node from the probe image (--probe-image) and complete an "
        "SSH handshake with its public address (off by default)",
    )
    group.addoption(
        "--progress-interval",
        dest="conformance_progress_interval",
        type=float,
        metavar="SECONDS",
        default=float(os.environ.get("CONFORMANCE_PROGRESS_INTERVAL") or PROGRESS_EVERY_S),
        help="when the output is not a terminal (a pipe, a log file), write the burst's progress "
        "line at most this often; 0: at every poll. Env CONFORMANCE_PROGRESS_INTERVAL; "
        "default: %(default)s",
    )
    group.addoption(
        "--probe-image",
        dest="conformance_probe_image",
        metavar="NAME|ID|none",
        default=os.environ.get("CONFORMANCE_PROBE_IMAGE") or None,
        help="R5/R11's probe node and R6's --probe-reachability node: an existing image with cloud-init "
        "and sshd (default: the profile's probe.image when the cloud has it, else the suite's "
        "own image, which has no OS: only an emulating cloud answers for it; `none`: always "
        "the suite's own image). Env CONFORMANCE_PROBE_IMAGE",
    )


def pytest_configure(config: pytest.Config) -> None:
    run = state.of(config)
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get(WORKER_KEY):
        run.run_prefix = workerinput[WORKER_KEY]
    else:
        run.run_prefix = _chosen_run_prefix()
    # Whether the checks run (not `active`: the main part may not have read its input yet, hook order).
    if run.runs_checks and not config.getoption("help", False):
        worker = (workerinput or {}).get("workerid")
        run.lease = resources.Lease(run.run_prefix, f"lease-{worker}" if worker else "lease")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """A bad CONFORMANCE_RUN_PREFIX is bad input: one line before anything else is checked or created."""
    state.require_main(config, __name__)
    _chosen_run_prefix()


def _chosen_run_prefix() -> str:
    """CONFORMANCE_RUN_PREFIX when the caller names the run (the Zuul job does, so that its cleanup-run can
    sweep the run whatever happened to it), else a new prefix."""
    given = os.environ.get("CONFORMANCE_RUN_PREFIX", "").strip()
    if not given:
        return resources.new_run_prefix()
    if resources.prefix_of(given) != given:
        raise pytest.UsageError(
            f"CONFORMANCE_RUN_PREFIX={given!r} is not a run prefix (conformance-<YYYYmmddTHHMMSSZ>-<6 hex digits>)"
        )
    return given


def pytest_report_header(config: pytest.Config) -> str | None:
    run = state.of(config)
    if run.active:
        return f"conformance run prefix: {run.run_prefix} (every resource the run creates is named with it)"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: every worker names its resources with the controller's run prefix."""
    node.workerinput[WORKER_KEY] = state.of(node.config).run_prefix


def pytest_unconfigure(config: pytest.Config) -> None:
    run = state.of(config)
    # Last resort (a fixture teardown that never ran): anything still tracked is deleted now.
    if run.active and resources.live_trackers():
        failures = resources.cleanup_all()
        if failures:
            sys.__stderr__.write(str(CleanupError(failures)) + "\n")
    if run.lease is not None:  # after every other cleanup: until now, the sweeper had to leave this run alone
        failures = run.lease.release()
        if failures:
            sys.__stderr__.write(str(CleanupError(failures)) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = state.of(config)
    if not run.active or not run.controller or state.inspect_only(config):
        return
    prefix = run.run_prefix
    if run.uncleaned:
        terminalreporter.write_line(
            f"conformance cleanup: {len(run.uncleaned)} resource(s) of run {prefix} "
            "could not be deleted (`python -m conformance cleanup` sweeps them):",
            red=True,
            bold=True,
        )
        for failure in run.uncleaned:
            terminalreporter.write_line(f"  {failure}", red=True)
    elif getattr(config.option, "dist", "no") == "no":
        # Under xdist the workers clean up; their failures show as teardown errors of the checks.
        terminalreporter.write_line(f"conformance cleanup: run {prefix}: every resource the run created was deleted")


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def run_prefix(pytestconfig) -> str:
    """`conformance-<UTC timestamp>-<6 hex>`: every resource of this run is named with it."""
    return state.of(pytestconfig).run_prefix


def _tracker(config: pytest.Config, profile):
    run = state.of(config)
    tracker = Tracker(
        run.run_prefix,
        delete_timeout_s=float(profile.get("burst.timeout_s", 1800)),
        poll_interval_s=min(float(profile.get("burst.poll_interval_s", 5)), SINGLE_BOOT_POLL_S),
        lease=run.lease,
    )
    yield tracker
    failures = tracker.cleanup()
    if failures:
        run.uncleaned.extend(failures)
        raise CleanupError(failures)


@pytest.fixture(scope="session")
def session_tracker(run_prefix, profile, pytestconfig):
    """Resources shared by the whole run (the uploaded images): deleted at session end."""
    yield from _tracker(pytestconfig, profile)


@pytest.fixture
def tracker(run_prefix, profile, pytestconfig):
    """Resources of one check: deleted in dependency order at its teardown, pass or fail."""
    yield from _tracker(pytestconfig, profile)


@pytest.fixture(scope="session")
def image_file(tmp_path_factory, profile):
    """The suite's own small qcow2 (profile image.size_mb of allocated data)."""
    return make_image(tmp_path_factory.mktemp("image"), int(profile["image.size_mb"]))


@pytest.fixture(scope="session")
def images(session_tracker, image_file, profile, pytestconfig) -> ImageCache:
    worker = (getattr(pytestconfig, "workerinput", None) or {}).get("workerid")
    return ImageCache(session_tracker, image_file, float(profile["image.max_upload_s"]) * 2, worker=worker)


@pytest.fixture(scope="session")
def zuul_image(images, zuul) -> UploadedImage:
    return images.get(zuul)
