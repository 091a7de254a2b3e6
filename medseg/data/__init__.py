"""Case manifests (Decathlon, folder pairs, nnU-Net raw) and patient-level splits."""

from medseg.data.manifest import Case, Dataset, check_label_values, load_dataset
from medseg.data.split import patient_id, split_cases

__all__ = ["Case", "Dataset", "check_label_values", "load_dataset", "patient_id", "split_cases"]
