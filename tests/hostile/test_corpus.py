"""Run the hostile corpus through the real ``medseg`` command (see harness.py).

Every case is its own ``medseg`` process. The selected cases are built one after another, then
run a few at a time (:data:`WORKERS`: each process spends most of its life importing and
waiting on its files, so a 2-core machine runs about twice as many cases a minute), and each
test asserts on its own case's outcome. Running one case (``-k``) runs only that case.
"""

from __future__ import annotations

import os
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.hostile import cases_inputs, cases_misc, cases_outputs  # noqa: F401  (register)
from tests.hostile.harness import REGISTRY, Outcome, Registered, can_mount, run_case

CLASSES = ("inputs", "outputs", "batch", "labels", "models", "configs", "prompts", "evaluate")
WORKERS = int(os.environ.get("MEDSEG_CORPUS_WORKERS", min(4, (os.cpu_count() or 1) + 1)))
Result = tuple[Outcome, list[str]] | str  # the outcome and broken rules, or a build/run error


def _selected(session: pytest.Session) -> list[Registered]:
    """The corpus cases this pytest session selected (all of them in a full run)."""
    wanted = {item.callspec.id for item in session.items  # type: ignore[attr-defined]
              if getattr(item, "originalname", "") == "test_hostile_case"}
    return [r for r in REGISTRY if r.id in wanted]


def _run_one(built: object) -> Result:
    try:
        return run_case(built)  # type: ignore[arg-type]
    except Exception:  # reported by the case's own test
        return traceback.format_exc()


@pytest.fixture(scope="module")
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Result]:
    todo: dict[str, object] = {}
    out: dict[str, Result] = {}
    for reg in _selected(request.session):
        if reg.needs_root and not can_mount():
            continue
        try:
            todo[reg.id] = reg.build(tmp_path_factory.mktemp(reg.id.replace("/", "_")))
        except Exception:
            out[reg.id] = traceback.format_exc()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        out.update(zip(todo, pool.map(_run_one, todo.values()), strict=True))
    return out


def test_corpus_is_large_and_covers_every_class() -> None:
    assert len(REGISTRY) >= 150, len(REGISTRY)
    assert {r.klass for r in REGISTRY} >= set(CLASSES)
    assert len({r.id for r in REGISTRY}) == len(REGISTRY)


@pytest.mark.parametrize("reg", REGISTRY, ids=[r.id for r in REGISTRY])
def test_hostile_case(reg: Registered, results: dict[str, Result]) -> None:
    if reg.needs_root and not can_mount():
        pytest.skip("needs root to mount a real tmpfs (full or read-only filesystem)")
    result = results[reg.id]
    if isinstance(result, str):
        pytest.fail(f"{reg.id}: the case could not be built or run:\n{result}")
    outcome, problems = result
    assert not problems, (f"{reg.id}: {problems}\nexit {outcome.rc}\nstdout: "
                          f"{outcome.stdout[-800:]}\nstderr: {outcome.stderr[-1500:]}")
