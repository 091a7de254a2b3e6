"""Label names: the per-format rules (one check for every writer), shortening, display, and
label files that cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.errors import CorruptFileError, LabelNameError
from medseg.io.labels import (
    check_label_names,
    display_name,
    label_name_problem,
    labels_from_json,
    read_sidecar,
    renamed,
    shorten_label_name,
)


@pytest.mark.parametrize(("name", "fmt", "problem"), [
    ("liver", "seg", None),
    ("肝臓 Leber ü", "seg", None),
    ("x" * 64, "rtstruct", None),
    ("x" * 65, "seg", "65 characters, more than the 64 bytes"),
    ("肝" * 22, "seg", "22 characters (66 bytes in UTF-8)"),
    ("肝" * 21, "rtstruct", None),
    ("x" * 5000, "stl", None),  # meshes hold any length (the file name is shortened)
    ("a\nb", "rtstruct", "U+000A (line feed)"),
    ("a\x00b", "seg", "U+0000 (NUL)"),
    ("a\x1bb", "nifti", "U+001B (ESC)"),
    ("a\\b", "seg", "backslash"),
    ("a\\b", "obj", None),
    (" liver", "rtstruct", "starts or ends with a space"),
    ("", "stl", "is empty"),
    ("\ud800", "nifti", "unpaired surrogate"),
])
def test_rules_per_format(name: str, fmt: str, problem: str | None) -> None:
    got = label_name_problem(name, fmt)
    assert (got is None) if problem is None else (got is not None and problem in got), got


def test_refusal_names_the_label_and_the_limit_on_one_line() -> None:
    with pytest.raises(LabelNameError) as exc:
        check_label_names({1: "liver", 7: "y" * 5000}, "seg")
    text = str(exc.value)
    assert "\n" not in text and "label 7" in text and "64 bytes" in text
    assert "--shorten-labels" in text and len(text) < 600
    assert check_label_names({1: "liver"}, "seg") == {1: "liver"}


def test_shortening_fits_the_format_and_keeps_names_apart() -> None:
    a, b = "y" * 70 + "A", "y" * 70 + "B"
    fixed = check_label_names({1: a, 2: b, 3: "ok", 4: "a\nb\\c", 5: "\x00"}, "seg",
                              shorten=True)
    assert all(label_name_problem(n, "seg") is None for n in fixed.values())
    assert len(fixed[1].encode()) == 64 and fixed[1] != fixed[2] and fixed[3] == "ok"
    assert fixed[4] == "a b c" and fixed[5] == "label_5"
    assert [r["label_value"] for r in renamed({1: a, 2: b, 3: "ok", 4: "a\nb\\c", 5: "\x00"},
                                              fixed)] == [1, 2, 4, 5]
    cjk = shorten_label_name("肝" * 40, "rtstruct", 1)
    assert len(cjk.encode()) <= 64 and cjk.startswith("肝" * 19)  # whole characters only
    assert shorten_label_name("a\nb", "stl", 1) == "a b"


def test_display_name_is_one_short_line() -> None:
    assert display_name("liver") == "liver"
    long = display_name("x" * 5000, 60)
    assert len(long) <= 60 and "..." in long
    assert display_name("a\nb\x00") == "a\\nb\\x00"


def test_label_files_that_cannot_be_read_are_typed(tmp_path: Path) -> None:
    with pytest.raises(CorruptFileError, match="surrogate"):
        labels_from_json('{"1": "\\ud800"}', "names.json")
    img = tmp_path / "case.nii.gz"
    (tmp_path / "case.labels.json").write_bytes(b'{"1": "\xff\xfe"}')
    with pytest.raises(CorruptFileError, match="not UTF-8"):
        read_sidecar(img)
