"""Typed configuration: the only module that reads YAML.

A config file (``configs/*.yaml``) is validated once into a :class:`MedsegConfig`. Every model
forbids unknown keys, so a typo names itself and the keys allowed at that level; a wrong type
names its dotted key. ``--set key=value`` overrides use dotted keys (``train.epochs=5``); the
value is parsed as YAML (``[1.5, 1.5, 3]``, ``true``, ``null``).

Relative paths in a config (``data.root``, ``train.output_dir``) are relative to the current
working directory, not to the config file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import ConfigError

__all__ = [
    "AugmentConfig", "DataConfig", "InferenceConfig", "IntensityConfig", "LossConfig",
    "MedsegConfig", "ModelConfig", "OptimizerConfig", "PreprocessConfig", "SchedulerConfig",
    "TrainConfig", "apply_overrides", "config_hash", "dump_config", "load_config", "parse_config",
    "read_yaml", "validate_config",
]


M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class DataConfig(_Strict):
    """Where the cases are and how they are split (patient level)."""

    format: Literal["decathlon", "folders", "nnunet"] = "decathlon"
    root: Path = Field(description="dataset.json (decathlon), dataset folder (nnunet) or the "
                                   "folder holding images/labels sub-folders (folders)")
    images_dir: str = "imagesTr"
    labels_dir: str = "labelsTr"
    labels: dict[int, str] | None = Field(
        default=None, description="{value: name} for non-zero labels; required for 'folders' "
                                  "unless the label files carry names; overrides dataset.json")
    keep_labels: dict[int, str] | None = Field(
        default=None, description="{file value: name}: train on these labels only, renumbered "
                                  "1..N in the order given; every other value is background. "
                                  "File values sharing a name merge into one label "
                                  "({1: tumour, 2: tumour} trains 'label > 0' as one class)")
    modality: str = "CT"
    body_region: str | None = Field(
        default=None, description="body region the model is made for (free text, e.g. "
                                  "'abdomen'); stored with the weights and shown in the app")
    channels: int = Field(default=1, ge=1)
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0)
    n_folds: int | None = Field(default=None, ge=2)
    fold: int = Field(default=0, ge=0)
    patient_id_pattern: str | None = Field(
        default=None, description="regex whose first group is the patient id of a case id; "
                                  "cases of one patient never straddle train and validation")
    seed: int = 0
    max_cases: int | None = Field(default=None, ge=1)

    def kept_labels(self) -> dict[int, str] | None:
        """``{new value: name}`` of ``keep_labels`` (distinct names, 1..N in first-seen order)."""
        if self.keep_labels is None:
            return None
        names = list(dict.fromkeys(self.keep_labels.values()))
        return {i + 1: name for i, name in enumerate(names)}

    def label_mapping(self) -> dict[int, int] | None:
        """``{file value: new value}`` of ``keep_labels``; values sharing a name share a value."""
        if self.keep_labels is None:
            return None
        new = {name: v for v, name in (self.kept_labels() or {}).items()}
        return {src: new[name] for src, name in self.keep_labels.items()}

    @model_validator(mode="after")
    def _fold_in_range(self) -> DataConfig:
        if self.n_folds is not None and self.fold >= self.n_folds:
            raise ValueError(f"fold {self.fold} must be < n_folds {self.n_folds}")
        return self


class IntensityConfig(_Strict):
    """``ct``: clip to ``window`` (HU) and scale to [0, 1]; ``mr_percentile``: scale the
    ``percentiles`` of each image to [0, 1] (clipped); ``zscore``: per-channel z-score over
    non-zero voxels; ``none``: unchanged."""

    mode: Literal["ct", "mr_percentile", "zscore", "none"] = "ct"
    window: tuple[float, float] = (-1000.0, 1000.0)
    percentiles: tuple[float, float] = (0.5, 99.5)

    @model_validator(mode="after")
    def _ordered(self) -> IntensityConfig:
        if self.window[0] >= self.window[1]:
            raise ValueError(f"window low {self.window[0]} must be < high {self.window[1]}")
        if not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise ValueError(f"percentiles {self.percentiles} must satisfy 0 <= lo < hi <= 100")
        return self


class PreprocessConfig(_Strict):
    """Shared by training and inference; stored in every model bundle. ``spacing`` is the
    target voxel size (mm) along the axes *after* reorientation; ``null`` keeps the native
    spacing of an axis (or of all axes)."""

    orientation: str = "RAS"
    spacing: tuple[float | None, float | None, float | None] | None = (1.5, 1.5, 1.5)
    intensity: IntensityConfig = IntensityConfig()
    foreground_crop: bool = False

    @field_validator("orientation")
    @classmethod
    def _axcodes(cls, v: str) -> str:
        v = v.upper()
        pairs = [{"L", "R"}, {"A", "P"}, {"S", "I"}]
        if len(v) != 3 or any(sum(c in p for c in v) != 1 for p in pairs):
            raise ValueError(f"orientation {v!r} must be 3 axis codes, one of L/R, A/P, S/I each")
        return v

    @field_validator("spacing")
    @classmethod
    def _positive(cls, v: tuple[float | None, ...] | None) -> tuple[float | None, ...] | None:
        if v is not None and any(s is not None and s <= 0 for s in v):
            raise ValueError(f"spacing {v} must be positive (mm), or null to keep an axis")
        return v


class AugmentConfig(_Strict):
    """Training-time augmentation (MONAI random transforms); probabilities in [0, 1]."""

    enabled: bool = True
    pos_neg: tuple[float, float] = (1.0, 1.0)
    num_samples: int = Field(default=2, ge=1)
    flip_prob: float = Field(default=0.5, ge=0, le=1)
    flip_axes: tuple[int, ...] = Field(
        default=(0, 1, 2), description="axes (after reorientation, 0 = left-right in RAS) to "
                                       "mirror; drop 0 when labels are lateralised")
    rotate_prob: float = Field(default=0.2, ge=0, le=1)
    rotate_deg: float = Field(default=15.0, ge=0, le=180)
    scale_prob: float = Field(default=0.2, ge=0, le=1)
    scale_range: float = Field(default=0.1, ge=0, lt=1)
    intensity_shift_prob: float = Field(default=0.5, ge=0, le=1)
    intensity_shift: float = Field(default=0.1, ge=0)
    intensity_scale_prob: float = Field(default=0.5, ge=0, le=1)
    intensity_scale: float = Field(default=0.1, ge=0)
    noise_prob: float = Field(default=0.1, ge=0, le=1)
    noise_std: float = Field(default=0.05, ge=0)


class ModelConfig(_Strict):
    """A MONAI network by registry name; ``kwargs`` go to its constructor."""

    name: str = "unet"
    spatial_dims: Literal[2, 3] = 3
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from medseg.models.registry import available_networks

        key = v.lower()
        if key not in available_networks():
            raise ValueError(f"unknown network {v!r}; available: {', '.join(available_networks())}")
        return key


class LossConfig(_Strict):
    name: Literal["dice_ce", "dice_focal"] = "dice_ce"
    include_background: bool = False


class OptimizerConfig(_Strict):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    momentum: float = Field(default=0.99, ge=0, lt=1)


class SchedulerConfig(_Strict):
    name: Literal["cosine", "poly", "none"] = "cosine"
    warmup_epochs: int = Field(default=0, ge=0)


class TrainConfig(_Strict):
    output_dir: Path = Path("runs/default")
    epochs: int = Field(default=100, ge=1)
    iterations_per_epoch: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=2, ge=1)
    patch_size: tuple[int, ...] = (96, 96, 96)
    val_every: int = Field(default=1, ge=1)
    amp: bool = True
    cache_memory_gb: float = Field(default=2.0, ge=0)
    num_workers: int = Field(default=0, ge=0)
    deterministic: bool = False
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tensorboard: bool = Field(default=False, description="write TensorBoard scalars (loss, lr, "
                                                         "val Dice per label) to "
                                                         "output_dir/tensorboard, rank 0 only")


class InferenceConfig(_Strict):
    """Sliding-window defaults stored in the bundle; ``roi_size`` defaults to the patch size."""

    roi_size: tuple[int, ...] | None = None
    overlap: float = Field(default=0.5, ge=0, lt=1)
    sw_batch_size: int = Field(default=4, ge=1)
    mode: Literal["gaussian", "constant"] = "gaussian"


class MedsegConfig(_Strict):
    name: str = "experiment"
    data: DataConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    train: TrainConfig = TrainConfig()
    inference: InferenceConfig = InferenceConfig()

    @model_validator(mode="after")
    def _dims_agree(self) -> MedsegConfig:
        nd = self.model.spatial_dims
        if len(self.train.patch_size) != nd:
            raise ValueError(f"train.patch_size {self.train.patch_size} needs {nd} values for "
                             f"model.spatial_dims={nd}")
        roi = self.inference.roi_size
        if roi is not None and len(roi) != nd:
            raise ValueError(f"inference.roi_size {roi} needs {nd} values")
        return self

    @property
    def roi_size(self) -> tuple[int, ...]:
        """Sliding-window ROI (voxels of the preprocessed grid)."""
        return tuple(self.inference.roi_size or self.train.patch_size)


# ---------------------------------------------------------------------------- errors


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model class that owns the key at ``loc`` (minus its last element)."""
    cls: type[BaseModel] = root
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        cls = ann
    return cls


