"""The hostile corpus: cases built at test time, run through the real ``medseg`` command.

Each :class:`Case` is one hostile input or fault. Running it (:func:`run_case`) starts the
installed ``medseg`` console script in a subprocess (exactly what a user runs) and checks the
contract of issue 18, whatever medseg decides for that input:

* exit 0 (accepted) or 2 (refused); anything else, or ``Traceback`` anywhere, fails;
* a refusal prints exactly one line, ``error: ...``, that names the input at fault (one of
  ``Case.names``), and nothing before it (no third-party warning);
* nothing partial: after a refusal none of ``Case.outputs`` exists and no temporary file is
  left beside them; after an acceptance ``Case.check`` verifies the outputs are complete and
  readable back.

Cases are registered with :func:`case` from the ``cases_*`` modules; ``python -m
tests.hostile.corpus OUT`` writes the corpus to a folder for manual runs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MEDSEG = ROOT / ".venv" / "bin" / "medseg"

Check = Callable[[], None]


@dataclass
class Case:
    """One hostile run: ``argv`` for ``medseg`` and what the outcome must respect."""

    argv: list[str]
    names: tuple[str, ...]
    outputs: tuple[Path, ...] = ()
    expect: str = "either"  # "refuse" | "accept" | "either"
    check: Check | None = None  # run after an acceptance: the outputs are complete
    check_refused: Check | None = None  # run after a refusal (e.g. a batch's good cases)
    one_line: bool = True  # a batch may print one line per case before its final error
    contains: tuple[str, ...] = ()  # words the refusal must also hold (the fix, a limit...)
    mounts: list[contextlib.AbstractContextManager[object]] = field(default_factory=list)
    cwd: Path | None = None
    timeout_s: float = 240.0


Builder = Callable[[Path], Case]


@dataclass(frozen=True)
class Registered:
    id: str
    klass: str
    build: Builder
    needs_root: bool = False


REGISTRY: list[Registered] = []


def case(klass: str, *, needs_root: bool = False) -> Callable[[Builder], Builder]:
    """Register a case builder; its id is ``<klass>/<function name>``."""

    def deco(fn: Builder) -> Builder:
        REGISTRY.append(Registered(f"{klass}/{fn.__name__}", klass, fn, needs_root))
        return fn

    return deco


def cases(klass: str, variants: dict[str, Builder], *, needs_root: bool = False) -> None:
    """Register several builders at once: ``<klass>/<variant name>``."""
    for name, fn in variants.items():
        REGISTRY.append(Registered(f"{klass}/{name}", klass, fn, needs_root))


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # what a user's shell has: no test-runner warning filters, a normal terminal width
    for key in ("PYTHONWARNINGS", "PYTEST_CURRENT_TEST", "PYTEST_ADDOPTS"):
        env.pop(key, None)
    env["COLUMNS"] = "100"
    env.setdefault("MEDSEG_WORKSPACE", str(ROOT / "test-output" / "hostile-workspace"))
    return env


def invoke(argv: list[str], cwd: Path | None = None, timeout_s: float = 240.0) -> Outcome:
    """Run ``medseg ARGV`` in a subprocess."""
    t0 = time.perf_counter()
    proc = subprocess.run([str(MEDSEG), *argv], capture_output=True, text=True, cwd=cwd,
                          env=_env(), timeout=timeout_s, errors="replace")
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - t0)


def _stray_temp_files(paths: tuple[Path, ...]) -> list[str]:
    """Temporary files left beside the outputs (``.<name>.*.tmp*`` from atomic writes,
    ``.<name>.staging*`` folders...)."""
    out: list[str] = []
    for p in paths:
        parent = p.parent
        with contextlib.suppress(OSError):
            if not parent.is_dir():
                continue
            for e in parent.iterdir():
                if e.name.startswith(f".{p.name}") or (".tmp" in e.name and e.name[0] == "."):
                    out.append(str(e))
    return out


def _exists(p: Path) -> bool:
    try:
        return p.exists() or p.is_symlink()
    except OSError:
        return False


def verify(c: Case, o: Outcome) -> list[str]:
    """Every way ``o`` breaks the contract for ``c`` (empty when it holds)."""
    problems: list[str] = []
    both = o.stdout + o.stderr
    if "Traceback" in both:
        problems.append("traceback printed")
    if o.rc not in (0, 2):
        problems.append(f"exit code {o.rc}")
    if o.rc == 2:
        lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
        if c.one_line and len(lines) != 1:
            problems.append(f"refusal printed {len(lines)} stderr lines, not 1")
        if not lines or not lines[-1].startswith("error: "):
            problems.append("last stderr line is not 'error: ...'")
        msg = lines[-1] if lines else ""
        if c.names and not any(n in msg for n in c.names):
            problems.append(f"refusal names none of {c.names}")
        for word in c.contains:
            if word.lower() not in msg.lower():
                problems.append(f"refusal does not say {word!r}")
        if c.expect == "accept":
            problems.append("refused but must be accepted")
        left = [str(p) for p in c.outputs if _exists(p)]
        if left:
            problems.append(f"partial output left: {left}")
        if c.check_refused is not None:
            try:
                c.check_refused()
            except AssertionError as exc:
                problems.append(f"after the refusal: {exc}")
    elif o.rc == 0:
        if c.expect == "refuse":
            problems.append("accepted but must be refused")
        warn = [ln for ln in o.stderr.splitlines() if "warn" in ln.lower()]
        if warn:
            problems.append(f"warning printed: {warn[0][:120]}")
        if c.check is not None:
            try:
                c.check()
            except AssertionError as exc:
                problems.append(f"output check failed: {exc}")
    stray = _stray_temp_files(c.outputs)
    if stray:
        problems.append(f"temporary files left: {stray}")
    return problems


def run_case(c: Case) -> tuple[Outcome, list[str]]:
    """Run ``c`` with its mounts in place; return the outcome and the broken rules."""
    with contextlib.ExitStack() as stack:
        for m in c.mounts:
            stack.enter_context(m)
        o = invoke(c.argv, cwd=c.cwd, timeout_s=c.timeout_s)
        problems = verify(c, o)
    return o, problems


# ---------------------------------------------------------------------------- mounts
def can_mount() -> bool:
    """True when this process may mount a tmpfs (root on Linux)."""
    return sys.platform.startswith("linux") and os.geteuid() == 0


def tmpfs(folder: Path, size: str = "1m", *, read_only: bool = False,
          fill: bool = False) -> contextlib.AbstractContextManager[Path]:
    """A real tmpfs on ``folder`` (read-only, or filled to the last byte: a full disk);
    see :func:`tests.fs_fixtures.tmpfs`."""
    from tests.fs_fixtures import tmpfs as mount

    return mount(folder, size, read_only=read_only, full=fill)
