"""HTML fragments of the report: verdict, requirement matrix, signature, boot chart, API calls, environment.

They go at the top of pytest-html's report (pytest_html_results_summary prefix). Without pytest-html (a bundle
written outside a pytest run) `standalone_page` wraps the same fragments in a minimal page.
Every value is escaped here; redaction happens when the bundle writer writes the file.
"""

from __future__ import annotations

import json
from html import escape

from conformance.report.chart import boot_time_svg
from conformance.report.model import verdict_text

STYLE = """
.conformance h2 { margin-top: 1.2em; }
.conformance table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 13px; }
.conformance th, .conformance td { border: 1px solid #ccc; padding: 3px 7px; text-align: left;
  vertical-align: top; }
.conformance th { background: #eee; }
.conformance .v-PASS { background: #d4edda; } .conformance .v-FAIL { background: #f8d7da; font-weight: bold; }
.conformance .v-WARN { background: #fff3cd; }
.conformance .v-SKIP, .conformance .v-NOT_RUN { background: #e2e3e5; }
.conformance .v-INCOMPLETE { background: #fff3cd; font-weight: bold; }
.conformance .v-ERROR { background: #e2d9f3; font-weight: bold; border-left: 3px solid #6f42c1; }
.conformance .verdict { font-size: 20px; padding: 8px 14px; display: inline-block; border: 1px solid #999; }
.conformance .num { text-align: right; font-variant-numeric: tabular-nums; }
""".strip()


