"""Typed errors. Every user-facing failure is a :class:`MedsegError` subclass.

Messages name the offending input and say what to do about it; the CLI and the app
print them without a traceback.
"""

from __future__ import annotations


class MedsegError(Exception):
    """Base class of every error medseg reports to a user."""


class InputNotFoundError(MedsegError):
    """A path given by the user does not exist or is empty."""


class UnsupportedFormatError(MedsegError):
    """The file type is not one medseg reads or writes."""


class CorruptFileError(MedsegError):
    """A file is truncated or cannot be decoded."""


class InvalidImageError(MedsegError):
    """The image content is unusable as given (NaN voxels, 4D data, bad dtype...)."""


class UnsafeArchiveError(MedsegError):
    """A zip archive contains entries that would escape the extraction folder or is too large."""


class GeometryError(MedsegError):
    """Geometry that medseg cannot represent faithfully (shear, non-orthonormal cosines...)."""


class GeometryMismatchError(GeometryError):
    """Two volumes that must share a voxel grid do not."""


class DicomError(MedsegError):
    """Base class of DICOM series problems."""


class NoDicomSeriesError(DicomError):
    """A folder or zip holds no readable DICOM image series."""


class SeriesSelectionError(DicomError):
    """Several series were found and none (or an unknown one) was selected."""


class InconsistentSeriesError(DicomError):
    """Slices of one series disagree in orientation, size or pixel spacing."""


class SliceSpacingError(DicomError):
    """Missing slices, duplicate positions or uneven slice spacing."""


class GantryTiltError(DicomError):
    """Slices are stacked obliquely to their own plane (gantry tilt)."""


class ConfigError(MedsegError):
    """A configuration file or override is invalid."""


class DatasetError(MedsegError):
    """A training dataset is missing files, malformed, or its cases disagree (label sets...)."""


class ModelError(MedsegError):
    """Base class of model-bundle and network problems."""


class UnknownNetworkError(ModelError, ConfigError):
    """A network name that the registry does not know."""


class BundleError(ModelError):
    """A model bundle file is missing, corrupt or not a medseg bundle."""


class IncompatibleBundleError(BundleError):
    """A model bundle written by an incompatible medseg version or bundle format."""


class ModelInputError(ModelError):
    """An input the model cannot take: wrong modality, 2D image to a 3D model, channel count."""


class MetricInputError(MedsegError):
    """Masks or parameters given to a metric are unusable (non-binary mask, bad tolerance...)."""


class DicomReferenceRequiredError(DicomError):
    """A DICOM export (SEG, RTSTRUCT) was asked for with a reference that is not a DICOM series."""


class MissingDicomAttributeError(DicomError):
    """A source DICOM header lacks an attribute an export needs (ImagePositionPatient...)."""


class LabelNotFoundError(MedsegError):
    """A label value or name asked for is not in the mask's label table."""


class EmptySegmentationError(MedsegError):
    """Nothing to export: every selected label is empty."""


class OverlappingSegmentsError(MedsegError):
    """Segments overlap, so they cannot be merged into one label map."""


class EvaluationInputError(MedsegError):
    """Inputs of an evaluation do not fit together (file vs folder, no paired cases...)."""


class PromptModelError(ModelError):
    """A promptable-model checkpoint is missing, unreadable or of an unexpected architecture."""


class PromptError(MedsegError):
    """A box or point prompt is unusable (outside the image, empty box, no volume set...)."""


class PromptOutsideImageError(PromptError):
    """A box or point lies (partly) outside the slice it was given for."""


class EmptyBoxError(PromptError):
    """A box with x0 > x1 or y0 > y1."""


class NoVolumeSetError(PromptError):
    """A prompt session was asked for a prediction before ``set_volume``."""


class PathOutsideRootsError(MedsegError):
    """A path, or a file it makes medseg read (a detached data file, a symlink target), lies
    outside the folders a caller allowed (the app's data roots or an upload's own folder)."""


class UploadTooLargeError(MedsegError):
    """An upload or archive exceeds a configured size or compression-ratio limit."""


class OutputError(MedsegError):
    """An output cannot be written: read-only folder, full disk, a parent that is a file, a
    name too long... The message names the path and what to do."""


class LabelNameError(MedsegError):
    """A label name that an output format cannot hold (too long, control characters)."""


class ForeignModelError(ModelError):
    """An nnU-Net model folder or MONAI bundle that medseg cannot read or does not run (missing
    files, unsupported architecture or configuration, weights that do not fit)."""


class UnsafeModelError(ForeignModelError):
    """A foreign model that would run code to load: a pickled checkpoint needing objects
    outside the allow-list, or a MONAI config expression outside the allow-list."""


class PacsError(MedsegError):
    """A PACS (DICOMweb or DIMSE) request failed, or a PACS servers file is invalid. Messages
    name the server and its address, never its credentials."""


class PacsConnectionError(PacsError):
    """The PACS cannot be reached or stopped answering: server down, wrong URL or port, TLS
    failure, time-out, connection dropped mid-transfer."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials (HTTP 401/403, DIMSE association rejected)."""


class PacsNotFoundError(PacsError):
    """The PACS does not hold what was asked for (HTTP 404, an unknown study or series UID)."""


class PacsResponseError(PacsError):
    """The PACS answered with something unusable: not DICOM, malformed JSON, instances that
    are not those asked for or disagree with their series."""


class PacsStoreError(PacsError):
    """A store (STOW-RS or C-STORE) failed or was refused; nothing is claimed stored."""


class ProvenanceError(MedsegError):
    """Labels whose provenance an output cannot record as asked (e.g. one DICOM algorithm
    identification for labels made by different means)."""


class ModalityError(MedsegError):
    """An explicitly chosen modality (``--modality``) that is not a DICOM modality code."""


class NothingToFillError(MedsegError):
    """An editing operation has nothing to work from (fill between slices with a label
    painted on a single slice)."""
