"""Dataset layer: discovery, readers, near-duplicate-aware splits, cache and torch datasets.

The names below load on first use (PEP 562), so reading one image does not import the split and duplicate
machinery (scipy) or the cache: a cold `lungxray predict` starts faster.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "DatasetIndex": "discovery",
    "Sample": "discovery",
    "canonical_class": "discovery",
    "find_dataset_root": "discovery",
    "resolve_classes": "discovery",
    "scan_dataset": "discovery",
    "read_image": "io",
    "read_mask": "io",
    "ManifestRow": "split",
    "make_split": "split",
    "read_manifest": "split",
    "write_manifest": "split",
    "inspect_dataset": "api",
    "split_dataset": "api",
    "load_split": "api",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
