"""Cohort summary pages: ``index.html`` (links every case report) and ``cohort.pdf``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from medseg.io.labels import display_name
from medseg.report import figures as F
from medseg.report.render_html import (
    FigureItem,
    dice_class,
    esc,
    fmt,
    img,
    name_html,
    page,
    table,
)
from medseg.report.render_pdf import ReportPDF

if TYPE_CHECKING:
    from medseg.report.cohort import CohortReport

#: (metric, header, format kind) of the summary table
SUMMARY_COLUMNS = (("dice", "Dice", "dice"), ("hd95", "HD95 mm", "mm"),
                   ("assd", "ASSD mm", "mm"), ("nsd", "NSD", "dice"),
                   ("rel_volume_diff", "Vol. diff", "pct"))


def _stat(report: CohortReport, label: int, metric: str) -> dict[str, Any]:
    for row in report.summary:
        if row["label"] == label and row["metric"] == metric:
            return row
    return {}


def _median_iqr(row: dict[str, Any], kind: str) -> str:
    if not row or row.get("median") is None:
        return f"inf in {row['n_inf']} cases" if row and row.get("n_inf") else "n/a"
    text = f"{fmt(row['median'], kind)} [{fmt(row['q1'], kind)}, {fmt(row['q3'], kind)}]"
    if row.get("n_inf"):
        text += f" +{row['n_inf']} inf"
    return text


def summary_rows(report: CohortReport) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Headers, plain-text rows and colour classes of the per-label summary table."""
    headers = ["Label", "Name", "Cases"]
    for _, h, _ in SUMMARY_COLUMNS:
        headers += [f"{h} mean", f"{h} median [IQR]"]
    rows, classes = [], []
    for lab in sorted(report.names):
        row = [str(lab), report.names[lab], str(len(report.values[lab]["dice"]))]  # plain text
        cls = ["", "", ""]
        for metric, _, kind in SUMMARY_COLUMNS:
            st = _stat(report, lab, metric)
            row += [fmt(st.get("mean"), kind), _median_iqr(st, kind)]
            good = dice_class(st.get("median")) if metric in ("dice", "nsd") else ""
            cls += [good, good]
        rows.append(row)
        classes.append(cls)
    return headers, rows, classes


def cohort_figures(report: CohortReport) -> list[FigureItem]:
    """Box plots of Dice and HD95 per label across cases (nothing when no case succeeded)."""
    if not report.names:
        return []
    out = []
    for metric, title in (("dice", "Dice"), ("hd95", "HD95 (mm)")):
        vals = {lab: report.values[lab][metric] for lab in report.names}
        out.append(FigureItem(f"box_{metric}", f"{title} per label across cases",
                              "One box per label over the cases that contain it; dots are "
                              "cases. Infinite values (empty segmentations) are left out.",
                              F.cohort_boxplot(report.names, vals, title)))
    return out


def _case_rows(report: CohortReport) -> tuple[list[list[str]], list[list[str]]]:
    rows, classes = [], []
    for c in report.cases:
        link = f'<a href="{esc(c["dir"])}/report.html">{name_html(c["case_id"])}</a>'
        if c["status"] != "ok":
            rows.append([name_html(c["case_id"]), "failed", "", "", esc(c["error"])])
            classes.append(["", "bad", "l", "", "l"])
            continue
        rows.append([link, fmt(c["mean_dice"]),
                     f"{name_html(c['worst_label'])} ({fmt(c['worst_dice'])})",
                     esc(c["n_labels"]), esc(display_name("; ".join(c["flags"]), 400))])
        classes.append(["", dice_class(c["mean_dice"]), "l", "", "l"])
    return rows, classes


def _unpaired_html(report: CohortReport) -> str:
    items = [f"<li><b>{esc(kind)}</b> without a partner: {esc(', '.join(names))}</li>"
             for kind, names in report.pairing.unpaired.items() if names]
    items += [f"<li>ignored in the {esc(kind)} folder (not an image file): "
              f"{esc(', '.join(names))}</li>"
              for kind, names in report.pairing.ignored.items() if names]
    return "<ul>" + "".join(items) + "</ul>" if items else "<p>Every file was paired.</p>"


