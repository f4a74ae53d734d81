"""The fleet's static site: index.html, one page per cloud and region, fleet.json, each run's report.html.

Self-contained and offline: inline CSS and SVG, no script, no font, no image file, no external URL (not even
in links: a run's report.html is copied into the site, `runs/<bundle>/report.html`, with its one link out,
pytest-html's credit, kept as text). Links are relative, so the folder works from a file:// path and from a Zuul
log server alike.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from html import escape
from pathlib import Path

from conformance.fleet.build import TRENDS, build_fleet, slug
from conformance.fleet.sources import FleetCache, Run
from conformance.report.html import STYLE as REPORT_STYLE
from conformance.report.layout import HTML

FLEET_JSON = "fleet.json"
INDEX = "index.html"
RUNS = "runs"
OWN = (INDEX, FLEET_JSON, "regions", RUNS)  # what a rebuild replaces in --out
INDEX_TREND_POINTS = 30  # the index shows the latest runs; a region's page shows all of them
DIGITS = {"burst_p95_s": 1, "burst_failure_rate": 3}
SIGNATURE_CLASSES = {"verified": "sig-ok", "signed": "sig-unchecked", "unverifiable": "sig-bad", "unsigned": "sig-bad"}

STYLE = (
    REPORT_STYLE
    + """
