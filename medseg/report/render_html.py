"""Self-contained HTML pages: inline CSS, every image embedded as a base64 PNG, no scripts and
no external assets, so a report can be mailed or archived as one file. All text that comes
from inputs (label names, paths) is HTML-escaped."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from medseg.io.labels import display_name
from medseg.report.case import CONVENTIONS, CaseReport

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1400px;color:#1d232a;padding:0 16px;font-size:14px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.row figure{flex:1 1 560px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ccd;
padding-bottom:3px}.meta{color:#5a6570;font-size:13px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d5dae0;padding:3px 7px;text-align:right;white-space:nowrap}
td.l{white-space:normal;overflow-wrap:anywhere}
th{background:#eef1f5;position:sticky;top:0}td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.good{background:#dff3e3!important}td.mid{background:#fdf1d6!important}
td.bad{background:#f9dcdc!important}
.note{background:#fff6d9;border-left:4px solid #e0a800;padding:6px 10px;font-size:13px;margin:8px 0}
figure{margin:10px 0}figcaption{font-size:12.5px;color:#38424c;margin-top:3px}
img{max-width:100%;height:auto;border:1px solid #e2e6ea}
code{font-size:12px;background:#f2f4f6;padding:0 3px;overflow-wrap:anywhere}
h1,.meta,figcaption,li{overflow-wrap:anywhere}
"""


@dataclass(frozen=True)
class FigureItem:
    """A rendered figure: ``png`` bytes, a section title and a caption (plain text)."""

    key: str
    title: str
    caption: str
    png: bytes


def esc(value: Any) -> str:
    """HTML-escaped ``str(value)``."""
    return html.escape(str(value), quote=True)


#: Characters of a label name shown in tables and summaries (the JSON keeps the full name).
NAME_CHARS = 60


def name_html(name: Any, width: int = NAME_CHARS) -> str:
    """An escaped label name (or case id) for display: elided in the middle past ``width``
    characters, control characters shown escaped, the full text in a tooltip when shortened."""
    full = str(name)
    shown = display_name(full, width)
    if shown == full:
        return esc(full)
    return f'<span title="{esc(full)}">{esc(shown)}</span>'


def fmt(value: Any, kind: str = "num") -> str:
    """Format a metric for people: ``dice``/``ratio`` 3 decimals, ``mm`` and ``ml`` 2,
    ``pct`` signed percent; NaN as ``n/a``, inf as ``inf``."""
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if kind == "pct":
            return f"{100 * v:+.1f}%"
        if kind in ("mm", "ml"):
            return f"{v:.2f}"
        if kind == "int":
            return f"{int(v)}"
        return f"{v:.3f}"
    return str(value)


def dice_class(value: float | None) -> str:
    """CSS class colouring an overlap score: good >= 0.9 > mid >= 0.7 > bad."""
    if value is None or not math.isfinite(float(value)):
        return ""
    return "good" if value >= 0.9 else "mid" if value >= 0.7 else "bad"


def table(headers: Sequence[str] | None, rows: Iterable[Sequence[str]], left: int = 1,
          classes: Iterable[Sequence[str]] | None = None) -> str:
    """An HTML table; cells are already-escaped HTML. The first ``left`` columns align left;
    ``headers=None`` gives a table without a header row."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>'
                   for i, h in enumerate(headers or []))
    body = []
    cls_rows = list(classes) if classes is not None else None
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            cls = ["l"] if i < left else []
            if cls_rows is not None and cls_rows[r][i]:
                cls.append(cls_rows[r][i])
            cells.append(f'<td class="{" ".join(cls)}">{cell}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = f"<thead><tr>{head}</tr></thead>" if headers else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def img(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def page(title: str, body: str) -> str:
    """A complete HTML5 document."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")


#: figures shown side by side under "Where the errors are"
OVERLAY_KEYS = ("worst_boundary", "largest_error")

#: (field of LabelMetrics, header, format kind)
METRIC_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("dice", "Dice", "dice"), ("iou", "IoU", "dice"), ("sensitivity", "Sens.", "dice"),
    ("precision", "Prec.", "dice"), ("hd", "HD mm", "mm"), ("hd95", "HD95 mm", "mm"),
    ("assd", "ASSD mm", "mm"), ("nsd", "NSD", "dice"), ("volume_ref_ml", "Vol. ref ml", "ml"),
    ("volume_pred_ml", "Vol. pred ml", "ml"), ("rel_volume_diff", "Vol. diff", "pct"),
)


def metric_headers(report: CaseReport) -> list[str]:
    """Headers of :data:`METRIC_COLUMNS`, the predicted volume named after the report's
    subject ("Vol. pred ml" or e.g. "Vol. annotation ml")."""
    short = "pred" if report.subject == "prediction" else report.subject[:5]
    return [h.replace("pred", short) if f == "volume_pred_ml" else h
            for f, h, _ in METRIC_COLUMNS]


