"""The server's picture helpers: the lung outline and the heatmap colours."""

import numpy as np

from lungxray.serve.images import jet, outline


def test_outline_is_the_boundary_ring_of_the_given_width():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True  # a 10x10 square
    ring = outline(mask, width=1)
    assert ring.sum() == 36 and not ring[6:14, 6:14].any() and (ring <= mask).all()
    assert outline(mask, width=2).sum() == 36 + 28  # two pixels deep
    assert not outline(np.zeros((5, 5), bool)).any()


def test_jet_runs_blue_to_red():
    rgb = jet(np.array([0.0, 0.5, 1.0, 2.0]))
    assert rgb.shape == (4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert rgb[0].argmax() == 2 and rgb[1].argmax() == 1 and rgb[2].argmax() == 0  # blue, green, red
    np.testing.assert_array_equal(rgb[3], rgb[2])  # clipped to [0, 1]
