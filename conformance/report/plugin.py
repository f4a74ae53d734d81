"""pytest plugin (entry point `conformance_report`): writes the signed report bundle at the end of a run.

Active when the run collects the conformance checks (`--pyargs conformance.checks` or a path under
conformance/checks), or with `--report-bundle=yes`. In the controller only (never in an xdist worker):
  configure   choose reports/<cloud>-<UTC timestamp>/, point pytest-html and junitxml into it, check the
              signing key and the baseline early (a bad path is a usage error before any cloud call)
  logreport   redact longrepr and captured output of every report before junitxml/pytest-html/terminal see it
  html hooks  the requirement matrix, verdict, signature, chart, API calls and environment at the top
  sessionfinish (after pytest-html and junitxml wrote their files) results.json, onboarding/, comparison,
              manifest, signature
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conformance.redact import redact

DEFAULT_REPORT_DIR = "reports"


@dataclass
class _State:
    bundle_dir: Path
    created_report_dir: bool = False  # --report-dir did not exist before this run
    checks_run: int = 0  # items that reached setup: a run that executes none writes no bundle
    sign_key: str | None = None
    sign_format: str = "ssh"
    signature: dict | None = None
    baseline: dict | None = None
    baseline_path: str | None = None
    doc: dict | None = None
    results: list = field(default_factory=list)  # fallback when the foundation's SessionResults is absent
    calls: list = field(default_factory=list)
    written: bool = False
    comparison: dict | None = None
    error: str | None = None


STATE = pytest.StashKey[_State]()


def pytest_addoption(parser):
    group = parser.getgroup("conformance")
    group.addoption(
        "--sign-key",
        default=None,
        metavar="KEY",
        help="sign the report bundle's manifest at the end of the run: SSH private key (or KEY.pub "
        "held in ssh-agent), or with --sign-format=gpg an OpenPGP key id",
    )
    group.addoption(
        "--sign-format",
        default="ssh",
        choices=("ssh", "gpg"),
        help="signature format for --sign-key (default ssh)",
    )
    group.addoption(
        "--baseline",
        default=None,
        metavar="BUNDLE",
        help="compare with an earlier run (bundle dir or results.json); a regression fails the run",
    )
    group.addoption(
        "--report-bundle",
        default="auto",
        choices=("auto", "yes", "no"),
        help="write the report bundle: auto = when the conformance checks run (default)",
    )


def _runs_checks(config) -> bool:
    """The foundation's test of "this run collects the conformance checks", so both plugins agree."""
    from conformance.plugin import runs_checks

    return runs_checks(config)


def _report_dir(config) -> Path:
    try:
        from conformance.plugin import report_dir

        return report_dir(config)
    except (ImportError, ValueError, AttributeError):  # the foundation plugin is disabled (-p no:conformance)
        return Path(config.invocation_params.dir, DEFAULT_REPORT_DIR)


def _option(config, *names, default=None):
    for name in names:
        try:
            value = config.getoption(name)
        except ValueError:
            continue
        if value:
            return value
    return default


def _runs_suite(config) -> bool:
    mode = config.getoption("report_bundle", "auto")
    return mode == "yes" or (mode == "auto" and _runs_checks(config))


def _inspect_only(config) -> bool:
    """--collect-only, --help, --markers, --fixtures...: no check runs, so no bundle, nothing in --report-dir."""
    from conformance.plugin import inspect_only

    return inspect_only(config)


