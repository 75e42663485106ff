"""Lung segmentation: a U-Net (MONAI's layout) that gives X-rays without masks their lung masks.

    from lungxray.segment import Segmenter
    seg = Segmenter.load()            # the shipped weights
    masks = seg.predict(images)       # 2-D float arrays in [0, 1] -> bool masks of the same sizes

Any object with the same `predict` (`MaskPredictor`) can stand in for `Segmenter` wherever lungxray takes one.
Names are imported lazily, so `lungxray --help` does not pay for importing torch.
"""

from __future__ import annotations

import sys
import types

from ..lazy import lazy_exports

_EXPORTS = {
    "Segmenter": "inference",
    "MaskPredictor": "inference",
    "default_segmenter_path": "inference",
    "segmenter_identity": "inference",
    "LungUNet": "model",
    "load_segmenter": "model",
    "save_segmenter": "model",
    "dice": "metrics",
    "hd95": "metrics",
    "postprocess_mask": "postprocess",
    "find_pairs": "data",
    "fill_masks": "fill",
    "SegTrainConfig": "train",
    "train_segmenter": "train",
    "evaluate_pairs": "evaluate",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


class _CallableModule(types.ModuleType):
    """`lungxray.segment` is both this subpackage and, for users, a function: `lungxray.segment(x)` -> lung mask.

    Once the subpackage is imported it shadows any function of that name on the parent package, so the module
    itself is made callable (assigning a module's __class__ is supported Python) and forwards to `api.segment`.
    """

    def __call__(self, x):
        from ..api import segment

        return segment(x)


sys.modules[__name__].__class__ = _CallableModule