def _format_errors(exc: ValidationError, source: str, root: type[BaseModel],
                   what: str = "config") -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            owner = _model_at(root, loc)
            allowed = ", ".join(owner.model_fields) if owner else "?"
            parent = ".".join(str(p) for p in loc[:-1]) or "top level"
            lines.append(f"unknown key '{key}'; allowed keys under {parent}: {allowed}")
        elif err["type"] == "missing":
            lines.append(f"missing required key '{key}'")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"'{key}': {msg} (got {err.get('input')!r})")
    return f"{source}: invalid {what}:\n  - " + "\n  - ".join(lines)


# ---------------------------------------------------------------------------- loading


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply dotted ``key=value`` overrides to a raw config dict (a modified deep copy).

    Values are parsed as YAML. Unknown keys are not rejected here but by validation, which
    names them.
    """
    out: dict[str, Any] = json.loads(json.dumps(raw, default=str))
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, "
                              "e.g. --set train.epochs=5")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: '{'.'.join(parts[:i + 1])}' is a value, "
                                  "not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def validate_config(model: type[M], raw: Any, source: str, what: str = "config") -> M:
    """Validate ``raw`` into ``model``; :class:`ConfigError` names every offending key (and,
    for unknown keys, the keys allowed there). Shared by every typed config of medseg."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level of a {what} must be a mapping of sections, "
                          f"got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, model, what)) from None


