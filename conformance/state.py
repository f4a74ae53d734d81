"""The run's state: one object, on `config.stash`, that the plugin's parts share.

    state = conformance.state.of(config)    # SuiteState, made on first use (a pure function of the command line)
    state.active                            # the run checks a cloud: the parts do nothing otherwise
    state.session                           # SessionResults (the main part fills it; the report reads it)

Each part keeps what it owns in its own field (`run_prefix`/`lease` the dynamic part, `deadline`, `bundle`,
`statsd`...) and reads the others' here: no part imports another. What this module decides from the command line
alone (`runs_checks`, `inspect_only`, `report_dir`) is here too, so every part asks the same question the same way.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import threading

    from conformance.cloud import Outages
    from conformance.metrics.statsd_sink import StatsdSink
    from conformance.profiles import Profile
    from conformance.resources import CleanupFailure, Lease
    from conformance.results import SessionResults

CHECKS_DIR = Path(__file__).resolve().parent / "checks"  # the conformance.checks package
# The main part (the `conformance` pytest11 entry point): options, profile, clouds, verdicts; it registers the
# other parts (conformance.parts.*), which do not run without it.
MAIN_PART = "conformance.plugin"
# Options with which pytest runs no check: nothing is authenticated, created, summarised or written.
INSPECT_OPTIONS = ("help", "version", "markers", "showfixtures", "show_fixtures_per_test", "collectonly")


# ------------------------------------------------------------------------------------------ the command line
def runs_checks(config: pytest.Config) -> bool:
    """True when the run collects the conformance checks (not, e.g., the project's own `pytest tests`)."""
    for arg in config.args:
        target = str(arg).split("::")[0]
        if config.getoption("pyargs", False) and os.sep not in target and not target.endswith(".py"):
            if target == "conformance" or target.startswith("conformance.checks"):
                return True
            try:
                spec = importlib.util.find_spec(target)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin:
                target = str(Path(spec.origin).parent if spec.origin.endswith("__init__.py") else spec.origin)
        path = Path(config.invocation_params.dir, target).resolve()
        if path == CHECKS_DIR or CHECKS_DIR in path.parents or path in CHECKS_DIR.parents:
            return True
    return False


def inspect_only(config: pytest.Config) -> bool:
    return any(config.getoption(name, False) for name in INSPECT_OPTIONS)


def report_dir(config: pytest.Config) -> Path:
    """The --report-dir folder (relative paths are relative to where pytest was started)."""
    return Path(config.invocation_params.dir, config.getoption("conformance_report_dir"))


# ------------------------------------------------------------------------------------------------ the state
@dataclass
class DeadlineState:
    """The deadline part's timer (controller only, when the run has a deadline)."""

    seconds: float
    timer: threading.Timer | None = None
    reached: bool = False
    # The real stderr, taken before pytest's capture redirects fd 2 during a check: the line must show at once.
    stderr: object = None


@dataclass
class BundleState:
    """The report part's bundle (controller only, when the run writes one)."""

    bundle_dir: Path
    created_report_dir: bool = False  # --report-dir did not exist before this run
    checks_run: int = 0  # items that reached setup: a run that executes none writes no bundle
    sign_key: str | None = None
    sign_format: str = "ssh"
    signature: dict | None = None
    baseline: dict | None = None
    baseline_path: str | None = None
    doc: dict | None = None  # the results.json document, built once (the metrics part sends the same)
    results: list = field(default_factory=list)  # fallback when the main part gathered no SessionResults
    calls: list = field(default_factory=list)
    written: bool = False
    comparison: dict | None = None
    error: str | None = None


@dataclass
class SuiteState:
    runs_checks: bool  # the run collects the conformance checks
    controller: bool  # not an xdist worker
    active: bool = False  # runs_checks, unless the input was bad: then no part may act
    # main part (conformance.plugin)
    prepared: bool = False  # options, profile and regions were read (once per process)
    profile: Profile | None = None
    clouds: dict[str, str] = field(default_factory=dict)  # role -> clouds.yaml entry
    regions: dict[str, list[str]] = field(default_factory=dict)  # role -> regions to check
    session: SessionResults | None = None  # the run's results (complete in the controller)
    seen: set = field(default_factory=set)  # (nodeid, result json) already gathered
    checks_started: bool = False  # a check's report reached the controller
    checks_ended: bool = False  # the test loop ran to its end (a later stop request cut nothing short)
    # Endpoints found unusable, each marked once in this process (the controller's, from before any check ran,
    # reach the workers): a call to one fails at once and its check is recorded as not measured.
    outages: Outages | None = None
    # dynamic part (conformance.parts.dynamic)
    run_prefix: str = ""  # conformance-<UTC timestamp>-<6 hex>: every resource of the run is named with it
    lease: Lease | None = None
    uncleaned: list[CleanupFailure] = field(default_factory=list)  # what teardowns could not delete
    # deadline part (conformance.parts.deadline)
    deadline: DeadlineState | None = None
    # report part (conformance.parts.report)
    bundle: BundleState | None = None
    # metrics part (conformance.parts.metrics)
    statsd_checked: bool = False  # --statsd-host was read (and resolved) in this process
    statsd: StatsdSink | None = None
    metrics_sent: bool = False
    exit_status: int = 0


_KEY = pytest.StashKey[SuiteState]()


def of(config: pytest.Config) -> SuiteState:
    """The run's SuiteState (made on first use, from the command line)."""
    state = config.stash.get(_KEY, None)
    if state is None:
        checks = runs_checks(config)
        state = SuiteState(runs_checks=checks, controller=not hasattr(config, "workerinput"), active=checks)
        config.stash[_KEY] = state
    return state


def require_main(config: pytest.Config, part: str) -> None:
    """A part loaded without the main part (`-p no:conformance -p conformance.parts.metrics`) stops the run with
    one line saying so."""
    main = sys.modules.get(MAIN_PART)
    if main is None or not config.pluginmanager.is_registered(main):
        raise pytest.UsageError(
            f"{part} is a part of the conformance plugin and needs its main part, {MAIN_PART} (the `conformance` "
            "entry point, which registers every part): do not load it alone or with -p no:conformance"
        )
