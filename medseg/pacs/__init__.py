"""PACS access: DICOMweb (QIDO-RS search, WADO-RS retrieve, STOW-RS store) and DIMSE
(C-ECHO, C-STORE), configured once in a servers file. See docs/pacs.md.

* :mod:`medseg.pacs.servers`: the servers file and credentials (never shown anywhere);
* :mod:`medseg.pacs.dicomweb`: search, retrieve one instance, store;
* :mod:`medseg.pacs.cache`: retrieved series on disk, resumable, never half;
* :mod:`medseg.pacs.uri`: ``pacs://SERVER/UID`` inputs for every command;
* :mod:`medseg.pacs.send`: sending SEG/RTSTRUCT (content-derived UIDs: idempotent);
* :mod:`medseg.pacs.dimse`: C-ECHO and C-STORE with pynetdicom.
"""

from __future__ import annotations

from medseg.pacs.cache import CachedSeries, SeriesCache
from medseg.pacs.dicomweb import DicomWeb, StoredInstance
from medseg.pacs.records import SearchFilters, SeriesRecord, StudyRecord
from medseg.pacs.send import content_uids, send_files
from medseg.pacs.servers import PacsServer, cache_root, load_server, load_servers
from medseg.pacs.uri import is_pacs_uri, parse_pacs_uri, pull, read_series, resolve_input

__all__ = ["CachedSeries", "DicomWeb", "PacsServer", "SearchFilters", "SeriesCache",
           "SeriesRecord", "StoredInstance", "StudyRecord", "cache_root", "content_uids",
           "is_pacs_uri", "load_server", "load_servers", "parse_pacs_uri", "pull",
           "read_series", "resolve_input", "send_files"]
