"""The audit log stays append-only and whole under concurrent writer processes."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from app.locks import append_line
from app.workspace import Workspace

WRITERS, LINES = 4, 150


def _writer(ws: str, n: int, barrier: object) -> None:
    w = Workspace(Path(ws))
    barrier.wait()  # type: ignore[attr-defined]
    for i in range(LINES):
        # sizes from tiny to far over a pipe buffer / stdio buffer (4 KiB, 8 KiB)
        w.audit(f"writer{n}", "brush", "case-x", seq=i, pad="x" * ((i * 977 + n * 131) % 70_000))


def test_audit_lines_from_concurrent_processes_all_parse_and_none_is_lost(tmp_path: Path
                                                                          ) -> None:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n, barrier))
             for n in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0
    raw = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    lines = raw.splitlines()
    assert raw.endswith("\n") and len(lines) == WRITERS * LINES
    entries = [json.loads(line) for line in lines]  # every line is one whole JSON object
    for n in range(WRITERS):
        seqs = [e["seq"] for e in entries if e["annotator"] == f"writer{n}"]
        assert seqs == list(range(LINES))  # each writer's lines, all there, in its order
    assert all(len(e["pad"]) == (e["seq"] * 977 + int(e["annotator"][-1]) * 131) % 70_000
               for e in entries)
    # and earlier content is never rewritten: what was there stays a prefix
    Workspace(tmp_path).audit("later", "open case")
    assert (tmp_path / "audit.jsonl").read_text(encoding="utf-8").startswith(raw)


def test_append_line_takes_exactly_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one newline-terminated line"):
        append_line(tmp_path / "log", "two\nlines\n")
    with pytest.raises(ValueError):
        append_line(tmp_path / "log", "no newline")
    assert not (tmp_path / "log").exists()
