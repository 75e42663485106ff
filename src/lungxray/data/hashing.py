"""Perceptual hashes and near-duplicate grouping.

A 256-bit difference hash (dHash) compares horizontally adjacent pixels of a 17x16 thumbnail. It is
insensitive to resizing, recompression and small intensity changes, which is what separates the
Radiography Database's re-exported copies of one radiograph.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 256


def dhash(image: np.ndarray) -> np.ndarray:
    """256-bit difference hash of a float [0, 1] image, as 4 uint64 words."""
    thumb = Image.fromarray(image.astype(np.float32), mode="F").resize((17, 16), Image.Resampling.BOX)
    px = np.asarray(thumb, dtype=np.float32)
    bits = (px[:, 1:] > px[:, :-1]).reshape(-1)
    return np.packbits(bits).view(">u8").astype(np.uint64)


def hash_to_hex(h: np.ndarray) -> str:
    return "".join(f"{int(w):016x}" for w in h)


def hex_to_hash(s: str) -> np.ndarray:
    return np.array([int(s[i : i + 16], 16) for i in range(0, 64, 16)], dtype=np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    # numpy < 2.0 fallback: count bits byte by byte.
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[x.view(np.uint8)].reshape(*x.shape, 8).sum(-1)


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int = 4, chunk: int = 512) -> list[tuple[int, int, int]]:
    """All pairs (i, j, distance) with i < j and Hamming distance <= max_distance.

    Args:
        hashes: (N, 4) uint64 array of dHashes.
        max_distance: largest Hamming distance (in bits) that counts as a near-duplicate.
    """
    n = len(hashes)
    out: list[tuple[int, int, int]] = []
    for start in range(0, n, chunk):
        block = hashes[start : start + chunk]
        dist = _popcount(block[:, None, :] ^ hashes[None, :, :]).sum(-1)
        ii, jj = np.nonzero(dist <= max_distance)
        for i, j in zip(ii + start, jj):
            if i < j:
                out.append((int(i), int(j), int(dist[i - start, j])))
    return out


def group_near_duplicates(n: int, pairs: list[tuple[int, int, int]]) -> np.ndarray:
    """Connected components of the near-duplicate graph: (N,) int group ids, 0..G-1, by first member."""
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j, _ in pairs:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    roots = [find(i) for i in range(n)]
    ids: dict[int, int] = {}
    return np.array([ids.setdefault(r, len(ids)) for r in roots], dtype=np.int64)
