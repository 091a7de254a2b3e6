"""Run the hostile corpus through the real ``medseg`` command (see harness.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile import cases_inputs, cases_misc, cases_outputs  # noqa: F401  (register)
from tests.hostile.harness import REGISTRY, Registered, can_mount, run_case

CLASSES = ("inputs", "outputs", "batch", "labels", "models", "configs", "prompts", "evaluate")


def test_corpus_is_large_and_covers_every_class() -> None:
    assert len(REGISTRY) >= 150, len(REGISTRY)
    assert {r.klass for r in REGISTRY} >= set(CLASSES)
    assert len({r.id for r in REGISTRY}) == len(REGISTRY)


@pytest.mark.parametrize("reg", REGISTRY, ids=[r.id for r in REGISTRY])
def test_hostile_case(reg: Registered, tmp_path: Path) -> None:
    if reg.needs_root and not can_mount():
        pytest.skip("needs root to mount a real tmpfs (full or read-only filesystem)")
    case = reg.build(tmp_path)
    outcome, problems = run_case(case)
    assert not problems, (f"{reg.id}: {problems}\nexit {outcome.rc}\nstdout: "
                          f"{outcome.stdout[-800:]}\nstderr: {outcome.stderr[-1500:]}")
