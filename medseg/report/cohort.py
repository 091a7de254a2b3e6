"""Cohort evaluation: pair prediction and reference files by case name, write one report per
case and a summary (mean, median, IQR per label and metric) linking them.

Output folder layout::

    OUT/index.html  OUT/cohort.json  OUT/cohort.csv  OUT/cases.csv  OUT/cohort.pdf
    OUT/cases/<case>/report.{json,csv,html,pdf}

The whole folder is one output (:func:`medseg.io.atomic.atomic_dir`): it is built beside
``OUT`` and swapped in when the summary is written. A case whose inputs fail is recorded as
failed and the others go on; an output failure (full disk, read-only folder) ends the run with
nothing written.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import medseg
from medseg.errors import EvaluationInputError, InputNotFoundError, MedsegError, OutputError
from medseg.io.atomic import (
    OutputSet,
    atomic_dir,
    check_target_folder,
    write_bytes_atomic,
    write_text_atomic,
)
from medseg.report.case import CaseReport, _json_safe, case_name
from medseg.report.csv_cells import csv_text
from medseg.report.evaluate import evaluate_case, mean_dice

#: A cohort folder: an existing one is replaced as a whole, anything else is refused.
COHORT_SET = OutputSet("cohort report", "cohort.json",
                       ("index.html", "cohort.json", "cohort.csv", "cases.csv", "cohort.pdf",
                        "cases"))

#: metrics summarised across cases (fields of LabelMetrics)
SUMMARY_METRICS = ("dice", "iou", "sensitivity", "precision", "hd", "hd95", "assd", "nsd",
                   "rel_volume_diff", "volume_ref_ml", "volume_pred_ml")


def _index_folder(folder: Path, what: str) -> tuple[dict[str, Path], list[str]]:
    """``{case: file}`` of a folder (not recursive) and the names of ignored files."""
    if not folder.is_dir():
        raise InputNotFoundError(f"{folder}: the {what} folder does not exist.")
    cases: dict[str, Path] = {}
    ignored: list[str] = []
    for p in sorted(folder.iterdir()):
        name = case_name(p) if p.is_file() else None
        if name is None:
            ignored.append(p.name)
            continue
        if name in cases:
            raise EvaluationInputError(
                f"{folder}: two {what} files for case '{name}' ({cases[name].name} and "
                f"{p.name}). Keep one file per case name.")
        cases[name] = p
    return cases, ignored


@dataclass
class CasePaths:
    """The files of one paired case."""

    case_id: str
    pred: Path
    ref: Path
    image: Path | None = None


@dataclass
class Pairing:
    """Paired cases plus every file that found no partner (names only)."""

    pairs: list[CasePaths]
    unpaired: dict[str, list[str]]
    ignored: dict[str, list[str]]


def pair_cases(pred_dir: str | Path, ref_dir: str | Path,
               image_dir: str | Path | None = None) -> Pairing:
    """Pair ``pred_dir/<case>.<ext>`` with ``ref_dir/<case>.<ext>`` (extensions may differ).

    Images are matched as ``<case>`` or nnU-Net's ``<case>_0000``. Files of other types,
    e.g. ``.labels.json`` sidecars, are ignored (and listed under ``ignored``).
    """
    preds, ign_p = _index_folder(Path(pred_dir), "prediction")
    refs, ign_r = _index_folder(Path(ref_dir), "reference")
    images: dict[str, Path] = {}
    ign_i: list[str] = []
    if image_dir is not None:
        images, ign_i = _index_folder(Path(image_dir), "image")
    pairs, used_images = [], set()
    for cid in sorted(set(preds) & set(refs)):
        img = images.get(cid) or images.get(f"{cid}_0000")
        if img is not None:
            used_images.add(img.name)
        pairs.append(CasePaths(cid, preds[cid], refs[cid], img))
    unpaired = {"prediction": sorted(preds[c].name for c in set(preds) - set(refs)),
                "reference": sorted(refs[c].name for c in set(refs) - set(preds)),
                "image": sorted(p.name for p in images.values() if p.name not in used_images)}
    return Pairing(pairs, unpaired, {"prediction": ign_p, "reference": ign_r, "image": ign_i})


def summarise(values: list[float]) -> dict[str, Any]:
    """n, mean, std, median, q1, q3 and IQR of the finite values; ``n_inf`` / ``n_nan`` count
    the infinite (distance to an empty mask) and undefined ones, which are left out."""
    arr = np.asarray(values, dtype=np.float64)
    fin = arr[np.isfinite(arr)]
    out: dict[str, Any] = {"n": int(fin.size), "n_inf": int(np.isinf(arr).sum()),
                           "n_nan": int(np.isnan(arr).sum())}
    if fin.size:
        q1, med, q3 = np.percentile(fin, [25, 50, 75])
        out.update(mean=float(fin.mean()), std=float(fin.std()), median=float(med),
                   q1=float(q1), q3=float(q3), iqr=float(q3 - q1))
    else:
        out.update(mean=None, std=None, median=None, q1=None, q3=None, iqr=None)
    return out


@dataclass
class CohortReport:
    """Per-case results, per-label summary statistics and the files left out."""

    cases: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    values: dict[int, dict[str, list[float]]]
    names: dict[int, str]
    pairing: Pairing
    inputs: dict[str, str | None]
    nsd_tolerance_mm: float
    created_utc: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                             .strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.cases if c["status"] != "ok"]

    def to_dict(self) -> dict[str, Any]:
        return _json_safe({
            "medseg_version": medseg.__version__, "created_utc": self.created_utc,
            "inputs": self.inputs, "nsd_tolerance_mm": self.nsd_tolerance_mm,
            "statistics": "per label and metric over cases with that label in prediction or "
                          "reference; mean/std/median/q1/q3/iqr over finite values, n_inf and "
                          "n_nan count the values left out",
            "cases": self.cases, "summary": self.summary,
            "unpaired": self.pairing.unpaired, "ignored": self.pairing.ignored,
        })

    def csv_text(self) -> str:
        """``cohort.csv``: one row per label and metric (statistics with 6 significant digits,
        text cells neutralised against spreadsheet formulas)."""
        cols = ["label", "name", "metric", "n", "n_inf", "n_nan", "mean", "std", "median",
                "q1", "q3", "iqr"]
        return csv_text(cols, ([row[c] for c in cols] for row in self.summary),
                        float_format=".6g")


def _safe_dir(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id) or "case"


def _case_entry(case: CasePaths, rep: CaseReport | None, error: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"case_id": case.case_id, "dir": f"cases/{_safe_dir(case.case_id)}",
                             "prediction": case.pred.name, "reference": case.ref.name,
                             "image": case.image.name if case.image else None}
    if rep is None:
        return {**entry, "status": "failed", "error": error}
    worst = min(rep.metrics, key=lambda m: m.dice if np.isfinite(m.dice) else 2.0,
                default=None)
    return {**entry, "status": "ok", "n_labels": len(rep.metrics), "mean_dice": mean_dice(rep),
            "worst_label": worst.name if worst else None,
            "worst_dice": worst.dice if worst else None,
            "flags": sorted({f"{m.name}: {f}" for m in rep.metrics for f in m.flags})}


def evaluate_cohort(pred_dir: str | Path, ref_dir: str | Path, out_dir: str | Path, *,
                    image_dir: str | Path | None = None, labels: str | Path | None = None,
                    nsd_tolerance_mm: float = 2.0,
                    resample_to: str | None = None) -> CohortReport:
    """Evaluate every paired case and write the case reports and the cohort summary.

    A case that fails with a :class:`~medseg.errors.MedsegError` (unreadable file, grids that
    differ without ``resample_to="ref"``...) is recorded with its message and the others go
    on; the caller decides what a failure means (the CLI exits with code 2). The folder is
    written all or nothing (module docstring).

    Raises:
        EvaluationInputError: no case could be paired.
        OutputError: ``out_dir`` cannot be written (checked before any case is evaluated).
    """
    pairing = pair_cases(pred_dir, ref_dir, image_dir)
    if not pairing.pairs:
        raise EvaluationInputError(
            f"No case found in both {pred_dir} and {ref_dir}: files are paired by name "
            f"(e.g. case1.nii.gz in both). Unpaired predictions: "
            f"{pairing.unpaired['prediction'][:5]}, references: "
            f"{pairing.unpaired['reference'][:5]}.")
    out = Path(out_dir)
    check_target_folder(out, COHORT_SET)
    with atomic_dir(out, COHORT_SET) as stage:
        cases, values, names = _evaluate_cases(pairing, stage, labels=labels,
                                               nsd_tolerance_mm=nsd_tolerance_mm,
                                               resample_to=resample_to)
        summary = [{"label": lab, "name": names[lab], "metric": k,
                    **summarise(values[lab][k])}
                   for lab in sorted(values) for k in SUMMARY_METRICS]
        inputs = {"predictions": str(Path(pred_dir).resolve()),
                  "references": str(Path(ref_dir).resolve()),
                  "images": str(Path(image_dir).resolve()) if image_dir else None,
                  "labels": str(Path(labels).resolve()) if labels else None}
        report = CohortReport(cases, summary, values, names, pairing, inputs, nsd_tolerance_mm)
        write_cohort(report, stage)
    return report


def _evaluate_cases(pairing: Pairing, out: Path, *, labels: str | Path | None,
                    nsd_tolerance_mm: float, resample_to: str | None
                    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, list[float]]],
                               dict[int, str]]:
    """Evaluate every pair into ``out/cases/<case>``: case entries, metric values, names."""
    cases: list[dict[str, Any]] = []
    values: dict[int, dict[str, list[float]]] = {}
    names: dict[int, str] = {}
    for case in pairing.pairs:
        rep, error = None, None
        try:
            rep = evaluate_case(case.pred, case.ref, out / "cases" / _safe_dir(case.case_id),
                                image=case.image, labels=labels,
                                nsd_tolerance_mm=nsd_tolerance_mm, resample_to=resample_to,
                                case_id=case.case_id, back_link="../../index.html")
        except OutputError:
            raise  # the cohort folder itself cannot be written: no case can be
        except MedsegError as exc:
            error = " ".join(str(exc).split())
        cases.append(_case_entry(case, rep, error))
        for m in rep.metrics if rep else []:
            names.setdefault(m.label, m.name)
            per = values.setdefault(m.label, {k: [] for k in SUMMARY_METRICS})
            for k in SUMMARY_METRICS:
                per[k].append(float(getattr(m, k)))
    return cases, values, names


def _cases_csv(report: CohortReport, out_dir: Path) -> str:
    """The rows of every case's report.csv under one header (cells as the cases wrote them)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header_done = False
    for case in report.cases:
        csv_path = out_dir / case["dir"] / "report.csv"
        if case["status"] != "ok" or not csv_path.is_file():
            continue
        with open(csv_path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
        writer.writerows(rows if not header_done else rows[1:])
        header_done = True
    return buf.getvalue()


def write_cohort(report: CohortReport, out_dir: Path) -> dict[str, Path]:
    """Write cohort.json, cohort.csv, cases.csv, index.html and cohort.pdf."""
    from medseg.report.render_cohort import cohort_figures, cohort_html, cohort_pdf

    paths = {"json": out_dir / "cohort.json", "csv": out_dir / "cohort.csv",
             "cases_csv": out_dir / "cases.csv", "html": out_dir / "index.html",
             "pdf": out_dir / "cohort.pdf"}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(paths["json"], json.dumps(report.to_dict(), indent=1, allow_nan=False)
                      + "\n")
    write_text_atomic(paths["csv"], report.csv_text())
    write_text_atomic(paths["cases_csv"], _cases_csv(report, out_dir))
    figs = cohort_figures(report)
    write_text_atomic(paths["html"], cohort_html(report, figs))
    write_bytes_atomic(paths["pdf"], cohort_pdf(report, figs))
    return paths