def parse_config(raw: Any, source: str = "config") -> MedsegConfig:
    """Validate a raw dict into a :class:`MedsegConfig`; :class:`ConfigError` names the keys."""
    return validate_config(MedsegConfig, raw, source)


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (PyYAML keeps the last
    one silently, so a second ``model:`` block would quietly replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode,
                          deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base": later keys override
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (lines {seen[key]} and "
                        f"{line}); keep one", key_node.start_mark)
                seen[key] = line
            except TypeError:  # unhashable key: let PyYAML report it
                continue
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
              example: str = "configs/*.yaml") -> dict[str, Any]:
    """The raw mapping of a YAML config file with dotted ``overrides`` applied.

    The only place medseg reads YAML; typed loaders (this module's :func:`load_config`,
    :func:`medseg.engine.prompt_config.load_finetune_config`) validate what it returns.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found. Pass one of {example}.")
    try:
        raw = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{p}: a config must be a YAML mapping of keys, got "
                          f"{type(raw).__name__}.")
    return apply_overrides(raw or {}, overrides)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> MedsegConfig:
    """Read ``path`` (YAML), apply ``overrides`` and validate."""
    return parse_config(read_yaml(path, overrides), source=str(path))


def dump_config(cfg: BaseModel) -> str:
    """YAML text of a config that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, default_flow_style=None)


def config_hash(cfg: BaseModel) -> str:
    """First 16 hex digits of the SHA-256 of the config's canonical JSON."""
    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
