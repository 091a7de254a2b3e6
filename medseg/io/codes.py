"""SNOMED CT codes for segment labels (DICOM-SEG segment descriptions, RTSTRUCT ROI codes).

A label name such as ``"kidney_left"``, ``"Liver"``, ``"vertebrae_L3"`` or ``"enhancing tumor"``
is normalised (lower case, words split on ``_``/``-``/spaces) and matched against the table below,
most specific entry first. Every code value is a SNOMED CT concept from the DICOM standard
(context groups CID 7150 "Segmentation Property Categories", CID 7151/7166 "Segmentation
Property Types", CID 244 "Laterality"), as listed in ``pydicom.sr.codedict``; a unit test checks
each one against that dictionary. Names that match nothing get the generic category/type
"Tissue" (SCT 85756007), the choice dcmqi and 3D Slicer make for unnamed segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.sr.coding import Code

__all__ = ["ANATOMICAL_STRUCTURE", "GENERIC_TISSUE", "MORPHOLOGICALLY_ALTERED", "SegmentCoding",
           "coding_for_label", "normalise_name"]

ANATOMICAL_STRUCTURE = Code("123037004", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = Code("49755003", "SCT", "Morphologically Altered Structure")
GENERIC_TISSUE = Code("85756007", "SCT", "Tissue")
LEFT = Code("7771000", "SCT", "Left")
RIGHT = Code("24028007", "SCT", "Right")


@dataclass(frozen=True)
class SegmentCoding:
    """Coded meaning of one segment: category, type and optional laterality modifier."""

    category: Code
    type: Code
    modifier: Code | None = None

    @property
    def is_generic(self) -> bool:
        """True when the name matched no table entry (generic "Tissue")."""
        return self.type.value == GENERIC_TISSUE.value and self.category == GENERIC_TISSUE


_A = "A"  # anatomical structure
_M = "M"  # morphologically altered structure (lesions)

#: (regex on the normalised name, SNOMED CT code, meaning, category). First match wins, so
#: specific entries ("upper lobe") come before general ones ("lung").
_TABLE: list[tuple[str, str, str, str]] = [
    (r"\bkidney cyst", "367643001", "Cyst", _M),
    (r"\b(tumou?r|neoplasm|cancer|carcinoma|gtv)\b", "108369006", "Neoplasm", _M),
    (r"\bmetasta", "128462008", "Metastasis", _M),
    (r"\blesions?\b", "52988006", "Lesion", _M),
    (r"\bnodules?\b", "27925004", "Nodule", _M),
    (r"\bmass\b", "4147007", "Mass", _M),
    (r"\bcysts?\b", "367643001", "Cyst", _M),
    (r"\ba?edema\b", "79654002", "Edema", _M),
    (r"\bnecros", "6574001", "Necrosis", _M),
    (r"\bha?emorrhage\b", "50960005", "Hemorrhage", _M),
    (r"\bupper lobe\b.*\bleft\b|\bleft upper lobe\b", "44714003", "Upper lobe of left lung", _A),
    (r"\bupper lobe\b", "45653009", "Upper lobe of lung", _A),
    (r"\bmiddle lobe\b", "72481006", "Middle lobe of right lung", _A),
    (r"\blower lobe\b", "90572001", "Lower lobe of lung", _A),
    (r"\blungs?\b", "39607008", "Lung", _A),
    (r"\bliver\b", "10200004", "Liver", _A),
    (r"\bspleen\b", "78961009", "Spleen", _A),
    (r"\bkidneys?\b", "64033007", "Kidney", _A),
    (r"\bpancreas\b", "15776009", "Pancreas", _A),
    (r"\bstomach\b", "69695003", "Stomach", _A),
    (r"\bgall ?bladder\b", "28231008", "Gallbladder", _A),
    (r"\badrenal( gland)?\b", "23451007", "Adrenal gland", _A),
    (r"\besophagus\b|\boesophagus\b", "32849002", "Esophagus", _A),
    (r"\btrachea\b", "44567001", "Trachea", _A),
    (r"\bthyroid\b", "69748006", "Thyroid", _A),
    (r"\bsmall (bowel|intestine)\b", "30315005", "Small intestine", _A),
    (r"\bduodenum\b", "38848004", "Duodenum", _A),
    (r"\bcolon\b", "71854001", "Colon", _A),
    (r"\brectum\b", "34402009", "Rectum", _A),
    (r"\b(urinary )?bladder\b", "89837001", "Urinary bladder", _A),
    (r"\bprostate\b", "41216001", "Prostate", _A),
    (r"\bbrain\b", "12738006", "Brain", _A),
    (r"\bspinal cord\b", "2748008", "Spinal cord", _A),
    (r"\bsacrum\b", "54735007", "Sacrum", _A),
    (r"\bcoccyx\b", "64688005", "Coccyx", _A),
    (r"\batrial appendage\b", "33626005", "Left auricular appendage", _A),
    (r"\batrium left\b|\bleft atrium\b", "82471001", "Left atrium", _A),
    (r"\batrium right\b|\bright atrium\b", "73829009", "Right atrium", _A),
    (r"\bventricle left\b|\bleft ventricle\b", "87878005", "Left ventricle", _A),
    (r"\bventricle right\b|\bright ventricle\b", "53085002", "Right ventricle", _A),
    (r"\bpulmonary trunk\b", "45341000", "Pulmonary trunk", _A),
    (r"\bpulmonary arter(y|ies)\b", "81040000", "Pulmonary artery", _A),
    (r"\bpulmonary veins?\b", "122972007", "Pulmonary vein", _A),
    (r"\bheart\b", "80891009", "Heart", _A),
    (r"\baorta\b", "15825003", "Aorta", _A),
    (r"\binferior vena cava\b|\bivc\b", "64131007", "Inferior vena cava", _A),
    (r"\bportal vein\b", "32764006", "Portal vein", _A),
    (r"\bbrachiocephalic trunk\b", "12691009", "Brachiocephalic trunk", _A),
    (r"\bbrachiocephalic vein\b", "8887007", "Brachiocephalic vein", _A),
    (r"\bsubclavian artery\b", "36765005", "Subclavian artery", _A),
    (r"\bcommon carotid artery\b", "32062004", "Common carotid artery", _A),
    (r"\biliac artery\b", "73634005", "Common iliac artery", _A),
    (r"\biliac vein\b", "46027005", "Common iliac vein", _A),
    (r"\bribs?\b", "113197003", "Rib", _A),
    (r"\bsternum\b", "56873002", "Sternum", _A),
    (r"\bcostal cartilages?\b", "50016007", "Costal cartilage", _A),
    (r"\bclavicul", "51299004", "Clavicle", _A),
    (r"\bscapula\b", "79601000", "Scapula", _A),
    (r"\bhumerus\b", "85050009", "Humerus", _A),
    (r"\bfemur\b", "71341001", "Femur", _A),
    (r"\bskull\b", "89546000", "Skull", _A),
    (r"\bskin\b", "39937001", "Skin", _A),
    (r"\bmuscles?\b|\bautochthon\b", "71616004", "Muscle", _A),
    (r"\bfat\b", "256674009", "Fat", _A),
    (r"\bbones?\b", "272673000", "Bone", _A),
    (r"\b(vertebrae?|spine|vertebral column)\b", "51282000", "Vertebra", _A),
]

#: Individual vertebrae (C1-C7, T1-T12, L1-L5): SNOMED CT "<level> vertebra" concepts.
_VERTEBRAE: dict[str, str] = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003",
    "C6": "36054005", "C7": "87391001", "T1": "64864005", "T2": "53733008", "T3": "1626008",
    "T4": "73071006", "T5": "56401006", "T6": "45296009", "T7": "62487009", "T8": "11068009",
    "T9": "82687006", "T10": "7610001", "T11": "12989004", "T12": "23215003", "L1": "66794005",
    "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
}

#: Concepts that already name their side (no laterality modifier added).
_SIDED = {"44714003", "72481006", "33626005", "82471001", "73829009", "87878005", "53085002"}

_COMPILED = [(re.compile(p), Code(v, "SCT", m), c) for p, v, m, c in _TABLE]
_VERTEBRA_RE = re.compile(r"\bvertebra[e]? ([ctl]\d{1,2})\b|\b([ctl]\d{1,2}) vertebra")


def normalise_name(name: str) -> str:
    """``"Kidney_Left"`` -> ``"kidney left"`` (lower case, single spaces, no punctuation)."""
    return " ".join(re.sub(r"[^0-9a-zA-Z]+", " ", name).lower().split())


def _laterality(norm: str) -> Code | None:
    words = norm.split()
    if "left" in words or words[-1:] == ["l"]:
        return LEFT
    if "right" in words or words[-1:] == ["r"]:
        return RIGHT
    return None


def coding_for_label(name: str) -> SegmentCoding:
    """SNOMED CT category, type and laterality modifier for a label name.

    Anatomy gets category "Anatomical Structure" (SCT 123037004), lesions "Morphologically
    Altered Structure" (SCT 49755003); unknown names get the generic "Tissue" (SCT 85756007).
    "left"/"right" in a name of an anatomical structure becomes a laterality modifier.
    """
    norm = normalise_name(name)
    vert = _VERTEBRA_RE.search(norm)
    if vert:
        level = (vert.group(1) or vert.group(2)).upper()
        if level in _VERTEBRAE:
            return SegmentCoding(ANATOMICAL_STRUCTURE,
                                 Code(_VERTEBRAE[level], "SCT", f"{level} vertebra"))
    for regex, code, cat in _COMPILED:
        if regex.search(norm):
            if cat == _M:
                return SegmentCoding(MORPHOLOGICALLY_ALTERED, code)
            fixed_side = code.value in _SIDED
            modifier = None if fixed_side else _laterality(norm)
            return SegmentCoding(ANATOMICAL_STRUCTURE, code, modifier)
    return SegmentCoding(GENERIC_TISSUE, GENERIC_TISSUE)
