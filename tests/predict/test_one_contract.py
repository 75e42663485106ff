"""One preprocessing contract: the predictor feeds the model exactly the tensor training and evaluation see."""

import numpy as np
import torch

from lungxray.data.api import load_split
from lungxray.inference import load_batch
from lungxray.predict import Predictor


def test_predictor_and_training_cache_give_identical_model_inputs(sample_dir, tmp_path):
    pred = Predictor.load()  # the shipped lung-only default: predicted masks, crop, grown mask
    assert pred.masked and pred.masks in ("auto", "predicted")
    seen = []
    forward = pred._forward

    def spy(x):
        seen.append(x.detach().clone())
        return forward(x)

    pred._forward = spy
    files = sorted(sample_dir.glob("*/images/*.png"))[::6]  # one from each class and more
    results = list(pred.predict_paths(files))
    assert len(results) == len(files) and all(r.mask_source == "predicted" for r in results)
    fed = torch.cat(seen)

    split = load_split(sample_dir, None, pred.classes, pred.size, cache_dir=tmp_path, progress=False, masks="predicted")
    where = {str((sample_dir / r.path).resolve()): i for i, r in enumerate(split.rows)}
    idx = np.array([where[str(f.resolve())] for f in files])
    # The cache segmented the sample in batches, the predictor one image at a time: the same masks all the same.
    cached = load_batch(split, idx, "predicted", view=pred.lung_view)
    assert fed.shape == cached.shape
    assert torch.equal(fed, cached)


def test_a_model_that_reads_larger_gets_identical_inputs_from_the_predictor_and_the_cache(sample_dir, tmp_path):
    # The shipped network (224-px input) as if it read its images at 256 px and cropped the lungs from there.
    shipped = Predictor.load()
    meta = {**shipped.meta, "lung_view": {**shipped.meta["lung_view"], "read_size": 256}}
    pred = Predictor(shipped.model, meta, segmenter=shipped.segmenter())
    assert pred.read_size == (256, 256) and pred.size == (224, 224)
    seen = []
    forward = pred._forward
    pred._forward = lambda x: (seen.append(x.detach().clone()), forward(x))[1]
    files = sorted(sample_dir.glob("*/images/*.png"))[::10]
    list(pred.predict_paths(files))
    fed = torch.cat(seen)
    assert fed.shape[-2:] == (224, 224)

    split = load_split(sample_dir, None, pred.classes, pred.read_size, cache_dir=tmp_path, progress=False,
                       masks="predicted")
    where = {str((sample_dir / r.path).resolve()): i for i, r in enumerate(split.rows)}
    idx = np.array([where[str(f.resolve())] for f in files])
    assert torch.equal(fed, load_batch(split, idx, "predicted", view=pred.lung_view))
