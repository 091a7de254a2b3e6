"""Hostile inputs: malformed headers, odd voxel types, detached headers, DICOM and zips.

Each input is run through ``medseg info`` and ``medseg convert`` (read + write + read back).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.hostile import craft
from tests.hostile.harness import Case, Outcome, cases, invoke

Spec = tuple[Path, tuple[str, ...], str]  # input path, names a refusal may cite, expectation
Input = Callable[[Path], Spec]

INPUTS: dict[str, Input] = {}


def _inp(fn: Input) -> Input:
    INPUTS[fn.__name__] = fn
    return fn


def _put(raw: bytearray, offset: int, fmt: str, *values: float) -> None:
    raw[offset: offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)


# NIfTI-1 header byte offsets
_DIM, _PIXDIM, _SCL_SLOPE, _VOX_OFFSET, _QUATERN_B = 40, 76, 112, 108, 256
_DATATYPE = 70


# ------------------------------------------------------------------ NIfTI
@_inp
def nifti_empty_file(d: Path) -> Spec:
    p = d / "empty.nii.gz"
    p.write_bytes(b"")
    return p, (p.name,), "refuse"


@_inp
def nifti_random_bytes(d: Path) -> Spec:
    p = d / "noise.nii.gz"
    p.write_bytes(os.urandom(4096))
    return p, (p.name,), "refuse"


@_inp
def nifti_truncated_gz(d: Path) -> Spec:
    src = craft.nifti(d / "whole.nii.gz")
    p = d / "truncated.nii.gz"
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    src.unlink()
    return p, (p.name,), "refuse"


@_inp
def nifti_header_only(d: Path) -> Spec:
    p = craft.nifti_raw(d / "headeronly.nii", lambda r: r.__delitem__(slice(400, None)))
    return p, (p.name,), "refuse"


@_inp
def nifti_gzip_of_garbage(d: Path) -> Spec:
    p = d / "garbage.nii.gz"
    p.write_bytes(craft.gz(b"not a nifti header at all" * 40))
    return p, (p.name,), "refuse"


@_inp
def nifti_pixdim_zero(d: Path) -> Spec:
    p = craft.nifti(d / "pixdim0.nii.gz", edit={"pixdim[2]": 0.0}, sform_code=0)
    return p, (p.name,), "refuse"


@_inp
def nifti_pixdim_negative(d: Path) -> Spec:
    p = craft.nifti(d / "pixdimneg.nii.gz", edit={"pixdim[1]": -1.5}, sform_code=0)
    return p, (p.name,), "refuse"


@_inp
def nifti_pixdim_nan(d: Path) -> Spec:
    p = craft.nifti(d / "pixdimnan.nii.gz", edit={"pixdim[3]": np.nan}, sform_code=0)
    return p, (p.name,), "refuse"


@_inp
def nifti_pixdim_zero_no_xforms(d: Path) -> Spec:
    p = craft.nifti(d / "pixdim0_noxform.nii.gz", edit={"pixdim[1]": 0.0}, sform_code=0,
                    qform_code=0)
    return p, (p.name,), "refuse"


@_inp
def nifti_sform_singular(d: Path) -> Spec:
    p = craft.nifti(d / "singular.nii.gz", qform_code=0,
                    edit={"srow_x": [0, 0, 0, 0], "srow_y": [0, 0, 0, 0], "srow_z": [0, 0, 0, 0]})
    return p, (p.name,), "refuse"


@_inp
def nifti_sform_nan(d: Path) -> Spec:
    p = craft.nifti(d / "sformnan.nii.gz", qform_code=0,
                    edit={"srow_x": [np.nan, 0, 0, 0]})
    return p, (p.name,), "refuse"


@_inp
def nifti_qform_nan(d: Path) -> Spec:
    p = craft.nifti(d / "qformnan.nii.gz", sform_code=0, edit={"quatern_b": np.nan})
    return p, (p.name,), "refuse"


@_inp
def nifti_sform_nan_qform_ok(d: Path) -> Spec:
    p = craft.nifti(d / "sformnan_qformok.nii.gz", edit={"srow_y": [0, np.nan, 0, 0]})
    return p, (p.name,), "either"


@_inp
def nifti_sform_shear(d: Path) -> Spec:
    aff = np.array([[1.0, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    p = craft.nifti(d / "shear.nii.gz", affine=aff, qform_code=0)
    return p, (p.name,), "refuse"


@_inp
def nifti_complex(d: Path) -> Spec:
    data = craft.arr(np.float32) + 1j * craft.arr(np.float32)
    p = craft.nifti(d / "complex.nii.gz", data.astype(np.complex64))
    return p, (p.name,), "either"


@_inp
def nifti_rgb24(d: Path) -> Spec:
    rgb = np.zeros(craft.SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = 10
    p = craft.nifti(d / "rgb.nii.gz", rgb)
    return p, (p.name,), "either"


@_inp
def nifti_uint64(d: Path) -> Spec:
    p = craft.nifti(d / "u64.nii.gz", craft.arr(np.uint64))
    return p, (p.name,), "either"


@_inp
def nifti_uint64_huge(d: Path) -> Spec:
    a = craft.arr(np.uint64)
    a[0, 0, 0] = np.iinfo(np.uint64).max
    p = craft.nifti(d / "u64huge.nii.gz", a)
    return p, (p.name,), "either"


@_inp
def nifti_int64(d: Path) -> Spec:
    a = craft.arr(np.int64)
    a[0, 0, 0] = -(2**40)
    p = craft.nifti(d / "i64.nii.gz", a)
    return p, (p.name,), "either"


@_inp
def nifti_inf(d: Path) -> Spec:
    a = craft.arr(np.float32)
    a[1, 1, 1] = np.inf
    p = craft.nifti(d / "inf.nii.gz", a)
    return p, (p.name,), "refuse"


@_inp
def nifti_nan(d: Path) -> Spec:
    a = craft.arr(np.float32)
    a[1, 1, 1] = np.nan
    p = craft.nifti(d / "nan.nii.gz", a)
    return p, (p.name,), "refuse"


@_inp
def nifti_4d(d: Path) -> Spec:
    p = craft.nifti(d / "four_d.nii.gz", craft.arr(np.int16, (*craft.SHAPE, 2)))
    return p, (p.name,), "refuse"


@_inp
def nifti_5d(d: Path) -> Spec:
    p = craft.nifti(d / "five_d.nii.gz", craft.arr(np.int16, (*craft.SHAPE, 1, 2)))
    return p, (p.name,), "refuse"


@_inp
def nifti_single_voxel(d: Path) -> Spec:
    p = craft.nifti(d / "one_voxel.nii.gz", craft.arr(np.int16, (1, 1, 1)))
    return p, (p.name,), "either"


@_inp
def nifti_2d(d: Path) -> Spec:
    p = craft.nifti(d / "two_d.nii.gz", craft.arr(np.int16, (12, 10)))
    return p, (p.name,), "either"


@_inp
def nifti_huge_dims(d: Path) -> Spec:
    def mutate(r: bytearray) -> None:
        _put(r, _DIM, "<8h", 3, 30000, 30000, 30000, 1, 1, 1, 1)

    p = craft.nifti_raw(d / "huge_dims.nii", mutate)
    return p, (p.name,), "refuse"


@_inp
def nifti_bad_dim0(d: Path) -> Spec:
    p = craft.nifti_raw(d / "dim0.nii", lambda r: _put(r, _DIM, "<h", 9))
    return p, (p.name,), "refuse"


@_inp
def nifti_bad_datatype(d: Path) -> Spec:
    p = craft.nifti_raw(d / "dtype.nii", lambda r: _put(r, _DATATYPE, "<h", 1234))
    return p, (p.name,), "refuse"


@_inp
def nifti_scl_slope_inf(d: Path) -> Spec:
    p = craft.nifti_raw(d / "slope_inf.nii", lambda r: _put(r, _SCL_SLOPE, "<f", np.inf))
    return p, (p.name,), "either"


@_inp
def nifti_vox_offset_past_end(d: Path) -> Spec:
    p = craft.nifti_raw(d / "voxoffset.nii", lambda r: _put(r, _VOX_OFFSET, "<f", 1e6))
    return p, (p.name,), "refuse"


@_inp
def nifti_big_endian(d: Path) -> Spec:
    import nibabel as nib

    img = nib.Nifti1Image(craft.arr(np.dtype(">i2")), np.diag([1.0, 1, 2, 1]))
    p = d / "bigendian.nii"
    nib.save(img, str(p))
    return p, (p.name,), "accept"


@_inp
def nifti2(d: Path) -> Spec:
    import nibabel as nib

    p = d / "nifti2.nii.gz"
    img = nib.Nifti2Image(craft.arr(), np.diag([1.0, 1, 2, 1]))
    img.header.set_sform(np.diag([1.0, 1, 2, 1]), code=1)
    nib.save(img, str(p))
    return p, (p.name,), "accept"


@_inp
def nifti_folder_named_like_file(d: Path) -> Spec:
    p = d / "folder.nii.gz"
    p.mkdir()
    (p / "x.txt").write_text("not dicom")
    return p, (p.name,), "refuse"


@_inp
def nifti_is_a_zip(d: Path) -> Spec:
    p = d / "zipped.nii.gz"
    craft.zip_of(p, {"a.txt": b"hello"})
    return p, (p.name,), "refuse"


@_inp
def nifti_sidecar_bad_json(d: Path) -> Spec:
    p = craft.nifti(d / "badside.nii.gz", craft.arr(np.uint8))
    craft.write_sidecar(p, '{"labels": {"1": "liver",')
    return p, ("badside",), "refuse"


@_inp
def nifti_sidecar_wrong_types(d: Path) -> Spec:
    p = craft.nifti(d / "typeside.nii.gz", craft.arr(np.uint8))
    craft.write_sidecar(p, '{"labels": {"one": ["liver"]}}')
    return p, ("typeside",), "refuse"


@_inp
def nifti_label_name_control_chars(d: Path) -> Spec:
    p = craft.nifti(d / "ctrl.nii.gz", craft.arr(np.uint8) % 3,
                    labels={"1": "liver\nDROP", "2": "spl\x00een"})
    return p, ("ctrl",), "either"


@_inp
def nifti_label_name_5000(d: Path) -> Spec:
    p = craft.nifti(d / "longname.nii.gz", craft.arr(np.uint8) % 3,
                    labels={"1": "x" * 5000, "2": "spleen"})
    return p, ("longname",), "either"


@_inp
def nifti_label_fractional(d: Path) -> Spec:
    p = craft.nifti(d / "fractional.nii.gz", craft.arr(np.float32) / 7.0,
                    labels={"1": "liver"})
    return p, (p.name,), "refuse"


@_inp
def nifti_label_negative(d: Path) -> Spec:
    p = craft.nifti(d / "neglabel.nii.gz", craft.arr(np.int16) - 50, labels={"1": "liver"})
    return p, (p.name,), "refuse"


# ------------------------------------------------------------------ pairs, mgz
@_inp
def analyze_pair(d: Path) -> Spec:
    import nibabel as nib

    p = d / "pair.hdr"
    img = nib.Nifti1Pair(craft.arr(), np.diag([1.0, 1, 2, 1]))
    nib.save(img, str(p))
    return p, (p.name,), "accept"


@_inp
def analyze_header_without_img(d: Path) -> Spec:
    import nibabel as nib

    p = d / "lonely.hdr"
    nib.save(nib.Nifti1Pair(craft.arr(), np.eye(4)), str(p))
    (d / "lonely.img").unlink()
    return p, ("lonely",), "refuse"


@_inp
def mgz(d: Path) -> Spec:
    import nibabel as nib

    p = d / "brain.mgz"
    nib.save(nib.MGHImage(craft.arr(np.float32), np.diag([1.0, 1, 2, 1])), str(p))
    return p, (p.name,), "accept"


@_inp
def mgz_truncated(d: Path) -> Spec:
    import nibabel as nib

    src = d / "whole.mgz"
    nib.save(nib.MGHImage(craft.arr(np.float32), np.eye(4)), str(src))
    p = d / "cut.mgz"
    p.write_bytes(src.read_bytes()[:300])
    src.unlink()
    return p, (p.name,), "refuse"


# ------------------------------------------------------------------ NRRD / MetaImage
@_inp
def mha_etc_passwd(d: Path) -> Spec:
    p = craft.mhd_text(d / "passwd.mha", "/etc/passwd", dims=(8, 8, 1), etype="MET_UCHAR")
    return p, (p.name, "/etc/passwd"), "either"


@_inp
def nhdr_etc_passwd(d: Path) -> Spec:
    p = craft.nhdr_text(d / "passwd.nhdr", "/etc/passwd", dims=(8, 8, 1))
    return p, (p.name, "/etc/passwd"), "either"


@_inp
def mhd_missing_data(d: Path) -> Spec:
    p = craft.mhd_text(d / "nodata.mhd", "nodata.raw")
    return p, (p.name, "nodata.raw"), "refuse"


@_inp
def mhd_short_data(d: Path) -> Spec:
    p = craft.mhd_text(d / "short.mhd", "short.raw")
    (d / "short.raw").write_bytes(b"\0" * 100)
    return p, (p.name, "short.raw"), "refuse"


@_inp
def mhd_ok(d: Path) -> Spec:
    p = craft.mhd_text(d / "good.mhd", "good.raw")
    craft.raw(d / "good.raw")
    return p, (p.name,), "accept"


@_inp
def mhd_data_in_parent(d: Path) -> Spec:
    sub = d / "sub"
    sub.mkdir()
    craft.raw(d / "outside.raw")
    p = craft.mhd_text(sub / "updir.mhd", "../outside.raw")
    return p, (p.name, "outside.raw"), "either"


@_inp
def mhd_list_with_missing(d: Path) -> Spec:
    p = d / "list.mhd"
    p.write_text("ObjectType = Image\nNDims = 3\nDimSize = 12 10 2\nElementType = MET_SHORT\n"
                 "ElementDataFile = LIST\nslice0.raw\nslice1.raw\n")
    craft.raw(d / "slice0.raw", shape=(12, 10, 1))
    return p, (p.name, "slice1.raw"), "refuse"


@_inp
def mha_rgb(d: Path) -> Spec:
    p = craft.itk(d / "rgb.mha", np.zeros((*craft.SHAPE, 3), np.uint8), vector=True)
    return p, (p.name,), "either"


@_inp
def mha_uint64(d: Path) -> Spec:
    p = craft.itk(d / "u64.mha", craft.arr(np.uint64))
    return p, (p.name,), "either"


@_inp
def mha_complex(d: Path) -> Spec:
    import SimpleITK as sitk

    re = sitk.GetImageFromArray(craft.arr(np.float32).T.copy())
    img = sitk.RealAndImaginaryToComplex(re, re)
    p = d / "complex.mha"
    sitk.WriteImage(img, str(p))
    return p, (p.name,), "either"


@_inp
def mha_inf(d: Path) -> Spec:
    a = craft.arr(np.float32)
    a[2, 2, 2] = -np.inf
    p = craft.itk(d / "inf.mha", a)
    return p, (p.name,), "refuse"


@_inp
def mha_zero_spacing(d: Path) -> Spec:
    p = craft.mhd_text(d / "zerospacing.mha", "LOCAL",
                       extra="").with_suffix(".mha")
    text = p.read_text().replace("ElementSpacing = 1 1 1", "ElementSpacing = 1 0 1")
    p.write_bytes(text.encode() + craft.arr().tobytes(order="F"))
    return p, (p.name,), "refuse"


@_inp
def mha_huge_dims(d: Path) -> Spec:
    p = d / "hugedims.mha"
    text = (craft.mhd_text(d / "tmp.mhd", "LOCAL", dims=(40000, 40000, 40000)).read_text())
    (d / "tmp.mhd").unlink()
    p.write_bytes(text.encode() + b"\0" * 64)
    return p, (p.name,), "refuse"


@_inp
def nrrd_garbage(d: Path) -> Spec:
    p = d / "garbage.nrrd"
    p.write_bytes(b"NRRD0004\nthis is: not\n\x00\x01\x02")
    return p, (p.name,), "refuse"


@_inp
def nrrd_nan_direction(d: Path) -> Spec:
    p = d / "nandir.nrrd"
    text = craft.nhdr_text(d / "t.nhdr", "x").read_text()
    (d / "t.nhdr").unlink()
    text = text.replace("(1,0,0)", "(nan,0,0)").replace("data file: x\n", "")
    p.write_bytes(text.encode() + b"\n" + craft.arr().tobytes(order="F"))
    return p, (p.name,), "refuse"


@_inp
def nrrd_4d(d: Path) -> Spec:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.zeros((2, 3, 4, 5), np.int16))
    p = d / "four_d.nrrd"
    sitk.WriteImage(img, str(p))
    return p, (p.name,), "refuse"


# ------------------------------------------------------------------ DICOM
@_inp
def dicom_junk_folder(d: Path) -> Spec:
    f = d / "junkdir"
    f.mkdir()
    (f / "a.dcm").write_bytes(os.urandom(500))
    (f / "notes.txt").write_text("hello")
    return f, (f.name,), "refuse"


@_inp
def dicom_empty_folder(d: Path) -> Spec:
    f = d / "emptydir"
    f.mkdir()
    return f, (f.name,), "refuse"


@_inp
def dicom_missing_rows(d: Path) -> Spec:
    f = craft.dicom_series(d / "norows")
    craft.dicom_edit(f, lambda ds: delattr(ds, "Rows"))
    return f, ("norows", "Rows"), "refuse"


@_inp
def dicom_missing_pixels(d: Path) -> Spec:
    f = craft.dicom_series(d / "nopixels")
    craft.dicom_edit(f, lambda ds: delattr(ds, "PixelData"), which=2)
    return f, ("nopixels",), "refuse"


@_inp
def dicom_missing_position(d: Path) -> Spec:
    f = craft.dicom_series(d / "noposition")
    craft.dicom_edit(f, lambda ds: delattr(ds, "ImagePositionPatient"), which=1)
    return f, ("noposition",), "refuse"


@_inp
def dicom_rows_mismatch(d: Path) -> Spec:
    f = craft.dicom_series(d / "rowsmismatch")
    craft.dicom_edit(f, lambda ds: setattr(ds, "Rows", 7), which=2)
    return f, ("rowsmismatch",), "refuse"


@_inp
def dicom_truncated_pixels(d: Path) -> Spec:
    f = craft.dicom_series(d / "shortpixels")
    craft.dicom_edit(f, lambda ds: setattr(ds, "PixelData", ds.PixelData[:50]), which=0)
    return f, ("shortpixels",), "refuse"


@_inp
def dicom_zero_length_files(d: Path) -> Spec:
    f = craft.dicom_series(d / "zerolen")
    for p in sorted(f.iterdir())[:2]:
        p.write_bytes(b"")
    return f, ("zerolen",), "either"


@_inp
def dicom_duplicate_slice(d: Path) -> Spec:
    f = craft.dicom_series(d / "dupslice", duplicate=2)
    return f, ("dupslice",), "refuse"


@_inp
def dicom_dropped_slice(d: Path) -> Spec:
    f = craft.dicom_series(d / "dropslice", drop=(2,))
    return f, ("dropslice",), "refuse"


@_inp
def dicom_gantry_tilt(d: Path) -> Spec:
    f = craft.dicom_series(d / "tilt", tilt_deg=10.0)
    return f, ("tilt",), "refuse"


@_inp
def dicom_nan_spacing(d: Path) -> Spec:
    f = craft.dicom_series(d / "nanspacing")
    craft.dicom_edit(f, lambda ds: setattr(ds, "PixelSpacing", ["nan", "0.8"]))
    return f, ("nanspacing",), "refuse"


@_inp
def dicom_zero_spacing(d: Path) -> Spec:
    f = craft.dicom_series(d / "zerospacing")
    craft.dicom_edit(f, lambda ds: setattr(ds, "PixelSpacing", [0, 0.8]))
    return f, ("zerospacing",), "refuse"


@_inp
def dicom_bad_transfer_syntax(d: Path) -> Spec:
    f = craft.dicom_series(d / "badts")
    craft.dicom_edit(f, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", "1.2.3.4.5"))
    return f, ("badts",), "refuse"


@_inp
def dicom_corrupt_rle(d: Path) -> Spec:
    f = craft.dicom_series(d / "badrle", compression="rle")

    def cut(ds: Any) -> None:
        from pydicom.encaps import encapsulate, generate_fragments

        frags = list(generate_fragments(ds.PixelData))
        ds.PixelData = encapsulate([frags[0][: len(frags[0]) // 3]])

    craft.dicom_edit(f, cut, which=1)
    return f, ("badrle",), "refuse"


@_inp
def dicom_single_garbage_file(d: Path) -> Spec:
    p = d / "lonely.dcm"
    p.write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    return p, (p.name,), "refuse"


@_inp
def zip_slip(d: Path) -> Spec:
    p = craft.zip_of(d / "slip.zip", {"../../evil.dcm": b"x" * 10, "ok/a.dcm": b"y"})
    return p, (p.name,), "refuse"


@_inp
def zip_absolute_member(d: Path) -> Spec:
    p = craft.zip_of(d / "absolute.zip", {"/tmp/evil.dcm": b"x" * 10})
    return p, (p.name,), "refuse"


@_inp
def zip_bomb_ratio(d: Path) -> Spec:
    p = craft.zip_of(d / "bomb.zip", {"a.dcm": b"\0" * (64 << 20)})
    return p, (p.name,), "refuse"


@_inp
def zip_symlink_member(d: Path) -> Spec:
    p = craft.zip_with_symlink(d / "link.zip", "series/evil.dcm", "/etc/passwd")
    return p, (p.name,), "refuse"


@_inp
def zip_corrupt(d: Path) -> Spec:
    good = craft.zip_of(d / "g.zip", craft.bytes_of_folder(craft.dicom_series(d / "zsrc")))
    p = d / "corrupt.zip"
    data = bytearray(good.read_bytes())
    mid = len(data) // 2
    data[mid: mid + 200] = os.urandom(200)
    p.write_bytes(bytes(data))
    return p, (p.name,), "refuse"


@_inp
def zip_empty(d: Path) -> Spec:
    p = craft.zip_of(d / "empty.zip", {})
    return p, (p.name,), "refuse"


@_inp
def zip_nested_zip(d: Path) -> Spec:
    inner = craft.zip_of(d / "inner.zip",
                         craft.bytes_of_folder(craft.dicom_series(d / "nsrc")))
    p = craft.zip_of(d / "nested.zip", {"inner.zip": inner.read_bytes()})
    return p, (p.name,), "refuse"


@_inp
def zip_dicom_ok(d: Path) -> Spec:
    p = craft.zip_of(d / "series.zip", craft.bytes_of_folder(craft.dicom_series(d / "okser")))
    return p, (p.name,), "accept"


@_inp
def zip_macos_junk(d: Path) -> Spec:
    members = craft.bytes_of_folder(craft.dicom_series(d / "mac"))
    members.update({"__MACOSX/._a.dcm": b"junk", ".DS_Store": b"junk"})
    p = craft.zip_of(d / "macjunk.zip", members)
    return p, (p.name,), "accept"


# ------------------------------------------------------------------ registration
def _check_convert(out: Path) -> Callable[[], None]:
    def check() -> None:
        o: Outcome = invoke(["info", str(out)])
        assert o.rc == 0, f"medseg info cannot read back {out.name}: {o.stderr.strip()}"
        assert "Traceback" not in o.stderr

    return check


def _make(name: str, fn: Input, command: str) -> Callable[[Path], Case]:
    def build(d: Path) -> Case:
        path, names, expect = fn(d)
        if command == "info":
            return Case(["info", str(path)], names, expect=expect)
        out = d / "out" / "converted.nii.gz"
        return Case(["convert", str(path), str(out)], names, outputs=(out,), expect=expect,
                    check=_check_convert(out))

    build.__name__ = f"{command}_{name}"
    return build


for _cmd in ("info", "convert"):
    cases("inputs", {f"{_cmd}_{n}": _make(n, f, _cmd) for n, f in INPUTS.items()})
