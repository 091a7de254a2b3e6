"""``medseg predict MODEL INPUT... --out DIR``: segment files, DICOM folders, folders of cases."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from tqdm.auto import tqdm

from medseg import io
from medseg.cli import app
from medseg.cli.batch import Batch
from medseg.errors import InputNotFoundError, MedsegError
from medseg.io.atomic import check_writable, staged_files
from medseg.volume import Volume

if TYPE_CHECKING:
    from medseg.models.bundle import BundleMeta

_IMAGE_EXT = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _is_image_file(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(_IMAGE_EXT) and not p.name.startswith(".")


def _case_name(p: Path) -> str:
    name = p.name
    for ext in (*_IMAGE_EXT, ".dcm", ".zip"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def discover_cases(inputs: list[Path]) -> list[tuple[str, Path]]:
    """``(case name, path)`` for every input.

    A file is one case (NIfTI/NRRD/MHA, a DICOM file or a zip). A folder holding image files is a
    folder of cases (one per file; label sidecars ``*.labels.json`` are ignored); a folder holding
    other files is one DICOM series; a folder holding only sub-folders is one case per
    sub-folder (each a DICOM series).
    """
    cases: list[tuple[str, Path]] = []
    for inp in inputs:
        if not inp.exists():
            raise InputNotFoundError(f"{inp}: no such file or folder. Check the input path.")
        if inp.is_file():
            cases.append((_case_name(inp), inp))
            continue
        entries = sorted(p for p in inp.iterdir() if not p.name.startswith("."))
        images = [p for p in entries if _is_image_file(p)]
        files = [p for p in entries if p.is_file()]
        if images:
            cases += [(_case_name(p), p) for p in images]
        elif files:
            cases.append((inp.name, inp))
        else:
            cases += [(p.name, p) for p in entries if p.is_dir()]
    names = [n for n, _ in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise MedsegError(f"several inputs give the same case name(s) {dup}; their outputs "
                          "would overwrite each other. Predict them into different --out folders.")
    if not cases:
        raise InputNotFoundError(f"no cases found in {[str(i) for i in inputs]}.")
    return cases


def _write_dicom_seg(mask: Volume, image: Volume, target: Path, model: tuple[str, str]
                     ) -> bool:
    """DICOM-SEG of ``mask`` for a DICOM ``image``, naming ``model`` (name, version) as the
    algorithm; other inputs and empty masks are skipped with a message. True when written."""
    from medseg.errors import EmptySegmentationError

    if "dicom" not in image.meta:
        typer.echo(f"{target.name}: input is not DICOM, no DICOM-SEG written")
        return False
    from medseg.io.dicom_seg import Algorithm, write_dicom_seg

    try:
        write_dicom_seg(mask, image, target,
                        algorithm=Algorithm(name=model[0], version=model[1] or None))
    except EmptySegmentationError:
        typer.echo(f"{target.name}: the mask is empty, no DICOM-SEG written")
        return False
    typer.echo(f"{target.name}: DICOM-SEG written")
    return True


def _modality_warning(meta: BundleMeta, image: Volume, model: str) -> str | None:
    """The model-vs-image modality warning (printed to stderr as ``warning: ...``), or None.
    The mask is still written; ``<case>.warning.txt`` beside it records the warning."""
    from medseg.modality import decide_modality
    from medseg.models.bundle import modality_mismatch

    text = modality_mismatch(meta, decide_modality(image), f"the model {model}")
    if text is not None:
        typer.echo(f"warning: {image.meta.get('path', 'input')}: {text}", err=True)
    return text


def shard_cases(cases: list[tuple[str, Path]], rank: int | None = None,
                world_size: int | None = None) -> list[tuple[str, Path]]:
    """The cases of this process under ``torchrun`` (``RANK``/``WORLD_SIZE`` from the
    environment): round-robin, so every case is predicted by exactly one rank."""
    import os

    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size
    if not 0 <= rank < max(world, 1):
        raise MedsegError(f"RANK={rank} is outside WORLD_SIZE={world}.")
    return cases[rank::max(world, 1)]


@app.command()
def predict(
    model: Annotated[Path, typer.Argument(
        help="Model bundle (.safetensors from medseg train or import-model), a shipped model's "
             "name, an nnU-Net v2 model folder or a MONAI bundle (folder or zip).")],
    inputs: Annotated[list[Path], typer.Argument(
        help="Image files, DICOM folders/zips, or folders of cases.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    fmt: Annotated[str, typer.Option("--format", help="nii.gz, nii, nrrd or mha.")] = "nii.gz",
    tta: Annotated[bool | None, typer.Option(
        "--tta/--no-tta", help="Average over axis flips (slower). Default: the model's (on for "
                               "nnU-Net models, as nnUNetPredictor; --no-tta is its "
                               "--disable_tta).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")] = "auto",
    overlap: Annotated[float | None, typer.Option(help="Window overlap (bundle default).")
                       ] = None,
    sw_batch_size: Annotated[int | None, typer.Option(help="Windows per forward pass.")] = None,
    invert: Annotated[str | None, typer.Option(
        help="probabilities: resample class probabilities then argmax; labels: argmax first "
             "(default: the bundle's, else probabilities).")] = None,
    largest_component: Annotated[bool, typer.Option(help="Keep one component per label.")
                                 ] = False,
    fill_holes: Annotated[bool, typer.Option(help="Fill enclosed holes per label.")] = False,
    min_size: Annotated[int, typer.Option(help="Drop components smaller than N voxels.")] = 0,
    dicom_seg: Annotated[bool, typer.Option(
        help="For DICOM inputs also write DIR/<case>.seg.dcm (DICOM-SEG referencing them).")
    ] = False,
    fold: Annotated[list[str] | None, typer.Option(
        "--fold", help="nnU-Net folder: a fold to ensemble (repeat; default all).")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="nnU-Net folder: checkpoint file name (default checkpoint_final.pth).")] = None,
    trust_code: Annotated[bool, typer.Option(
        "--trust-code", help="MONAI bundle: run its own config, code included (only for "
                             "bundles from a source you trust; see docs/models.md).")] = False,
    send: Annotated[str | None, typer.Option(
        "--send", help="Store each case's DICOM-SEG in this PACS (a name from the servers "
                       "file, docs/pacs.md) and print its SOP Instance UID; implies "
                       "--dicom-seg. Inputs may be pacs://SERVER/SERIES_UID.")] = None,
) -> None:
    """Segment every case with a model bundle; masks are written on each input's exact grid.

    Several cases form a batch: a case that fails is reported on its own line and the others
    go on; the command then exits with code 2, naming what failed and what was written.

    An input whose modality is not the one the model was made for (a CT model on an image
    that is not CT) gets a ``warning:`` line and ``<case>.warning.txt`` beside its mask.

    Under ``torchrun --nproc_per_node N -m medseg predict ...`` the cases are sharded across
    the N processes (round-robin by RANK).
    """
    from medseg.engine.infer import PostProcess, Segmenter

    ext = "." + fmt.lstrip(".")
    if ext not in io.WRITE_EXTENSIONS:
        raise MedsegError(f"--format {fmt}: use one of {', '.join(io.WRITE_EXTENSIONS)}.")
    if invert not in (None, "probabilities", "labels"):
        raise MedsegError(f"--invert {invert}: use 'probabilities' or 'labels'.")
    from medseg.cli.pacs import resolve_all, send_and_print, send_server

    server = send_server(send)  # a bad server name fails before any work
    cases = shard_cases(discover_cases(resolve_all(inputs)))
    check_writable(out)
    seg = Segmenter(model, device=device, overlap=overlap, sw_batch_size=sw_batch_size,
                    invert=invert, folds=fold or None, checkpoint=checkpoint,  # type: ignore[arg-type]
                    trust_code=trust_code)
    post = PostProcess(largest_component=largest_component, fill_holes=fill_holes,
                       min_size=min_size)
    batch = Batch("mask")
    quiet = len(cases) < 2 or not sys.stderr.isatty()  # stderr keeps one line when piped
    for name, path in tqdm(cases, desc="predict", unit="case", disable=quiet):
        if batch.stopped:
            batch.skip(str(path))
            continue
        with batch.case(str(path), alone=len(cases) == 1):
            target = out / f"{name}{ext}"
            image = io.read(path, label=False)
            image.meta.setdefault("path", str(path))
            warning = _modality_warning(seg.meta, image, seg.name)
            mask = seg.predict(image, tta=tta, postprocess=post)
            assert not isinstance(mask, tuple)
            with staged_files(out) as stage:  # mask, sidecar (and SEG) land together or not
                io.write(mask, stage / target.name, reference=image)
                if warning:
                    (stage / f"{name}.warning.txt").write_text(warning + "\n", encoding="utf-8")
                with_seg = (dicom_seg or server is not None) and _write_dicom_seg(
                    mask, image, stage / f"{name}.seg.dcm", (seg.name, seg.version))
            batch.wrote(str(path), target)
            st = seg.last_stats
            secs = sum(v for k, v in st.items() if k.endswith("_s"))
            typer.echo(f"{path} -> {target} ({secs:.1f} s, peak RSS {st['peak_rss_mb']:.0f} MB)")
            if with_seg:
                batch.wrote(str(path), out / f"{name}.seg.dcm")
            if warning:
                batch.wrote(str(path), out / f"{name}.warning.txt")
            if server is not None and not with_seg:
                from medseg.errors import PacsStoreError

                raise PacsStoreError(
                    f"{path}: --send {send}: nothing was sent (no DICOM-SEG: see the line "
                    f"above); the mask is in {target}. --send needs a DICOM series input and "
                    "a non-empty mask.")
            if with_seg and server is not None:
                send_and_print(server, [out / f"{name}.seg.dcm"])
    typer.echo(f"wrote {len(batch.written)} mask(s) to {out}")
    batch.finish(out)


# `torchrun -m medseg predict ...` needs no process group: each rank takes every
# WORLD_SIZE-th case (see shard_cases) and writes it; no collective communication.
