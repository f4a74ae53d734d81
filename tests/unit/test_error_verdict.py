"""The ERROR verdict: a check that crashes on a bug of the suite is ERROR, never a FAIL of the cloud.

End to end, the suite's real command line runs R4's check against a fake cloud (tests/unit/fake_cloud_plugin.py:
requests-mock for Keystone and Nova) with a TypeError planted in the suite's code or fixture, and, as the negative,
with Nova's flavor listing answering 503 until the cloud layer gives up (FAIL naming the API). Then the verdict
rules, table by table, and what every output (HTML, JUnit, metrics, the fleet) makes of an ERROR.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import fake_openstack
import jsonschema
import pytest
import yaml
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as sdk_exc
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conformance import plugin, requirements
from conformance import results as res
from conformance.__main__ import main
from conformance.errors import CloudFault
from conformance.metrics import model as metrics
from conformance.metrics.prometheus import openmetrics_text
from conformance.metrics.statsd_sink import end_of_run
from conformance.nodes import BootFailed
from conformance.report import bundle, model
from conformance.report.html import summary_fragments
from conformance.report.sample import sample_session_results

UNIT = Path(__file__).resolve().parent
BUG = "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'"


def clouds_yaml(folder: Path) -> Path:
    auth = {
        "auth_url": "http://keystone.fake.test/v3",
        "username": "tester",
        "password": "fake-pass-1",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    }
    path = folder / "clouds.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "clouds": {
                    role: {"auth": {**auth, "project_name": role}, "region_name": "RegionOne"}
                    for role in ("zuul", "ci")
                }
            }
        )
    )
    return path


def run_suite(
    tmp_path: Path, fault: str, *args: str, cwd: Path | None = None, env: dict | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    """The suite as tox runs it, against the fake cloud (from `cwd`, tmp_path by default); returns the run and its
    bundle. `env` adds to the environment (PYTHONPATH there adds folders of plugins)."""
    extra = dict(env or {})
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONFORMANCE_", "OS_"))}
    clean.update(
        extra,
        OS_CLIENT_CONFIG_FILE=str(clouds_yaml(tmp_path)),
        PYTHONPATH=os.pathsep.join(filter(None, [str(UNIT), extra.get("PYTHONPATH")])),
        FAKE_CLOUD_FAULT=fault,
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-p",
        "fake_cloud_plugin",
        "--pyargs",
        "conformance.checks",
        "-k",
        "test_node_flavor",
        "--zuul-cloud",
        "zuul",
        "--ci-cloud",
        "ci",
        "--report-dir",
        str(tmp_path / "reports"),
        "-rA",
        *args,
    ]
    proc = subprocess.run(command, cwd=cwd or tmp_path, env=clean, capture_output=True, text=True, timeout=300)
    bundles = sorted((tmp_path / "reports").iterdir()) if (tmp_path / "reports").exists() else []
    assert len(bundles) == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, bundles[0]


def r4(doc: dict) -> dict:
    [result] = [r for r in doc["results"] if r["requirement"] == "R4"]
    return result


def validate(doc: dict) -> None:
    schema = json.loads(resources.files("conformance.schemas").joinpath("results.schema.json").read_text())
    jsonschema.validate(doc, schema)


# ------------------------------------------------------------------------------------ end to end, fake cloud
def test_the_fake_cloud_passes_r4_without_a_fault(tmp_path):
    """The control: the same run without a planted fault passes R4 (so the fake cloud is not what errs)."""
    proc, path = run_suite(tmp_path, "")
    doc = json.loads((path / "results.json").read_text())
    assert r4(doc)["verdict"] == "PASS", proc.stdout[-3000:]
    assert proc.returncode == 0 and doc["verdict"] == "INCOMPLETE"  # the other requirements did not run


@pytest.mark.parametrize(
    ("fault", "phase", "workers"),
    [
        ("suite-bug", "check crashed", []),
        ("suite-bug", "check crashed", ["-n", "2"]),
        ("fixture-bug", "setup crashed", []),
    ],
    ids=["check", "check-xdist", "fixture"],
)
def test_a_crash_of_the_suite_is_error_not_fail(tmp_path, fault, phase, workers):
    proc, path = run_suite(tmp_path, fault, *workers)
    output = proc.stdout + proc.stderr
    assert proc.returncode == plugin.EXIT_ERROR == 6, output[-4000:]
    doc = json.loads((path / "results.json").read_text())
    validate(doc)
    result = r4(doc)
    assert result["verdict"] == "ERROR", result
    assert result["reason"] == f"{phase}: {BUG}: a bug of the suite, not a finding about the cloud"
    assert result["data"]["error_kind"] == "suite"
    assert {r["id"]: r["verdict"] for r in doc["requirements"]}["R4"] == "ERROR"
    assert doc["verdict"] == "ERROR" and doc["exit_status"] == 6
    assert "overall verdict: ERROR (R4: a bug of the suite)" in proc.stdout
    assert "R4 node_flavor  zuul/RegionOne  -  ERROR  " in proc.stdout
    assert " FAIL" not in proc.stdout.split("conformance results")[1]
    # pytest's own words: an error, not a failed check
    assert "1 error" in proc.stdout and "failed" not in proc.stdout.splitlines()[-1]
    html = (path / "report.html").read_text()
    assert "Overall verdict: <b>ERROR (R4: a bug of the suite)</b>" in html
    assert 'id="conformance-error"' in html and '<td class="v-ERROR verdict-cell" title=' in html
    assert '<td class="v-FAIL' not in html
    junit = ElementTree.parse(path / "junit.xml").getroot()
    [case] = junit.iter("testcase")
    assert case.find("failure") is None and case.find("error") is not None, ElementTree.tostring(case)[:800]
    samples = {
        (s.name, s.labels.get("requirement"), s.labels.get("verdict")): s.value
        for family in text_string_to_metric_families((path / "metrics.prom").read_text())
        for s in family.samples
    }
    assert samples[("conformance_requirement_verdict", "R4", "ERROR")] == 1
    assert samples[("conformance_requirement_verdict", "R4", "FAIL")] == 0
    assert samples[("conformance_verdict", None, "ERROR")] == 1


def test_an_api_error_after_the_retries_stays_a_fail_naming_the_api(tmp_path):
    proc, path = run_suite(tmp_path, "api-503")
    doc = json.loads((path / "results.json").read_text())
    result = r4(doc)
    assert result["verdict"] == "FAIL", result
    assert result["reason"].startswith(
        "no answer from the cloud's API: GET /v2.1/flavors/detail: HTTP 503 (gave up after 6 attempts): "
    ), result
    assert doc["verdict"] == "FAIL" and proc.returncode == 1, proc.stdout[-3000:]
    assert doc["api_retries"]["gave_up"] == 1
    junit = ElementTree.parse(path / "junit.xml").getroot()
    [case] = junit.iter("testcase")
    assert case.find("failure") is not None and case.find("error") is None


# ------------------------------------------------------------------------------------------ the verdict rules
@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "NOT_RUN"),
        (["PASS"], "PASS"),
        (["PASS", "SKIP"], "PASS"),
        (["SKIP"], "SKIP"),
        (["PASS", "WARN"], "WARN"),
        (["PASS", "INCOMPLETE"], "INCOMPLETE"),
        (["PASS", "ERROR"], "ERROR"),
        (["INCOMPLETE", "ERROR"], "ERROR"),
        (["ERROR", "FAIL"], "FAIL"),  # the cloud failed whatever else the suite did
        (["PASS", "FAIL", "INCOMPLETE"], "FAIL"),
    ],
)
def test_requirement_verdict(verdicts, expected):
    assert model.requirement_verdict(verdicts) == expected


def rows(**verdicts) -> list[dict]:
    """Requirement rows: every catalogue requirement PASS unless named."""
    return [{"id": rid, "verdict": verdicts.get(rid, "PASS")} for rid in requirements.CATALOGUE]


STOP = {"reason": "SIGINT", "at": "2026-11-29T04:55:24Z", "after_s": 28}


@pytest.mark.parametrize(
    ("given", "exit_status", "interrupted", "expected"),
    [
        ({}, 0, None, "PASS"),
        ({"R3": "WARN"}, 0, None, "PASS"),
        ({"R11": "SKIP"}, 0, None, "INCOMPLETE"),
        ({"R2": "NOT_RUN"}, 0, None, "INCOMPLETE"),
        ({"R12": "INCOMPLETE"}, 1, None, "INCOMPLETE"),
        ({"R4": "ERROR"}, 1, None, "ERROR"),
        ({"R4": "ERROR", "R12": "INCOMPLETE"}, 2, STOP, "ERROR"),
        ({"R4": "ERROR", "R8": "FAIL"}, 1, None, "FAIL"),
        ({"R8": "FAIL", "R12": "INCOMPLETE"}, 2, STOP, "FAIL"),
        ({}, 1, None, "ERROR"),  # pytest failed without any verdict saying why: a crash outside a requirement
        ({}, 2, STOP, "PASS"),  # stopped after the last check: interrupted says so
        ({}, 5, None, "PASS"),
    ],
)
def test_overall_verdict(given, exit_status, interrupted, expected):
    assert model.overall_verdict(rows(**given), exit_status, interrupted) == expected


def error_result(rid: str, kind: str = "suite") -> dict:
    return res.error_result(rid, "x", scope="zuul/RegionOne", why="check crashed: KeyError: 'x'", kind=kind)


@pytest.mark.parametrize(
    ("verdict", "given", "results", "interrupted", "expected"),
    [
        ("PASS", {}, [], None, "PASS"),
        ("FAIL", {"R8": "FAIL", "R4": "ERROR"}, [], None, "FAIL"),
        ("INCOMPLETE", {"R11": "SKIP"}, [], None, "INCOMPLETE (R11 not measured)"),
        (
            "INCOMPLETE",
            {"R12": "INCOMPLETE", "R11": "SKIP", "R2": "NOT_RUN"},
            [],
            None,
            "INCOMPLETE (R12 cut short; R11 not measured; R2 not run)",
        ),
        (
            "INCOMPLETE",
            {f"R{n}": "NOT_RUN" for n in range(1, 8)},
            [],
            None,
            "INCOMPLETE (R1, R2, R3, R4 and 3 more not run)",
        ),
        ("ERROR", {"R4": "ERROR", "R2": "NOT_RUN"}, [error_result("R4")], None, "ERROR (R4: a bug of the suite)"),
        (
            "ERROR",
            {"R4": "ERROR", "R8": "ERROR"},
            [error_result("R4"), error_result("R8")],
            None,
            "ERROR (R4, R8: a bug of the suite)",
        ),
        (
            "ERROR",
            {"R1": "ERROR"},
            [error_result("R1", kind="endpoint unreachable")],
            None,
            "ERROR (R1: endpoint unreachable)",
        ),
        ("ERROR", {}, [], None, "ERROR"),  # pytest failed without a requirement saying why
        (
            "INCOMPLETE",
            {"R12": "INCOMPLETE"},
            [],
            STOP,
            "INCOMPLETE (run interrupted by SIGINT at 2026-11-29T04:55:24Z, 28 s in)",
        ),
    ],
)
def test_verdict_text(verdict, given, results, interrupted, expected):
    doc = {"verdict": verdict, "requirements": rows(**given), "results": results, "interrupted": interrupted}
    assert model.verdict_text(doc) == expected


def test_error_result_is_the_api_for_an_undecided_requirement():
    result = res.error_result(
        "R4", "flavor", scope="zuul/RegionOne", why="check crashed: TypeError: x", data={"seen": 1}, test="t"
    )
    assert (result["verdict"], result["project"], result["region"]) == ("ERROR", "zuul", "RegionOne")
    assert result["reason"] == "check crashed: TypeError: x: a bug of the suite, not a finding about the cloud"
    assert result["data"] == {"seen": 1, "error_kind": "suite"}
    other = res.error_result(
        "R1", "service.compute", scope="zuul/RegionOne", why="compute endpoint unreachable", kind="endpoint unreachable"
    )
    assert other["reason"] == "compute endpoint unreachable" and other["data"]["error_kind"] == "endpoint unreachable"
    assert res.make_result("R4", "f", scope="zuul", verdict="error")["verdict"] == "ERROR"


@pytest.mark.parametrize(
    ("status", "given", "expected"),
    [
        (1, {"R4": "ERROR"}, 6),
        (1, {"R4": "ERROR", "R8": "FAIL"}, 1),
        (1, {"R8": "FAIL"}, 1),
        (0, {}, 0),
        (2, {"R4": "ERROR"}, 2),  # interrupted stays interrupted
        (4, {}, 4),
    ],
)
def test_exit_status(status, given, expected):
    results = SimpleNamespace(
        results=[{"requirement": rid, "verdict": v} for rid, v in given.items()], interrupted=None
    )
    assert plugin.exit_status(status, results) == expected


# ------------------------------------------------------------------------------------- outputs of an ERROR run
def error_doc(**kwargs) -> dict:
    sr = sample_session_results(verdicts={"R4": "ERROR", **kwargs})
    return model.build_document(sr, bundle_name="sandbox-zuul-20261120T060000Z", exit_status=6)


def test_html_shows_error_apart_from_fail():
    doc = error_doc()
    assert doc["verdict"] == "FAIL"  # the sample fails R12: a FAIL of the cloud stands
    html = "".join(summary_fragments(doc))
    assert ".conformance .v-ERROR {" in html and ".conformance .v-INCOMPLETE {" in html
    assert '<td class="v-ERROR verdict-cell" title="the suite could not decide' in html
    assert 'id="conformance-error" class="v-ERROR">ERROR: R4 could not be decided' in html
    assert "1 ERROR" in html


def test_metrics_carry_a_requirement_error():
    doc = error_doc(R12="PASS")
    [scope] = metrics.scope_metrics(doc)
    assert scope.verdict == "ERROR" and scope.requirements["R4"] == "ERROR" and scope.failing == []
    stats = {name: value for name, value, _ in end_of_run([scope])}
    key = "conformance.cloud.sandbox-zuul.region.RegionOne"
    assert stats[f"{key}.verdict"] == stats[f"{key}.requirement.R4"] == metrics.VERDICT_CODES["ERROR"]
    text = openmetrics_text(doc)
    assert (
        'conformance_requirement_verdict{cloud="sandbox-zuul",region="RegionOne",requirement="R4",'
        'verdict="ERROR"} 1.0' in text
    )


def test_the_fleet_shows_an_error_bundle(tmp_path, capsys):
    doc = error_doc(R12="PASS")
    validate(doc)
    folder = tmp_path / "reports"
    bundle.write_bundle(doc, folder / doc["bundle"])
    out = tmp_path / "site"
    assert main(["fleet", str(folder), "--out", str(out)]) == 0, capsys.readouterr()
    fleet = json.loads((out / "fleet.json").read_text())
    [scope] = fleet["scopes"]
    assert scope["latest"]["verdict"] == "ERROR" and scope["latest"]["failing"] == []
    index = (out / "index.html").read_text()
    assert 'data-verdict="ERROR"' in index and '<td class="v-ERROR verdict-cell"' in index


def _classified(exc: BaseException, when: str = "call") -> dict:
    report = SimpleNamespace(when=when, longrepr=f"{type(exc).__name__}: {exc}")
    return plugin._unexplained_failure(report, SimpleNamespace(excinfo=SimpleNamespace(value=exc)))


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (TypeError("x"), "ERROR"),
        (KeyError("flavor"), "ERROR"),
        (AttributeError("'NoneType' object has no attribute 'id'"), "ERROR"),
        (RuntimeError("x"), "ERROR"),
        (AssertionError("the cloud answered 2 servers"), "FAIL"),
        (CloudFault("volume went error"), "FAIL"),
        (BootFailed("server x went ERROR: No valid host"), "FAIL"),
        (sdk_exc.ResourceTimeout("timed out waiting"), "FAIL"),
        (ksa_exc.EndpointNotFound("no compute endpoint"), "FAIL"),
        (fake_openstack.http_error("boom", 500), "FAIL"),
    ],
)
def test_what_escapes_a_check_is_error_only_when_it_is_the_suites(exc, verdict):
    outcome = _classified(exc)
    assert outcome["verdict"] == verdict, outcome
    if verdict == "ERROR":
        assert outcome["why"].startswith(f"check crashed: {type(exc).__name__}: ")
    if isinstance(exc, sdk_exc.HttpException):
        assert outcome["reason"].startswith("no answer from the cloud's API: ")


def test_a_fixture_crash_says_setup():
    assert _classified(TypeError("x"), when="setup") == {"verdict": "ERROR", "why": "setup crashed: TypeError: x"}
    assert _classified(CloudFault("gone"), when="setup")["reason"] == "check could not run: CloudFault: gone"
