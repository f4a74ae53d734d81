"""`python -m conformance compare OLD NEW`: verdict changes and burst deltas; exit 1 on regression."""

from __future__ import annotations

import json

from conformance.__main__ import main
from conformance.report import bundle, compare, model
from conformance.report.sample import sample_session_results


def write(tmp_path, name, **kwargs):
    doc = model.build_document(sample_session_results(**kwargs), bundle_name=name)
    return bundle.write_bundle(doc, tmp_path / name).path


def test_injected_pass_to_fail_is_a_regression(tmp_path, capsys):
    old = write(tmp_path, "old")
    new = write(tmp_path, "new", verdicts={"R8": "FAIL"})
    assert main(["compare", str(old), str(new)]) == 1
    out = capsys.readouterr().out
    assert "R8   PASS -> FAIL   REGRESSION" in out
    assert "R8 quota.instances zuul/RegionOne: PASS -> FAIL" in out


def test_same_results_no_regression(tmp_path, capsys):
    old = write(tmp_path, "old")
    assert main(["compare", str(old / "results.json"), str(old)]) == 0
    assert "no regression" in capsys.readouterr().out


def test_fail_to_pass_is_not_a_regression(tmp_path):
    old = write(tmp_path, "old", verdicts={"R4": "FAIL"})
    new = write(tmp_path, "new")
    assert main(["compare", str(old), str(new)]) == 0


def test_skip_is_a_change_not_a_regression():
    old = model.build_document(sample_session_results(verdicts={"R12": "PASS"}))
    new = model.build_document(sample_session_results(burst=False))
    result = compare.compare(old, new)
    assert {"id": "R12", "old": "PASS", "new": "SKIP", "regression": False} in result["requirement_changes"]
    assert not result["regression"]


def test_burst_p95_and_failure_rate_deltas():
    old = model.build_document(sample_session_results())
    slower = model.build_document(sample_session_results(slow_from=60))
    result = compare.compare(old, slower)
    assert result["burst"]["p95_delta_s"] == 60.0 and result["burst"]["p95_regression"]
    assert any(r.startswith("burst p95") for r in result["regressions"])
    slightly = model.build_document(sample_session_results(slow_from=3))
    assert not compare.compare(old, slightly)["burst"]["p95_regression"]  # within the 5 s noise floor
    worse = json.loads(json.dumps(old))
    worse["burst"]["summary"]["success_rate"] = 0.80
    result = compare.compare(old, worse)
    assert result["burst"]["failure_rate_delta"] == 0.15 and result["burst"]["failure_rate_regression"]


def test_json_output(tmp_path, capsys):
    old = write(tmp_path, "old")
    new = write(tmp_path, "new", verdicts={"R1": "WARN"})
    assert main(["compare", "--json", str(old), str(new)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regressions"] == ["R1: PASS -> WARN", "R1 services.compute zuul/RegionOne: PASS -> WARN"]


def test_bad_inputs_exit_2(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    old = write(tmp_path, "old")
    assert main(["compare", str(old)]) == 2
    assert main(["compare", str(old), str(tmp_path / "missing")]) == 2
    assert main(["compare", str(old), str(tmp_path / "bad.json")]) == 2
    assert main(["compare", str(old), str(tmp_path / "other.json")]) == 2


def test_interrupted_run_is_a_change_not_a_regression_and_its_partial_burst_is_not_compared(tmp_path, capsys):
    old = write(tmp_path, "old", verdicts={"R12": "PASS"})
    new = write(tmp_path, "new", interrupted=True)
    assert main(["compare", str(old), str(new)]) == 0
    out = capsys.readouterr().out
    assert "R12  PASS -> INCOMPLETE\n" in out
    assert "-> INCOMPLETE (run interrupted by SIGINT at 2026-11-28T12:25:00Z, 1500 s in)" in out
    assert "burst: NEW INCOMPLETE (cut short while booting): boot times not compared" in out
    assert "burst p95: 66.2 s -> n/a\nburst failure rate: 0.05 -> n/a\n" in out
    # ... but a FAIL after an interrupted run is a regression
    failed = write(tmp_path, "failed", verdicts={"R12": "FAIL"})
    assert main(["compare", str(new), str(failed)]) == 1
