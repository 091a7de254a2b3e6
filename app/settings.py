"""App settings, read once from the environment.

- ``MEDSEG_DATA_ROOTS`` (default: the bundled ``data_samples``): server folders the app may
  list and read, ``os.pathsep``-separated; nothing outside them is listed or read.
- ``MEDSEG_MAX_UPLOAD_MB`` (default 1024, a whole number >= 1): largest accepted upload in MiB,
  for every uploader (images, reference masks, model bundles); Streamlit's own
  ``server.maxUploadSize`` is set to the same value when the app starts a page.
- ``MEDSEG_WORKSPACE`` (default ``./workspace``): where annotations and uploads are kept.
- ``MEDSEG_START_SAMPLE`` (default empty): name of a bundled sample to open when a session
  starts with no case (``make run`` opens the sample CT).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from medseg.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "data_samples"


@dataclass(frozen=True)
class AppSettings:
    data_roots: tuple[Path, ...]
    max_upload_mb: int
    workspace: Path
    start_sample: str = ""


def _max_upload_mb(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"MEDSEG_MAX_UPLOAD_MB={text!r}: must be a whole number of MB (at "
                          "least 1); fix the variable and restart the app.")
    return value


def load_settings(env: dict[str, str] | None = None) -> AppSettings:
    """The settings from ``env`` (default: the process environment); a malformed value
    raises :class:`~medseg.errors.ConfigError` naming the variable."""
    env = dict(os.environ if env is None else env)
    roots_env = env.get("MEDSEG_DATA_ROOTS", "")
    roots = tuple(Path(r).expanduser().resolve() for r in roots_env.split(os.pathsep) if r)
    return AppSettings(
        data_roots=roots or (SAMPLES_DIR.resolve(),),
        max_upload_mb=_max_upload_mb(env.get("MEDSEG_MAX_UPLOAD_MB", "1024")),
        workspace=Path(env.get("MEDSEG_WORKSPACE", "workspace")).expanduser().resolve(),
        start_sample=env.get("MEDSEG_START_SAMPLE", ""),
    )
