"""Training on a GPU builds each batch there: the lung view, augmentation and resizing follow the images' device,
with the random draws still taken from the epoch's CPU generator.

Without a GPU the device-following is checked on PyTorch's "meta" device (shapes only, no data): before the
change, parameters drawn on the CPU met images elsewhere and PyTorch refused the mix. The tests marked `cuda` run
where a GPU exists (the lent GPU machine) and compare the GPU's batches with the CPU's.
"""

import numpy as np
import pytest
import torch

from lungxray.config import load_config
from lungxray.data.api import load_split, split_dataset
from lungxray.data.transforms import mixup, random_affine, random_intensity, shrink
from lungxray.inference import load_batch
from lungxray.preprocess import LungView, lung_view

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
AUG = {"rotate": 10.0, "shift": 0.08, "zoom": 0.12, "shear": 0.05}


def test_augmentation_runs_on_the_images_device():
    g = torch.Generator().manual_seed(0)
    x = torch.empty(4, 1, 32, 32, device="meta")
    y = random_intensity(random_affine(x, g, **AUG), g, 0.15)
    assert y.device.type == "meta" and y.shape == x.shape
    assert shrink(y, 16).shape == (4, 1, 16, 16)
    assert mixup(y, g, 0.2)[0].device.type == "meta"


def test_load_batch_builds_the_batch_on_the_given_device(sample_dir, tmp_path):
    csv = tmp_path / "split.csv"
    split_dataset(sample_dir, csv, seed=0, progress=False)
    data = load_split(sample_dir, csv, size=(32, 32), masks="predicted", progress=False)
    idx = data.indices("train")[:3]
    for masks, view in (("none", None), ("predicted", LungView(crop=False, dilate=2))):
        x = load_batch(data, idx, masks, view=view, device="meta")
        assert x.device.type == "meta" and x.shape == (3, 1, 32, 32) and x.dtype == torch.float32, masks
    assert load_batch(data, idx, "predicted", view=LungView(crop=True)).device.type == "cpu"  # no device: as before


@cuda
def test_gpu_augmentation_matches_cpu():
    x = torch.rand(8, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    out = {}
    for dev in ("cpu", "cuda"):
        g = torch.Generator().manual_seed(3)
        y = random_intensity(random_affine(x.to(dev), g, **AUG), g, 0.15)
        out[dev] = shrink(y, 48).cpu()
    assert torch.allclose(out["cpu"], out["cuda"], atol=1e-4)


@cuda
def test_gpu_lung_view_matches_cpu():
    x = torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    m = torch.zeros(3, 1, 64, 64)
    m[0, :, 10:50, 8:30] = 1
    m[1, :, 5:60, 20:44] = 1
    # m[2] stays empty: no lungs found, the identity crop
    view = LungView(crop=True, margin=0.05, dilate=4)
    cpu = lung_view(x, m, view)
    gpu = lung_view(x.cuda(), m.cuda(), view)
    assert gpu.device.type == "cuda"
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)


@cuda
def test_training_on_gpu_matches_its_cpu_start(sample_dir, tmp_path):
    """Two epochs on the GPU from the bundled sample: the run completes and its first training loss is the CPU's
    (same draws, same weights; float differences only)."""
    from lungxray.train import train

    csv = tmp_path / "split.csv"
    split_dataset(sample_dir, csv, seed=0, progress=False)
    losses = {}
    for dev in ("cpu", "cuda"):
        cfg = load_config(None, {"model": "xrnet", "image_size": 64, "epochs": 2, "batch_size": 8, "masks": "predicted",
                                 "lung_crop": True, "mask_dilate": 2, "augment": True, "aug_intensity": 0.1,
                                 "device": dev, "amp": False, "channels_last": False, "calibrate": False})
        run = train(cfg, sample_dir, tmp_path / dev, csv, progress=False)
        rows = (run / "history.csv").read_text().splitlines()
        assert len(rows) == 3
        losses[dev] = float(rows[1].split(",")[1])
    assert np.isclose(losses["cpu"], losses["cuda"], rtol=1e-2), losses  # TF32 convolutions on the GPU
