"""The ``medseg`` command line: one Typer app, thin commands over the library.

Each command lives in its own module under ``medseg/cli/`` and registers itself on ``app``.
Every :class:`~medseg.errors.MedsegError` is printed as one clear line (exit code 2), never
as a traceback.
"""

from __future__ import annotations

import importlib
import sys

import typer

from medseg.errors import MedsegError

app = typer.Typer(
    name="medseg",
    help="Medical volumetric segmentation: inspect, convert, evaluate, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules; each defines functions decorated with ``@app.command()``.
COMMAND_MODULES = [
    "medseg.cli.io_commands",
    "medseg.cli.predict",
    "medseg.cli.train",
    "medseg.cli.plan",
    "medseg.cli.export",
    "medseg.cli.evaluate",
    "medseg.cli.finetune",
    "medseg.cli.prompt",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def main(argv: list[str] | None = None) -> int:
    """Console entry point. Returns the process exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except MedsegError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except SystemExit as exc:  # click's own usage errors already printed
        return int(exc.code or 0)
    except Exception as exc:  # Typer's (vendored click's) usage errors
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
