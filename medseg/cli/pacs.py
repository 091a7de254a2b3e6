"""``medseg pacs servers|echo|search|pull|send``: thin commands over :mod:`medseg.pacs`.

Servers come from the servers file (``--servers`` or ``MEDSEG_PACS_SERVERS``, see
docs/pacs.md); retrieved series are kept in the cache (``--cache`` or ``MEDSEG_PACS_CACHE``).
Nothing printed here ever holds a credential.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from medseg.cli import app

pacs_app = typer.Typer(help="Search, pull from and send to a PACS (DICOMweb, DIMSE).",
                       no_args_is_help=True)
app.add_typer(pacs_app, name="pacs")

ServersOpt = Annotated[Path | None, typer.Option(
    "--servers", help="Servers file (default $MEDSEG_PACS_SERVERS or "
    "~/.config/medseg/pacs.yaml).")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache", help="Cache folder (default $MEDSEG_PACS_CACHE or ~/.cache/medseg/pacs).")]


def print_stored(stored: list[Any]) -> None:
    """One line per object a PACS confirmed (shared by predict/export --send)."""
    for s in stored:
        typer.echo(f"stored in {s.server} ({s.via}): {Path(s.path).name} SOP Instance UID "
                   f"{s.sop_instance_uid} (series {s.series_uid}, study {s.study_uid})")


@pacs_app.command("servers")
def servers_cmd(servers: ServersOpt = None) -> None:
    """List the configured servers (addresses and auth kind; never credentials)."""
    from medseg.pacs.servers import load_servers, servers_path

    found = load_servers(servers)
    typer.echo(f"{servers_path(servers)}: {len(found)} server(s)")
    for name, s in sorted(found.items()):
        dimse = f", DIMSE {s.dimse.ae_title}@{s.dimse.host}:{s.dimse.port}" if s.dimse else ""
        tls = "on" if s.verify_tls else "OFF"
        web = f"DICOMweb {s.dicomweb} (auth {s.auth}, TLS verify {tls})" if s.dicomweb \
            else "no DICOMweb"
        typer.echo(f"  {name}: {web}{dimse}")


@pacs_app.command("echo")
def echo_cmd(server: Annotated[str, typer.Argument(help="Server name.")],
             servers: ServersOpt = None) -> None:
    """Test the connection: a QIDO-RS request (DICOMweb) and a C-ECHO (DIMSE), as configured."""
    import time

    from medseg.pacs.dicomweb import DicomWeb
    from medseg.pacs.dimse import c_echo
    from medseg.pacs.servers import load_server

    s = load_server(server, servers)
    if s.dicomweb:
        start = time.perf_counter()
        DicomWeb(s).ping()
        typer.echo(f"{server}: DICOMweb {s.dicomweb} answered in "
                   f"{(time.perf_counter() - start) * 1000:.0f} ms")
    if s.dimse:
        typer.echo(f"{server}: C-ECHO {s.dimse.ae_title}@{s.dimse.host}:{s.dimse.port} "
                   f"answered in {c_echo(s):.0f} ms")


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    if not rows:
        typer.echo("no match")
        return
    cells = [[str(r.get(key) if r.get(key) is not None else "") for key, _ in columns]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(columns)]
    typer.echo("  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


SERIES_COLUMNS = [("patient_id", "PATIENT ID"), ("patient_name", "PATIENT NAME"),
                  ("study_date", "STUDY DATE"), ("modality", "MOD"),
                  ("description", "SERIES DESCRIPTION"), ("n_instances", "INSTANCES"),
                  ("study_uid", "STUDY UID"), ("series_uid", "SERIES UID")]
STUDY_COLUMNS = [("patient_id", "PATIENT ID"), ("patient_name", "PATIENT NAME"),
                 ("study_date", "STUDY DATE"), ("modalities", "MODALITIES"),
                 ("description", "STUDY DESCRIPTION"), ("accession_number", "ACCESSION"),
                 ("n_series", "SERIES"), ("study_uid", "STUDY UID")]


@pacs_app.command("search")
def search_cmd(
    server: Annotated[str, typer.Argument(help="Server name from the servers file.")],
    patient_id: Annotated[str | None, typer.Option(help="Patient ID (* and ? wildcards).")
                          ] = None,
    patient_name: Annotated[str | None, typer.Option(help="Patient name, e.g. 'DOE*'.")
                            ] = None,
    date: Annotated[str | None, typer.Option(
        "--date", help="Study date YYYYMMDD or range YYYYMMDD-YYYYMMDD (open ends allowed).")
    ] = None,
    modality: Annotated[str | None, typer.Option(help="CT, MR, SEG...")] = None,
    accession: Annotated[str | None, typer.Option(help="Accession number.")] = None,
    description: Annotated[str | None, typer.Option(
        help="Series (or, with --studies, study) description; wildcards allowed.")] = None,
    study: Annotated[str | None, typer.Option(help="Only the series of this study UID.")
                     ] = None,
    studies: Annotated[bool, typer.Option("--studies", help="List studies, not series.")
                       ] = False,
    limit: Annotated[int, typer.Option(help="At most this many results.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    servers: ServersOpt = None,
) -> None:
    """Search a PACS (QIDO-RS): series (default) or studies, as a table or JSON."""
    from medseg.pacs.dicomweb import DicomWeb
    from medseg.pacs.records import SearchFilters
    from medseg.pacs.servers import load_server

    filters = SearchFilters(patient_id=patient_id, patient_name=patient_name, study_date=date,
                            modality=modality, accession_number=accession,
                            description=description, study_uid=study)
    pacs = DicomWeb(load_server(server, servers))
    rows = [r.row() for r in (pacs.search_studies(filters, limit) if studies
                              else pacs.search_series(filters, limit))]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
    else:
        _table(rows, STUDY_COLUMNS if studies else SERIES_COLUMNS)


def _progress(label: str) -> Any:
    """A tqdm progress callback on an interactive stderr, else None (pipes stay clean)."""
    if not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    bar = tqdm(desc=label, unit="instance")

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return update


@pacs_app.command("pull")
def pull_cmd(
    server: Annotated[str, typer.Argument(help="Server name from the servers file.")],
    uid: Annotated[str, typer.Argument(help="Series Instance UID (or a study UID with "
                                            "--series).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to put the series in "
                                                          "(as OUT/<SERIES_UID>/).")],
    series: Annotated[str | None, typer.Option(
        help="With a study UID: the series (UID or number in the study).")] = None,
    refresh: Annotated[bool, typer.Option(help="Retrieve again even if cached.")] = False,
    servers: ServersOpt = None, cache: CacheOpt = None,
) -> None:
    """Retrieve one series (WADO-RS, resumable, through the cache) into OUT/<SERIES_UID>/."""
    from medseg.io.atomic import atomic_dir
    from medseg.pacs.uri import parse_pacs_uri, pull

    got = pull(parse_pacs_uri(f"pacs://{server}/{uid}"), series, servers=servers, cache=cache,
               progress=_progress("pull"), refresh=refresh)
    target = out / got.series_uid
    files = sorted(got.path.iterdir())
    if target.is_dir() and sorted(p.name for p in target.iterdir()) == [f.name for f in files]:
        typer.echo(f"{target}: already holds the series ({got.n_instances} instance(s))")
        return
    with atomic_dir(target) as stage:
        for f in files:
            shutil.copyfile(f, stage / f.name)
    how = "from the cache" if got.hit else f"retrieved {got.fetched} in {got.seconds:.1f} s"
    typer.echo(f"pulled series {got.series_uid} of study {got.study_uid} from {server}: "
               f"{got.n_instances} instance(s), {got.bytes / 2**20:.1f} MiB ({how}) -> {target}")


@pacs_app.command("send")
def send_cmd(
    server: Annotated[str, typer.Argument(help="Server name from the servers file.")],
    files: Annotated[list[Path], typer.Argument(help="DICOM-SEG / RTSTRUCT files.")],
    via: Annotated[str | None, typer.Option(help="dicomweb (STOW-RS) or dimse (C-STORE); "
                                                 "default: DICOMweb when configured.")] = None,
    servers: ServersOpt = None,
) -> None:
    """Store SEG/RTSTRUCT files in a PACS and print the SOP Instance UIDs it confirmed."""
    from medseg.errors import ConfigError, InputNotFoundError
    from medseg.pacs.send import send_files
    from medseg.pacs.servers import load_server

    if via not in (None, "dicomweb", "dimse"):
        raise ConfigError(f"--via {via}: use dicomweb or dimse.")
    for f in files:
        if not f.is_file():
            raise InputNotFoundError(f"{f}: no such file. Check the path.")
    print_stored(send_files(load_server(server, servers), files, via=via))  # type: ignore[arg-type]


# ---------------------------------------------------------------- shared by other commands
def resolve_all(inputs: list[Path]) -> list[Path]:
    """``inputs`` with every ``pacs://`` input pulled into the cache (its series folder)."""
    from medseg.pacs.uri import resolve_input

    return [resolve_input(i, progress=_progress("pull"))[0] for i in inputs]


def send_server(name: str | None) -> Any:
    """The PACS server ``--send NAME`` names (checked before any work), or None."""
    if name is None:
        return None
    from medseg.pacs.servers import load_server

    return load_server(name)


def send_and_print(server: Any, paths: list[Path]) -> None:
    """Store ``paths`` in ``server`` (``--send``) and print what the PACS confirmed."""
    from medseg.pacs.send import send_files

    print_stored(send_files(server, paths))
