"""CSV cells that a spreadsheet shows as text and never runs as a formula.

OWASP's rule for CSV injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is prefixed with a single quote, so Excel, LibreOffice and Google Sheets show
it as text instead of evaluating it (``=HYPERLINK(...)`` as a label name would otherwise be a
live link). Every CSV medseg writes goes through :func:`csv_cell`.

Numbers stay numbers: a Python ``int``/``float`` is never prefixed (``-0.5`` is written as
``-0.5``), and neither is a text cell that is entirely a decimal number (``-0.5``, ``+3``,
``-1e-3``), which spreadsheets read as a number, not a formula. ``-inf`` or ``-1+2`` are text
and get the quote. The quoting of separators, quotes and newlines is left to :mod:`csv`.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["FORMULA_START", "csv_cell", "csv_text"]

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def csv_cell(value: Any, float_format: str | None = None) -> Any:
    """``value`` made safe for a CSV cell: numbers unchanged (formatted with ``float_format``
    when given), ``None`` as an empty cell, text neutralised as OWASP recommends."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if float_format is not None and isinstance(value, float) and math.isfinite(value):
            return format(value, float_format)
        return value
    text = str(value)
    if text.startswith(FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]],
             float_format: str | None = None) -> str:
    """A whole CSV document (``\\n`` line ends), every cell through :func:`csv_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v, float_format) for v in row])
    return buf.getvalue()
