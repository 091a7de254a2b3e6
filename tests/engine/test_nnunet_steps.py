"""nnU-Net's numeric steps in medseg equal nnU-Net's / skimage's own.

Always: the separable resampler against ``skimage.transform.resize`` (the function nnU-Net
calls), with and without separate-z, and the window helpers against their definitions. With the
tool venv (``make tools-nnunet``): against ``nnunetv2``'s own ``resample_data_or_seg_to_shape``,
``compute_steps_for_sliding_window`` and ``compute_gaussian``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.transform import resize

from medseg.engine.nnunet_steps import (
    bbox_nonzero,
    compute_new_shape,
    nonzero_mask,
    normalise,
    resample_plan,
    resample_volume,
    separate_z_axis,
)
from medseg.engine.window import nnunet_gaussian, nnunet_steps
from medseg.models.nnunet.recipe import ChannelNorm

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / ".tools/nnunet/bin/python"
needs_tool = pytest.mark.skipif(not TOOL.exists(), reason="nnunetv2 tool venv not built "
                                "(make tools-nnunet)")


def _ours(x: np.ndarray, new_shape: tuple[int, ...], cur: tuple[float, ...],
          new: tuple[float, ...], order: int, order_z: int = 0,
          force: bool | None = None) -> np.ndarray:
    z = separate_z_axis(cur, new, force)
    ops, per_slice = resample_plan(x.shape, new_shape, order, order_z, z)
    out = resample_volume(x.shape, lambda a, i0, i1: np.take(x, np.arange(i0, i1), axis=a)
                          .astype(np.float32), ops, z if per_slice else None)
    return out.numpy()


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize(("shape", "new_shape"), [((20, 33, 17), (11, 40, 9)),
                                                   ((16, 16, 16), (16, 9, 31))])
def test_resample_equals_skimage_resize(order: int, shape: tuple[int, ...],
                                        new_shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(order)
    x = rng.normal(size=shape).astype(np.float32) * 100
    ref = resize(x.astype(np.float64), new_shape, order, mode="edge", anti_aliasing=False)
    ours = _ours(x, new_shape, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), order)
    assert ours.shape == new_shape
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_separate_z_equals_slicewise_skimage() -> None:
    """Anisotropic input: in-plane cubic slice by slice (each slice clipped to its range),
    then nearest along z, as nnU-Net's ``resample_data_or_seg``."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 30, 26)).astype(np.float32)
    cur, new = (5.0, 0.8, 0.8), (3.0, 1.0, 1.0)
    assert separate_z_axis(cur, new, None) == 0
    new_shape = compute_new_shape(x.shape, cur, new)
    planes = np.stack([resize(x[i].astype(np.float64), new_shape[1:], 3, mode="edge",
                              anti_aliasing=False) for i in range(x.shape[0])])
    zi = np.clip(np.floor((x.shape[0] / new_shape[0]) * (np.arange(new_shape[0]) + 0.5)
                          - 0.5 + 0.5).astype(int), 0, x.shape[0] - 1)
    ours = _ours(x, new_shape, cur, new, 3, 0)
    np.testing.assert_allclose(ours, planes[zi], atol=1e-4)


def test_crop_box_and_normalisation() -> None:
    x = np.zeros((10, 12, 14), dtype=np.int16)
    x[2:7, 3:9, 4:12] = 100
    x[4, 5, 6] = 0  # a hole: filled in the mask, no effect on the box
    box = bbox_nonzero([x])
    assert box == (slice(2, 7), slice(3, 9), slice(4, 12))
    assert nonzero_mask([x[box]]).all()
    ct = ChannelNorm(scheme="CTNormalization", mean=10.0, std=20.0, lower=-50.0, upper=60.0)
    np.testing.assert_allclose(normalise(np.array([-100, 0, 100]), ct, None), [-3.0, -0.5, 2.5])
    z = normalise(np.array([1.0, 2.0, 3.0]), ChannelNorm(scheme="ZScoreNormalization"), None)
    np.testing.assert_allclose(z, (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3]), rtol=1e-6)


def test_window_helpers() -> None:
    # nnU-Net's docstring example: image 110, patch 64, step 0.5 -> 0, 23, 46
    assert nnunet_steps([110], [64], 0.5) == [[0, 23, 46]]
    assert nnunet_steps([64, 100], [64, 64], 0.5) == [[0], [0, 18, 36]]  # ceil(36/32) + 1
    g = nnunet_gaussian((8, 10, 12))
    assert g.dtype == torch.float32 and float(g.max()) == pytest.approx(10.0, rel=1e-3)
    assert float(g.min()) > 0


def _tool(jobs: list[dict], tmp: Path) -> None:
    spec = tmp / "jobs.json"
    spec.write_text(json.dumps(jobs))
    subprocess.run([str(TOOL), str(ROOT / "tests/fixtures/nnunet/tool_reference.py"),
                    str(spec)], check=True, capture_output=True, timeout=300)


@needs_tool
def test_equal_to_nnunetv2_functions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1, 9, 40, 36)) * 50).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    cases = [((20, 30, 30), (1.0, 1.0, 1.0), (0.45, 1.33, 1.2), 3),   # isotropic -> 3D cubic
             ((12, 52, 47), (4.0, 0.8, 0.8), (3.0, 0.6, 0.6), 3),     # separate-z (current)
             ((9, 20, 18), (1.0, 0.5, 0.5), (1.0, 1.0, 1.0), 1)]     # linear
    jobs = [{"op": "resample", "in": str(tmp_path / "x.npy"), "new_shape": list(ns),
             "current_spacing": list(cur), "new_spacing": list(new), "order": o, "order_z": 0,
             "force_separate_z": None, "out": str(tmp_path / f"r{i}.npy")}
            for i, (ns, cur, new, o) in enumerate(cases)]
    jobs += [{"op": "steps", "image_size": [77, 130, 41], "tile": [48, 64, 32], "step": 0.5,
              "out": str(tmp_path / "steps.json")},
             {"op": "gaussian", "tile": [48, 64, 32], "out": str(tmp_path / "g.npy")}]
    _tool(jobs, tmp_path)
    for i, (ns, cur, new, o) in enumerate(cases):
        ref = np.load(tmp_path / f"r{i}.npy")[0]
        np.testing.assert_allclose(_ours(x[0], ns, cur, new, o), ref, atol=2e-3, rtol=1e-4)
    assert nnunet_steps([77, 130, 41], [48, 64, 32], 0.5) == json.loads(
        (tmp_path / "steps.json").read_text())
    np.testing.assert_array_equal(nnunet_gaussian((48, 64, 32)).numpy(),
                                  np.load(tmp_path / "g.npy"))