def cohort_html(report: CohortReport, figures: Sequence[FigureItem]) -> str:
    """The complete ``index.html``."""
    ok = [c for c in report.cases if c["status"] == "ok"]
    body = [f"<h1>Segmentation evaluation: cohort of {len(report.cases)} cases</h1>",
            f'<p class="meta">{esc(report.created_utc)} &middot; predictions '
            f"<code>{esc(report.inputs['predictions'])}</code> &middot; references "
            f"<code>{esc(report.inputs['references'])}</code> &middot; NSD tolerance "
            f"{fmt(report.nsd_tolerance_mm, 'mm')} mm</p>"]
    if report.failed:
        body.append(f'<div class="note">{len(report.failed)} of {len(report.cases)} cases '
                    "failed; see the case table.</div>")
    headers, rows, classes = summary_rows(report)
    body.append(f"<h2>Per label over {len(ok)} evaluated cases</h2>")
    body.append(table(headers, [[name_html(v) if i == 1 else esc(v) for i, v in enumerate(r)]
                                for r in rows], left=2, classes=classes))
    body.append('<p class="meta">median [first quartile, third quartile] over finite values; '
                "+N inf = cases where a segmentation was empty (distance infinite). "
                "All statistics: cohort.csv / cohort.json.</p>")
    for fig in figures:
        body.append(f"<h2>{esc(fig.title)}</h2><figure>{img(fig.png, fig.title)}"
                    f"<figcaption>{esc(fig.caption)}</figcaption></figure>")
    rows, classes = _case_rows(report)
    body.append("<h2>Cases</h2>" + table(["Case", "Mean Dice", "Worst label (Dice)", "Labels",
                                          "Flags / error"], rows, left=1, classes=classes))
    body.append("<h2>Unpaired and ignored files</h2>" + _unpaired_html(report))
    return page("medseg cohort report", "\n".join(body))


def cohort_pdf(report: CohortReport, figures: Sequence[FigureItem]) -> bytes:
    """The complete ``cohort.pdf`` (summary table, box plots, case list, unpaired files)."""
    pdf = ReportPDF("medseg cohort report")
    pdf.add_page()
    pdf.heading(f"Segmentation evaluation: cohort of {len(report.cases)} cases", 15)
    pdf.para(f"{report.created_utc} - predictions {report.inputs['predictions']} - references "
             f"{report.inputs['references']} - NSD tolerance "
             f"{fmt(report.nsd_tolerance_mm, 'mm')} mm")
    headers, rows, classes = summary_rows(report)
    pdf.heading("Per label: mean and median [IQR] over cases")
    widths = [10, 32, 10] + [18, 29] * len(SUMMARY_COLUMNS)
    short = [[display_name(v, 30) if i == 1 else v for i, v in enumerate(r)] for r in rows]
    pdf.grid_table(headers, short, classes, widths=widths, size=6)
    for fig in figures:
        pdf.figure(fig)
    pdf.heading("Cases")
    crow = [[display_name(c["case_id"], 40),
             "failed" if c["status"] != "ok" else fmt(c["mean_dice"]),
             display_name(c.get("worst_label") or "", 30),
             c.get("error") or "; ".join(c.get("flags", []))]
            for c in report.cases]
    pdf.grid_table(["Case (folder cases/<case>)", "Mean Dice", "Worst label", "Flags / error"],
                   crow, widths=[50, 20, 40, 167])
    pdf.heading("Unpaired and ignored files")
    for kind, names in report.pairing.unpaired.items():
        pdf.para(f"{kind} without a partner: {', '.join(names) or 'none'}")
    for kind, names in report.pairing.ignored.items():
        if names:
            pdf.para(f"ignored in the {kind} folder: {', '.join(names)}")
    return bytes(pdf.output())
