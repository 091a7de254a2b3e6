"""PDF reports with fpdf2 (A4 landscape): the same tables and figures as the HTML pages.

fpdf2's core fonts are Latin-1 only, so every text goes through :func:`latin1` (characters
outside Latin-1 become ``?``; arrows are spelled ``->``). Label names and case ids are elided
for display (:func:`medseg.io.labels.display_name`) and every table cell is cut to
:data:`CELL_CHARS`, so no row can grow taller than a page; the JSON keeps the full text.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Sequence

from fpdf import FPDF, FontFace

from medseg.io.labels import display_name
from medseg.report.case import CONVENTIONS, CaseReport
from medseg.report.render_html import (
    METRIC_COLUMNS,
    FigureItem,
    dice_class,
    fmt,
    metric_headers,
)

#: Longest text of one table cell (a longer one is cut with "...").
CELL_CHARS = 300
FILL = {"good": (223, 243, 227), "mid": (253, 241, 214), "bad": (249, 220, 220)}
HEAD = FontFace(emphasis="BOLD", fill_color=(238, 241, 245))


def latin1(text: object) -> str:
    """``str(text)`` restricted to Latin-1 (what the core PDF fonts can show)."""
    s = str(text).replace("→", "->").replace("←", "<-").replace("·", "-")
    return s.encode("latin-1", "replace").decode("latin-1")


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels from a PNG header."""
    w, h = struct.unpack(">II", png[16:24])
    return int(w), int(h)


class ReportPDF(FPDF):
    """A4 landscape with a running footer (title and page number)."""

    def __init__(self, title: str) -> None:
        super().__init__(orientation="L", unit="mm", format="A4")
        self.report_title = latin1(title)
        self.set_auto_page_break(auto=True, margin=12)
        self.set_margins(10, 10, 10)
        self.set_title(self.report_title)
        self.set_creator("medseg")

    def footer(self) -> None:
        self.set_y(-9)
        self.set_font("Helvetica", size=7)
        self.set_text_color(110)
        self.cell(0, 4, f"{self.report_title} - page {self.page_no()}", align="R")
        self.set_text_color(0)

    def heading(self, text: str, size: float = 12) -> None:
        if self.get_y() > self.h - 40:
            self.add_page()
        self.set_font("Helvetica", "B", size)
        self.cell(0, 7, latin1(text), new_x="LMARGIN", new_y="NEXT")
        self.set_font("Helvetica", size=8)

    def para(self, text: str, size: float = 8) -> None:
        self.set_font("Helvetica", size=size)
        self.multi_cell(0, 4, latin1(text), new_x="LMARGIN", new_y="NEXT")

    def grid_table(self, headers: Sequence[str], rows: Sequence[Sequence[str]],
                   fills: Sequence[Sequence[str]] | None = None,
                   widths: Sequence[float] | None = None, size: float = 6.5) -> None:
        """A table; ``fills[r][c]`` is a key of :data:`FILL` or ``""``."""
        self.set_font("Helvetica", size=size)
        with self.table(headings_style=HEAD, line_height=3.6, text_align="LEFT",
                        col_widths=tuple(widths) if widths else None,
                        first_row_as_headings=True) as tab:
            head = tab.row()
            for h in headers:
                head.cell(latin1(h))
            for r, values in enumerate(rows):
                row = tab.row()
                for c, value in enumerate(values):
                    key = fills[r][c] if fills else ""
                    row.cell(latin1(display_name(str(value), CELL_CHARS)),
                             style=FontFace(fill_color=FILL[key]) if key else None)
        self.ln(2)

    def figure(self, item: FigureItem) -> None:
        """Title, image scaled to the page width (or the space left) and caption."""
        w_px, h_px = png_size(item.png)
        width = self.w - self.l_margin - self.r_margin
        height = width * h_px / w_px
        max_h = self.h - 2 * 12 - 20
        if height > max_h:
            height, width = max_h, max_h * w_px / h_px
        if self.get_y() + height + 18 > self.h - 12:
            self.add_page()
        self.heading(item.title, 11)
        x = self.l_margin + (self.w - self.l_margin - self.r_margin - width) / 2
        self.image(io.BytesIO(item.png), x=x, y=self.get_y(), w=width, h=height)
        self.set_y(self.get_y() + height + 1)
        self.para(item.caption, 7.5)
        self.ln(2)


def metric_rows(report: CaseReport) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Headers, rows and fill keys of the per-label table."""
    headers = ["Label", "Name", *metric_headers(report), "Flags"]
    rows, fills = [], []
    for m in report.metrics:
        d = m.as_dict()
        rows.append([str(m.label), display_name(m.name, 40)]
                    + [fmt(d[f], k) for f, _, k in METRIC_COLUMNS]
                    + [", ".join(m.flags)])
        fills.append(["", ""] + [dice_class(d[f]) if f in ("dice", "nsd") else ""
                                 for f, _, _ in METRIC_COLUMNS] + [""])
    return headers, rows, fills


def case_pdf(report: CaseReport, figures: Sequence[FigureItem]) -> bytes:
    """The complete ``report.pdf`` of one case."""
    case = display_name(report.case_id, 80)
    pdf = ReportPDF(f"medseg report {case}")
    pdf.add_page()
    pdf.heading(f"Segmentation evaluation: {case}", 15)
    dices = [m.dice for m in report.metrics if math.isfinite(m.dice)]
    mean = sum(dices) / len(dices) if dices else float("nan")
    pdf.para(f"medseg {report.medseg_version} - {report.created_utc} - {len(report.metrics)} "
             f"labels - mean Dice {fmt(mean)} - NSD tolerance "
             f"{fmt(report.nsd_tolerance_mm, 'mm')} mm")
    pdf.para("Resampling: " + "; ".join(report.geometry["resampling"]))
    pdf.heading("Metrics per label")
    headers, rows, fills = metric_rows(report)
    widths = [10, 34] + [15] * len(METRIC_COLUMNS) + [28]
    pdf.grid_table(headers, rows, fills, widths=widths)
    for fig in figures:
        pdf.figure(fig)
    pdf.heading("Geometry")
    g = report.geometry
    grows = [[name, str(grid["shape"]), str(grid["spacing_mm"]), grid["orientation"],
              str(grid["origin_lps_mm"]), str(grid["direction"])]
             for name, grid in [("metrics grid (reference)", g["grid"]), *g["inputs"].items()]]
    pdf.grid_table(["Volume", "Shape (i, j, k)", "Spacing mm", "Orientation", "Origin LPS mm",
                    "Direction (columns i, j, k)"], grows, widths=[40, 30, 40, 20, 50, 97])
    pdf.para("Resampling: " + "; ".join(g["resampling"]))
    pdf.heading("Inputs")
    for key, value in report.inputs.items():
        pdf.para(f"{key}: {value or 'not given'}")
    pdf.heading("Conventions")
    for key, text in CONVENTIONS.items():
        pdf.para(f"{key}: {text}")
    return bytes(pdf.output())
