"""Dataset layer: discovery, readers, near-duplicate-aware splits, cache and torch datasets."""

from .discovery import DatasetIndex, Sample, canonical_class, find_dataset_root, resolve_classes, scan_dataset
from .io import read_image, read_mask
from .split import ManifestRow, make_split, read_manifest, write_manifest
from .api import inspect_dataset, split_dataset, load_split

__all__ = [
    "DatasetIndex",
    "ManifestRow",
    "Sample",
    "canonical_class",
    "find_dataset_root",
    "inspect_dataset",
    "load_split",
    "make_split",
    "read_image",
    "read_manifest",
    "read_mask",
    "resolve_classes",
    "scan_dataset",
    "split_dataset",
    "write_manifest",
]
