"""The suite's pytest plugin, main part: options, profile, clouds, verdicts and the per-requirement summary.

Registered as the `conformance` pytest11 entry point, the suite's only one, so it is loaded by every pytest run,
including the project's own tests: it stays inert unless the conformance checks (the `conformance.checks` package)
are being run. It registers the plugin's other parts (`pytest_plugins` below: conformance.parts.*), which share
the run's state with it through conformance.state and do not run without it.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import pytest
from _pytest import junitxml
from keystoneauth1 import exceptions as ksa_exc

from conformance import cloud as cloudlayer
from conformance import interrupt, state
from conformance import results as res
from conformance.errors import BadInput, CloudFault, first_line
from conformance.profiles import DEFAULT_PROFILE, Profile, load_profile
from conformance.redact import redact
from conformance.report.model import overall_verdict, requirement_rows
from conformance.state import SuiteState, inspect_only, report_dir, runs_checks

# The plugin's other parts, registered with this module in this order (their hooks run in the reverse order,
# as pluggy calls the plugin registered last first). Each shares conformance.state with this one.
pytest_plugins = (
    "conformance.parts.deadline",  # --deadline: the run ends by then, cleaned up, with its bundle
    "conformance.parts.dynamic",  # run prefix, lease, trackers, uploaded images, --burst-size...
    "conformance.parts.metrics",  # --statsd-host: the run's metrics to statsd
    "conformance.parts.report",  # --sign-key, --baseline: the report bundle at the end of the run
)

ROLES = cloudlayer.ROLES
# The exit status of a run whose overall verdict is ERROR (a check crashed on a bug of the suite, nothing failed):
# apart from pytest's 0-5 (1: a requirement failed, 2: interrupted) and 128 + signal, so CI can tell "fix the
# suite" from "the cloud failed".
EXIT_ERROR = 6
ROLE_OPTIONS = {"zuul": "--zuul-cloud", "ci": "--ci-cloud"}
TARGET = "conformance_target"


class ConformanceWarning(UserWarning):
    """A requirement result with verdict WARN (the profile asks to warn rather than fail)."""


@dataclass(frozen=True)
class Target:
    """Where one parametrized check runs: the role of the `cloud` fixture and the region of each role."""

    role: str
    regions: tuple[tuple[str, str], ...]  # ((role, region), ...)
    id: str

    def region_of(self, role: str) -> str:
        return dict(self.regions)[role]


# Warnings raised inside third-party code, whatever the suite does: shown to a donor they read as the suite being
# broken. Only these are filtered, each as narrowly as its message allows; a warning the suite itself causes (a
# deprecated call) is a bug to fix, not to filter.
THIRD_PARTY_WARNINGS = (
    # openstacksdk's Resource._collect_attrs() calls its own deprecated Resource._compute_attributes() for every
    # resource it builds from an answer (openstack/resource.py): 2,817 times in a 100-server burst's listings.
    "ignore:The _compute_attributes method is deprecated:openstack.warnings.RemovedInSDK50Warning",
    # openstacksdk's Proxy.request() passes service_type to its own Proxy._extract_name() (openstack/proxy.py),
    # which then says the argument is unnecessary: once per API call made through a proxy.
    "ignore:The 'service_type' parameter is unnecesary:openstack.warnings.RemovedInSDK50Warning",
    # Resource.__init__() reads every field of a resource (to_dict()), so building Nova's limits from its answer
    # reads the deprecated personality limits though the suite never does (openstack/compute/v2/limits.py).
    "ignore:The field 'maxPersonality:openstack.warnings.RemovedFieldWarning",
    # openstacksdk's config loader hands every CloudRegion an influxdb settings dict that is never empty (its
    # values are None), so each connection warns about InfluxDB support nobody configured
    # (openstack/config/cloud_region.py). The cloud layer mutes it while it connects; this is for the rest.
    "ignore:Support for InfluxDB requires:openstack.warnings.RemovedInSDK60Warning",
)
# (One more is filtered in pyproject.toml: it is raised while pytest imports the plugins, before any hook runs.)

_ITEM_RESULTS = pytest.StashKey[list]()


# ------------------------------------------------------------------------------------------------- options
def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "OpenStack cloud conformance (opendev donor requirements)")
    group.addoption(
        "--zuul-cloud",
        dest="conformance_zuul_cloud",
        metavar="NAME",
        default=_env("CONFORMANCE_ZUUL_CLOUD", "openstackzuul"),
        help="clouds.yaml entry of the zuul project (test nodes). Env CONFORMANCE_ZUUL_CLOUD; default: %(default)s",
    )
    group.addoption(
        "--ci-cloud",
        dest="conformance_ci_cloud",
        metavar="NAME",
        default=_env("CONFORMANCE_CI_CLOUD", "openstackci"),
        help="clouds.yaml entry of the ci project (mirror, control plane). "
        "Env CONFORMANCE_CI_CLOUD; default: %(default)s",
    )
    group.addoption(
        "--region",
        dest="conformance_regions",
        metavar="NAME",
        action="append",
        default=None,
        help="region to check (repeatable). Env CONFORMANCE_REGION (comma-separated); "
        "default: every region the clouds.yaml entry names",
    )
    group.addoption(
        "--profile",
        dest="conformance_profile",
        metavar="NAME|PATH",
        default=_env("CONFORMANCE_PROFILE", DEFAULT_PROFILE),
        help="requirement profile: a name in profiles/ or a YAML file. Env CONFORMANCE_PROFILE; default: %(default)s",
    )
    group.addoption(
        "--report-dir",
        dest="conformance_report_dir",
        metavar="DIR",
        default=_env("CONFORMANCE_REPORT_DIR", "reports"),
        help="folder for the run's report bundle. Env CONFORMANCE_REPORT_DIR; default: %(default)s",
    )


def option_regions(config: pytest.Config) -> list[str]:
    regions = config.getoption("conformance_regions") or []
    if not regions and os.environ.get("CONFORMANCE_REGION"):
        regions = os.environ["CONFORMANCE_REGION"].split(",")
    return [r.strip() for r in regions if r and r.strip()]


# ------------------------------------------------------------------------------------------------ activity
def _usage_error(exc: Exception) -> pytest.UsageError:
    return pytest.UsageError(redact(str(exc)).splitlines()[0])


def _prepare(config: pytest.Config) -> SuiteState:
    """Options, profile and regions, once per process (idempotent); BadInput becomes a one-line UsageError."""
    run = state.of(config)
    if run.prepared:
        return run
    run.prepared = True
    if not run.active or config.getoption("help", False):
        return run
    try:
        run.profile = load_profile(config.getoption("conformance_profile"))
        run.clouds = {role: config.getoption(f"conformance_{role}_cloud") for role in ROLES}
        for role, name in run.clouds.items():
            try:
                run.regions[role] = option_regions(config) or cloudlayer.cloud_regions(name)
            except BadInput as exc:
                raise BadInput(f"{ROLE_OPTIONS[role]} {name}: {exc}") from None
    except BadInput as exc:
        run.active = False  # nothing else of the plugin may run on bad input
        raise _usage_error(exc) from None
    session = res.SessionResults(
        profile=run.profile,
        started_at=res.now_utc(),
        options={
            "zuul_cloud": run.clouds["zuul"],
            "ci_cloud": run.clouds["ci"],
            "regions": option_regions(config),
            "profile": config.getoption("conformance_profile"),
            "report_dir": str(report_dir(config)),
        },
    )
    run.session = session
    run.outages = cloudlayer.Outages()
    if not run.controller:
        session.clouds = json.loads(config.workerinput.get("conformance_clouds", "{}"))
        for outage in json.loads(config.workerinput.get("conformance_outages", "[]")):
            run.outages.mark(cloudlayer.Outage(**outage))
        return run
    if not inspect_only(config):
        try:
            session.clouds = _check_clouds(run, session)
        except BadInput as exc:
            run.active = False
            raise _usage_error(exc) from None
    return run


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """Bad input is caught here, before any plugin's pytest_configure can create anything (report folders).
    SIGINT and SIGTERM are handled from here on (conformance.interrupt): a stop before any check ran ends the
    run with one line, having created nothing."""
    if runs_checks(config) and not config.getoption("help", False):
        config.add_cleanup(
            interrupt.install_signal_handlers(
                lambda: _leftover_hint(config), announce=not hasattr(config, "workerinput")
            )
        )
        config.add_cleanup(interrupt.add_listener(lambda stop: _tell_workers(config, stop)))
        config.add_cleanup(interrupt.reset)
    try:
        _prepare(config)
    except interrupt.Interrupted as exc:
        sys.stderr.write(f"conformance: {exc} before any check ran; nothing was created\n")
        return pytest.ExitCode.INTERRUPTED
    return None


def _leftover_hint(config: pytest.Config) -> str:
    """For the message of a second signal: the run prefix (the dynamic part's) and the sweeper's command for it."""
    prefix = state.of(config).run_prefix
    if not prefix:
        return ""
    clouds = " ".join(f"{ROLE_OPTIONS[role]} {config.getoption(f'conformance_{role}_cloud')}" for role in ROLES)
    clouds += "".join(f" --region {region}" for region in option_regions(config))
    return (
        f"Whatever run {prefix} created and did not delete yet is left behind: "
        f"`python -m conformance cleanup {clouds} --run {prefix}` deletes it."
    )


def _tell_workers(config: pytest.Config, stop: interrupt.Interruption) -> None:
    """xdist controller: schedule nothing more, and have the workers stop their checks too (a signal sent to
    this process alone, or a deadline, does not reach them; WORKER_STOP is a request there, not a signal)."""
    dsession = config.pluginmanager.get_plugin("dsession")
    if dsession is None:
        return
    dsession.shouldstop = stop.describe()
    for pid in interrupt.child_pids():
        try:
            os.kill(pid, interrupt.WORKER_STOP)
        except OSError:
            pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): the requirement IDs (R1..R13) a check proves")
    config.addinivalue_line(
        "markers",
        "dynamic: the check creates resources in the cloud (servers, volumes, images, floating IPs, keypairs, "
        "security groups); -m 'not dynamic' runs only the checks that create nothing",
    )
    for spec in THIRD_PARTY_WARNINGS:  # narrow, and about openstacksdk's insides: the project's own tests too
        config.addinivalue_line("filterwarnings", spec)
        _ignore_process_wide(spec)
    run = _prepare(config)
    if run.active and not run.controller:
        interrupt.install_worker_stop()


def _ignore_process_wide(spec: str) -> None:
    """The same filter outside pytest's per-test capture too: the lease's renew thread and the cleanup at
    unconfigure call openstacksdk when pytest shows every warning as raw stderr lines."""
    action, message, dotted = spec.split(":", 2)
    module, _, name = dotted.rpartition(".")
    category = getattr(importlib.import_module(module), name)
    warnings.filterwarnings(action, message=re.escape(message), category=category)


def _check_clouds(run: SuiteState, session: res.SessionResults) -> dict[str, dict[str, Any]]:
    """Authenticate each role once, in the controller, before any check runs or anything is created. Keystone's
    certificate not verifying is said once, in one line naming the fix, and marked as an outage: R7 still
    measures it (FAIL), every other check is recorded as not measured at once."""
    facts = {}
    untrusted: dict[tuple, list[str]] = {}  # (url, cacert, detail) -> the clouds.yaml entries concerned
    for role in ROLES:
        name, regions = run.clouds[role], run.regions[role]
        prefix = f"{ROLE_OPTIONS[role]} {name}"
        try:
            cloud = cloudlayer.open_cloud(name, regions[0] or None, role, policy=cloudlayer.STARTUP_POLICY, timeout=5.0)
        except BadInput as exc:
            raise BadInput(f"{prefix}: {exc}") from None
        try:
            try:
                cloudlayer.check_access(cloud, where=prefix)
            except cloudlayer.EndpointDown as exc:
                names = untrusted.setdefault((exc.outage.url, *getattr(exc, "fix", (None, ""))), [])
                names += [name] if name not in names else []
                facts[role] = {"cloud": name, "auth_url": cloud.auth_url, "regions": regions, "error": exc.outage.text}
                continue
            try:
                facts[role] = cloud.facts(regions)
                known = cloud.catalog_regions()
            except Exception as exc:  # TLS trouble etc.: R7 and the checks report it
                facts[role] = {
                    "cloud": name,
                    "auth_url": cloud.auth_url,
                    "regions": regions,
                    "error": redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__,
                }
                known = set()
            unknown = [r for r in regions if r and known and r not in known]
            if unknown:
                raise BadInput(
                    f"{prefix}: region {unknown[0]!r} is not in the cloud's catalog "
                    f"(regions there: {', '.join(sorted(known))})"
                )
        finally:
            session.add_calls([c.to_dict() for c in cloud.calls])
            session.add_retries([r.to_dict() for r in cloud.retries])
            cloudlayer.CALL_LOG.drain()
            cloudlayer.RETRY_LOG.drain()
            cloud.close()
    for (url, cacert, detail), names in untrusted.items():
        outage = run.outages.mark(cloudlayer.untrusted_keystone(url, names, cacert, detail))
        sys.stderr.write(
            f"conformance: {outage.text}. Only R7 can be measured: the other checks are recorded as not measured\n"
        )
    return facts


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: hand the controller's public cloud facts to each worker (they are not re-probed there)."""
    run = state.of(node.config)
    if run.session is not None:
        node.workerinput["conformance_clouds"] = json.dumps(run.session.clouds, default=str)
    if run.outages is not None:  # found before any check ran: the workers need not find them again
        node.workerinput["conformance_outages"] = json.dumps([o.to_dict() for o in run.outages.all()])


# ------------------------------------------------------------------------------------------ parametrizing
def _targets(run: SuiteState, uses_cloud: bool, uses_zuul: bool, uses_ci: bool) -> list[Target]:
    regions = run.regions

    def region_for(role: str, wanted: str) -> str:
        return wanted if wanted in regions[role] else regions[role][0]

    def label(region: str) -> str:
        return region or "default"

    targets = []
    if uses_cloud:
        for role in ROLES:
            for region in regions[role]:
                pairs = tuple((r, region if r == role else region_for(r, region)) for r in ROLES)
                targets.append(Target(role, pairs, f"{role}-{label(region)}"))
    elif uses_zuul and uses_ci:
        common = [r for r in regions["zuul"] if r in regions["ci"]] or regions["zuul"]
        for region in common:
            pairs = (("zuul", region), ("ci", region_for("ci", region)))
            targets.append(Target("zuul", pairs, label(region)))
    else:
        role = "zuul" if uses_zuul else "ci"
        other = "ci" if role == "zuul" else "zuul"
        for region in regions[role]:
            pairs = ((role, region), (other, region_for(other, region)))
            targets.append(Target(role, pairs, f"{role}-{label(region)}"))
    return targets


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    run = state.of(metafunc.config)
    if not run.active or TARGET not in metafunc.fixturenames or not run.regions:
        return
    names = metafunc.fixturenames
    uses_cloud = "cloud" in names or not ({"zuul", "ci"} & set(names))
    targets = _targets(run, uses_cloud, "zuul" in names, "ci" in names)
    metafunc.parametrize(TARGET, targets, ids=[t.id for t in targets], scope="session")


# ------------------------------------------------------------------------------------------------ fixtures
class CloudCache:
    """One Cloud per (role, region) per process, opened on first use."""

    def __init__(self, run: SuiteState):
        self._state = run
        self._clouds: dict[tuple[str, str], cloudlayer.Cloud] = {}

    def get(self, role: str, region: str) -> cloudlayer.Cloud:
        key = (role, region)
        if key not in self._clouds:
            profile = self._state.profile
            timeout = float(profile.get("api.timeout_s", 0)) if profile is not None else 0.0
            self._clouds[key] = cloudlayer.open_cloud(
                self._state.clouds[role],
                region or None,
                role,
                timeout=timeout or cloudlayer.DEFAULT_API_TIMEOUT_S,
                outages=self._state.outages,
            )
        return self._clouds[key]

    def close(self) -> None:
        for cloud in self._clouds.values():
            cloud.close()
        self._clouds.clear()


@pytest.fixture(scope="session")
def conformance_target(request) -> Target:
    """Parametrized by the plugin for every test using `zuul`, `ci` or `cloud`."""
    raise pytest.UsageError(
        f"{request.node.nodeid}: cloud fixtures need the conformance plugin's "
        "parametrization (run the checks with --pyargs conformance.checks)"
    )


@pytest.fixture(scope="session")
def _conformance_clouds(pytestconfig):
    cache = CloudCache(state.of(pytestconfig))
    yield cache
    cache.close()


@pytest.fixture(scope="session")
def profile(pytestconfig) -> Profile:
    """The merged, validated profile of the run (--profile)."""
    run = state.of(pytestconfig)
    if run.profile is None:
        try:
            run.profile = load_profile(pytestconfig.getoption("conformance_profile"))
        except BadInput as exc:
            pytest.fail(str(exc), pytrace=False)
    return run.profile


@pytest.fixture(scope="session")
def zuul(conformance_target: Target, _conformance_clouds: CloudCache) -> cloudlayer.Cloud:
    """The zuul project's Cloud in the current region parameter."""
    return _conformance_clouds.get("zuul", conformance_target.region_of("zuul"))


@pytest.fixture(scope="session")
def ci(conformance_target: Target, _conformance_clouds: CloudCache) -> cloudlayer.Cloud:
    """The ci project's Cloud in the current region parameter."""
    return _conformance_clouds.get("ci", conformance_target.region_of("ci"))


@pytest.fixture(scope="session")
def cloud(conformance_target: Target, _conformance_clouds: CloudCache) -> cloudlayer.Cloud:
    """Each project's Cloud (parametrized over role x region), for checks that apply to both projects."""
    role = conformance_target.role
    return _conformance_clouds.get(role, conformance_target.region_of(role))


@pytest.fixture(scope="session")
def session_results(pytestconfig) -> res.SessionResults:
    """This process's SessionResults (under xdist the controller's copy is the one that is complete)."""
    return state.of(pytestconfig).session


class Recorder:
    """`record(...)`: one requirement result of the current test (see ARCHITECTURE.md)."""

    def __init__(self, item: pytest.Item):
        self._item = item

    def __call__(
        self,
        requirement: str,
        check: str,
        *,
        scope: str,
        measured: Any = "",
        threshold: Any = "",
        ok: bool | None = None,
        verdict: str | None = None,
        reason: str = "",
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        result = res.make_result(
            requirement,
            check,
            scope=scope,
            measured=measured,
            threshold=threshold,
            ok=ok,
            verdict=verdict,
            reason=reason,
            data=data,
            test=self._item.nodeid,
        )
        _attach_result(self._item, result)
        if result["verdict"] == "WARN":
            message = f"{requirement} {check} {scope}: {result['reason']}"
            warnings.warn(ConformanceWarning(message), stacklevel=2)
        return result


def _attach_result(item: pytest.Item, result: dict[str, Any]) -> None:
    item.stash.setdefault(_ITEM_RESULTS, []).append(result)
    item.user_properties.append((res.RESULT_KEY, res.dumps(result)))


@pytest.fixture
def record(request) -> Recorder:
    """record("R8", "quota.instances", scope=cloud.scope, measured=150, threshold=">= 100", ok=True)"""
    return Recorder(request.node)


# ----------------------------------------------------------------------------------------- verdict hooks
def _describe(result: dict[str, Any]) -> str:
    where = res.scope_of(result)
    value = " ".join(filter(None, [result["measured"], result["threshold"]]))
    return f"{result['requirement']} {result['check']} {where}: {result['reason'] or value}".strip()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem) -> bool | None:
    """A stop requested between two checks: the next one does not start."""
    stop = interrupt.requested()
    if stop is None or not state.of(item.config).active:
        return None
    item.session.shouldstop = stop.describe()
    return True


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    try:
        return (yield)
    except interrupt.Interrupted as exc:
        _cut_short(item, exc.interruption)
    except cloudlayer.EndpointDown as exc:
        _not_measured(item, exc.outage)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        outcome = yield
    except interrupt.Interrupted as exc:
        _cut_short(item, exc.interruption)
    except cloudlayer.EndpointDown as exc:
        _not_measured(item, exc.outage)
    recorded = item.stash.get(_ITEM_RESULTS, [])
    failed = [r for r in recorded if r["verdict"] == "FAIL"]
    incomplete = [r for r in recorded if r["verdict"] == "INCOMPLETE"]
    errors = [r for r in recorded if r["verdict"] == "ERROR"]
    stop = interrupt.requested()
    if stop is not None and state.of(item.config).active:
        item.session.shouldstop = stop.describe()
    if failed or incomplete or errors:
        lines = (
            [_describe(r) for r in failed]
            + [f"INCOMPLETE {_describe(r)}" for r in incomplete]
            + [f"ERROR {_describe(r)}" for r in errors]
        )
        pytest.fail("\n".join(lines), pytrace=False)
    if recorded and all(r["verdict"] == "SKIP" for r in recorded):
        pytest.skip("; ".join(_describe(r) for r in recorded))
    return outcome


def _cut_short(item: pytest.Item, stop: interrupt.Interruption):
    """The check was interrupted before it could record its own verdicts: one INCOMPLETE result per requirement
    it proves, the run stops after this check, and the check's report says so (no traceback: the interruption
    is the reason, not a bug)."""
    recorded = item.stash.get(_ITEM_RESULTS, [])
    for requirement in _requirement_ids(item):
        reason = f"interrupted by {stop.describe()} before the check finished"
        if any(r["requirement"] == requirement for r in recorded):
            reason += " (its results above were recorded before)"
        _attach_result(
            item,
            res.make_result(
                requirement,
                item.originalname.removeprefix("test_"),
                scope=_scope_of_item(item),
                verdict="INCOMPLETE",
                reason=reason,
                data={"interrupted": stop.to_dict()},
                test=item.nodeid,
            ),
        )
    if state.of(item.config).active:
        item.session.shouldstop = stop.describe()
    pytest.fail(f"INCOMPLETE: interrupted by {stop.describe()}", pytrace=False)


def _not_measured(item: pytest.Item, outage: cloudlayer.Outage):
    """The check needs an endpoint the run cannot use (marked once, when found): each requirement it proves is
    recorded as not measured, naming the endpoint and why, and the check's report says so (no traceback: the
    cloud's endpoint, not the suite, stood in the way)."""
    recorded = item.stash.get(_ITEM_RESULTS, [])
    for requirement in _requirement_ids(item):
        reason = outage.text
        if any(r["requirement"] == requirement for r in recorded):
            reason += " (its results above were recorded before)"
        _attach_result(
            item,
            res.not_measured(
                requirement,
                item.originalname.removeprefix("test_"),
                _scope_of_item(item),
                reason,
                data={"outage": outage.to_dict()},
                test=item.nodeid,
            ),
        )
    pytest.fail(f"not measured: {outage.text}", pytrace=False)


def _requirement_ids(item: pytest.Item) -> list[str]:
    ids = []
    for mark in item.iter_markers("requirement"):
        ids.extend(a for a in mark.args if a not in ids)
    return ids


def _scope_of_item(item: pytest.Item) -> str:
    target = getattr(item, "callspec", None) and item.callspec.params.get(TARGET)
    if isinstance(target, Target):
        return f"{target.role}/{target.region_of(target.role) or 'default'}"
    return ""


def _report_line(report: pytest.TestReport) -> str:
    """The first line of a report's failure or skip reason (redacted)."""
    if isinstance(report.longrepr, tuple):  # skip: (path, line, reason)
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr or "")
    return redact(text.strip().splitlines()[0] if text.strip() else "")


