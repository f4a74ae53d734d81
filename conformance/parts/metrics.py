"""The plugin's metrics part: the run's metrics to statsd.

Inert unless the run collects the conformance checks and a statsd host is given (`--statsd-host` or Zuul's
STATSD_HOST; port and prefix likewise). Then the burst sends its progress while it runs (from whichever process
runs it, xdist worker included), and the controller sends every metric of the run once at the end, read from
the same document as results.json. `metrics.prom` is not written here: the bundle writer writes it.
"""

from __future__ import annotations

import os

import pytest

from conformance import state
from conformance.metrics.model import scope_metrics
from conformance.metrics.statsd_sink import (
    DEFAULT_PORT,
    StatsdError,
    StatsdSink,
    burst_progress,
    end_of_run,
    sink_from,
)
from conformance.redact import redact
from conformance.report.model import build_document


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption(
        "--statsd-host",
        dest="conformance_statsd_host",
        metavar="HOST",
        default=os.environ.get("STATSD_HOST") or None,
        help="send the run's metrics to this statsd host (nothing is sent without one). Env STATSD_HOST",
    )
    group.addoption(
        "--statsd-port",
        dest="conformance_statsd_port",
        metavar="PORT",
        type=int,
        default=os.environ.get("STATSD_PORT") or DEFAULT_PORT,
        help="statsd UDP port. Env STATSD_PORT; default: %(default)s",
    )
    group.addoption(
        "--statsd-prefix",
        dest="conformance_statsd_prefix",
        metavar="PREFIX",
        default=os.environ.get("STATSD_PREFIX") or None,
        help="put PREFIX. in front of every metric name. Env STATSD_PREFIX",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """An unresolvable host is bad input: one line, before anything is created."""
    state.require_main(config, __name__)
    _open_sink(config)


def pytest_configure(config: pytest.Config) -> None:
    """xdist workers never see pytest_cmdline_main: the burst may run in one, and sends its progress too."""
    if not state.of(config).statsd_checked:
        _open_sink(config)


def _open_sink(config: pytest.Config) -> None:
    run = state.of(config)
    run.statsd_checked = True
    if config.getoption("help", False) or not run.runs_checks:
        run.statsd = None
        return
    try:
        run.statsd = sink_from(
            config.getoption("conformance_statsd_host"),
            config.getoption("conformance_statsd_port"),
            config.getoption("conformance_statsd_prefix"),
        )
    except StatsdError as exc:
        raise pytest.UsageError(str(exc)) from None


def sink(config: pytest.Config) -> StatsdSink | None:
    return state.of(config).statsd


def burst_reporter(config: pytest.Config, cloud: str, region: str, write=None):
    """A progress callback for the burst: writes the line with `write` (the terminal's) and sends its counts."""
    target = sink(config)

    def progress(line: str) -> None:
        if write is not None:
            write(line)
        if target is not None:
            target.send(burst_progress(cloud, region, line))

    progress.done = getattr(write, "done", lambda: None)  # the terminal writer's last line (none in workers)
    return progress


def _document(config: pytest.Config, exitstatus) -> dict | None:
    """The run's results.json document: the bundle's when one was written, else built the same way."""
    run = state.of(config)
    if run.bundle is not None and run.bundle.doc is not None:
        return run.bundle.doc
    if run.session is None:
        return None
    return build_document(run.session, exit_status=int(exitstatus))


def _send_end_of_run(config: pytest.Config, exitstatus) -> tuple[StatsdSink, int, list[str]] | None:
    run = state.of(config)
    target = run.statsd
    if target is None or not run.controller or run.metrics_sent:
        return None
    run.metrics_sent = True
    doc = _document(config, exitstatus)
    if doc is None:
        return None
    scopes = scope_metrics(doc)
    return target, target.send(end_of_run(scopes)), [f"{s.cloud}/{s.region}" for s in scopes]


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    """After the bundle is written (its document is the one sent)."""
    sent = _send_end_of_run(config, exitstatus)
    if sent is not None:
        target, count, scopes = sent
        terminalreporter.write_line(redact(f"statsd: {count} metrics of {', '.join(scopes)} sent to {target.where}"))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus) -> None:
    state.of(session.config).exit_status = int(exitstatus)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Without a terminal summary (-p no:terminal) the metrics still go out; then the sink is closed."""
    run = state.of(config)
    _send_end_of_run(config, run.exit_status)
    if run.statsd is not None:
        run.statsd.close()
