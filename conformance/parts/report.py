"""The plugin's report part: writes the signed report bundle at the end of a run.

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

import pytest

from conformance import state
from conformance.redact import redact
from conformance.report import compare, sign
from conformance.report.bundle import new_bundle_dir, write_bundle
from conformance.report.html import summary_fragments
from conformance.report.layout import HTML, JUNIT
from conformance.report.model import build_document, verdict_text
from conformance.state import BundleState


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


def _runs_suite(config) -> bool:
    mode = config.getoption("report_bundle", "auto")
    return mode == "yes" or (mode == "auto" and state.of(config).runs_checks)


def _active(config) -> bool:
    """Writes the bundle: the controller only, never an xdist worker, never a run that only inspects
    (--collect-only, --help, --markers, --fixtures...: no check runs, so no bundle, nothing in --report-dir)."""
    return not hasattr(config, "workerinput") and _runs_suite(config) and not state.inspect_only(config)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config) -> None:
    state.require_main(config, __name__)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Before pytest-html's and junitxml's own pytest_configure, which read the paths set here."""
    if _runs_suite(config):
        # In workers too: a worker's secrets (its own tokens) are known only there, so its reports are
        # redacted before they travel to the controller.
        config.pluginmanager.register(RedactReports(), "conformance-report-redaction")
    if not _active(config):
        return
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
    cloud = config.getoption("conformance_zuul_cloud") or os.environ.get("OS_CLOUD") or "cloud"
    report_dir = state.report_dir(config).expanduser()
    created_report_dir = not report_dir.exists()
    bundle_dir = new_bundle_dir(report_dir, cloud)
    if not getattr(config.option, "htmlpath", None):
        config.option.htmlpath = str(bundle_dir / HTML)
        config.option.self_contained_html = True
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(bundle_dir / JUNIT)
    bundle = BundleState(
        bundle_dir,
        sign_key=sign_key,
        sign_format=sign_format,
        signature=signature,
        baseline=baseline,
        baseline_path=baseline_path,
        created_report_dir=created_report_dir,
    )
    state.of(config).bundle = bundle
    config.pluginmanager.register(BundlePlugin(config, bundle), "conformance-report-bundle")


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
    bundle = state.of(config).bundle
    if bundle is not None and not bundle.written:
        _remove_bundle_dir(bundle, only_empty=True)


def _remove_bundle_dir(bundle: BundleState, only_empty: bool) -> None:
    """Remove the run's bundle directory (with `only_empty`, only if nothing but empty folders is there), and
    --report-dir itself when this run created it and it is empty again."""
    try:
        for leftover in sorted(bundle.bundle_dir.rglob("*"), reverse=True):
            if leftover.is_dir():
                leftover.rmdir()
            elif not only_empty:
                leftover.unlink()
        bundle.bundle_dir.rmdir()
        if bundle.created_report_dir:
            bundle.bundle_dir.parent.rmdir()
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

    def __init__(self, config, bundle: BundleState):
        self.config, self.bundle = config, bundle

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report):
        """Count the checks that ran; gather results/calls in case the main part gathered no SessionResults."""
        if report.when == "setup":
            self.bundle.checks_run += 1
        if report.when == "teardown":
            for name, value in getattr(report, "user_properties", []):
                try:
                    if name == "conformance.result":
                        self.bundle.results.append(json.loads(value) if isinstance(value, str) else value)
                    elif name == "conformance.calls":
                        self.bundle.calls.extend(json.loads(value) if isinstance(value, str) else value)
                except ValueError:
                    continue

    def document(self, session) -> dict:
        bundle = self.bundle
        if bundle.doc is None:
            bundle.doc = build_document(
                state.of(self.config).session,
                bundle_name=bundle.bundle_dir.name,
                exit_status=int(session.exitstatus),
                signature=bundle.signature,
                fallback_results=bundle.results,
                fallback_calls=bundle.calls,
            )
        return bundle.doc

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report):
        report.title = f"Conformance report {self.bundle.bundle_dir.name}"

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix, summary, postfix, session):
        prefix.extend(summary_fragments(self.document(session)))

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session, exitstatus):
        """Wraps the other sessionfinish hooks: pytest-html and junitxml have written their files after yield.
        The terminal reporter's wrapper is registered later, so its summary comes after this."""
        result = yield
        if not self.bundle.checks_run:
            # Nothing was checked (every check deselected, or collection failed): a bundle would only say
            # INCOMPLETE. What pytest-html and junitxml wrote into the bundle directory goes with it.
            _remove_bundle_dir(self.bundle, only_empty=False)
            return result
        if not self.bundle.written:
            self.bundle.written = True
            try:
                self.finish(session)
            except Exception as exc:  # noqa: BLE001 - a failed bundle must fail the run, visibly
                self.bundle.error = f"{type(exc).__name__}: {exc}"
                if session.exitstatus == 0:
                    session.exitstatus = pytest.ExitCode.INTERNAL_ERROR
        return result

    def finish(self, session) -> None:
        bundle = self.bundle
        doc = self.document(session)
        extra = {}
        if bundle.baseline is not None:
            bundle.comparison = compare.compare(bundle.baseline, doc)
            extra = {"comparison.json": bundle.comparison, "comparison.txt": compare.render(bundle.comparison)}
            if bundle.comparison["regression"] and session.exitstatus == 0:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        write_bundle(
            doc, bundle.bundle_dir, sign_key=bundle.sign_key, sign_format=bundle.sign_format, extra_files=extra
        )

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter):
        bundle, tr = self.bundle, terminalreporter
        tr.write_sep("-", "conformance report bundle")
        if not bundle.checks_run:
            tr.write_line("no check ran: no report bundle written")
            return
        if bundle.error:
            tr.write_line(redact(f"bundle NOT complete: {bundle.error}"), red=True)
        doc = bundle.doc or {}
        tr.write_line(redact(f"bundle: {bundle.bundle_dir}   overall verdict: {verdict_text(doc)}"))
        if bundle.signature:
            tr.write_line(
                redact(
                    f"signed ({bundle.signature['format']}) by {bundle.signature['fingerprint']}; "
                    f"check: python -m conformance verify {bundle.bundle_dir} --allowed-signers FILE"
                )
            )
        else:
            tr.write_line(redact(f"not signed; sign: python -m conformance sign {bundle.bundle_dir} --key KEY"))
        if bundle.comparison is not None:
            for line in compare.render(bundle.comparison).splitlines():
                tr.write_line(redact(line), red="REGRESSION" in line)