body { font-family: sans-serif; margin: 1.2em; color: #222; }
.conformance .stale { background: #fff3cd; font-weight: bold; }
.conformance .sig-ok { color: #155724; } .conformance .sig-unchecked { color: #555; }
.conformance .sig-bad { color: #721c24; font-weight: bold; }
.conformance .trend polyline { fill: none; stroke: #1f5f99; stroke-width: 1.5; }
.conformance .trend circle { fill: #1f5f99; } .conformance .trend line.threshold { stroke: #d62728; }
.conformance .regression { color: #a00; font-weight: bold; }
.conformance .muted { color: #666; }
"""
)


class OutError(Exception):
    """--out cannot be used (a non-empty folder that is not a fleet site): a usage error."""


def _e(value) -> str:
    return "" if value is None else escape(str(value))


def _v(verdict: str | None) -> str:
    verdict = verdict or "NOT_RUN"
    return f'<td class="v-{_e(verdict)} verdict-cell">{_e(verdict.replace("_", " "))}</td>'


def _num(value, digits: int = 1) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _e(value)
    return f"{value:.{digits}f}" if isinstance(value, float) and value != int(value) else f"{value:g}"


def age_text(hours: float | None) -> str:
    if hours is None:
        return "unknown"
    if hours < 1:
        return f"{max(0, int(hours * 60))} min"
    if hours < 48:
        return f"{int(hours)} h"
    return f"{int(hours // 24)} d {int(hours % 24)} h"


def trend_svg(points: list[dict], metric: str, *, width: int = 140, height: int = 30, threshold=None) -> str:
    """A small line of the values in run order (evenly spaced), each point titled with its run and value."""
    if not points:
        return f'<span class="muted trend-none" data-metric="{metric}">no burst</span>'
    values = [float(p["value"]) for p in points]
    # A threshold far above every value would flatten the line: it is then left out (the page names it).
    if not isinstance(threshold, (int, float)) or threshold > 2 * max(values):
        threshold = None
    top = max(values + ([float(threshold)] if threshold is not None else [])) or 1.0
    pad = 3

    def x(i: int) -> float:
        return pad + (width - 2 * pad) * (i / (len(points) - 1) if len(points) > 1 else 0.5)

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * v / top

    coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    parts = [
        f'<svg class="trend" data-metric="{metric}" data-points="{len(points)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(TRENDS.get(metric, metric))}">'
    ]
    if threshold is not None:
        parts.append(
            f'<line class="threshold" x1="0" x2="{width}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
            f'stroke-dasharray="3,2"><title>threshold {threshold:g}</title></line>'
        )
    if len(points) > 1:
        parts.append(f'<polyline points="{coords}"/>')
    for i, (point, value) in enumerate(zip(points, values, strict=True)):
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(value):.1f}" r="2" data-value="{value:g}">'
            f"<title>{_e(point['bundle'])}: {value:g}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"/>'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>"
        f'<body><div class="conformance">{body}</div></body></html>\n'
    )


def _signature_cell(signature: dict) -> str:
    status = signature.get("status", "unsigned")
    return (
        f'<td class="{SIGNATURE_CLASSES.get(status, "sig-bad")}" data-signature="{_e(status)}" '
        f'title="{_e(signature.get("detail"))}">{_e(status)}</td>'
    )


def _failing(entry: dict) -> str:
    return " ".join(entry["failing"]) or '<span class="muted">none</span>'


def index_html(fleet: dict) -> str:
    summary = fleet["summary"]
    checked = (
        "signatures verified against the allowed signers file"
        if fleet["signatures_checked"]
        else "signatures not checked (no --allowed-signers): manifests only"
    )
    rows = []
    for scope in fleet["scopes"]:
        latest = scope["latest"]
        stale = scope["stale"]
        trend_cells = "".join(
            f"<td>{trend_svg(scope['trends'][name][-INDEX_TREND_POINTS:], name)} "
            f"{_num(scope['trends'][name][-1]['value'], DIGITS[name]) if scope['trends'][name] else ''}</td>"
            for name in TRENDS
        )
        rows.append(
            f'<tr data-cloud="{_e(scope["cloud"])}" data-region="{_e(scope["region"])}" '
            f'data-verdict="{_e(latest["verdict"])}" data-stale="{str(stale).lower()}">'
            f"<td>{_e(scope['cloud'])}</td>"
            f'<td><a href="{_e(scope["page"])}">{_e(scope["region"])}</a></td>'
            f"{_v(latest['verdict'])}<td>{_e(latest['finished_at'])}</td>"
            f'<td class="{"stale" if stale else ""}">{age_text(scope["age_hours"])}{" STALE" if stale else ""}</td>'
            f"<td>{_failing(latest)}</td>{_signature_cell(latest['signature'])}{trend_cells}"
            f'<td class="num">{len(scope["runs"])}</td></tr>'
        )
    body = [
        "<h1>OpenDev cloud conformance: fleet</h1>",
        f'<p id="fleet-summary">{summary["scopes"]} region(s) of {summary["clouds"]} cloud(s), '
        f"{summary['runs']} run(s); {summary['failing']} failing, {summary['stale']} stale, "
        f"{summary['rejected']} rejected bundle(s). Built {_e(fleet['generated_at'])}; a result is stale after "
        f"{fleet['stale_after_hours']:g} h (profile {_e(fleet['profile'])}); {checked}. "
        f'Data: <a href="{FLEET_JSON}">{FLEET_JSON}</a>.</p>',
        '<table id="fleet-index"><thead><tr><th>Cloud</th><th>Region</th><th>Latest verdict</th>'
        "<th>When (UTC)</th><th>Age</th><th>Failing requirements</th><th>Signature</th>"
        "<th>Burst p95 (s)</th><th>Burst failure rate</th><th>Runs</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>",
    ]
    if not fleet["scopes"]:
        body.append("<p>No accepted run yet.</p>")
    body.append(rejected_html(fleet["rejected"]))
    return _page("Conformance fleet", "".join(body))


def rejected_html(rejected: list[dict]) -> str:
    if not rejected:
        return '<h2>Rejected bundles</h2><p id="fleet-rejected-none">None.</p>'
    rows = "".join(
        f'<tr class="rejected"><td><code>{_e(r["source"])}</code></td><td>{_e(r["reason"])}</td></tr>' for r in rejected
    )
    return (
        "<h2>Rejected bundles</h2><p>Not shown above: their files do not match their manifest, their signature "
        'does not verify, or they are not a conformance result.</p><table id="fleet-rejected"><thead><tr>'
        f"<th>Source</th><th>Reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _change_html(change: dict) -> str:
    items = []
    for c in change["requirement_changes"]:
        flag = ' <span class="regression">REGRESSION</span>' if c["regression"] else ""
        items.append(f"<li>{_e(c['id'])}: {_e(c['old'])} &rarr; {_e(c['new'])}{flag}</li>")
    for c in change["result_changes"]:
        flag = ' <span class="regression">REGRESSION</span>' if c["regression"] else ""
        items.append(
            f"<li>{_e(c['requirement'])} {_e(c['check'])} {_e(c['scope'])}: {_e(c['old'])} &rarr; "
            f"{_e(c['new'])} (measured {_e(c['old_measured'])} &rarr; {_e(c['new_measured'])}){flag}</li>"
        )
    burst = change["burst"]
    for name, old, new, delta, regression in (
        ("burst_p95_s", burst["old_p95_s"], burst["new_p95_s"], burst.get("p95_delta_s"), burst["p95_regression"]),
        (
            "burst_failure_rate",
            burst["old_failure_rate"],
            burst["new_failure_rate"],
            burst.get("failure_rate_delta"),
            burst["failure_rate_regression"],
        ),
    ):
        if delta:
            flag = ' <span class="regression">REGRESSION</span>' if regression else ""
            digits = DIGITS[name]
            items.append(
                f"<li>{TRENDS[name]}: {_num(old, digits)} &rarr; {_num(new, digits)} ({delta:+.{digits}f}){flag}</li>"
            )
    if not items:
        items.append('<li class="muted">no verdict changed</li>')
    return (
        f'<div class="change" data-from="{_e(change["from"])}" data-to="{_e(change["to"])}" '
        f'data-regressions="{len(change["regressions"])}"><h3>{_e(change["from"])} &rarr; {_e(change["to"])}: '
        f"{_e(change['old']['verdict'])} &rarr; {_e(change['new']['verdict'])}</h3><ul>{''.join(items)}</ul></div>"
    )


def region_html(scope: dict) -> str:
    latest = scope["latest"]
    up = "../"
    rows = []
    for entry in scope["runs"]:
        m = entry["metrics"]
        report = f'<a href="{up}{_e(entry["report"])}">report</a>' if entry["report"] else ""
        build = entry.get("build") or {}
        rows.append(
            f'<tr data-bundle="{_e(entry["bundle"])}" data-verdict="{_e(entry["verdict"])}">'
            f"<td>{_e(entry['finished_at'])}</td><td><code>{_e(entry['bundle'])}</code>"
            f"{' (build ' + _e(build.get('uuid')) + ')' if build.get('uuid') else ''}</td>{_v(entry['verdict'])}"
            f'<td>{_failing(entry)}</td><td class="num">{_num(m["burst_p95_s"])}</td>'
            f'<td class="num">{_num(m["burst_failure_rate"], 3)}</td>'
            f'<td class="num">{_num(m["burst_boots_per_minute"])}</td>'
            f'<td class="num">{_num(m["quota_instances_headroom"])}</td>'
            f'<td class="num">{_num(m["cert_days_to_expiry"])}</td><td class="num">{_num(m["duration_s"])}</td>'
            f"{_signature_cell(entry['signature'])}<td>{report}</td></tr>"
        )
    trends = "".join(
        f"<tr><th>{_e(label)}</th><td>"
        f"{trend_svg(scope['trends'][name], name, width=480, height=80, threshold=latest['thresholds'][name])}"
        f"</td><td>latest {_num(scope['trends'][name][-1]['value'], DIGITS[name]) if scope['trends'][name] else '-'}"
        f"; threshold {_num(latest['thresholds'][name], DIGITS[name]) or '-'}</td></tr>"
        for name, label in TRENDS.items()
    )
    trends = f'<table id="region-trends">{trends}</table>'

    changes = "".join(_change_html(c) for c in reversed(scope["changes"])) or "<p>Only one run so far.</p>"
    body = (
        f'<p><a href="{up}{INDEX}">&larr; fleet</a></p>'
        f"<h1>{_e(scope['cloud'])} / {_e(scope['region'])}</h1>"
        f'<p><span id="region-verdict" class="verdict v-{_e(latest["verdict"])}">Latest verdict: '
        f"<b>{_e(latest['verdict'])}</b></span> &nbsp; {_e(latest['finished_at'])}, "
        f"{age_text(scope['age_hours'])} ago{' (STALE)' if scope['stale'] else ''}; {len(scope['runs'])} run(s).</p>"
        f"<h2>Trends</h2>{trends}"
        '<h2>Runs</h2><table id="region-runs"><thead><tr><th>Finished (UTC)</th><th>Bundle</th><th>Verdict</th>'
        "<th>Failing</th><th>Burst p95 (s)</th><th>Failure rate</th><th>Boots/min</th><th>Quota headroom</th>"
        "<th>Cert days left</th><th>Duration (s)</th><th>Signature</th><th>Report</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
        f'<h2>What changed</h2><div id="region-changes">{changes}</div>'
    )
    return _page(f"{scope['cloud']} / {scope['region']}: conformance", body)


def prepare_out(out: Path) -> None:
    """A fresh or earlier fleet folder; anything else is refused rather than overwritten. What an earlier build
    wrote is removed, but for the copied reports (runs/): copy_reports replaces those that changed and removes
    those no run has any more."""
    if out.exists() and not out.is_dir():
        raise OutError(f"--out {out} is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / FLEET_JSON).is_file():
        raise OutError(f"--out {out} is not empty and holds no earlier fleet site ({FLEET_JSON})")
    for name in OWN:
        target = out / name
        if name == RUNS and target.is_dir():
            continue
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def copy_reports(runs: list[Run], out: Path, cache: FleetCache | None = None) -> dict[int, str]:
    """Each accepted run's report.html into runs/<bundle>/ (a second run of the same name gets -2...). A copy
    an earlier build made from the same report.html (its sha256, in the cache) and still there at the size it
    was written is kept; every other copy in runs/ is written anew, and those no run has any more are removed."""
    copied: dict[int, str] = {}
    used: set[str] = set()
    earlier = cache.reports if cache is not None else {}
    written = cache.used_reports if cache is not None else {}
    for run in runs:
        if run.doc is None or run.rejected or run.bundle_dir is None or not (run.bundle_dir / HTML).is_file():
            continue
        name = base = slug(str(run.doc.get("bundle") or "run"))
        n = 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        target = out / RUNS / name / HTML
        raw = (run.bundle_dir / HTML).read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
        try:
            size = target.stat().st_size
        except OSError:
            size = None
        if earlier.get(name) != [digest, size]:
            if target.parent.is_symlink() or (target.parent.exists() and not target.parent.is_dir()):
                target.parent.unlink()  # not what a build writes: replaced, never written through
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(offline_text(raw), encoding="utf-8")
            size = target.stat().st_size
        written[name] = [digest, size]
        copied[id(run)] = f"{RUNS}/{name}/{HTML}"
    if (out / RUNS).is_dir():
        for gone in sorted({p.name for p in (out / RUNS).iterdir()} - used):
            target = out / RUNS / gone
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
    return copied


# An href or src attribute whose value is an absolute or scheme-relative URL. (The lookahead lets the regex
# engine skip every position that cannot start either name: half the time of a 1,000-run build's copies.)
_EXTERNAL_ATTRIBUTE = re.compile(r"""(?=[hs])\b(?:href|src)\s*=\s*["'](?:[a-z][a-z0-9+.-]*:)?//[^"']*["']""", re.I)


def offline_text(raw: bytes) -> str:
    """offline() of a report.html's bytes (read as Path.read_text reads them: UTF-8, universal newlines)."""
    text = raw.decode("utf-8", errors="replace")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _EXTERNAL_ATTRIBUTE.sub("", text)


def offline(report: Path) -> str:
    """A run's report.html for the site: the same page with its links out of the site (pytest-html's own
    credit line) made plain text (an <a> without href), so the site links nowhere else. The bundle's signed
    original is not touched."""
    return offline_text(Path(report).read_bytes())


def write_site(runs: list[Run], out: Path, *, cache: FleetCache | None = None, **options) -> dict:
    """Write the whole site into `out`; returns the fleet document (also written as fleet.json)."""
    out = Path(out)
    prepare_out(out)
    fleet = build_fleet(runs, reports=copy_reports(runs, out, cache), **options)
    (out / "regions").mkdir(exist_ok=True)
    for scope in fleet["scopes"]:
        (out / scope["page"]).write_text(region_html(scope), encoding="utf-8")
    (out / INDEX).write_text(index_html(fleet), encoding="utf-8")
    # Compact: the C encoder (an indent would take the pure-Python one, most of a 1,000-run build).
    (out / FLEET_JSON).write_text(json.dumps(fleet, separators=(",", ":")) + "\n", encoding="utf-8")
    return fleet
