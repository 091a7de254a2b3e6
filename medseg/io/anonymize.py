"""De-identification of the DICOM objects medseg writes (DICOM-SEG, RTSTRUCT).

Follows the DICOM PS3.15 Annex E *Basic Application Level Confidentiality Profile* for the
attributes that our output objects can carry (Patient, General Study, Series, Equipment and
SOP Common modules, plus anything copied from the source headers), with the **Retain UIDs
Option**: Study/Series/Frame of Reference and referenced SOP Instance UIDs are kept so that the
export still points at its source images (de-identify the source series with the same option
to keep the pair consistent).

Actions (per the profile's action codes):

* ``Z`` (zero length) for Type 2 attributes the IOD requires: PatientName, PatientID,
  PatientBirthDate, PatientSex, StudyDate, StudyTime, ReferringPhysicianName, StudyID,
  AccessionNumber, ContentCreatorName, StructureSetDate/Time, OperatorsName;
* ``D`` (dummy value) for Type 1 dates/times: ContentDate = 19000101, ContentTime = 000000;
* ``X`` (remove) for everything else in :data:`REMOVE`, and every private element;
* every remaining Person Name (PN) value anywhere, also inside sequences, is emptied.

``PatientIdentityRemoved`` = YES and ``DeidentificationMethod(CodeSequence)`` (DCM 113100
"Basic Application Confidentiality Profile", 113110 "Retain UIDs Option") record what was done.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

__all__ = ["EMPTY", "REMOVE", "anonymize_dataset", "identifying_elements"]

#: Type 2 attributes: kept with an empty value (action Z).
EMPTY = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "ContentCreatorName",
    "StructureSetDate", "StructureSetTime", "OperatorsName",
)

#: Type 1 dates/times in our IODs: replaced by a dummy value (action D).
DUMMY = {"ContentDate": "19000101", "ContentTime": "000000"}

#: Removed wherever they occur (action X and X/Z/D attributes that are optional in our IODs).
REMOVE = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorIdentificationSequence",
    "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "ReferencedPatientSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "DerivationDescription", "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence", "PatientBirthTime", "OtherPatientIDs",
    "OtherPatientNames", "OtherPatientIDsSequence", "PatientBirthName", "PatientAge",
    "PatientSize", "PatientWeight", "PatientAddress", "PatientMotherBirthName",
    "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "EthnicGroup", "Occupation",
    "AdditionalPatientHistory", "PatientComments", "PatientTelephoneNumbers",
    "PatientReligiousPreference", "ResponsiblePerson", "ResponsibleOrganization",
    "PatientSexNeutered", "MedicalAlerts", "Allergies", "CountryOfResidence",
    "RegionOfResidence", "PregnancyStatus", "SmokingStatus", "LastMenstrualDate",
    "StudyDescription", "ProcedureCodeSequence", "RequestAttributesSequence",
    "RequestingPhysician", "RequestingService", "ReasonForStudy", "RequestedProcedureDescription",
    "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "AcquisitionDateTime",
    "InstanceCreationDate", "InstanceCreationTime", "StudyComments", "ImageComments",
    "ProtocolName", "PerformedProcedureStepDescription", "PerformedProcedureStepID",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "ScheduledProcedureStepDescription", "ClinicalTrialSponsorName", "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID", "ClinicalTrialSiteID", "ClinicalTrialSiteName",
    "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ConsultingPhysicianName",
    "PatientState", "PatientInsurancePlanCodeSequence", "PersonName", "ReviewerName",
    "TimezoneOffsetFromUTC", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "StructureSetDescription",
)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _remove(ds: Dataset) -> None:
    """Drop :data:`REMOVE` attributes and private elements from ``ds`` and all nested items."""
    for name in REMOVE:
        if name in ds:
            delattr(ds, name)
    ds.remove_private_tags()
    for elem in list(ds):
        if elem.VR == "SQ" and isinstance(elem.value, Sequence):
            for item in elem.value:
                _remove(item)


def anonymize_dataset(ds: Dataset) -> Dataset:
    """De-identify ``ds`` in place (and return it), keeping its UIDs; see the module docstring."""
    _remove(ds)
    for name in EMPTY:
        if name in ds:
            setattr(ds, name, "")
    for name, value in DUMMY.items():
        if name in ds:
            setattr(ds, name, value)
    for elem in ds.iterall():  # PN values nested in sequences
        if elem.VR == "PN" and elem.value not in (None, ""):
            elem.value = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "medseg: PS3.15 Basic Profile, Retain UIDs Option"
    ds.DeidentificationMethodCodeSequence = [
        _code("113100", "Basic Application Confidentiality Profile"),
        _code("113110", "Retain UIDs Option"),
    ]
    return ds


def identifying_elements(ds: Dataset) -> list[str]:
    """Every element (at any depth) that still carries identifying content.

    That is: a non-empty value in an :data:`EMPTY` attribute, a present :data:`REMOVE`
    attribute (other than the de-identification markers), a non-empty PN value or a private
    element. Used by tests and by ``export`` as a final self-check.
    """
    markers = {"PatientIdentityRemoved", "DeidentificationMethod",
               "DeidentificationMethodCodeSequence"}
    found = []
    for elem in ds.iterall():
        kw = elem.keyword
        if elem.tag.is_private:
            found.append(f"private {elem.tag}")
        elif kw in EMPTY and elem.value not in (None, ""):
            found.append(f"{kw}={elem.value!r}")
        elif kw in REMOVE and kw not in markers:
            found.append(f"{kw} present")
        elif elem.VR == "PN" and elem.value not in (None, ""):
            found.append(f"{kw}={elem.value!r}")
    return found
