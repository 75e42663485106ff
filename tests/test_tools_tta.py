"""tools/tta_check.py: the warps are what they say, and the averaged softmax is the model's own with one view."""

from pathlib import Path

import torch

from toolmod import load_tool

ROOT = Path(__file__).resolve().parents[1]
tta = load_tool("tta_check")


def test_identity_warp_leaves_the_image_and_others_move_it():
    x = torch.rand(2, 1, 16, 16)
    ident = tta.apply_affine(x, tta.warp().expand(2, 2, 3))
    assert torch.allclose(ident, x, atol=1e-5)
    for view in (tta.warp(zoom=1.05), tta.warp(shift=0.04), tta.warp(degrees=5)):
        assert not torch.allclose(tta.apply_affine(x, view.expand(2, 2, 3)), x, atol=1e-3)
    # zoom > 1 enlarges: a centred bright square grows.
    sq = torch.zeros(1, 1, 32, 32)
    sq[..., 12:20, 12:20] = 1
    assert tta.apply_affine(sq, tta.warp(zoom=1.25)[None]).sum() > sq.sum() * 1.3


def test_one_identity_view_gives_the_models_tempered_softmax_and_views_are_averaged():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    x = torch.rand(4, 1, 8, 8)
    batches = [(None, x)]
    p = tta.averaged_probs(model, batches, [tta.warp()], temperature=2.0)
    assert torch.allclose(torch.from_numpy(p), torch.softmax(model(x) / 2.0, 1), atol=1e-5)
    views = [tta.warp(), tta.warp(shift=0.25)]
    both = tta.averaged_probs(model, batches, views, temperature=1.0)
    one = [tta.averaged_probs(model, batches, [v], temperature=1.0) for v in views]
    assert torch.allclose(torch.from_numpy(both), torch.from_numpy((one[0] + one[1]) / 2), atol=1e-6)
