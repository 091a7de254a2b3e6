"""Shared fixtures: sample data paths, generated volumes with awkward geometry, tool lookup."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.volume import Volume

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data_samples"
SHARED = ROOT.parent / "shared" / "data"


def require_tool(name: str) -> str:
    """Path of an external program; skip the test when absent, fail instead under CI."""
    path = shutil.which(name)
    if path:
        return path
    msg = f"{name} is not installed (make test installs it via `make system-deps`)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)
    raise AssertionError("unreachable")


def rotation(axis: str, degrees: float) -> np.ndarray:
    """3x3 rotation about the x, y or z axis."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def make_volume(kind: str, shape: tuple[int, int, int] = (20, 16, 8), seed: int = 0,
                dtype: type = np.int16) -> Volume:
    """A small volume with distinctive voxels and one of several geometries.

    ``kind``: ``"identity"``, ``"oblique"`` (rotated 20 deg about x then 15 about z),
    ``"flipped"`` (i and k axes reversed), ``"anisotropic"`` (0.5 x 0.7 x 5 mm).
    """
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 2000, size=shape).astype(dtype)
    spacing, origin, direction = (1.0, 1.0, 1.0), (10.0, -20.0, 30.0), np.eye(3)
    if kind == "oblique":
        direction = rotation("z", 15) @ rotation("x", 20)
        spacing, origin = (0.8, 0.9, 2.5), (-101.25, 33.5, -7.75)
    elif kind == "flipped":
        direction = np.diag([-1.0, 1.0, -1.0])
        spacing, origin = (1.2, 1.2, 3.0), (150.0, -80.0, 200.0)
    elif kind == "anisotropic":
        spacing, origin = (0.5, 0.7, 5.0), (-60.0, -60.0, -100.0)
    elif kind != "identity":
        raise ValueError(kind)
    return Volume(arr, spacing, origin, direction, modality="CT")


@pytest.fixture(params=["identity", "oblique", "flipped", "anisotropic"])
def geometry_volume(request: pytest.FixtureRequest) -> Volume:
    return make_volume(request.param)


# Real file-system faults (read-only folder, full disk) shared by every test folder.
from tests.fs_fixtures import full_fs, readonly_dir  # noqa: E402, F401
