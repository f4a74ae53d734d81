"""Metrics and the fleet view from real sandbox runs.

Three runs of the suite through its command line, shared by every test of this module (made once):
  * a burst of 2 with the static checks that measure quota, certificate and services; statsd as options;
  * the same under the sandbox's quota variant (2 instances: R8 fails and the third server of a burst of 3 is
    refused, so R12 fails too), under xdist; statsd as Zuul's STATSD_* environment;
  * the static checks against the plain-http Keystone entry (another cloud, whose R7 fails), no statsd host.
A UDP listener on 127.0.0.1 receives what each run sends. The fleet is then built from the three bundles plus
a tampered copy, and rendered in headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from browser import CHROMIUM, chromium
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conformance.__main__ import main
from conformance.metrics.model import VERDICT_CODES, scope_document
from conformance.report import compare

REGION = "RegionOne"
WITH_BURST = ("-k", "test_burst or test_quota or test_keystone_tls or test_services")
STATIC = ("-k", "test_keystone_tls or test_quota or test_services")


class StatsdListener:
    """A UDP socket on 127.0.0.1 collecting statsd lines (name, value, type) in a thread."""

    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.lines += data.decode().splitlines()

    def take(self) -> list[str]:
        time.sleep(0.5)  # the last datagrams of a run that just ended
        lines, self.lines = self.lines, []
        return lines

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def gauges(lines: list[str], prefix: str) -> dict[str, list[float]]:
    """Every value each name under `prefix` took, in order (statsd sends a negative gauge as 0 then a delta:
    none here)."""
    values: dict[str, list[float]] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        if name.startswith(prefix + "."):
            values.setdefault(f"{name[len(prefix) + 1 :]}|{kind}", []).append(float(value))
    return values


_RUNS: dict = {}


@pytest.fixture
def runs(run_suite, sandbox, tmp_path_factory):
    """The three runs (made on first use, then shared): their processes, bundles, documents and statsd lines."""
    if not _RUNS:
        base = tmp_path_factory.mktemp("fleet-runs")
        key = base / "id_ed25519"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "donor@example.org", "-f", str(key)], check=True
        )
        reports = base / "reports"
        sign, region = f"--sign-key={key}", f"--region={REGION}"
        options, environment = StatsdListener(), StatsdListener()
        try:
            default_port = StatsdListener(8125)  # statsd's own default: must stay silent without a host
        except OSError:
            default_port = None
        try:
            burst = run_suite(
                *WITH_BURST,
                sign,
                region,
                "--burst-size=2",
                "--burst-timeout=300",
                "--statsd-host=127.0.0.1",
                f"--statsd-port={options.port}",
                "--statsd-prefix=ci",
                report_dir=reports,
            )
            burst_lines = options.take()
            with sandbox.quota("zuul", instances=2):
                env = {"STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(environment.port), "STATSD_PREFIX": "zuul.env"}
                # Under xdist: the burst runs in a worker, which sends its progress itself.
                quota = run_suite(
                    *WITH_BURST,
                    sign,
                    region,
                    "--burst-size=3",
                    "--burst-timeout=300",
                    "-n",
                    "2",
                    env=env,
                    report_dir=reports,
                )
            quota_lines = environment.take()
            with sandbox.http_keystone():
                http = run_suite(*STATIC, sign, region, zuul="sandbox-zuul-http", report_dir=reports)
            silent = options.take() + environment.take() + (default_port.take() if default_port else [])
        finally:
            for listener in (options, environment, default_port):
                if listener is not None:
                    listener.close()
        bundles = {}
        for name, proc in (("burst", burst), ("quota", quota), ("http", http)):
            found = [
                line.split("bundle: ", 1)[1].split()[0]
                for line in proc.stdout.splitlines()
                if line.startswith("bundle: ")
            ]
            assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
            path = Path(found[0])
            bundles[name] = (proc, path, json.loads((path / "results.json").read_text()))
        _RUNS.update(
            bundles=bundles,
            key=key,
            reports=reports,
            burst_lines=burst_lines,
            quota_lines=quota_lines,
            silent=silent,
            options_port=options.port,
        )
    return _RUNS


def _result(doc: dict, requirement: str, check: str, project: str = "zuul") -> dict:
    return next(
        r for r in doc["results"] if (r["requirement"], r["check"], r["project"]) == (requirement, check, project)
    )


def test_statsd_lines_of_a_run_match_its_results_json(runs):
    proc, _, doc = runs["bundles"]["burst"]
    assert doc["burst"] is not None, proc.stdout[-3000:]
    key = "ci.conformance.cloud.sandbox-zuul.region.RegionOne"
    assert runs["burst_lines"] and all(line.startswith(key + ".") for line in runs["burst_lines"])
    stats = gauges(runs["burst_lines"], key)
    last = {name: values[-1] for name, values in stats.items()}
    summary = doc["burst"]["summary"]
    assert last["runs|c"] == 1
    assert last["verdict|g"] == VERDICT_CODES[doc["verdict"]]
    for row in doc["requirements"]:
        assert last[f"requirement.{row['id']}|g"] == VERDICT_CODES[row["verdict"]], row
    assert last["burst.p50|g"] == summary["p50"] and last["burst.p95|g"] == summary["p95"]
    assert last["burst.max|g"] == summary["max"] and last["burst.size|g"] == 2
    assert last["burst.failure_rate|g"] == round(1 - summary["success_rate"], 4)
    assert last["burst.boots_per_minute|g"] == summary["boots_per_minute"]
    assert last["duration|g"] == doc["duration_s"]
    for row in doc["api_calls"]["per_service"]:
        if row["region"] == REGION and row["service"]:
            assert last[f"api.{row['service']}.calls|g"] == row["count"]
            assert last[f"api.{row['service']}.errors|g"] == row["errors"]
            assert last[f"api.{row['service']}.p95|g"] == row["p95_s"]
    assert "api.compute.calls|g" in last and "api.identity.calls|g" in last
    assert last["quota.instances_headroom|g"] == _result(doc, "R8", "quota.instances")["data"]["max_servers"]
    days = [r["data"]["days_to_expiry"] for r in doc["results"] if r["check"] == "keystone.cert_expiry"]
    assert last["keystone.cert_days_to_expiry|g"] == min(days)
    # The burst's progress while it ran: sent before the end-of-run metrics, up to both servers ACTIVE.
    assert stats["burst.progress.size|g"][0] == 2 and max(stats["burst.progress.active|g"]) == 2
    assert "burst.progress.delete_left|g" in stats
    first_end = next(i for i, line in enumerate(runs["burst_lines"]) if line.startswith(f"{key}.runs:"))
    assert all(".burst.progress." not in line for line in runs["burst_lines"][first_end:])
    count = sum(len(v) for k, v in stats.items() if ".progress." not in k)
    assert (
        f"statsd: {count} metrics of sandbox-zuul/RegionOne sent to 127.0.0.1:{runs['options_port']} (prefix ci)"
        in proc.stdout
    )


def test_statsd_from_zuuls_environment_variables_and_nothing_without_a_host(runs):
    """STATSD_* is also read by openstacksdk, which then sends its own per-request metrics: only the suite's
    names are checked here."""
    proc, _, doc = runs["bundles"]["quota"]
    last = {
        k: v[-1]
        for k, v in gauges(runs["quota_lines"], "zuul.env.conformance.cloud.sandbox-zuul.region.RegionOne").items()
    }
    assert doc["verdict"] == "FAIL" and last["verdict|g"] == VERDICT_CODES["FAIL"]
    assert last["requirement.R8|g"] == VERDICT_CODES["FAIL"] and last["quota.instances_headroom|g"] == 2
    assert last["burst.failure_rate|g"] == round(1 - doc["burst"]["summary"]["success_rate"], 4) > 0
    # At least the third is refused by quota; Nova's quota recheck after the three creates raced can refuse a
    # second one too (CI saw 2 of 3): the suite reports what Nova did, and never more ACTIVE than the quota.
    progress = gauges(runs["quota_lines"], "zuul.env.conformance.cloud.sandbox-zuul.region.RegionOne.burst.progress")
    assert last["burst.progress.size|g"] == 3 and 1 <= last["burst.progress.error|g"] <= 3
    assert (
        max(progress["active|g"], default=0) <= 2
        and last["burst.progress.error|g"] + max(progress["active|g"], default=0) <= 3
    )
    http_proc = runs["bundles"]["http"][0]
    assert runs["silent"] == [] and "statsd:" not in http_proc.stdout


def _samples(path: Path) -> dict:
    families = text_string_to_metric_families((path / "metrics.prom").read_text())
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_metrics_prom_is_in_the_signed_manifest_and_matches_results_json(runs):
    _, path, doc = runs["bundles"]["burst"]
    assert "  metrics.prom\n" in (path / "MANIFEST.sha256").read_text()
    assert main(["verify", str(path), "--key", f"{runs['key']}.pub"]) == 0
    samples = _samples(path)
    where = (("cloud", "sandbox-zuul"), ("region", REGION))

    def value(name, **labels):
        return samples[(name, tuple(sorted((*where, *labels.items()))))]

    assert value("conformance_verdict", verdict=doc["verdict"]) == 1
    for row in doc["requirements"]:
        assert value("conformance_requirement_verdict", requirement=row["id"], verdict=row["verdict"]) == 1
    assert value("conformance_burst_boot_seconds", quantile="0.95") == doc["burst"]["summary"]["p95"]
    assert value("conformance_burst_failure_ratio") == round(1 - doc["burst"]["summary"]["success_rate"], 4)
    compute = next(r for r in doc["api_calls"]["per_service"] if r["service"] == "compute" and r["region"] == REGION)
    assert value("conformance_api_calls", service="compute") == compute["count"]
    assert value("conformance_api_latency_seconds", service="compute", quantile="0.95") == compute["p95_s"]
    assert value("conformance_run_duration_seconds") == doc["duration_s"]
    assert value("conformance_quota_instances_headroom") == _result(doc, "R8", "quota.instances")["data"]["max_servers"]


@pytest.fixture
def fleet(runs, tmp_path_factory):
    """The fleet of the three bundles plus a tampered copy of the first, signatures checked."""
    if "fleet" not in _RUNS:
        reports = runs["reports"]
        burst_path = runs["bundles"]["burst"][1]
        tampered = reports / f"{burst_path.name}-tampered"
        shutil.copytree(burst_path, tampered)
        doc = json.loads((tampered / "results.json").read_text())
        doc["verdict"] = "FAIL" if doc["verdict"] == "PASS" else "PASS"
        (tampered / "results.json").write_text(json.dumps(doc, indent=2))
        allowed = runs["key"].parent / "allowed_signers"
        public_key = Path(f"{runs['key']}.pub").read_text()
        allowed.write_text(f"donor@example.org {public_key}")
        out = tmp_path_factory.mktemp("fleet") / "site"
        code = main(["fleet", str(reports), "--out", str(out), "--allowed-signers", str(allowed)])
        assert code == 0
        _RUNS["fleet"] = (out, json.loads((out / "fleet.json").read_text()), tampered)
    return _RUNS["fleet"]


def test_fleet_rows_trends_changes_and_the_rejection(runs, fleet):
    out, data, tampered = fleet
    docs = {name: doc for name, (_, _, doc) in runs["bundles"].items()}
    rows = {(s["cloud"], s["region"]): s for s in data["scopes"]}
    assert set(rows) == {("sandbox-zuul", REGION), ("sandbox-zuul-http", REGION)}
    main_row, http_row = rows[("sandbox-zuul", REGION)], rows[("sandbox-zuul-http", REGION)]
    assert [r["bundle"] for r in main_row["runs"]] == [docs["burst"]["bundle"], docs["quota"]["bundle"]]
    assert main_row["latest"]["verdict"] == "FAIL" and {"R8", "R12"} <= set(main_row["latest"]["failing"])
    assert "R8" not in main_row["runs"][0]["failing"]
    assert "R7" in http_row["latest"]["failing"] and http_row["latest"]["verdict"] == "FAIL"
    assert not main_row["stale"] and main_row["age_hours"] < 1
    assert all(r["signature"]["status"] == "verified" for s in data["scopes"] for r in s["runs"])
    # Trend points are the runs' burst p95 and failure rate, in time order; a run without a p95 has no point.
    # The quota run's p95 can be missing: Nova re-checks quota once the three concurrent creates' records exist,
    # and each of them can be refused (CI saw "already used 2 of 2 instances (413)" three times).
    p95s = [docs[name]["burst"]["summary"]["p95"] for name in ("burst", "quota")]
    assert p95s[0] is not None
    assert [p["value"] for p in main_row["trends"]["burst_p95_s"]] == [p95 for p95 in p95s if p95 is not None]
    rates = [p["value"] for p in main_row["trends"]["burst_failure_rate"]]
    assert rates == [round(1 - d["burst"]["summary"]["success_rate"], 4) for d in (docs["burst"], docs["quota"])]
    assert rates[1] > rates[0]
    # What changed between them: compare's answer for the region, with the regressions it names.
    [change] = main_row["changes"]
    expected = compare.compare(scope_document(docs["burst"], REGION), scope_document(docs["quota"], REGION))
    assert change["regressions"] == expected["regressions"]
    assert "R8: PASS -> FAIL" in change["regressions"] and change["burst"]["failure_rate_regression"]
    [rejected] = data["rejected"]
    assert rejected["source"] == str(tampered) and rejected["reason"] == "changed: results.json"
    index = (out / "index.html").read_text()
    assert index.count("<tr data-cloud=") == 2 and 'data-points="2"' in index
    assert f"<code>{tampered}</code>" in index and "changed: results.json" in index
    page = (out / main_row["page"]).read_text()
    assert page.count('<div class="change"') == 1 and "R8: PASS &rarr; FAIL" in page
    for run in main_row["runs"]:
        assert (out / run["report"]).is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_fleet_pages_render_in_headless_chromium_with_no_external_url(fleet, tmp_path):
    from PIL import Image

    out, data, _ = fleet
    main_row = next(s for s in data["scopes"] if s["cloud"] == "sandbox-zuul")
    # The copied reports link nowhere outside the site either (pytest-html's credit link is kept as text).
    for report in (out / "runs").rglob("report.html"):
        assert not re.findall(r"""(?:href|src)\s*=\s*["'](?:[a-z]+:)?//""", report.read_text()), report
    for page in (out / "index.html", out / main_row["page"]):
        text = page.read_text()
        assert "http://" not in text and "https://" not in text and "<script" not in text, page
        shot = tmp_path / f"{page.stem}.png"
        # One browser run per page: the DOM it built, and what it drew.
        done = chromium(
            page.resolve().as_uri(),
            tmp_path / "profile",
            "--window-size=1400,900",
            f"--screenshot={shot}",
            "--dump-dom",
        )
        assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
        table = "fleet-index" if page.name == "index.html" else "region-runs"
        assert f'id="{table}"' in done.stdout and done.stdout.count("<tr data-") >= 2
        image = Image.open(shot).convert("RGB")
        assert image.size == (1400, 900)
        pixels = list(image.get_flattened_data())
        # The table rendered: its header background (#eee) and the FAIL cells' red (#f8d7da) are on screen.
        header = sum(1 for p in pixels if p == (238, 238, 238))
        fail = sum(1 for p in pixels if p == (248, 215, 218))
        drawn = sum(1 for p in pixels if p != (255, 255, 255))
        assert header > 2000 and fail > 500, (page.name, header, fail)
        assert drawn > 0.02 * len(pixels)
