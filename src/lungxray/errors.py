"""The project's own error types: everything a user can cause is one of these.

Messages name the library's parameters as Python keywords (`masks=provided`, `mask_dir=`, `overwrite=True`), so a
Python caller reads what to pass; the command line rewrites each into the command's flag (`--masks provided`,
`--mask-dir`, `--overwrite`) before printing (`cli.flag_names`).
"""

from __future__ import annotations


class LungxrayError(Exception):
    """Base class: an error the user can fix; the CLI prints it without a traceback."""


class DatasetError(LungxrayError):
    """A dataset folder or manifest that cannot be used as given."""


class ImageReadError(LungxrayError):
    """A file that cannot be decoded as an X-ray image (unreadable, corrupt, unsupported, too large)."""


class ConfigError(LungxrayError):
    """An unknown or invalid configuration value."""


class CheckpointError(LungxrayError):
    """A run folder or weights file that cannot be loaded safely."""


class TrainingError(LungxrayError):
    """Training cannot go on meaningfully (e.g. the loss became NaN or infinite)."""
