import numpy as np

from kmquant.palette import centers_to_palette, luminance_order


def test_centres_round_half_up_and_clip():
    palette = centers_to_palette(np.array([[-3.0, 0.49, 0.5], [254.5, 255.2, 1000.0]]))
    assert palette.dtype == np.uint8
    assert palette.tolist() == [[0, 0, 1], [255, 255, 255]]


def test_luminance_order_puts_dark_first():
    palette = np.array([[255, 255, 255], [0, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    ordered = palette[luminance_order(palette)]
    assert ordered.tolist() == [[0, 0, 0], [0, 0, 255], [0, 255, 0], [255, 255, 255]]
