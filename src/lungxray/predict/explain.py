"""Explanations: Grad-CAM (MONAI, imported only when a heatmap is asked for) and a thread-safe feature tap."""

from __future__ import annotations

import copy
import logging
import threading

import torch

from ..ood import _last_linear
from ..models import Classifier

log = logging.getLogger(__name__)

def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max to [0, 1] (1 = most important); an all-zero map stays zero.

    MONAI's default post-processing maps max -> 0 and min -> 1, which reads backwards on a heatmap.
    """
    flat = maps.detach().flatten(1)
    lo = flat.min(dim=1).values.view(-1, *[1] * (maps.ndim - 1))
    hi = flat.max(dim=1).values.view(-1, *[1] * (maps.ndim - 1))
    span = hi - lo
    return torch.where(span > 0, (maps.detach() - lo) / span.clamp_min(1e-12), torch.zeros_like(maps))


def make_gradcam(model: Classifier, layer: str):
    """MONAI Grad-CAM on a private copy of `model` (hooks never touch the model used for prediction)."""
    from monai.visualize import GradCAM
    from monai.visualize.class_activation_maps import ModelWithHooks

    class _PerSampleScore(ModelWithHooks):
        # MONAI scores `logits[:, class_idx]`, which for a batch mixes every sample's class; we
        # back-propagate each sample's own predicted class so a whole batch is explained at once.
        def class_score(self, logits, class_idx):
            return logits.gather(1, torch.as_tensor(class_idx, device=logits.device).view(-1, 1)).squeeze(1)

    net = copy.deepcopy(model).eval()
    hooks = _PerSampleScore(net, layer, register_forward=True, register_backward=True)
    return GradCAM(hooks, layer, postprocessing=_unit_range)


class _FeatureTap:
    """(penultimate features, logits) from one forward pass, safe to call from several threads at once.

    `lungxray.ood.penultimate_features` adds a hook per call; on a model shared by threads, one thread's hook
    would also fire in another thread's forward pass. This hook is registered once and stores what it sees
    per thread. It is a plain closure, so deep copies of the model (Grad-CAM's) share it harmlessly.
    """

    def __init__(self, model: torch.nn.Module):
        local = threading.local()
        self._local = local

        def keep(module, inputs, output):
            local.features = inputs[0].detach()

        _last_linear(model).register_forward_hook(keep)

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._local.features = None
        logits = model(x)
        return self._local.features.float().flatten(1), logits.float()


