"""The ``medseg`` command line: one Typer app, thin commands over the library.

Each command lives in its own module under ``medseg/cli/`` and registers itself on ``app``.
A failure ends in exactly one line on stderr, ``error: ...``, with exit code 2 and no
traceback:

* every :class:`~medseg.errors.MedsegError` is printed as that line (a message that spans
  several lines is joined into one);
* an ``OSError`` that escaped the library (last resort: writers already raise
  :class:`~medseg.errors.OutputError`) is printed with its path and the system's reason;
* third-party warnings and log records (nibabel, pydicom, highdicom, torch, SimpleITK...) are
  dropped for the whole run, so nothing is printed before (or instead of) medseg's line; the
  filters are installed when this module is imported, before any command imports them.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import warnings
from collections.abc import Iterator

import typer

from medseg.errors import MedsegError


def _drop_library_output() -> None:
    """Ignore every Python warning and give the root logger a handler that drops records
    (so the logging module's last-resort handler never prints a library's record)."""
    warnings.simplefilter("ignore")
    root = logging.getLogger()
    if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
        root.addHandler(logging.NullHandler())


_drop_library_output()  # before the command modules (and the libraries they load) import

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
    "medseg.cli.models",
    "medseg.cli.pacs",
]

for _name in COMMAND_MODULES:
    importlib.import_module(_name)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) turned into one space."""
    return " ".join(str(text).split())


def os_error_line(exc: OSError) -> str:
    """The message of an ``OSError`` that reached the CLI: path, system reason, what to check."""
    where = exc.filename if exc.filename is not None else "a file"
    from medseg.io.atomic import show_path

    reason = exc.strerror or type(exc).__name__
    return (f"{show_path(where)}: {reason}. Check the path, its permissions and the free space "
            "on its disk.")


@contextlib.contextmanager
def _quiet_run() -> Iterator[None]:
    """Drop library warnings for one run and restore the caller's filters afterwards."""
    with warnings.catch_warnings():
        _drop_library_output()
        yield


#: Exit code of a run stopped with Ctrl-C (128 + SIGINT), as typer reports it.
INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Console entry point. Returns the process exit code."""
    try:
        with _quiet_run():
            rc = app(args=argv, standalone_mode=False)  # an int when a command exits early
    except MedsegError as exc:
        typer.secho(f"error: {one_line(exc)}", fg=typer.colors.RED, err=True)
        return 2
    except OSError as exc:  # last resort: the library's writers raise OutputError
        typer.secho(f"error: {one_line(os_error_line(exc))}", fg=typer.colors.RED, err=True)
        return 2
    except MemoryError:
        typer.secho("error: out of memory; close other programs, use a smaller input or a "
                    "machine with more memory.", fg=typer.colors.RED, err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 1
    except KeyboardInterrupt:  # typer turns Ctrl-C inside a command into exit code 130
        rc = INTERRUPTED
    except SystemExit as exc:  # click's own usage errors already printed
        return int(exc.code or 0)
    except Exception as exc:  # Typer's (vendored click's) usage errors
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show()
            return code
        raise
    if rc == INTERRUPTED:  # outputs are atomic: what was not finished was not written
        typer.echo("error: interrupted; outputs that were not finished were not written.",
                   err=True)
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
