"""medseg: geometry-exact medical volumetric segmentation."""

from medseg.errors import MedsegError
from medseg.io import read, write
from medseg.volume import Volume

__version__ = "0.1.0"
__all__ = ["MedsegError", "Volume", "__version__", "read", "write"]