# What escapes a check or its fixtures and is still a finding about the cloud (FAIL): the suite's word for a cloud
# fault, an assertion or pytest.fail about what the cloud answered, a service missing from the catalog or without
# a usable version document, a resource that went to ERROR or never got ready in openstacksdk's own waits. The
# cloud's API failing after the cloud layer's retries is FAIL too (cloudlayer.api_error_text). Anything else is
# the suite's own crash (ERROR).
CLOUD_FINDINGS = (CloudFault, AssertionError, pytest.fail.Exception, ksa_exc.EndpointNotFound, ksa_exc.DiscoveryFailure)


def _cloud_finding(exc: BaseException | None) -> bool:
    from openstack import exceptions as sdk_exc  # here: every pytest run loads this module, few need openstack

    return isinstance(
        exc, (*CLOUD_FINDINGS, sdk_exc.EndpointNotFound, sdk_exc.ResourceFailure, sdk_exc.ResourceTimeout)
    )


PHASE_CRASHED = {"setup": "setup crashed", "call": "check crashed", "teardown": "teardown crashed"}


def _unexplained_failure(report: pytest.TestReport, call) -> dict[str, Any]:
    """The verdict and reason of a phase that failed without recording a verdict: FAIL naming the API or the
    cloud's fault, else ERROR (a bug of the suite: its exception's first line)."""
    exc = call.excinfo.value if call.excinfo is not None else None
    api_error = cloudlayer.api_error_text(exc) if exc is not None else None
    if api_error:  # said with the API's own words
        return {"verdict": "FAIL", "reason": f"no answer from the cloud's API: {api_error}"}
    if _cloud_finding(exc):
        what = "check could not run" if report.when == "setup" else f"{report.when} failed"
        return {"verdict": "FAIL", "reason": f"{what}: {_report_line(report)}"}
    line = redact(f"{type(exc).__name__}: {first_line(exc)}") if exc is not None else _report_line(report)
    return {"verdict": "ERROR", "why": f"{PHASE_CRASHED.get(report.when, 'crashed')}: {line}"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    report = yield
    if not state.of(item.config).active:
        return report
    recorded = item.stash.get(_ITEM_RESULTS, [])
    # A check that crashed or was skipped before recording still gets a line per requirement in the summary.
    explained = any(r["verdict"] in ("FAIL", "ERROR", "INCOMPLETE") for r in recorded)
    unexplained_failure = report.failed and not explained
    unexplained_skip = report.skipped and not recorded and call.when != "teardown"
    outcome = _unexplained_failure(report, call) if unexplained_failure else None
    said = explained and call.excinfo is not None and not getattr(call.excinfo.value, "pytrace", True)
    finding = said or (outcome is not None and outcome["verdict"] == "FAIL")
    if report.failed and report.when != "teardown" and finding and not _tb_given(item.config):
        # A finding about the cloud (or what it kept the suite from measuring): its summary line and the bundle
        # carry it, the terminal no traceback (pytest leaves reports marked so out of its FAILURES and ERRORS
        # sections). A crash of the suite keeps its traceback; an explicit --tb shows them all.
        report._pdbshown = True
    if unexplained_failure or unexplained_skip:
        check, scope = item.originalname.removeprefix("test_"), _scope_of_item(item)
        for requirement in _requirement_ids(item):
            if outcome is None:
                result = res.make_result(
                    requirement, check, scope=scope, verdict="SKIP", reason=_report_line(report), test=item.nodeid
                )
            elif outcome["verdict"] == "ERROR":
                result = res.error_result(requirement, check, scope=scope, why=outcome["why"], test=item.nodeid)
            else:
                result = res.make_result(
                    requirement, check, scope=scope, verdict="FAIL", reason=outcome["reason"], test=item.nodeid
                )
            _attach_result(item, result)
            report.user_properties.append((res.RESULT_KEY, res.dumps(result)))
    if report.when == "teardown":
        calls = cloudlayer.CALL_LOG.drain()
        if calls:
            report.user_properties.append((res.CALLS_KEY, res.dumps([c.to_dict() for c in calls])))
        retries = cloudlayer.RETRY_LOG.drain()
        if retries:
            report.user_properties.append((res.RETRIES_KEY, res.dumps([r.to_dict() for r in retries])))
    return report


def suite_error(report: pytest.TestReport) -> bool:
    """A failed report whose results are ERROR and none FAIL: the suite could not decide, the cloud did not fail.
    Read from user_properties, so it holds for reports an xdist worker sent too."""
    if not report.failed:
        return False
    verdicts = {json.loads(value).get("verdict") for name, value in report.user_properties if name == res.RESULT_KEY}
    return "ERROR" in verdicts and "FAIL" not in verdicts


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """The terminal counts a check that crashed on the suite's bug as an error (E), not a failed check (F)."""
    if report.when == "call" and state.of(config).active and suite_error(report):
        return "error", "E", "ERROR"
    return None


class JunitErrors:
    """junit.xml: a check that crashed on the suite's bug is an <error>, not a <failure> of the cloud (pytest's
    junitxml writes <error> for setup and teardown only). Registered in the controller when junitxml writes."""

    def __init__(self, xml):
        self.xml = xml

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or not suite_error(report):
            return
        reporter = self.xml.node_reporter(report)  # the same object junitxml's own hook then uses
        reasons = [
            json.loads(value)["reason"]
            for name, value in report.user_properties
            if name == res.RESULT_KEY and json.loads(value).get("verdict") == "ERROR"
        ]
        message = junitxml.bin_xml_escape(redact(reasons[0] if reasons else _report_line(report)))

        def append_error(rep: pytest.TestReport) -> None:
            reporter._add_simple("error", message, str(rep.longrepr))

        reporter.append_failure = append_error


def _tb_given(config: pytest.Config) -> bool:
    """The user chose a traceback style (--tb other than pytest's default `auto`): to debug the suite."""
    return config.getoption("tbstyle", "auto") != "auto"


class Gatherer:
    """In the controller: gather results and call records from every report (local or from xdist workers).
    Reports carry no config: registered at session start with the run's state."""

    def __init__(self, run: SuiteState):
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run, session = self.run, self.run.session
        run.checks_started = True
        for entry in report.user_properties:
            name, value = entry[0], entry[1]
            if name == res.RESULT_KEY:
                key = (report.nodeid, value)
                if key not in run.seen:
                    run.seen.add(key)
                    session.add_result(json.loads(value))
            elif name == res.CALLS_KEY:
                session.add_calls(json.loads(value))
            elif name == res.RETRIES_KEY:
                session.add_retries(json.loads(value))


def pytest_sessionstart(session: pytest.Session) -> None:
    run = state.of(session.config)
    if run.active and run.controller and run.session is not None:
        session.config.pluginmanager.register(Gatherer(run), "conformance-results")
        xml = session.config.stash.get(junitxml.xml_key, None)
        if xml is not None:
            session.config.pluginmanager.register(JunitErrors(xml), "conformance-junit-errors")


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session):
    result = yield
    state.of(session.config).checks_ended = True
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    run = state.of(session.config)
    results = run.session
    if results is not None and run.controller:
        leftover = cloudlayer.CALL_LOG.drain()
        results.add_calls([c.to_dict() for c in leftover])
        results.add_retries([r.to_dict() for r in cloudlayer.RETRY_LOG.drain()])
        results.finished_at = res.now_utc()
        stop = interrupt.requested()
        if stop is not None:
            results.interrupted = _interruption_record(stop, results, run, session)
            if session.exitstatus == pytest.ExitCode.OK:  # stopped after the last check: still interrupted
                session.exitstatus = pytest.ExitCode.INTERRUPTED
        session.exitstatus = exit_status(session.exitstatus, results)


