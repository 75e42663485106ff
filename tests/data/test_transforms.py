"""Tests for lungxray.data.transforms: one random draw per sample, shared by image and mask."""

from __future__ import annotations

import numpy as np
import pytest

import torch  # noqa: E402  (a hard dependency: a missing one must fail, not skip)

from lungxray.data.transforms import (  # noqa: E402
    mixup,
    apply_affine,
    random_affine,
    random_affine_params,
    random_affined,
)

STRONG = dict(rotate=20.0, shift=0.1, zoom=0.15, shear=0.1)
NONE = dict(rotate=0.0, shift=0.0, zoom=0.0, shear=0.0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blob_masks(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, 1, size, size), np.float32)
    for k in range(n):
        for _ in range(2):  # two "lungs"
            cy, cx = rng.uniform(0.3, 0.7, 2) * size
            ry, rx = rng.uniform(0.12, 0.25, 2) * size
            out[k, 0] += (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.float32)
    return torch.from_numpy(np.clip(out, 0, 1))


def _asymmetric(n: int, size: int = 32) -> torch.Tensor:
    x = torch.zeros(n, 1, size, size)
    x[:, :, 4:28, 3:9] = 1.0  # a bar near the left edge
    x[:, :, 6:10, 12:30] = 0.5  # and a different one at the top
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mask_key", ["mask", "lung_mask"])
def test_mask_stays_aligned_with_image_and_binary(seed: int, mask_key: str) -> None:
    mask = _blob_masks(8, seed=seed)
    batch = {"image": mask * 1.0, mask_key: mask.clone(), "label": torch.arange(8)}
    out = random_affined(batch, ("image", mask_key), _gen(seed), **STRONG)
    img, m = out["image"], out[mask_key]
    assert img.shape == m.shape == mask.shape
    assert torch.equal(out["label"], batch["label"]), "keys not listed are passed through"
    assert set(torch.unique(m).tolist()) <= {0.0, 1.0}, "masks use nearest-neighbour sampling"
    assert not torch.equal(m, mask), "the warp must actually move something"
    agreement = ((img > 0.5) == (m > 0.5)).float().mean().item()
    assert agreement > 0.99
    # per sample too: one matrix per sample, shared by both keys
    per_sample = ((img > 0.5) == (m > 0.5)).float().mean(dim=(1, 2, 3))
    assert per_sample.min().item() > 0.98


def test_image_is_interpolated_not_nearest() -> None:
    mask = _blob_masks(4)
    out = random_affined({"image": mask * 1.0, "mask": mask}, ("image", "mask"), _gen(3), **STRONG)
    vals = out["image"]
    assert ((vals > 0.01) & (vals < 0.99)).any(), "bilinear sampling gives intermediate values at edges"


def test_same_seed_same_output_different_seed_differs() -> None:
    mask = _blob_masks(6, seed=4)
    batch = {"image": torch.rand(6, 1, 64, 64, generator=_gen(99)), "mask": mask}
    a = random_affined(batch, ("image", "mask"), _gen(123), **STRONG)
    b = random_affined(batch, ("image", "mask"), _gen(123), **STRONG)
    c = random_affined(batch, ("image", "mask"), _gen(124), **STRONG)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["image"], c["image"])
    # and the single-key function draws the same matrices as the dict one
    assert torch.equal(random_affine(batch["image"], _gen(123), **STRONG), a["image"])


def test_inputs_are_not_modified() -> None:
    x = torch.rand(2, 1, 16, 16, generator=_gen(0))
    keep = x.clone()
    random_affined({"image": x}, ("image",), _gen(1), **STRONG)
    assert torch.equal(x, keep)


def test_zero_ranges_give_identity() -> None:
    theta = random_affine_params(5, _gen(0), **NONE)
    assert theta.shape == (5, 2, 3)
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(5, 2, 3))


@pytest.mark.parametrize("seed", range(5))
def test_hflip_false_never_mirrors(seed: int) -> None:
    x = _asymmetric(32)
    out = random_affined({"image": x, "mask": (x > 0).float()}, ("image", "mask"), _gen(seed), hflip=False, **NONE)
    torch.testing.assert_close(out["image"], x, atol=1e-5, rtol=0)
    assert torch.equal(out["mask"], (x > 0).float())


def test_hflip_true_mirrors_some_samples_exactly() -> None:
    # control for the test above: with hflip the same check does see mirrors
    x = _asymmetric(64)
    out = random_affine(x, _gen(0), hflip=True, **NONE)
    same = [torch.allclose(o, i, atol=1e-5) for o, i in zip(out, x)]
    mirrored = [torch.allclose(o, i.flip(-1), atol=1e-5) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54


def test_default_is_no_flip() -> None:
    x = _asymmetric(64)
    out = random_affine(x, _gen(0), **NONE)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_shift_fills_with_black() -> None:
    x = torch.ones(1, 1, 16, 16)
    theta = torch.tensor([[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]])  # sample 1/4 of the width to the right
    out = apply_affine(x, theta)
    assert out[0, 0, :, -3:].abs().max().item() == 0.0
    assert torch.allclose(out[0, 0, :, :10], torch.ones(16, 10))


@pytest.mark.parametrize(("param", "value"), [("rotate", 30.0), ("shift", 0.2), ("zoom", 0.3), ("shear", 0.3)])
def test_each_range_changes_the_matrix(param: str, value: float) -> None:
    kwargs = dict(NONE, **{param: value})
    theta = random_affine_params(16, _gen(0), **kwargs)
    identity = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert (theta - identity).abs().amax(dim=(1, 2)).min().item() > 0
    if param == "shift":
        assert theta[:, :, 2].abs().max().item() <= 2 * value + 1e-6
        torch.testing.assert_close(theta[:, :, :2], identity[:, :2].expand(16, 2, 2))


def test_mixup_blends_each_image_mostly_with_itself_and_replays_from_the_seed() -> None:
    x = torch.rand(6, 1, 8, 8)
    lams = []
    for seed in range(20):
        out, partner, lam = mixup(x, torch.Generator().manual_seed(seed), alpha=0.4)
        assert 0.5 <= lam <= 1.0
        assert sorted(partner.tolist()) == list(range(6))
        assert torch.allclose(out, lam * x + (1 - lam) * x[partner])
        again, partner2, lam2 = mixup(x, torch.Generator().manual_seed(seed), alpha=0.4)
        assert lam2 == lam and torch.equal(partner2, partner) and torch.equal(again, out)
        lams.append(lam)
    # Beta(0.4, 0.4) folded into [0.5, 1]: spread out, not a constant.
    assert min(lams) < 0.8 and max(lams) > 0.9
