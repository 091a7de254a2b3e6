"""nnU-Net v2 trained-model folders (and TotalSegmentator's, which are such folders).

* :mod:`~medseg.models.nnunet.folder`: read a model folder (plans, dataset, folds) into an
  :class:`~medseg.models.nnunet.folder.NnUnetModel`;
* :mod:`~medseg.models.nnunet.recipe`: the inference recipe stored in imported bundles;
* :mod:`~medseg.models.nnunet.network`: the U-Nets built from the plans (no
  dynamic-network-architectures, timm or torchvision);
* :mod:`~medseg.models.nnunet.checkpoint`: checkpoints loaded without unpickling code.

The run-time steps live in :mod:`medseg.engine.nnunet_predict`.
"""

from medseg.models.nnunet.checkpoint import load_checkpoint
from medseg.models.nnunet.folder import (
    NnUnetModel,
    find_model_folders,
    is_model_folder,
    read_model_folder,
)
from medseg.models.nnunet.recipe import NnUnetRecipe

__all__ = ["NnUnetModel", "NnUnetRecipe", "find_model_folders", "is_model_folder",
           "load_checkpoint", "read_model_folder"]
