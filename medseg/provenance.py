"""Who or what made each label: manual, semi-automatic (prompted or propagated with model X) or
automatic (auto-segmented with model Y). The record travels with the label through the app's
annotation, the workspace state, the audit log and DICOM-SEG/RTSTRUCT algorithm identification.

Rules (:meth:`Provenance.after_edit`): a manual edit leaves a manual label manual and makes a
model's label semi-automatic (the model is kept: it made most of the label and a person
corrected it); accepting a prompted or propagated proposal makes the label semi-automatic with
the prompt model; an auto-segmentation that rewrites a label makes it automatic with its model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from medseg.errors import ProvenanceError
from medseg.io.dicom_seg import Algorithm

__all__ = ["MANUAL_NAME", "Kind", "Provenance", "export_algorithm"]

Kind = Literal["manual", "semiautomatic", "automatic"]
#: the DICOM algorithm name of manual labels (also the SEG/RTSTRUCT manufacturer model name)
MANUAL_NAME = "medseg app"


@dataclass(frozen=True)
class Provenance:
    """How a label was made; ``model``/``version`` name the model of a non-manual label."""

    kind: Kind = "manual"
    model: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(Kind):
            raise ProvenanceError(f"provenance kind {self.kind!r} is not one of "
                                  f"{', '.join(get_args(Kind))}")
        if (self.kind == "manual") != (self.model is None):
            raise ProvenanceError(f"provenance {self.kind!r} needs a model name exactly when it "
                                  f"is not manual (got model {self.model!r})")

    @classmethod
    def semiautomatic(cls, model: str, version: str) -> Provenance:
        return cls("semiautomatic", model, version)

    @classmethod
    def automatic(cls, model: str, version: str) -> Provenance:
        return cls("automatic", model, version)

    def after_edit(self) -> Provenance:
        """The provenance of this label after a person edited it by hand."""
        return self if self.kind != "automatic" else Provenance("semiautomatic", self.model,
                                                                 self.version)

    def describe(self) -> str:
        """``manual`` or e.g. ``semiautomatic (medseg-lite-sam 1)``."""
        return self.kind if self.model is None else f"{self.kind} ({self.model} {self.version})"

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "version": self.version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Provenance:
        """From :meth:`as_dict`'s mapping; a malformed one raises :class:`ProvenanceError`."""
        try:
            model = data.get("model")
            version = data.get("version")
            return cls(str(data["kind"]), None if model is None else str(model),  # type: ignore[arg-type]
                       None if version is None else str(version))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProvenanceError(f"malformed provenance record {data!r} ({exc!r})") from None

    def algorithm(self) -> Algorithm:
        """The DICOM algorithm identification of a label made this way."""
        if self.model is None:
            return Algorithm(type="manual", name=MANUAL_NAME)
        return Algorithm(type=self.kind, name=self.model, version=self.version)


def export_algorithm(labels: Mapping[str, Provenance]) -> Algorithm:
    """The one algorithm identification of an export of ``labels`` (name -> provenance).

    DICOM-SEG and RTSTRUCT files written by this medseg record one algorithm for all their
    segments, so labels made differently raise :class:`ProvenanceError` naming them: export
    them in separate files.
    """
    kinds = {p for p in labels.values()}
    if len(kinds) > 1:
        parts = "; ".join(f"{name}: {p.describe()}" for name, p in labels.items())
        raise ProvenanceError(
            f"the labels to export were made differently ({parts}); a DICOM-SEG or RTSTRUCT "
            "from medseg records one algorithm per file. Export each group in its own file.")
    return (next(iter(kinds)) if kinds else Provenance()).algorithm()
