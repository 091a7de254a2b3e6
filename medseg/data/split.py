"""Patient-level train/validation splits and k-fold cross-validation.

Cases are grouped by patient (``data.patient_id_pattern``: a regex whose first group extracts the
patient id from a case id; without it every case is its own patient). Groups, never cases, are
shuffled with ``data.seed`` and assigned, so one patient's cases never straddle the split.
"""

from __future__ import annotations

import re

import numpy as np

from medseg.config import DataConfig
from medseg.data.manifest import Case
from medseg.errors import ConfigError

__all__ = ["patient_id", "split_cases"]


def patient_id(case_id: str, pattern: str | None) -> str:
    """The patient a case belongs to (the case id itself without a pattern)."""
    if pattern is None:
        return case_id
    m = re.search(pattern, case_id)
    if m is None:
        return case_id
    return m.group(1) if m.groups() else m.group(0)


def split_cases(cases: list[Case], cfg: DataConfig) -> tuple[list[Case], list[Case]]:
    """``(train, validation)`` per ``cfg``: fold ``cfg.fold`` of ``cfg.n_folds`` if set, else a
    ``cfg.val_fraction`` hold-out (at least one patient when the fraction is > 0 and there are
    two or more patients)."""
    if cfg.patient_id_pattern is not None:
        try:
            re.compile(cfg.patient_id_pattern)
        except re.error as exc:
            raise ConfigError(f"data.patient_id_pattern {cfg.patient_id_pattern!r}: "
                              f"invalid regex ({exc})") from exc
    groups: dict[str, list[Case]] = {}
    for c in cases:
        groups.setdefault(patient_id(c.id, cfg.patient_id_pattern), []).append(c)
    keys = sorted(groups)
    order = np.random.default_rng(cfg.seed).permutation(len(keys))
    shuffled = [keys[i] for i in order]
    if cfg.n_folds is not None:
        if len(keys) < cfg.n_folds:
            raise ConfigError(f"data.n_folds={cfg.n_folds} but only {len(keys)} patient(s); "
                              "lower n_folds.")
        folds = np.array_split(np.arange(len(shuffled)), cfg.n_folds)
        val_keys = {shuffled[i] for i in folds[cfg.fold]}
    else:
        n_val = round(len(keys) * cfg.val_fraction)
        if cfg.val_fraction > 0 and len(keys) > 1:
            n_val = min(max(n_val, 1), len(keys) - 1)
        val_keys = set(shuffled[:n_val])
    train = [c for k in keys if k not in val_keys for c in groups[k]]
    val = [c for k in keys if k in val_keys for c in groups[k]]
    return train, val
