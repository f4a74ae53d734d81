"""One run of the real suite against the sandbox, then its bundle: files, schema, snippets, signature,
secrets, and the HTML in a real headless browser (Debian's chromium).

The suite runs once per module (it takes about a minute); every test reads the same bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from browser import CHROMIUM, CHROMIUM_FLAGS

from conformance.__main__ import main


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    directory = tmp_path_factory.mktemp("key")
    key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "donor@example.org", "-f", str(key)], check=True
    )
    return key


_RUN: dict = {}


@pytest.fixture
def run(run_suite, signing_key):
    """The suite's real command line (tests/conftest.py's run_suite), signed at the end; run once per module
    (about a minute) and shared by the tests below."""
    if "result" not in _RUN:
        report_dir = signing_key.parent / "reports"
        proc = run_suite(f"--sign-key={signing_key}", "--burst-size=5", "--burst-timeout=180", report_dir=report_dir)
        bundles = sorted(p for p in report_dir.iterdir() if p.is_dir()) if report_dir.is_dir() else []
        assert len(bundles) == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
        _RUN["result"] = (proc, bundles[0])
    return _RUN["result"]


@pytest.fixture(scope="module")
def secrets(sandbox):
    """The sandbox user's password and a fresh token: neither may appear anywhere."""
    try:
        password = sandbox.password("sandbox-zuul")
    except (AttributeError, KeyError):
        password = yaml.safe_load(Path(sandbox.clouds_yaml).read_text())["clouds"]["sandbox-zuul"]["auth"]["password"]
    conn = sandbox.connect("sandbox-zuul")
    try:
        token = conn.session.get_token()
    finally:
        conn.close()
    assert password and token
    return {"password": password, "token": token}


def bundle_texts(path: Path) -> dict[str, str]:
    return {
        p.relative_to(path).as_posix(): p.read_text(encoding="utf-8", errors="replace")
        for p in path.rglob("*")
        if p.is_file()
    }


def test_run_produces_a_complete_bundle(run):
    proc, path = run
    names = set(bundle_texts(path))
    assert {
        "report.html",
        "results.json",
        "junit.xml",
        "MANIFEST.sha256",
        "MANIFEST.sha256.sig",
        "onboarding/clouds-public.yaml",
        "onboarding/zuul-launcher-provider.yaml",
        "onboarding/nodepool-provider.yaml",
    } <= names
    assert path.name.startswith("sandbox-zuul-")
    assert f"bundle: {path}" in proc.stdout


def test_results_json_validates_against_the_shipped_schema(run):
    _, path = run
    doc = json.loads((path / "results.json").read_text())
    schema = json.loads(resources.files("conformance").joinpath("schemas/results.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["profile"]["name"] == "sandbox" and doc["profile"]["relaxations"]
    assert {r["requirement"] for r in doc["results"]} >= {"R1", "R4", "R7", "R8", "R9", "R10"}
    assert doc["clouds"]["zuul"]["cloud"] == "sandbox-zuul"
    assert doc["api_calls"]["total"] > 0


def test_signature_verifies_and_tampering_is_named(run, signing_key, tmp_path, capsys):
    _, path = run
    assert main(["verify", str(path), "--key", f"{signing_key}.pub"]) == 0
    copy = tmp_path / path.name
    shutil.copytree(path, copy)
    (copy / "results.json").write_text((copy / "results.json").read_text().replace('"FAIL"', '"PASS"'))
    capsys.readouterr()
    assert main(["verify", str(copy), "--key", f"{signing_key}.pub"]) == 1
    assert "changed: results.json" in capsys.readouterr().err


def test_snippets_carry_the_sandbox_flavor_and_region(run):
    _, path = run
    zuul = yaml.safe_load((path / "onboarding" / "zuul-launcher-provider.yaml").read_text())
    section = next(o["section"] for o in zuul if "section" in o)
    providers = [o["provider"] for o in zuul if "provider" in o]
    assert section["flavors"][0]["flavor-name"] == "ci.standard"
    assert [p["region"] for p in providers] == ["RegionOne"]
    assert providers[0]["resource-limits"]["instances"] >= 100
    nodepool = yaml.safe_load((path / "onboarding" / "nodepool-provider.yaml").read_text())["providers"][0]
    assert nodepool["region-name"] == "RegionOne" and nodepool["cloud"] == "sandbox-zuul"
    assert nodepool["pools"][0]["labels"][0]["flavor-name"] == "ci.standard"
    assert nodepool["pools"][0]["labels"][0]["min-ram"] == 8192
    clouds = yaml.safe_load((path / "onboarding" / "clouds-public.yaml").read_text())["clouds"]
    assert clouds["sandbox-zuul"]["regions"] == ["RegionOne"]


def test_no_password_or_token_anywhere(run, secrets):
    proc, path = run
    for name, secret in secrets.items():
        assert secret not in proc.stdout and secret not in proc.stderr, f"{name} in the terminal output"
        for rel, text in bundle_texts(path).items():
            assert secret not in text, f"{name} in {rel}"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_renders_in_headless_chromium(run, tmp_path):
    _, path = run
    url = (path / "report.html").resolve().as_uri()
    flags = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*flags, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    # pytest-html's script builds the results table from embedded JSON: rows in the DOM mean it ran.
    assert 'id="conformance-matrix"' in dom.stdout and 'data-requirement="R4"' in dom.stdout
    assert 'id="conformance-verdict"' in dom.stdout
    assert '<td class="col-testId">' in dom.stdout
    assert 'id="conformance-boot-chart"' in dom.stdout or "conformance-nochart" in dom.stdout
    console_errors = [
        line for line in dom.stderr.splitlines() if ":CONSOLE" in line and ("Uncaught" in line or "Error" in line)
    ]
    assert not console_errors, console_errors
    shot = tmp_path / "report.png"
    subprocess.run(
        [*flags, "--window-size=1400,2000", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a rendered page, not a blank one
