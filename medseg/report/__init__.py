"""Evaluation reports: JSON/CSV for machines, self-contained HTML and PDF with figures for people.

* :func:`evaluate_case` - one prediction vs one reference -> ``report.{json,csv,html,pdf}``.
* :func:`evaluate_cohort` - folders of predictions and references paired by file name ->
  one report per case plus ``cohort.{json,csv,pdf}`` and ``index.html``.

Conventions are in ``docs/reports.md``. Matplotlib is used through its Agg canvas only.
"""

from medseg.report.case import CaseInputs, CaseReport, compute_case, load_case
from medseg.report.cohort import CohortReport, evaluate_cohort, pair_cases
from medseg.report.evaluate import evaluate_case, write_case_report

__all__ = [
    "CaseInputs",
    "CaseReport",
    "CohortReport",
    "compute_case",
    "evaluate_case",
    "evaluate_cohort",
    "load_case",
    "pair_cases",
    "write_case_report",
]
