"""Model bundles: safetensors + JSON, no unpickling, typed errors for foreign/incompatible files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from medseg.errors import (
    BundleError,
    IncompatibleBundleError,
    InputNotFoundError,
    UnknownNetworkError,
)
from medseg.models.bundle import load_bundle, read_bundle_meta
from tests.engine.fixtures import LABELS, random_bundle

torch.set_num_threads(1)


def _rewrite_meta(src: Path, dst: Path, **changes: object) -> None:
    raw = json.loads(read_bundle_meta_raw(src))
    raw.update(changes)
    save_file(load_file(str(src)), str(dst), metadata={"medseg": json.dumps(raw)})


def read_bundle_meta_raw(path: Path) -> str:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n])["__metadata__"]["medseg"]


def test_round_trip_same_outputs(tmp_path: Path) -> None:
    path = random_bundle(tmp_path / "m.safetensors")
    net, meta = load_bundle(path)
    torch.manual_seed(0)
    ref, _ = load_bundle(path)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))
    assert meta.labels == LABELS and meta.modality == "CT"
    assert meta.roi_size == (32, 32, 32) and meta.network.out_channels == 4
    assert meta.preprocess.spacing == (4.0, 4.0, 4.0) and not net.training


def test_file_is_plain_safetensors_with_json_header(tmp_path: Path) -> None:
    path = random_bundle(tmp_path / "m.safetensors")
    raw = json.loads(read_bundle_meta_raw(path))
    assert raw["format"] == "medseg-bundle" and raw["format_version"] == 1
    assert raw["network"]["name"] == "unet" and raw["medseg_version"]
    assert set(raw) >= {"labels", "preprocess", "inference", "config_hash", "modality"}
    assert b"\x80\x04" not in path.read_bytes()[:16]  # no pickle protocol marker


def test_incompatible_format_version(tmp_path: Path) -> None:
    src = random_bundle(tmp_path / "m.safetensors")
    _rewrite_meta(src, tmp_path / "future.safetensors", format_version=99)
    with pytest.raises(IncompatibleBundleError, match=r"format version 99.*Upgrade medseg"):
        load_bundle(tmp_path / "future.safetensors")
    _rewrite_meta(src, tmp_path / "old.safetensors", medseg_version="7.0.0")
    with pytest.raises(IncompatibleBundleError, match="medseg 7.0.0"):
        read_bundle_meta(tmp_path / "old.safetensors")


def test_unknown_network_in_bundle(tmp_path: Path) -> None:
    src = random_bundle(tmp_path / "m.safetensors")
    raw = json.loads(read_bundle_meta_raw(src))
    raw["network"]["name"] = "mystery_net"
    save_file(load_file(str(src)), str(tmp_path / "x.safetensors"),
              metadata={"medseg": json.dumps(raw)})
    with pytest.raises(UnknownNetworkError, match=r"x.safetensors: the bundle needs .*mystery_net"):
        load_bundle(tmp_path / "x.safetensors")


def test_foreign_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError, match="model bundle not found"):
        load_bundle(tmp_path / "none.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(BundleError, match="without a medseg description"):
        load_bundle(tmp_path / "plain.safetensors")
    torch.save({"a": 1}, tmp_path / "pickle.safetensors")
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(tmp_path / "pickle.safetensors")


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    src = random_bundle(tmp_path / "m.safetensors")
    raw = json.loads(read_bundle_meta_raw(src))
    raw["network"]["kwargs"]["channels"] = [8, 16, 32]
    save_file(load_file(str(src)), str(tmp_path / "x.safetensors"),
              metadata={"medseg": json.dumps(raw)})
    with pytest.raises(BundleError, match="weights do not fit network unet"):
        load_bundle(tmp_path / "x.safetensors")


def test_resolve_bundle_by_path_name_and_default(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from medseg.models import bundle as bm

    weights = tmp_path / "weights"
    weights.mkdir()
    shipped = random_bundle(weights / "ct_organs_2d.safetensors")
    random_bundle(weights / "lite_sam.safetensors")  # the promptable model is not listed
    monkeypatch.setattr(bm, "SHIPPED_DIR", weights)
    assert bm.shipped_bundles() == {"ct_organs_2d": shipped}
    assert bm.resolve_bundle("default") == shipped
    assert bm.resolve_bundle("ct_organs_2d") == shipped
    own = random_bundle(tmp_path / "mine.safetensors")
    assert bm.resolve_bundle(own) == own
    with pytest.raises(InputNotFoundError, match="shipped: ct_organs_2d"):
        bm.resolve_bundle("liver_model")
    with pytest.raises(InputNotFoundError, match="model bundle not found"):
        read_bundle_meta(bm.resolve_bundle(tmp_path / "missing.safetensors"))
    monkeypatch.setattr(bm, "SHIPPED_DIR", tmp_path / "none")
    with pytest.raises(InputNotFoundError, match="shipped: none"):
        bm.resolve_bundle("default")
