import numpy as np
import pytest

from kmquant import color_histogram
from kmquant._kernels import (
    histogram_by_bitmap,
    histogram_unsorted,
    label_counts,
    palette_rows,
    palette_tally,
    pixel_squared_error,
    places_through_rows,
    weighted_squared_error,
)
from kmquant.histogram import bitmap_parts, cell_histogram, hashed_histogram, pack_colors


def test_histogram_of_the_sample_rebuilds_every_pixel(sample_image):
    hist = color_histogram(sample_image)
    pixels = sample_image.reshape(-1, 3)
    np.testing.assert_array_equal(hist.colors[hist.inverse], pixels)
    assert hist.counts.sum() == pixels.shape[0]
    assert hist.n_colors == np.unique(pixels, axis=0).shape[0]
    assert np.all(hist.counts > 0)


@pytest.mark.parametrize("n_channels", [1, 2, 3, 4])
def test_histogram_counts_by_hand(n_channels):
    pixels = np.array([[7] * n_channels, [0] * n_channels, [7] * n_channels], dtype=np.uint8)
    hist = color_histogram(pixels)
    assert hist.colors.tolist() == [[0] * n_channels, [7] * n_channels]
    assert hist.counts.tolist() == [1, 2]
    assert hist.inverse.tolist() == [1, 0, 1]


def _numpy_histogram(pixels):
    keys, inverse, counts = np.unique(
        pack_colors(pixels).astype(np.int64), return_inverse=True, return_counts=True
    )
    return keys, counts, inverse.reshape(-1)


@pytest.mark.parametrize(
    ("threads", "n_pixels", "parts"),
    [(1, 10**8, 1), (2, 400_000, 2), (16, 400_000, 2), (16, 25_000_000, 11), (4, 10**8, 4)],
)
def test_bitmap_slices_follow_the_pixels_not_only_the_threads(
    monkeypatch, threads, n_pixels, parts
):
    # One slice a thread, but each slice zeroes and ORs a 2 MiB bitmap: a photo gets two,
    # a 25 MP image one per 2 Mi pixels, never more than the threads.
    import numba

    monkeypatch.setattr(numba, "get_num_threads", lambda: threads)
    assert bitmap_parts(n_pixels) == parts