def metrics_table(report: CaseReport) -> str:
    """The per-label table of one case."""
    headers = ["Label", "Name", *metric_headers(report), "Flags"]
    rows, classes = [], []
    for m in report.metrics:
        d = m.as_dict()
        rows.append([esc(m.label), name_html(m.name)]
                    + [fmt(d[f], k) for f, _, k in METRIC_COLUMNS]
                    + [esc(", ".join(m.flags))])
        classes.append(["", ""] + [dice_class(d[f]) if f in ("dice", "nsd") else ""
                                   for f, _, _ in METRIC_COLUMNS] + [""])
    return table(headers, rows, left=2, classes=classes)


def geometry_section(report: CaseReport) -> str:
    """Grid of the reference (used for every metric), input grids and resampling notes."""
    g = report.geometry
    rows = []
    for name, grid in [("metrics grid (reference)", g["grid"]), *g["inputs"].items()]:
        rows.append([esc(name), esc(grid["shape"]), esc(grid["spacing_mm"]),
                     esc(grid["orientation"]), esc(grid["origin_lps_mm"]),
                     esc(grid["direction"])])
    tab = table(["Volume", "Shape (i, j, k)", "Spacing mm", "Orientation", "Origin LPS mm",
                 "Direction (columns: i, j, k)"], rows, left=6)
    notes = "".join(f"<li>{esc(n)}</li>" for n in g["resampling"])
    return f"{tab}<p><b>Resampling:</b></p><ul>{notes}</ul>"


def _summary(report: CaseReport) -> str:
    dices = [m.dice for m in report.metrics if math.isfinite(m.dice)]
    mean = sum(dices) / len(dices) if dices else float("nan")
    worst = report.locations.get("worst_boundary")
    parts = [f"<b>{len(report.metrics)}</b> labels", f"mean Dice <b>{fmt(mean)}</b>"]
    if worst:
        parts.append(f"largest boundary error <b>{fmt(worst['distance_mm'], 'mm')} mm</b> "
                     f"({name_html(worst['name'])})")
    flagged = [m for m in report.metrics if m.flags]
    if flagged:
        parts.append("flags: " + ", ".join(f"{name_html(m.name)}: {esc('/'.join(m.flags))}"
                                           for m in flagged))
    out = "<p>" + " &middot; ".join(parts) + "</p>"
    if any(not n.startswith("none") for n in report.geometry["resampling"]):
        out += '<div class="note">' + "<br>".join(esc(n) for n in report.geometry["resampling"])
        out += "</div>"
    return out


def case_html(report: CaseReport, figures: Sequence[FigureItem],
              back_link: str | None = None) -> str:
    """The complete ``report.html`` of one case."""
    head = f'<p class="meta"><a href="{esc(back_link)}">&larr; cohort summary</a></p>' \
        if back_link else ""
    head += (f"<h1>Segmentation evaluation: {name_html(report.case_id, 120)}</h1>"
             f'<p class="meta">medseg {esc(report.medseg_version)} &middot; '
             f"{esc(report.created_utc)} &middot; NSD tolerance "
             f"{fmt(report.nsd_tolerance_mm, 'mm')} mm</p>")
    body = [head, _summary(report), "<h2>Metrics per label</h2>", metrics_table(report)]
    overlays = [f for f in figures if f.key in OVERLAY_KEYS]
    if overlays:
        body.append("<h2>Where the errors are</h2>" + '<div class="row">' + "".join(
            f"<figure>{img(f.png, f.title)}<figcaption><b>{esc(f.title)}.</b> "
            f"{esc(f.caption)}</figcaption></figure>" for f in overlays) + "</div>")
    for fig in figures:
        if fig.key not in OVERLAY_KEYS:
            body.append(f"<h2>{esc(fig.title)}</h2><figure>{img(fig.png, fig.title)}"
                        f"<figcaption>{esc(fig.caption)}</figcaption></figure>")
    body.append("<h2>Geometry</h2>" + geometry_section(report))
    inputs = report.to_dict()["inputs"]
    rows = [[esc(k), esc(v["path"] if v else "not given"),
             esc(v.get("sha256", "")[:16] if v else "")] for k, v in inputs.items()]
    body.append("<h2>Inputs</h2>" + table(["Input", "Path", "SHA-256 (first 16)"], rows, left=3))
    conv = [[esc(k), esc(v)] for k, v in CONVENTIONS.items()]
    body.append("<h2>Conventions</h2>" + table(None, conv, left=2))
    return page(f"medseg report {display_name(report.case_id, 120)}", "\n".join(body))