def _e(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return escape(json.dumps(value, sort_keys=True))
    return escape(str(value))


# Hover text of a verdict that is not about the cloud: ERROR must not read as a FAIL.
VERDICT_TITLES = {"ERROR": "the suite could not decide (a bug of the suite, not a finding about the cloud)"}


def _v(verdict: str) -> str:
    title = f' title="{_e(VERDICT_TITLES[verdict])}"' if verdict in VERDICT_TITLES else ""
    return f'<td class="v-{_e(verdict)} verdict-cell"{title}>{_e(verdict.replace("_", " "))}</td>'


def verdict_html(doc: dict) -> str:
    verdict = doc.get("verdict", "")
    counts = {
        v: sum(1 for r in doc.get("requirements", []) if r["verdict"] == v)
        for v in ("PASS", "FAIL", "ERROR", "WARN", "INCOMPLETE", "SKIP", "NOT_RUN")
    }
    detail = ", ".join(f"{n} {v.replace('_', ' ')}" for v, n in counts.items() if n)
    profile = doc.get("profile") or {}
    html = (
        f'<p><span id="conformance-verdict" class="verdict v-{_e(verdict)}">Overall verdict: '
        f"<b>{_e(verdict_text(doc))}</b></span> &nbsp; requirements: {_e(detail)}; profile "
        f"<b>{_e(profile.get('name'))}</b>; bundle <code>{_e(doc.get('bundle'))}</code></p>"
    )
    errors = [r["id"] for r in doc.get("requirements", []) if r["verdict"] == "ERROR"]
    if errors:
        html += (
            f'<p id="conformance-error" class="v-ERROR">ERROR: {_e(", ".join(errors))} could not be decided, '
            "for a reason that is not the cloud's fault (each result's reason says which; a crash of the suite "
            "is a bug of the suite, not a finding about the cloud). Not a FAIL: decide it with another run.</p>"
        )
    stop = doc.get("interrupted")
    if isinstance(stop, dict):
        cut = {
            "start": "before any check ran.",
            "checks": "while the checks ran: the check under way recorded what it had measured (INCOMPLETE); "
            "the checks after it did not run.",
            "finish": "after every check had ended: nothing was cut short.",
        }.get(stop.get("during"), "")
        html += (
            f'<p id="conformance-interrupted" class="v-INCOMPLETE"><b>{_e(verdict_text(doc))}</b>: the run was '
            f"stopped {_e(cut)}</p>"
        )
    return html


def matrix_html(doc: dict) -> str:
    results_by_req: dict[str, list] = {}
    for result in doc.get("results", []):
        results_by_req.setdefault(result["requirement"], []).append(result)
    rows = []
    for req in doc.get("requirements", []):
        results = results_by_req.get(req["id"], [])
        if not results:
            rows.append(
                f'<tr data-requirement="{_e(req["id"])}"><td>{_e(req["id"])}</td><td>{_e(req["text"])}</td>'
                f"<td></td><td></td><td></td><td></td>{_v(req['verdict'])}<td>no result in this run</td></tr>"
            )
        for index, result in enumerate(results):
            where = "/".join(p for p in (result.get("project"), result.get("region")) if p)
            # The requirement text once per requirement: the rows below it are its checks.
            text = _e(req["text"]) if index == 0 else ""
            rows.append(
                f'<tr data-requirement="{_e(req["id"])}"><td>{_e(req["id"])}</td>'
                f"<td>{text}</td><td>{_e(result.get('check'))}</td><td>{_e(where)}</td>"
                f"<td>{_e(result.get('measured'))}</td><td>{_e(result.get('threshold'))}</td>"
                f"{_v(result['verdict'])}<td>{_e(result.get('reason'))}</td></tr>"
            )
    return (
        '<h2>Requirement matrix</h2><table id="conformance-matrix"><thead><tr><th>ID</th><th>Requirement</th>'
        "<th>Check</th><th>Project/region</th><th>Measured</th><th>Threshold</th><th>Verdict</th>"
        "<th>Reason</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def signature_html(doc: dict) -> str:
    sig = doc.get("signature")
    if not sig:
        body = (
            "Not signed at the end of the run. Verify the signature that came with the bundle with "
            "<code>python -m conformance verify</code>."
        )
    else:
        body = (
            f'Signed ({_e(sig.get("format"))}) by key <code id="conformance-signing-key">'
            f"{_e(sig.get('fingerprint'))}</code>; signature <code>{_e(sig.get('file'))}</code> over "
            f"<code>MANIFEST.sha256</code>. Check it with <code>python -m conformance verify</code>."
        )
    return f'<h2>Signature</h2><p id="conformance-signature">{body}</p>'


def burst_html(doc: dict) -> str:
    burst = doc.get("burst")
    parts = ["<h2>Boot times (R12 burst)</h2>", boot_time_svg(burst)]
    if burst:
        summary = burst.get("summary") or {}
        stop = summary.get("interrupted")
        if isinstance(stop, dict):
            parts.append(
                f'<p id="conformance-burst-interrupted" class="v-INCOMPLETE">The burst was interrupted by '
                f"{_e(stop.get('reason'))} at {_e(stop.get('at'))}, {_e(stop.get('after_s'))} s in, during its "
                f"{_e(stop.get('phase'))} phase: {_e(summary.get('active'))} of {_e(summary.get('n'))} servers "
                f"ACTIVE, {_e(summary.get('error'))} failed, {_e(summary.get('build'))} still building, "
                f"{_e(summary.get('not_requested'))} never requested. The times below are those measured until "
                f"then.</p>"
            )
        cells = "".join(f'<tr><th>{_e(k)}</th><td class="num">{_e(v)}</td></tr>' for k, v in summary.items())
        parts.append(
            f'<table id="conformance-burst-summary"><tr><th>scope</th><td>{_e(burst.get("scope"))}</td>'
            f'</tr>{cells}<tr><th>p95 threshold (s)</th><td class="num">{_e(burst.get("max_p95_boot_s"))}'
            f'</td></tr><tr><th>max failure rate</th><td class="num">{_e(burst.get("max_failure_rate"))}'
            f"</td></tr></table>"
        )
        failed = [s for s in burst.get("servers") or [] if s.get("fault") or str(s.get("status")).upper() != "ACTIVE"]
        if failed:
            rows = "".join(
                f"<tr><td>{_e(s.get('name'))}</td><td>{_e(s.get('status'))}</td><td>{_e(s.get('fault'))}</td></tr>"
                for s in failed
            )
            parts.append(f"<table><tr><th>failed server</th><th>status</th><th>fault</th></tr>{rows}</table>")
    return "".join(parts)


def calls_html(doc: dict) -> str:
    stats = doc.get("api_calls") or {}
    rows = "".join(
        f"<tr><td>{_e(r['service'])}</td><td>{_e(r['method'])}</td><td><code>{_e(r['endpoint'])}</code></td>"
        f'<td class="num">{r["count"]}</td><td class="num">{r["errors"]}</td>'
        f'<td class="num">{_ms(r["p50_s"])}</td><td class="num">{_ms(r["p95_s"])}</td>'
        f'<td class="num">{_ms(r["max_s"])}</td></tr>'
        for r in stats.get("per_endpoint", [])
    )
    return (
        f"<h2>API calls</h2><p>{_e(stats.get('total', 0))} calls, {_e(stats.get('errors', 0))} with an error "
        f'status.</p><table id="conformance-api-calls"><thead><tr><th>service</th><th>method</th>'
        f"<th>endpoint</th><th>count</th><th>errors</th><th>p50 (ms)</th><th>p95 (ms)</th><th>max (ms)</th>"
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def retries_html(doc: dict) -> str:
    """Retries per service and reason: a flaky API is shown, never hidden behind the retries that coped."""
    stats = doc.get("api_retries") or {}
    rows = "".join(
        f'<tr><td>{_e(r["service"] or "?")}</td><td>{_e(r["reason"])}</td><td class="num">{r["retries"]}</td>'
        f'<td class="num">{r["calls"]}</td><td class="num">{r["gave_up"]}</td></tr>'
        for r in stats.get("per_service", [])
    )
    if not rows:
        return '<h2>API retries</h2><p id="conformance-api-retries">No call needed a retry.</p>'
    return (
        f"<h2>API retries</h2><p>{_e(stats.get('total', 0))} retries of {_e(stats.get('calls', 0))} calls; "
        f"{_e(stats.get('gave_up', 0))} calls failed after their retries.</p>"
        '<table id="conformance-api-retries"><thead><tr><th>service</th><th>why</th><th>retries</th>'
        "<th>calls retried</th><th>gave up</th></tr></thead><tbody>" + rows + "</tbody></table>"
    )


def _ms(seconds) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}"


def environment_html(doc: dict) -> str:
    env = doc.get("environment") or {}
    profile = doc.get("profile") or {}
    rows = [
        ("suite version", env.get("suite_version")),
        ("openstacksdk", env.get("openstacksdk")),
        ("python", env.get("python")),
        ("pytest", env.get("pytest")),
        ("platform", env.get("platform")),
        ("profile", profile.get("name")),
        ("profile sha256", profile.get("sha256")),
        ("started (UTC)", doc.get("started_at")),
        ("finished (UTC)", doc.get("finished_at")),
        ("duration (s)", doc.get("duration_s")),
    ]
    html = ['<h2>Run environment</h2><table id="conformance-environment">']
    html += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows]
    html.append("</table>")
    relaxations = profile.get("relaxations") or []
    if relaxations:
        html.append('<table id="conformance-relaxations"><tr><th>relaxed profile key</th><th>reason</th></tr>')
        html += [f"<tr><td><code>{_e(r['key'])}</code></td><td>{_e(r['reason'])}</td></tr>" for r in relaxations]
        html.append("</table>")
    else:
        html.append("<p>The profile relaxes no requirement.</p>")
    clouds = doc.get("clouds") or {}
    if clouds:
        keys = sorted({k for facts in clouds.values() for k in facts})
        roles = sorted(clouds)
        html.append(
            '<table id="conformance-clouds"><tr><th>cloud fact</th>'
            + "".join(f"<th>{_e(r)}</th>" for r in roles)
            + "</tr>"
        )
        html += [
            "<tr><th>" + _e(k) + "</th>" + "".join(f"<td>{_e(clouds[r].get(k))}</td>" for r in roles) + "</tr>"
            for k in keys
        ]
        html.append("</table>")
    return "".join(html)


def summary_fragments(doc: dict) -> list[str]:
    """What goes at the top of the report, in order."""
    return [
        f"<style>{STYLE}</style>",
        '<div class="conformance">'
        + verdict_html(doc)
        + matrix_html(doc)
        + signature_html(doc)
        + burst_html(doc)
        + calls_html(doc)
        + retries_html(doc)
        + environment_html(doc)
        + "</div>",
    ]


def standalone_page(doc: dict) -> str:
    title = f"Conformance report {doc.get('bundle', '')}"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"/><title>' + _e(title) + "</title></head><body>"
        f"<h1>{_e(title)}</h1>" + "".join(summary_fragments(doc)) + "</body></html>\n"
    )
