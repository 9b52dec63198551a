"""The drift report a product owner reads: dated category mixes, per-interest drift, the
recommendation mix and the retrain decision in words, with Evidently's statistics beneath.

Why a page of our own around Evidently's: Evidently shows per-column test statistics of
per-user share histograms (spiking at 0), with no dates and no notion of "interest"; the
questions a product owner asks ("what do people watch now compared with then, week by week;
do we recommend what they watch; do we retrain") need the tables here. Evidently's own report
is kept whole, embedded at the bottom (an ``iframe`` with ``srcdoc``), so nothing is lost.

Pure string building from pandas frames: no plotting library (the chart is inline SVG), so the
page opens offline and the module is unit-testable.
"""
from __future__ import annotations

import html
from typing import Any

import pandas as pd

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a")
INTEREST_LABELS = {"reference_share": "share of events (reference)", "current_share": "share of events (current)",
                   "change_pp": "change", "reference_main_interest": "main interest of users (reference)",
                   "current_main_interest": "main interest of users (current)", "evidently_drifted": "Evidently",
                   "evidently_score": "score", "evidently_method": "test"}
WINDOW_FILL = {"reference": "#e8f0fe", "current": "#fdecea"}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 20px;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
tr.reference td{background:#e8f0fe}tr.current td{background:#fdecea}
.verdict{font-size:17px;padding:10px 14px;border-radius:6px;background:#f5f5f5;margin:12px 0}
.yes{border-left:6px solid #d62728}.no{border-left:6px solid #2ca02c}
.note{color:#666;font-size:13px}
iframe{width:100%;height:1400px;border:1px solid #ddd}
"""


def _pct(x: Any, digits: int = 1) -> str:
    try:
        return f"{100.0 * float(x):.{digits}f}%"
    except (TypeError, ValueError):
        return ""


def _table(df: pd.DataFrame, formats: dict[str, Any], row_class: str | None = None) -> str:
    """An HTML table; ``formats`` maps a column to a function of its value (default: str)."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns if c != row_class)
    rows = []
    for _, r in df.iterrows():
        cls = f' class="{html.escape(str(r[row_class]))}"' if row_class else ""
        cells = "".join(f"<td>{html.escape(formats.get(c, str)(r[c]))}</td>" for c in df.columns if c != row_class)
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def mix_chart(timeline: pd.DataFrame, categories: list[str], width: int = 1000, height: int = 320) -> str:
    """Inline SVG: one line per category (its weekly share of events), reference and current
    periods shaded, dates on the x axis."""
    n = len(timeline)
    if n == 0 or not categories:
        return "<p class='note'>no events to chart</p>"
    left, right, top, bottom = 50, 170, 10, 40
    pw, ph = width - left - right, height - top - bottom
    ymax = max(0.05, float(timeline[categories].to_numpy().max()) * 1.1)
    x = (lambda i: left + (pw * i / (n - 1) if n > 1 else pw / 2))
    y = (lambda v: top + ph * (1 - float(v) / ymax))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="weekly category mix">']
    step = pw / max(n - 1, 1)
    for i, w in enumerate(timeline["window"]):
        if w in WINDOW_FILL:
            parts.append(f'<rect x="{x(i) - step / 2:.1f}" y="{top}" width="{step:.1f}" height="{ph}" fill="{WINDOW_FILL[w]}"/>')
    for frac in (0.0, 0.5, 1.0):
        v = ymax * frac
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ccc"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="11" text-anchor="end">{_pct(v, 0)}</text>')
    label_every = max(1, n // 10)
    for i, p in enumerate(timeline["period"]):
        if i % label_every == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{top + ph + 16}" font-size="11" text-anchor="middle">{html.escape(str(p))}</text>')
    for k, c in enumerate(categories):
        color = PALETTE[k % len(PALETTE)]
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(timeline[c]))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"><title>{html.escape(c)}</title></polyline>')
        ly = top + 14 * k + 8
        parts.append(f'<rect x="{left + pw + 12}" y="{ly - 8}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{left + pw + 26}" y="{ly + 1}" font-size="12">{html.escape(c)}</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" font-size="11" fill="#555">week starting; shaded blue: reference window, red: current window</text>')
    parts.append("</svg>")
    return "".join(parts)


def verdict_text(decision: dict[str, Any]) -> str:
    """The retrain decision in one sentence a product owner can act on."""
    share, control, thr = decision["drift_share"], decision.get("control_drift_share"), decision["retrain_threshold"]
    moved = f"{decision['drifted_columns']} of {decision['n_columns']} interest measures moved (drift share {share:.2f})"
    if control is None:
        base = f"{moved}; retraining needs {thr:.2f}."
    else:
        base = (f"{moved}. With the time order shuffled (no change of interest at all) the same windows show {control:.2f}, "
                f"so retraining needs {thr:.2f} (the control plus a margin of {decision['control_margin']:.2f}, "
                f"and at least monitor.drift_threshold {decision['drift_threshold']:.2f}).")
    if decision["retrain"]:
        return base + " Interests moved beyond chance: <b>retrain</b>."
    return base + " The movement is within what these windows show by chance: <b>no retrain</b>."


def render(windows: dict[str, dict[str, Any]], decision: dict[str, Any], timeline: pd.DataFrame, categories: list[str],
           interests: pd.DataFrame, recommendation_mix: pd.DataFrame | None, evidently_html: str) -> str:
    """The whole page. ``windows``: {"reference"/"current": {"start", "end", "users", "events"}}."""
    win_rows = "".join(
        f"<tr class='{name}'><td>{name}</td><td>{html.escape(str(w['start'])[:16])}</td><td>{html.escape(str(w['end'])[:16])}</td>"
        f"<td>{w['users']}</td><td>{w['events']}</td></tr>" for name, w in windows.items())
    mix_formats = {c: _pct for c in categories} | {"events": str}
    interest_formats = {"reference_share": _pct, "current_share": _pct, "change_pp": lambda v: f"{float(v):+.1f} pp",
                        "reference_main_interest": _pct, "current_main_interest": _pct,
                        "evidently_drifted": lambda v: "drifted" if v else "-",
                        "evidently_score": lambda v: "" if v is None or pd.isna(v) else f"{float(v):.3g}",
                        "evidently_method": lambda v: "" if v is None else str(v)}
    interests = interests.rename(columns=INTEREST_LABELS)
    interest_formats = {INTEREST_LABELS.get(k, k): f for k, f in interest_formats.items()}
    rec = ""
    if recommendation_mix is not None and len(recommendation_mix):
        rec = ("<h2>What we recommend</h2><p class='note'>Share of the top-10 recommendation slots per category "
               "(the selected model, each window's users at the window's end), beside the share of events now: "
               "a large gap means recommendations lag behind (or lead) what people consume.</p>"
               + _table(recommendation_mix, {c: _pct for c in recommendation_mix.columns if c != "category"}))
    srcdoc = html.escape(evidently_html, quote=True)
    cls = "yes" if decision["retrain"] else "no"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>pulse interest drift</title><style>{STYLE}</style></head><body>
<h1>Interest drift: what people consume now vs then</h1>
<table><tr><th>window</th><th>from (UTC)</th><th>to (UTC)</th><th>active users</th><th>events</th></tr>{win_rows}</table>
<div class="verdict {cls}">{verdict_text(decision)}</div>
<h2>Category mix over time</h2>
<p class="note">Each category's share of the period's events (an item in k categories counts 1/k for each);
rows shaded blue are in the reference window, red in the current window.</p>
{mix_chart(timeline, categories)}
{_table(timeline, mix_formats, row_class="window")}
<h2>Per interest</h2>
<p class="note">Traffic share in each window and its change; share of active users whose main interest it is;
Evidently's test on the per-user share distribution (what the drift share counts).</p>
{_table(interests, interest_formats)}
{rec}
<h2>Evidently statistics</h2>
<p class="note">One row per active user and window: category shares, popularity mix of what they consume, and the
selected model's top score. The drift share above is the share of these columns Evidently flags.</p>
<iframe srcdoc="{srcdoc}" title="Evidently data drift report"></iframe>
</body></html>
"""
