"""Where a lung mask comes from for each input: a mask file beside it, the user's mask folder, or the lung U-Net."""

from __future__ import annotations

from pathlib import Path

from ..data.discovery import IMAGE_DIRS, MASK_DIRS
from ..errors import CheckpointError, ConfigError, LungxrayError
from .results import InputFile


def find_mask(file: InputFile | str | Path, mask_dir: Path | None = None) -> Path | None:
    """The mask file for an image: under `mask_dir` (same relative path, name or stem), else in a sibling
    `masks/` folder (the Radiography Database layout `<class>/images/x.png` + `<class>/masks/x.png`)."""
    f = file if isinstance(file, InputFile) else InputFile(Path(file), Path(Path(file).name))
    p = Path(f.path)
    names = [p.name, p.stem + ".png"]
    candidates: list[Path] = []
    if mask_dir is not None:
        candidates.append(mask_dir / f.rel)
        candidates += [mask_dir / n for n in names]
    bases = [p.parent.parent, p.parent] if p.parent.name.lower() in IMAGE_DIRS else [p.parent]
    for base in bases:
        for d in MASK_DIRS:
            candidates += [base / d / n for n in names]
    for c in candidates:
        if c.is_file() and c.resolve() != p.resolve():
            return c
    return None


def reads_mask_files(*, masked: bool, mode: str, trained: str) -> bool:
    """Whether a model is given the users' mask files (else predicted masks, or none): not for a model trained on
    whole images or with masks=none, nor under masks=predicted, nor under masks=auto for a model trained on predicted
    masks (a model sees masks as in training)."""
    return masked and mode not in ("none", "predicted") and not (mode == "auto" and trained == "predicted")


def mask_plan(file: InputFile, *, masked: bool, mode: str, trained: str, mask_dir: Path | None) -> tuple[Path | None, bool]:
    """(mask file to read, whether a mask must be predicted) for one input.

    Args:
        masked: whether the model was trained on masked images; mode: the mask mode asked for (auto, provided,
        predicted, none); trained: the mask source the model was trained with; mask_dir: the user's mask folder.
    """
    if not masked or mode == "none":
        return None, False
    if not reads_mask_files(masked=masked, mode=mode, trained=trained):
        # A model trained on predicted masks sees predicted masks: same conditions as in training.
        return None, True
    found = find_mask(file, mask_dir)
    if found is not None:
        return found, False
    if mode == "provided":
        raise ConfigError(
            f"{file.path}: masks=provided, but no mask was found (looked for a masks/ folder next to images/ "
            "with the same file name" + (f", and under {mask_dir}" if mask_dir else "") +
            "); pass mask_dir=DIR, or masks=auto to predict missing masks"
        )
    return None, True


def load_lung_segmenter(model_name: str, example: str | None = None, trained_with: dict | None = None):
    """The shipped lung segmentation model; a CheckpointError saying what to do instead when it is not available.

    `trained_with` is the classifier's metadata record of the segmenter that drew its training masks
    (`models.pretrained.segmenter_record`); when the shipped one is another file, a warning says so.
    """
    try:
        from ..segment import Segmenter
    except ImportError as exc:
        raise CheckpointError(_no_segmenter(model_name, f"lungxray.segment cannot be imported: {exc}", example)) from None
    try:
        seg = Segmenter.load(path=None)
    except LungxrayError as exc:
        raise CheckpointError(_no_segmenter(model_name, str(exc), example)) from None
    from ..models.pretrained import check_segmenter

    check_segmenter(trained_with, model_name)
    return seg


def _no_segmenter(model_name: str, reason: str, example: str | None) -> str:
    what = f"{example}: no lung mask was found for it, and " if example else ""
    return (
        f"{what}model {model_name!r} was trained on lung-masked images, so a mask has to be predicted, but the "
        f"lung segmentation model is not available ({reason}). Put the masks in a masks/ folder next to images/ "
        "(same file names) or pass mask_dir=DIR; or use a model trained without masks; or, knowingly, "
        "masks=none (unmasked input, outside the model's training conditions)."
    )
