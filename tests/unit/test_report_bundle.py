"""The bundle's files from a made-up run: schema, manifest, redaction canary, snippets, chart, API stats."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from importlib import resources

import jsonschema
import pytest
import yaml

from conformance.redact import register_secret
from conformance.report import bundle, model, onboarding
from conformance.report.chart import boot_time_svg, histogram
from conformance.report.sample import sample_session_results

CANARY = "Canary-s3cret-\"<&>'-ünï"


def schema():
    return json.loads(resources.files("conformance").joinpath("schemas/results.schema.json").read_text())


def make_bundle(tmp_path, **kwargs):
    doc = model.build_document(
        sample_session_results(**kwargs), bundle_name="sandbox-zuul-20261128T120000Z", exit_status=1
    )
    out = bundle.write_bundle(doc, tmp_path / "sandbox-zuul-20261128T120000Z")
    return doc, out.path


def test_bundle_layout_and_schema(tmp_path):
    doc, path = make_bundle(tmp_path)
    assert sorted(bundle.bundle_files(path)) == [
        "metrics.prom",
        "onboarding/clouds-public.yaml",
        "onboarding/nodepool-provider.yaml",
        "onboarding/zuul-launcher-provider.yaml",
        "report.html",
        "results.json",
    ]
    assert (path / bundle.MANIFEST).is_file()
    written = json.loads((path / "results.json").read_text())
    jsonschema.validate(written, schema())
    assert written["schema_version"] == model.SCHEMA_VERSION
    assert all(r["requirement"] for r in written["results"])
    assert [r["id"] for r in written["requirements"]][:13] == [f"R{i}" for i in range(1, 14)]


def test_schema_rejects_a_result_without_requirement_id(tmp_path):
    doc, path = make_bundle(tmp_path)
    written = json.loads((path / "results.json").read_text())
    del written["results"][0]["requirement"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(written, schema())


def test_manifest_is_sha256sum_format(tmp_path):
    _, path = make_bundle(tmp_path)
    assert bundle.check_files(path) == []
    if shutil.which("sha256sum"):
        proc = subprocess.run(
            ["sha256sum", "--check", "--strict", bundle.MANIFEST], cwd=path, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_files_names_changed_missing_extra(tmp_path):
    _, path = make_bundle(tmp_path)
    data = bytearray((path / "results.json").read_bytes())
    data[10] ^= 1
    (path / "results.json").write_bytes(bytes(data))
    (path / "onboarding" / "nodepool-provider.yaml").unlink()
    (path / "onboarding" / "notes.txt").write_text("added\n")
    assert bundle.check_files(path) == [
        "missing: onboarding/nodepool-provider.yaml",
        "changed: results.json",
        "extra: onboarding/notes.txt (not in MANIFEST.sha256)",
    ]


def test_canary_secret_never_written(tmp_path):
    register_secret(CANARY)
    _, path = make_bundle(tmp_path, secret=CANARY)
    # Text foreign to the bundle writer (as pytest-html's and junitxml's files are) is scrubbed too, in
    # plain, HTML-escaped and JSON-escaped form.
    foreign = f'<p>{CANARY}</p><div data-x="{json.dumps(CANARY)}">{json.dumps(CANARY)[1:-1]}</div>'
    (path / "junit.xml").write_text(foreign + html.escape(json.dumps(CANARY)[1:-1]))
    bundle.write_bundle(json.loads((path / "results.json").read_text()), path)
    forms = {CANARY, json.dumps(CANARY)[1:-1], html.escape(CANARY), html.escape(json.dumps(CANARY)[1:-1])}
    for file in path.rglob("*"):
        if file.is_file():
            text = file.read_text(encoding="utf-8")
            for form in forms:
                assert form not in text, f"secret leaked into {file.relative_to(path)}"
    assert "***" in (path / "junit.xml").read_text()


def test_overall_verdicts():
    assert model.build_document(sample_session_results(), exit_status=1)["verdict"] == "FAIL"
    ok = sample_session_results(verdicts={"R12": "PASS"})
    assert model.build_document(ok, exit_status=0)["verdict"] == "INCOMPLETE"  # R2, R3... not run
    ok.results = [r for r in ok.results if r["requirement"] != "R12"]
    ok.results += [dict(ok.results[0], requirement=f"R{i}") for i in range(1, 14)]
    assert model.build_document(ok, exit_status=0)["verdict"] == "PASS"
    assert model.build_document(ok, exit_status=1)["verdict"] == "ERROR"


def test_api_call_statistics_group_by_endpoint():
    doc = model.build_document(sample_session_results())
    rows = {(r["method"], r["endpoint"]): r for r in doc["api_calls"]["per_endpoint"]}
    get = rows[("GET", "/v2.1/servers/{id}")]
    assert get["count"] == 30 and get["errors"] == 0
    assert get["p50_s"] == pytest.approx(0.0645, abs=1e-4) and get["p95_s"] == pytest.approx(0.07755, abs=1e-4)
    post = rows[("POST", "/v2.1/servers")]
    assert post["count"] == 20 and post["errors"] == 1
    assert doc["api_calls"]["total"] == 51


def test_percentile_matches_linear_interpolation():
    assert model.percentile([1, 2, 3, 4], 50) == 2.5
    assert model.percentile([5], 95) == 5
    assert model.percentile([], 95) is None
    assert model.percentile(range(1, 101), 95) == pytest.approx(95.05)


def test_onboarding_snippets_parse_and_carry_the_facts(tmp_path):
    doc, path = make_bundle(tmp_path, flavor_disk=0)
    texts = {p.name: p.read_text() for p in (path / "onboarding").iterdir()}
    for name, text in texts.items():
        assert text.startswith("# DRAFT"), name
        assert yaml.safe_load(text), name
    zuul = yaml.safe_load(texts["zuul-launcher-provider.yaml"])
    section = zuul[0]["section"]
    provider = zuul[1]["provider"]
    assert section["flavors"] == [{"name": "normal", "flavor-name": "ci.standard"}]
    # Zuul 14.3's OpenStack label takes boot-from-volume and volume-size from label-defaults, not its flavor.
    assert section["label-defaults"]["boot-from-volume"] is True and section["label-defaults"]["volume-size"] == 80
    assert section["label-defaults"]["auto-floating-ip"] is True and section["launch-timeout"] == 600
    assert section["images"] == [{"name": "noble-cloud-image", "image-id": "IMAGE-ID"}]
    assert "abstract" not in section
    assert provider["region"] == "RegionOne" and provider["section"] == section["name"]
    # 150 servers fit the quota; the profile's quota.headroom_percent (10) keeps the draft below it.
    assert provider["resource-limits"] == {"instances": 135, "volumes": 135, "volume-gb": 135 * 80}
    assert "# resource-limits: 10% below the quota R8 measured" in texts["zuul-launcher-provider.yaml"]
    nodepool_yaml = yaml.safe_load(texts["nodepool-provider.yaml"])
    assert nodepool_yaml["labels"] == [{"name": "ubuntu-noble", "min-ready": 0}]
    nodepool = nodepool_yaml["providers"][0]
    assert nodepool["region-name"] == "RegionOne" and nodepool["cloud"] == "sandbox-zuul"
    pool = nodepool["pools"][0]
    assert pool["max-servers"] == 135
    assert pool["labels"][0]["flavor-name"] == "ci.standard" and pool["labels"][0]["min-ram"] == 8192
    assert pool["labels"][0]["boot-from-volume"] is True and pool["labels"][0]["volume-size"] == 80
    clouds = yaml.safe_load(texts["clouds-public.yaml"])["clouds"]
    assert clouds["sandbox-zuul"]["auth"]["auth_url"] == "https://127.0.0.1:5000/v3"
    assert clouds["sandbox-zuul"]["regions"] == ["RegionOne"]
    assert clouds["sandbox-zuul"]["auth"]["project_domain_name"] == "Default"
    assert "password" not in texts["clouds-public.yaml"].split("# The public part")[1].split("\n", 1)[1]


def test_onboarding_without_disk_settings_when_flavor_has_disk():
    doc = model.build_document(sample_session_results(flavor_disk=80))
    zuul = onboarding.zuul_launcher(doc)
    assert "volume-size" not in zuul[0]["section"]["flavors"][0]
    assert "boot-from-volume" not in zuul[0]["section"]["label-defaults"]
    assert "volume-size" not in zuul[0]["section"]["label-defaults"]
    assert zuul[1]["provider"]["resource-limits"] == {"instances": 135}


def test_chart_is_svg_with_one_bar_per_nonempty_bin():
    doc = model.build_document(sample_session_results())
    svg = boot_time_svg(doc["burst"])
    root = ET.fromstring(svg)
    bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if e.get("class") == "bar"]
    assert sum(int(b.get("data-count")) for b in bars) == 19  # 20 servers, 1 failed
    markers = {e.get("data-marker") for e in root.iter() if e.get("data-marker")}
    assert markers == {"p50", "p95", "threshold"}
    # The 600 s threshold is far beyond ~70 s boots: named at the edge, not drawn (the bars keep their width).
    assert any(e.get("class") == "marker-off-scale" for e in root.iter())


def test_chart_draws_a_threshold_within_range():
    doc = model.build_document(sample_session_results())
    doc["burst"]["max_p95_boot_s"] = 90
    root = ET.fromstring(boot_time_svg(doc["burst"]))
    lines = [e.get("data-marker") for e in root.iter("{http://www.w3.org/2000/svg}line") if e.get("data-marker")]
    assert lines == ["p50", "p95", "threshold"]


def test_chart_absent_without_burst():
    doc = model.build_document(sample_session_results(burst=False))
    assert doc["burst"] is None
    assert "No burst was run" in boot_time_svg(doc["burst"])


def test_histogram_bins_cover_all_values():
    counts, step, upper = histogram([0.0, 9.99, 10.0, 59.5])
    assert sum(counts) == 4 and upper > 59.5 and step * len(counts) == pytest.approx(upper)


def test_html_has_matrix_verdict_and_environment(tmp_path):
    doc, path = make_bundle(tmp_path)
    text = (path / "report.html").read_text()
    for marker in (
        'id="conformance-matrix"',
        'id="conformance-verdict"',
        'id="conformance-boot-chart"',
        'id="conformance-api-calls"',
        'id="conformance-environment"',
        "public_ip.accept_documentation",
    ):
        assert marker in text
    assert "Overall verdict: <b>FAIL</b>" in text
    assert doc["profile"]["sha256"] in text


def test_new_bundle_dirs_are_unique(tmp_path):
    import datetime as dt

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    first = bundle.new_bundle_dir(tmp_path, "my cloud/zuul", now)
    second = bundle.new_bundle_dir(tmp_path, "my cloud/zuul", now)
    assert first.name == "my-cloud-zuul-20260102T030405Z" and second.name == first.name + "-2"


def test_interrupted_run_document_html_and_schema(tmp_path):
    sr = sample_session_results(interrupted=True)
    doc = model.build_document(sr, bundle_name="b", exit_status=2)
    jsonschema.validate(doc, schema())
    assert doc["verdict"] == "INCOMPLETE" and doc["interrupted"]["reason"] == "SIGINT"
    assert doc["burst"]["verdict"] == "INCOMPLETE" and doc["burst"]["complete"] is False
    r12 = next(r for r in doc["requirements"] if r["id"] == "R12")
    assert r12["verdict"] == "INCOMPLETE" and r12["counts"]["INCOMPLETE"] == 2
    assert model.verdict_text(doc) == "INCOMPLETE (run interrupted by SIGINT at 2026-11-28T12:25:00Z, 1500 s in)"
    page = (bundle.write_bundle(doc, tmp_path / "b").path / "report.html").read_text()
    assert "run interrupted by SIGINT at 2026-11-28T12:25:00Z" in page
    assert 'id="conformance-burst-interrupted"' in page and "during its boot phase" in page
    assert '<td class="v-INCOMPLETE verdict-cell">INCOMPLETE</td>' in page


def test_interruption_is_not_a_crash_and_incomplete_is_worse_than_pass():
    rows = [{"id": "R1", "verdict": "PASS"}, {"id": "R2", "verdict": "PASS"}]
    stop = {"reason": "SIGTERM", "at": "2026-11-28T12:25:00Z", "during": "finish"}
    assert model.overall_verdict(rows, 2) == "ERROR"
    assert model.overall_verdict(rows, 2, stop) != "ERROR"
    assert model.overall_verdict(rows + [{"id": "R12", "verdict": "INCOMPLETE"}], 1) == "INCOMPLETE"
    assert model.overall_verdict(rows + [{"id": "R12", "verdict": "FAIL"}], 2, stop) == "FAIL"
    assert model.requirement_verdict(["PASS", "INCOMPLETE", "WARN"]) == "INCOMPLETE"
    assert model.requirement_verdict(["INCOMPLETE", "FAIL"]) == "FAIL"
    assert model.normalize_result({"requirement": "R12", "verdict": "incomplete"})["verdict"] == "INCOMPLETE"
