"""Provenance records: rules, JSON, DICOM algorithm identification of exports."""

from __future__ import annotations

import pytest

from medseg.errors import MedsegError, ProvenanceError
from medseg.provenance import Provenance, export_algorithm


def test_rules_of_a_manual_edit() -> None:
    manual = Provenance()
    auto = Provenance.automatic("ct_organs_2d", "0.4")
    semi = Provenance.semiautomatic("medseg-lite-sam", "1")
    assert manual.after_edit() == manual
    assert semi.after_edit() == semi
    assert auto.after_edit() == Provenance("semiautomatic", "ct_organs_2d", "0.4")
    assert semi.describe() == "semiautomatic (medseg-lite-sam 1)" and manual.describe() == "manual"


def test_json_round_trip_and_bad_records() -> None:
    semi = Provenance.semiautomatic("medseg-lite-sam", "1")
    assert Provenance.from_dict(semi.as_dict()) == semi
    for bad in ({"kind": "magic"}, {"model": "x"}, {"kind": "automatic"},
                {"kind": "manual", "model": "x"}, "not a mapping"):
        with pytest.raises(ProvenanceError):
            Provenance.from_dict(bad)  # type: ignore[arg-type]
    assert issubclass(ProvenanceError, MedsegError)


def test_export_algorithm_is_the_labels_common_provenance() -> None:
    semi = Provenance.semiautomatic("medseg-lite-sam", "1")
    algo = export_algorithm({"liver": semi, "spleen": semi})
    assert (algo.type, algo.name, algo.version) == ("semiautomatic", "medseg-lite-sam", "1")
    manual = export_algorithm({"tumour": Provenance()})
    assert (manual.type, manual.name) == ("manual", "medseg app")
    assert export_algorithm({}).type == "manual"
    with pytest.raises(ProvenanceError, match=r"liver: semiautomatic .*tumour: manual"):
        export_algorithm({"liver": semi, "tumour": Provenance()})
