"""Networks by name (:mod:`medseg.models.registry`) and self-describing model bundles."""

from medseg.models.bundle import BundleMeta, load_bundle, read_bundle_meta, save_bundle
from medseg.models.registry import available_networks, build_network

__all__ = ["BundleMeta", "available_networks", "build_network", "load_bundle",
           "read_bundle_meta", "save_bundle"]
