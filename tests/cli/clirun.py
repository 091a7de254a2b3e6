"""Run the installed ``medseg`` command as a user does (a subprocess) and check the CLI's
contract for a refusal: exit code 2, exactly one stderr line ``error: ...`` naming what is at
fault, no traceback, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEDSEG = ROOT / ".venv" / "bin" / "medseg"


@dataclass
class Run:
    rc: int
    out: str
    err: str


def medseg(*argv: object, timeout: float = 300) -> Run:
    """``medseg ARGV`` in a subprocess with a user's environment (no test warning filters)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONWARNINGS", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    env.update(OMP_NUM_THREADS="1", COLUMNS="100")
    proc = subprocess.run([str(MEDSEG), *map(str, argv)], capture_output=True, text=True,
                          timeout=timeout, env=env, errors="replace")
    return Run(proc.returncode, proc.stdout, proc.stderr)


def listing(folder: Path) -> list[str]:
    """Every entry under ``folder`` (relative paths, hidden ones included), sorted."""
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(run: Run, *names: str) -> str:
    """Assert ``run`` is a clean refusal naming one of ``names``; return its message."""
    both = run.out + run.err
    assert "Traceback" not in both, both[-3000:]
    assert run.rc == 2, (run.rc, both[-3000:])
    lines = run.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.err
    assert not names or any(n in lines[0] for n in names), (names, lines[0])
    return lines[0]


def accepted(run: Run) -> None:
    """Assert ``run`` succeeded and printed nothing on stderr (no library warning)."""
    assert run.rc == 0 and "Traceback" not in run.out + run.err, run.out[-2000:] + run.err
    assert run.err.strip() == "", run.err