def _active(config) -> bool:
    """Writes the bundle: the controller only, never an xdist worker, never a run that only inspects."""
    return not hasattr(config, "workerinput") and _runs_suite(config) and not _inspect_only(config)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Before pytest-html's and junitxml's own pytest_configure, which read the paths set here."""
    if _runs_suite(config):
        # In workers too: a worker's secrets (its own tokens) are known only there, so its reports are
        # redacted before they travel to the controller.
        config.pluginmanager.register(RedactReports(), "conformance-report-redaction")
    if not _active(config):
        return
    from conformance.report import compare, sign
    from conformance.report.bundle import HTML, JUNIT, new_bundle_dir

    sign_key = config.getoption("sign_key", None)
    sign_format = config.getoption("sign_format", "ssh")
    signature = None
    if sign_key:
        try:
            signature = sign.signature_info(sign_key, sign_format)
        except sign.SignError as exc:
            raise pytest.UsageError(f"--sign-key: {exc}") from exc
    baseline_path = config.getoption("baseline", None)
    baseline = None
    if baseline_path:
        try:
            baseline = compare.load(baseline_path)
        except compare.CompareInputError as exc:
            raise pytest.UsageError(f"--baseline: {exc}") from exc
    cloud = _option(config, "conformance_zuul_cloud", default=os.environ.get("OS_CLOUD") or "cloud")
    report_dir = _report_dir(config).expanduser()
    created_report_dir = not report_dir.exists()
    bundle_dir = new_bundle_dir(report_dir, cloud)
    if not getattr(config.option, "htmlpath", None):
        config.option.htmlpath = str(bundle_dir / HTML)
        config.option.self_contained_html = True
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(bundle_dir / JUNIT)
    state = _State(bundle_dir, sign_key=sign_key, sign_format=sign_format, signature=signature, baseline=baseline,
                   baseline_path=baseline_path, created_report_dir=created_report_dir)
    config.stash[STATE] = state
    config.pluginmanager.register(BundlePlugin(config, state), "conformance-report-bundle")


def _session_results(config):
    try:
        from conformance.results import SESSION_RESULTS
    except ImportError:
        return None
    return config.stash.get(SESSION_RESULTS, None)


def _redact_repr(obj, depth: int = 0) -> None:
    """Redact, in place, every string held by pytest's longrepr objects (ReprEntry.lines, ReprFileLocation,
    ReprFuncArgs, reprcrash.message, ...)."""
    if depth > 8 or not hasattr(obj, "__dict__"):
        return
    for name, value in list(vars(obj).items()):
        if isinstance(value, str):
            setattr(obj, name, redact(value))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    value[index] = redact(item)
                elif isinstance(item, tuple):
                    value[index] = tuple(redact(i) if isinstance(i, str) else i for i in item)
                    for i in item:
                        _redact_repr(i, depth + 1)
                else:
                    _redact_repr(item, depth + 1)
        else:
            _redact_repr(value, depth + 1)


def pytest_unconfigure(config):
    """A run stopped before its end (usage error in another plugin's configure, e.g. a wrong cloud name)
    leaves no empty bundle directory behind."""
    state = config.stash.get(STATE, None)
    if state is not None and not state.written:
        _remove_bundle_dir(state, only_empty=True)


def _remove_bundle_dir(state: _State, only_empty: bool) -> None:
    """Remove the run's bundle directory (with `only_empty`, only if nothing but empty folders is there), and
    --report-dir itself when this run created it and it is empty again."""
    try:
        for leftover in sorted(state.bundle_dir.rglob("*"), reverse=True):
            if leftover.is_dir():
                leftover.rmdir()
            elif not only_empty:
                leftover.unlink()
        state.bundle_dir.rmdir()
        if state.created_report_dir:
            state.bundle_dir.parent.rmdir()
    except OSError:
        pass  # not empty: keep whatever is there


class RedactReports:
    """Redact failure text and captured output of every report before junitxml, pytest-html, the terminal or
    xdist (sending it to the controller) use them."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        if report.longrepr is not None:
            text = report.longreprtext
            if redact(text) != text:
                # Redact inside pytest's repr objects to keep the traceback's shape (and the short summary's
                # message); fall back to plain text if anything still leaks.
                _redact_repr(report.longrepr)
                if redact(report.longreprtext) != report.longreprtext:
                    report.longrepr = redact(report.longreprtext)
        if report.sections:
            report.sections = [(header, redact(content)) for header, content in report.sections]


class BundlePlugin:
    """The hooks of an active run, registered by pytest_configure (controller only)."""

    def __init__(self, config, state: _State):
        self.config, self.state = config, state

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        """Gather results/calls in case the foundation's SessionResults is absent."""
        if report.when == "setup":
            self.state.checks_run += 1
        if report.when == "teardown":
            for name, value in getattr(report, "user_properties", []):
                try:
                    if name == "conformance.result":
                        self.state.results.append(json.loads(value) if isinstance(value, str) else value)
                    elif name == "conformance.calls":
                        self.state.calls.extend(json.loads(value) if isinstance(value, str) else value)
                except ValueError:
                    continue

    def document(self, session) -> dict:
        from conformance.report.model import build_document

        state = self.state
        if state.doc is None:
            state.doc = build_document(
                _session_results(self.config),
                bundle_name=state.bundle_dir.name,
                exit_status=int(session.exitstatus),
                signature=state.signature,
                fallback_results=state.results,
                fallback_calls=state.calls,
            )
        return state.doc

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report):
        report.title = f"Conformance report {self.state.bundle_dir.name}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix, summary, postfix, session):
        from conformance.report.html import summary_fragments

        prefix.extend(summary_fragments(self.document(session)))

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session, exitstatus):
        """Wraps the other sessionfinish hooks: pytest-html and junitxml have written their files after yield.
        The terminal reporter's wrapper is registered later, so its summary comes after this."""
        result = yield
        if not self.state.checks_run:
            # Nothing was checked (every check deselected, or collection failed): a bundle would only say
            # INCOMPLETE. What pytest-html and junitxml wrote into the bundle directory goes with it.
            _remove_bundle_dir(self.state, only_empty=False)
            return result
        if not self.state.written:
            self.state.written = True
            try:
                self.finish(session)
            except Exception as exc:  # noqa: BLE001 - a failed bundle must fail the run, visibly
                self.state.error = f"{type(exc).__name__}: {exc}"
                if session.exitstatus == 0:
                    session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return result

    def finish(self, session) -> None:
        from conformance.report import compare
        from conformance.report.bundle import write_bundle

        state = self.state
        doc = self.document(session)
        extra = {}
        if state.baseline is not None:
            state.comparison = compare.compare(state.baseline, doc)
            extra = {"comparison.json": state.comparison, "comparison.txt": compare.render(state.comparison)}
            if state.comparison["regression"] and session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        write_bundle(doc, state.bundle_dir, sign_key=state.sign_key, sign_format=state.sign_format, extra_files=extra)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        state, tr = self.state, terminalreporter
        tr.write_sep("-", "conformance report bundle")
        if not state.checks_run:
            tr.write_line("no check ran: no report bundle written")
            return
        if state.error:
            tr.write_line(redact(f"bundle NOT complete: {state.error}"), red=True)
        from conformance.report.model import verdict_text

        doc = state.doc or {}
        tr.write_line(redact(f"bundle: {state.bundle_dir}   overall verdict: {verdict_text(doc)}"))
        if state.signature:
            tr.write_line(
                redact(
                    f"signed ({state.signature['format']}) by {state.signature['fingerprint']}; "
                    f"check: python -m conformance verify {state.bundle_dir} --allowed-signers FILE"
                )
            )
        else:
            tr.write_line(redact(f"not signed; sign: python -m conformance sign {state.bundle_dir} --key KEY"))
        if state.comparison is not None:
            from conformance.report.compare import render

            for line in render(state.comparison).splitlines():
                tr.write_line(redact(line), red="REGRESSION" in line)