@pytest.mark.parametrize("n_parts", [1, 2, 3])
def test_bitmap_histogram_equals_numpy_for_any_number_of_parts(sample_image, n_parts):
    # The whole photo (393,216 pixels) takes the bitmap route in color_histogram.
    pixels = sample_image.reshape(-1, 3)
    expected = _numpy_histogram(pixels)
    colors, counts, inverse, _, _ = histogram_by_bitmap(pixels, n_parts, True)
    np.testing.assert_array_equal(pack_colors(colors), expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    np.testing.assert_array_equal(inverse, expected[2])
    # Without the inverse, each part counts as it looks pixels up: the same counts.
    colors, counts, inverse, _, _ = histogram_by_bitmap(pixels, n_parts, False)
    np.testing.assert_array_equal(pack_colors(colors), expected[0])
    np.testing.assert_array_equal(counts, expected[1])
    assert inverse.size == 0
    hist = color_histogram(sample_image)
    np.testing.assert_array_equal(pack_colors(hist.colors), expected[0])
    np.testing.assert_array_equal(hist.counts, expected[1])
    np.testing.assert_array_equal(hist.inverse, expected[2])


def test_histogram_without_inverse_looks_pixels_up_again(sample_image):
    pixels = np.ascontiguousarray(sample_image[:200])
    stored = color_histogram(pixels)
    looked_up = color_histogram(pixels, store_inverse=False)
    np.testing.assert_array_equal(looked_up.colors, stored.colors)
    np.testing.assert_array_equal(looked_up.counts, stored.counts)
    color_labels = (np.arange(stored.n_colors) * 7 % 251).astype(np.uint8)
    labels = looked_up.pixel_labels(color_labels)
    np.testing.assert_array_equal(labels, color_labels[stored.inverse])
    np.testing.assert_array_equal(labels, stored.pixel_labels(color_labels))
    # The map itself is built when it is first read.
    np.testing.assert_array_equal(looked_up.inverse, stored.inverse)


@pytest.mark.parametrize("n_channels", [1, 2, 3])
def test_bitmap_and_hash_routes_agree(sample_image, n_channels):
    # Small crops hash (RGB), large ones use the bitmap; both must give numpy's answer.
    for rows in (8, 512):
        pixels = np.ascontiguousarray(sample_image[:rows, :, :n_channels].reshape(-1, n_channels))
        keys, counts, inverse = _numpy_histogram(pixels)
        for hist in (color_histogram(pixels), hashed_histogram(pixels)):
            np.testing.assert_array_equal(pack_colors(hist.colors), keys)
            np.testing.assert_array_equal(hist.counts, counts)
            np.testing.assert_array_equal(hist.inverse, inverse)
        hash_keys, hash_counts, _ = histogram_unsorted(pixels, True)
        assert sorted(hash_keys.tolist()) == keys.tolist()
        assert hash_counts.sum() == counts.sum()


def test_packing_orders_colours_lexicographically():
    colors = np.array([[0, 0, 255], [0, 1, 0], [1, 0, 0]], dtype=np.uint8)
    assert np.all(np.diff(pack_colors(colors).astype(np.int64)) > 0)


def test_histogram_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        color_histogram(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="at least one pixel"):
        color_histogram(np.zeros((0, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"shape \(n, 1..4\)"):
        color_histogram(np.zeros((2, 5), dtype=np.uint8))


def test_counting_kernels_equal_numpy(sample_image):
    # The per-pixel helpers that avoid numpy's 8-byte temporaries give numpy's answers.
    hist = color_histogram(sample_image[:64, :96])
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (7, 3)).astype(np.uint8)
    labels = rng.integers(0, 7, hist.inverse.shape[0]).astype(np.uint8)
    assert label_counts(labels, 9).tolist() == np.bincount(labels, minlength=9).tolist()
    expected = ((hist.colors[hist.inverse].astype(float) - palette[labels]) ** 2).sum()
    assert pixel_squared_error(hist.colors, hist.inverse, palette, labels) == expected
    # Without an inverse the colours are the pixels themselves (the metrics' MSE).
    pixels = np.ascontiguousarray(hist.colors[hist.inverse])
    assert pixel_squared_error(pixels, None, palette, labels) == expected
    color_labels = rng.integers(0, 7, hist.n_colors).astype(np.uint8)
    per_color = ((hist.colors.astype(float) - palette[color_labels]) ** 2).sum(1)
    assert weighted_squared_error(hist.colors, hist.counts, palette, color_labels) == pytest.approx(
        float(np.dot(hist.counts, per_color)), rel=1e-12
    )


@pytest.mark.parametrize("n_channels", [1, 3, 4])
def test_palette_tally_counts_colours_and_sums_the_pixels_error_exactly(sample_image, n_channels):
    # One pass for what label_counts and weighted_squared_error give, in integers.
    pixels = sample_image[:64, :96]
    if n_channels == 1:
        pixels = pixels[:, :, :1]
    elif n_channels == 4:
        alpha = np.where(pixels[:, :, :1] > 128, 255, 90).astype(np.uint8)
        pixels = np.concatenate([pixels, alpha], axis=2)
    hist = color_histogram(pixels)
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (11, n_channels)).astype(np.uint8)
    color_labels = rng.integers(0, 9, hist.n_colors).astype(np.uint8)  # entries 9, 10 unused
    per_entry, squared_error = palette_tally(hist.colors, hist.counts, palette, color_labels)
    assert per_entry.tolist() == np.bincount(color_labels, minlength=11).tolist()
    per_color = ((hist.colors.astype(np.int64) - palette[color_labels]) ** 2).sum(1)
    assert squared_error == int(np.dot(hist.counts, per_color))
    assert float(squared_error) == weighted_squared_error(
        hist.colors, hist.counts, palette, color_labels
    )


def test_places_through_rows_is_numpys_double_gather():
    rng = np.random.default_rng(2)
    places = rng.permutation(40)
    center_labels = rng.integers(0, 40, 500)
    rows = rng.integers(0, 500, 3000)
    expected = places.astype(np.uint8)[center_labels[rows]]
    np.testing.assert_array_equal(places_through_rows(places, center_labels, rows), expected)


@pytest.mark.parametrize("bits", [3, 5])
def test_cell_histogram_equals_numpy(sample_image, bits):
    pixels = sample_image.reshape(-1, 3).astype(np.int64)
    cell = (
        (pixels[:, 0] >> (8 - bits)) << (2 * bits)
        | (pixels[:, 1] >> (8 - bits)) << bits
        | pixels[:, 2] >> (8 - bits)
    )
    occupied, inverse, counts = np.unique(cell, return_inverse=True, return_counts=True)
    cells = cell_histogram(sample_image, bits)
    np.testing.assert_array_equal(cells.cells, occupied)
    np.testing.assert_array_equal(cells.counts, counts)
    sums = np.stack([np.bincount(inverse, weights=pixels[:, c]) for c in range(3)], axis=1)
    np.testing.assert_array_equal(cells.sums, sums.astype(np.int64))
    assert cells.total_square == int((pixels**2).sum())
    # The error of giving each cell a colour, from the sums alone, is the per-pixel error.
    colors = np.random.default_rng(0).integers(0, 256, (cells.n_cells, 3))
    assert cells.squared_error(colors) == int(((pixels - colors[inverse]) ** 2).sum())


def test_cell_histogram_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 RGB"):
        cell_histogram(np.zeros((2, 4), dtype=np.uint8), 5)
    with pytest.raises(ValueError, match="bits"):
        cell_histogram(np.zeros((2, 3), dtype=np.uint8), 8)


@pytest.mark.parametrize("n_channels", [1, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (3, 517), (64, 96)])
def test_palette_rows_equal_numpy_gather(n_channels, shape):
    rng = np.random.default_rng(n_channels)
    palette = rng.integers(0, 256, (256, n_channels)).astype(np.uint8)
    labels = rng.integers(0, 256, shape).astype(np.uint8)
    out = np.zeros((*shape, n_channels), dtype=np.uint8)
    assert palette_rows(labels, palette, out) is out
    np.testing.assert_array_equal(out, palette[labels])


@pytest.mark.parametrize("store_inverse", [True, False])
def test_labels_by_color_needs_one_label_a_colour(sample_image, store_inverse):
    pixels = np.ascontiguousarray(sample_image.reshape(-1, 3))
    stored = color_histogram(pixels)  # the labels are made through its inverse
    rng = np.random.default_rng(0)
    color_labels = rng.integers(0, 16, stored.n_colors).astype(np.uint8)
    labels = color_labels[stored.inverse]
    # Read without an inverse, each pixel is looked up in the bitmap (built here only).
    hist = color_histogram(pixels, store_inverse=store_inverse)
    np.testing.assert_array_equal(hist.labels_by_color(labels), color_labels)
    # One pixel of a colour that other pixels share, labelled differently: no answer.
    shared = int(np.flatnonzero(stored.counts[stored.inverse] > 1)[0])
    labels[shared] = (labels[shared] + 1) % 16
    assert hist.labels_by_color(labels) is None
    assert (hist._inverse is None) is (not store_inverse)
