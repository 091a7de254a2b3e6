"""MONAI bundles: configs read without running code, the lean translation, refusals.

The fixture ``tests/fixtures/monai_bundle/ct_organs_unet`` is a model-zoo layout bundle (made
by ``make_bundle.py``); its reference labels come from ``python -m monai.bundle run``.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ForeignModelError, UnsafeModelError
from medseg.models.importer import convert, source_kind
from medseg.models.monai_bundle import read_monai_bundle
from medseg.models.monai_config import Component, SafeConfig

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/monai_bundle/ct_organs_unet"


def _cfg(doc: dict) -> SafeConfig:
    return SafeConfig(doc, "inference.json")


def test_references_macros_and_safe_idioms() -> None:
    cfg = _cfg({
        "bundle_root": "/b", "roi": [8, 8, 8], "n": 3,
        "path": "$@bundle_root + '/models/model.pt'",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "joined": "$os.path.join(@bundle_root, 'x')", "size": "$[r * 2 for r in @roi]",
        "half": "$@n // 2 + len(@roi)", "dtype": "$torch.float32",
        "net": {"_target_": "UNet", "spatial_dims": 3, "channels": "%roi"},
        "alias": "@net::channels::0"})
    assert cfg.get("path") == "/b/models/model.pt"
    assert str(cfg.get("device")) in ("cpu", "cuda:0")
    assert cfg.get("joined") == "/b/x" and cfg.get("half") == 4
    net = cfg.get("net")
    assert isinstance(net, Component) and net.name == "UNet" and net.args["channels"] == [8, 8, 8]
    assert cfg.get("alias") == 8
    with pytest.raises(UnsafeModelError, match="ListComp"):  # comprehensions are not allowed
        cfg.get("size")


@pytest.mark.parametrize("expr", [
    "$__import__('os').system('touch /tmp/x')", "$open('/etc/passwd').read()",
    "$eval('1')", "$import os", "$@bundle_root.__class__", "$torch.load('x')",
    "$().__class__.__base__.__subclasses__()", "$'a' * 10**9", "$list(range(10**9))",
    "$exec('x=1')", "$(lambda: 1)()"])
def test_hostile_expressions_refused_by_name(expr: str) -> None:
    cfg = _cfg({"bundle_root": "/b", "x": expr})
    with pytest.raises(UnsafeModelError) as info:
        cfg.get("x")
    msg = str(info.value)
    assert "\n" not in msg and "inference.json: x: expression" in msg
    assert expr[1:20] in msg and "--trust-code" in msg


def test_fixture_translates_to_the_lean_path() -> None:
    b = read_monai_bundle(FIXTURE)
    assert b.network.name == "UNet" and (b.in_channels, b.out_channels) == (1, 5)
    assert b.orientation == "RAS" and b.spacing == (2.0, 2.0, 2.0)
    assert [s["name"] for s in b.intensity] == ["ScaleIntensityRanged"]
    assert b.inferer == {"roi_size": (64, 64, 64), "overlap": 0.5, "sw_batch_size": 2,
                         "mode": "gaussian"}
    assert b.invert == "probabilities" and b.softmax
    assert b.labels == {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "liver"}
    assert b.modality == "CT" and b.provenance["licence"] == "Apache-2.0"
    b.load_network()


def _edited(tmp: Path, edit: object) -> Path:
    dst = tmp / "bundle"
    shutil.copytree(FIXTURE, dst)
    doc = json.loads((dst / "configs/inference.json").read_text())
    edit(doc)  # type: ignore[operator]
    (dst / "configs/inference.json").write_text(json.dumps(doc))
    return dst


@pytest.mark.parametrize(("edit", "error", "match"), [
    (lambda d: d["preprocessing"]["transforms"].insert(
        5, {"_target_": "CropForegroundd", "keys": "image", "source_key": "image"}),
     ForeignModelError, "CropForegroundd is not one medseg's lean path runs"),
    (lambda d: d["preprocessing"]["transforms"].insert(
        2, {"_target_": "Lambdad", "keys": "image", "func": "$lambda x: x"}),
     UnsafeModelError, r"func: expression \$lambda x: x is outside"),
    (lambda d: d["preprocessing"]["transforms"][4].update(
        a_min="$__import__('os').system('touch /tmp/medseg-pwned')"),
     UnsafeModelError, "expression"),
    (lambda d: d["network_def"].update(_target_="scripts.net.MyNet"),
     UnsafeModelError, "not one of the MONAI networks"),
    (lambda d: d["postprocessing"]["transforms"].insert(
        0, {"_target_": "my_pkg.Hook", "keys": "pred"}), UnsafeModelError,
     "not a MONAI component"),
])
def test_bundle_refusals(tmp_path: Path, edit: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        convert(_edited(tmp_path, edit))
    assert "\n" not in str(info.value)
    assert not Path("/tmp/medseg-pwned").exists()


def test_zip_bundle(tmp_path: Path) -> None:
    z = tmp_path / "ct_organs_unet.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for p in FIXTURE.rglob("*"):
            if p.is_file():
                zf.write(p, Path("ct_organs_unet") / p.relative_to(FIXTURE))
    assert source_kind(z) == "monai_bundle"
    _net, meta = convert(z)
    assert meta.recipe and meta.recipe["kind"] == "monai_bundle"
    assert meta.labels[4] == "liver" and meta.format_version == 2


@pytest.mark.parametrize("case", ["ct_sm", "ct_flipped", "ct_oblique"])
def test_same_labels_as_monai_bundle_run(case: str, tmp_path_factory: pytest.TempPathFactory
                                         ) -> None:
    """medseg's lean path against ``monai.bundle.run``'s own labels (committed references)."""
    from medseg import io
    from medseg.engine.infer import Segmenter
    from tests.fixtures.nnunet.inputs import make

    image = io.read(make(case, tmp_path_factory.getbasetemp() / "bundle_inputs"))
    ref = io.read(FIXTURE.parent / "reference" / f"{case}.nii.gz", label=True)
    ours = Segmenter(FIXTURE, device="cpu").predict(image)
    assert ours.grid_differences(ref) == []
    a, b = np.asarray(ours.array), np.asarray(ref.array)
    assert float((a == b).mean()) >= 0.999
    for c in set(np.unique(b)) - {0}:
        assert 2 * ((a == c) & (b == c)).sum() / ((a == c).sum() + (b == c).sum()) >= 0.99


def test_trust_code_runs_the_bundles_own_config(tmp_path: Path) -> None:
    """An expression outside the allow-list is refused by default; with trust_code MONAI's
    parser runs it, and the labels equal the lean path's."""
    from medseg import io
    from medseg.engine.infer import Segmenter
    from tests.fixtures.nnunet.inputs import make

    bundle = _edited(tmp_path, lambda d: d["inferer"].update(
        roi_size="$[64 for _ in range(3)]"))
    with pytest.raises(UnsafeModelError, match=r"inferer::roi_size: expression \$\[64 for"):
        Segmenter(bundle, device="cpu")
    image = io.read(make("ct_sm", tmp_path / "in"))
    trusted = Segmenter(bundle, device="cpu", trust_code=True)
    assert trusted.kind == "trusted_bundle" and trusted.labels[4] == "liver"
    ours = trusted.predict(image)
    ref = io.read(FIXTURE.parent / "reference/ct_sm.nii.gz", label=True)
    assert float((np.asarray(ours.array) == np.asarray(ref.array)).mean()) >= 0.999