def exit_status(pytest_status: int, results: res.SessionResults) -> int:
    """EXIT_ERROR when the overall verdict is ERROR and pytest says only that checks failed (or nothing):
    an interruption (2), pytest's own trouble (3, 4) and no checks (5) keep their status."""
    if pytest_status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return pytest_status
    verdict = overall_verdict(requirement_rows(results.results), int(pytest_status), results.interrupted)
    return EXIT_ERROR if verdict == "ERROR" else pytest_status


def _interruption_record(stop: interrupt.Interruption, results: res.SessionResults, run: SuiteState, session) -> dict:
    """The run-level record of a stop: why, when, how far into the run, and what it cut short."""
    after = (stop.at - results.started_at).total_seconds() if results.started_at else None
    if run.checks_ended and not session.shouldstop:
        during = "finish"  # every check had ended: the stop cut nothing short
    else:
        during = "checks" if run.checks_started else "start"
    record = {**stop.to_dict(), "during": during, "after_s": None if after is None else round(after, 1)}
    xml = session.config.stash.get(junitxml.xml_key, None)
    if xml is not None:  # Zuul's JUnit view: the run-level fact next to the testcases
        xml.add_global_property("conformance.interrupted", f"{stop.describe()} (during {during})")
    return record


# ------------------------------------------------------------------------------------------------- summary
def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    run = state.of(config)
    results = run.session
    if not run.active or not run.controller or results is None or inspect_only(config):
        return
    tr = terminalreporter
    profile = results.profile
    tr.write_sep("=", f"conformance results (profile {profile.name}, sha256 {profile.sha256[:12]})")
    for relaxation in profile.relaxations:
        tr.write_line(f"profile relaxes {relaxation.key}: {relaxation.reason}", yellow=True)
    lines = res.summary_lines(results.results)
    if not lines:
        tr.write_line("no requirement results were recorded")
    colours = {
        "PASS": {"green": True},
        "FAIL": {"red": True, "bold": True},
        "WARN": {"yellow": True},
        "SKIP": {"yellow": True},
        "INCOMPLETE": {"yellow": True, "bold": True},
        "ERROR": {"purple": True, "bold": True},
    }
    for verdict, line in lines:
        tr.write_line(line, **colours.get(verdict, {}))
    retried = res.retry_summary(results.retries)
    if retried:
        tr.write_line(f"API retries: {retried}", yellow=True)
    if results.interrupted:
        tr.write_line(interruption_line(results.interrupted), yellow=True, bold=True)


def interruption_line(record: dict) -> str:
    """`run interrupted by SIGINT at 2026-11-29T04:37:44Z, 25 s in, during the checks: ...`"""
    after = f", {record['after_s']:.0f} s in" if isinstance(record.get("after_s"), (int, float)) else ""
    detail = f" ({record['detail']})" if record.get("detail") else ""
    what = {
        "start": "before any check ran",
        "checks": "during the checks: the results above are what was measured until then",
        "finish": "after every check had ended (nothing was cut short)",
    }.get(record.get("during"), "")
    return f"run interrupted by {record['reason']} at {record['at']}{detail}{after}, {what}".rstrip(", ")
