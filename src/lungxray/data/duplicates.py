"""Find copies of one radiograph, including re-exports with other contrast, sharpening or crop.

Two stages, because one number cannot do both jobs on this data:

1. **Candidates**: the Pearson correlation of 32x32 area-averaged thumbnails (invariant to linear contrast
   changes), or a dHash within `CANDIDATE_BITS` bits. Re-exports score above 0.96 here, but so do many
   *different* children's films of the pediatric Viral Pneumonia source, whose framing is nearly identical.
2. **Verification**: the correlation of the *fine detail* (a 64x64 thumbnail minus its Gaussian blur: rib
   edges, vessels, wires, text), maximised over small shifts and scales. The same radiograph keeps its detail
   in place through any re-export; two patients who look alike at low resolution do not share it.

Measured on `../shared/data/covid19-radiography` against a labelled list of pairs (true re-exports and
look-alike negatives, `docs/evidence/duplicates/`): see docs/RESULTS.md for precision and recall, and
`tools/duplicates_eval.py` for the command.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy.ndimage import affine_transform, gaussian_filter

from .hashing import _popcount

THUMB = 64
COARSE = 32
MAX_SHIFT = 4
SCALES = (0.90, 0.95, 1.0, 1.05, 1.11)
CANDIDATE_CORR = 0.90
CANDIDATE_BITS = 24
MIN_DETAIL_CORR = 0.68


MIN_SIDE = 128
"""Smallest image side the detector accepts: below it the fine detail it verifies with is gone."""


def thumbnail(image: np.ndarray) -> np.ndarray:
    """(64, 64) float32 area-averaged thumbnail of a 2-D image (uint8 or float; sides >= `MIN_SIDE`)."""
    img = np.asarray(image, dtype=np.float32)
    if min(img.shape) < MIN_SIDE:
        raise ValueError(f"duplicate detection needs images of at least {MIN_SIDE} px a side, got {img.shape}")
    return np.asarray(Image.fromarray(img, mode="F").resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32)


def coarse_signature(thumb: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm 32x32 vector: the dot product of two is their Pearson correlation."""
    t = thumb.reshape(COARSE, THUMB // COARSE, COARSE, THUMB // COARSE).mean((1, 3)).ravel().astype(np.float64)
    t -= t.mean()
    norm = np.linalg.norm(t)
    return (t / norm if norm > 0 else t).astype(np.float32)


def detail(thumb: np.ndarray) -> np.ndarray:
    """High-pass detail of a thumbnail: what a re-export keeps and a look-alike patient does not share."""
    t = thumb.astype(np.float64)
    return (t - gaussian_filter(t, 2.0)).astype(np.float32)


def _standardise(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    x = x - x.mean(axis=axes, keepdims=True)
    return x / (x.std(axis=axes, keepdims=True) + 1e-9)


def _rescale(d: np.ndarray, scale: float) -> np.ndarray:
    """Zoom `d` about its centre by `scale` (>1 enlarges), same shape."""
    if scale == 1.0:
        return d
    c = (np.array(d.shape) - 1) / 2
    return affine_transform(d, np.eye(2) / scale, offset=c - c / scale, order=1, mode="nearest")


def _window_sums(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sum of every h x w window of `x` (valid positions), from an integral image."""
    c = np.pad(x, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    return c[h:, w:] - c[:-h, w:] - c[h:, :-w] + c[:-h, :-w]


class _Shifted:
    """One detail map at every scale, with the window statistics the correlation needs (computed once)."""

    def __init__(self, d: np.ndarray, max_shift: int, scales) -> None:
        m = max_shift
        self.shape = (d.shape[0] - 2 * m, d.shape[1] - 2 * m)
        k = self.shape[0] * self.shape[1]
        self.maps, self.stds = [], []
        for s in scales:
            b = _rescale(d, s).astype(np.float32)
            sums = _window_sums(b.astype(np.float64), *self.shape)
            sq = _window_sums(b.astype(np.float64) ** 2, *self.shape)
            self.maps.append(b)
            self.stds.append((np.sqrt(np.maximum(sq / k - (sums / k) ** 2, 0.0)) * k + 1e-9).astype(np.float32))


def _core(d: np.ndarray, m: int) -> np.ndarray:
    c = d[m:-m, m:-m].astype(np.float32)
    return (c - c.mean()) / (c.std() + 1e-9)


def _similarity(core: np.ndarray, other: _Shifted) -> float:
    # Normalised cross-correlation at every shift and scale: sum(a * window) / (k * std(window)), a zero-mean.
    return max(float((np.tensordot(sliding_window_view(b, other.shape), core, axes=2) / std).max())
               for b, std in zip(other.maps, other.stds))


def detail_similarity(da: np.ndarray, db: np.ndarray, max_shift: int = MAX_SHIFT, scales=SCALES) -> float:
    """Best correlation of two detail maps over shifts of up to `max_shift` px and the given scales of `db`."""
    return _similarity(_core(da, max_shift), _Shifted(db, max_shift, scales))


def _candidates(sig_a: np.ndarray, sig_b: np.ndarray, hashes_a: np.ndarray | None, hashes_b: np.ndarray | None,
                min_corr: float, max_bits: int, chunk: int):
    """Yield (i, j, dHash bits) for image i of set a and j of set b whose thumbnails correlate >= `min_corr` or
    whose dHashes differ by <= `max_bits` bits (bits is 256 without hashes): the candidate stage, for one set
    (a is b) or two."""
    use_bits = hashes_a is not None and hashes_b is not None and len(hashes_a) and len(hashes_b)
    for start in range(0, len(sig_a), chunk):
        hit = sig_a[start : start + chunk] @ sig_b.T >= min_corr
        bits = np.full(hit.shape, 256)
        if use_bits:
            bits = _popcount(hashes_a[start : start + chunk, None, :] ^ hashes_b[None, :, :]).sum(-1)
            hit |= bits <= max_bits
        for i, j in zip(*np.nonzero(hit)):
            yield int(i) + start, int(j), int(bits[i, j])


def candidate_pairs(signatures: np.ndarray, hashes: np.ndarray | None = None, min_corr: float = CANDIDATE_CORR,
                    max_bits: int = CANDIDATE_BITS, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """Pairs (i, j, dHash bits) with i < j whose thumbnails correlate >= `min_corr` or whose dHashes differ
    by <= `max_bits` bits (bits is 256 when no hashes are given)."""
    return [(i, j, bits) for i, j, bits in _candidates(signatures, signatures, hashes, hashes, min_corr, max_bits, chunk)
            if i < j]


def duplicate_pairs(images, hashes: np.ndarray | None = None, max_bits: int = 4,
                    min_detail: float = MIN_DETAIL_CORR, progress=None) -> list[tuple[int, int, float]]:
    """Pairs (i, j, detail similarity) of images that are copies of one radiograph.

    A pair counts when its detail similarity reaches `min_detail`, or when its dHashes differ by at most
    `max_bits` bits (the older, stricter rule; it never loses a pair the dHash alone used to find).

    Args:
        images: sequence of 2-D arrays (e.g. the cached uint8 images).
        hashes: optional (N, 4) dHashes.
        progress: optional callable(done, total) called while verifying.
    """
    thumbs = [thumbnail(im) for im in images]
    sigs = np.stack([coarse_signature(t) for t in thumbs]) if thumbs else np.zeros((0, COARSE * COARSE), np.float32)
    cands = candidate_pairs(sigs, hashes)
    cores: dict[int, np.ndarray] = {}
    shifted: dict[int, _Shifted] = {}
    out = []
    for k, (i, j, bits) in enumerate(cands):
        if i not in cores:
            cores[i] = _core(detail(thumbs[i]), MAX_SHIFT)
        if j not in shifted:
            shifted[j] = _Shifted(detail(thumbs[j]), MAX_SHIFT, SCALES)
        score = _similarity(cores[i], shifted[j])
        if score >= min_detail or bits <= max_bits:
            out.append((i, j, round(score, 4)))
        if progress is not None and (k % 500 == 0 or k == len(cands) - 1):
            progress(k + 1, len(cands))
    return out


def copies_across(images_a, images_b, hashes_a: np.ndarray | None = None, hashes_b: np.ndarray | None = None,
                  max_bits: int = 4, min_detail: float = MIN_DETAIL_CORR, chunk: int = 512) -> list[tuple[int, int, float]]:
    """Pairs (i, j, detail similarity): image i of `images_a` is a copy of image j of `images_b`.

    The same two stages and thresholds as `duplicate_pairs`, with candidates only between the two sets (for
    example another source's images against a split's validation and test images), so pairs within either set
    cost nothing. Give both hashes (dHashes of the full images) or neither.
    """
    if (hashes_a is None) != (hashes_b is None):
        raise ValueError("give the dHashes of both sets or of neither")
    ta, tb = [thumbnail(im) for im in images_a], [thumbnail(im) for im in images_b]
    if not ta or not tb:
        return []
    sa, sb = np.stack([coarse_signature(t) for t in ta]), np.stack([coarse_signature(t) for t in tb])
    shifted: dict[int, _Shifted] = {}
    cores: dict[int, np.ndarray] = {}
    out = []
    for i, j, bits in _candidates(sa, sb, hashes_a, hashes_b, CANDIDATE_CORR, CANDIDATE_BITS, chunk):
        if j not in shifted:
            shifted[j] = _Shifted(detail(tb[j]), MAX_SHIFT, SCALES)
        if i not in cores:
            cores[i] = _core(detail(ta[i]), MAX_SHIFT)
        score = _similarity(cores[i], shifted[j])
        if score >= min_detail or bits <= max_bits:
            out.append((i, j, round(score, 4)))
    return out
