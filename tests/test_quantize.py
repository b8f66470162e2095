import warnings

import numpy as np
import pytest

from kmquant import KmquantWarning, metrics, quantize


def test_quantize_the_sample_to_16_colours(sample_image):
    result = quantize(sample_image, 16, rng=0)
    assert result.palette.shape == (16, 3) and result.palette.dtype == np.uint8
    assert result.labels.shape == (512, 768) and result.labels.dtype == np.uint8
    image = result.to_image()
    assert image.shape == sample_image.shape and image.dtype == np.uint8
    # Every pixel of the output is a palette colour, and every palette colour is used.
    assert np.unique(image.reshape(-1, 3), axis=0).shape[0] == 16
    # The inertia is the exact squared error of what is returned.
    assert result.inertia == pytest.approx(metrics.mse(sample_image, image) * sample_image.size)
    # A real 16-colour k-means on this photo lands well above 26 dB.
    assert metrics.psnr(sample_image, image) > 26.0
    assert result.n_iter >= 1 and result.n_input_colors > 30_000


def test_more_colours_lower_error(small_photo):
    errors = [quantize(small_photo, k, rng=0).inertia for k in (2, 8, 32)]
    assert errors[0] > errors[1] > errors[2]


def test_every_colour_of_a_photo_gets_its_nearest_palette_colour(sample_image):
    # The final Lloyd run on all colours gives labels, from which the mapping starts.
    from kmquant import color_histogram

    result = quantize(sample_image, 64, rng=1)
    histogram = color_histogram(sample_image)
    colors = histogram.colors.astype(float)
    distances = ((colors[:, None] - result.palette[None].astype(float)) ** 2).sum(axis=2)
    color_labels = np.empty(len(colors), dtype=np.intp)
    color_labels[histogram.inverse] = result.labels.reshape(-1)
    chosen = distances[np.arange(len(colors)), color_labels]
    np.testing.assert_array_equal(chosen, distances.min(axis=1))


@pytest.mark.parametrize("n_colors", [8, 64])
def test_every_pixel_gets_its_nearest_palette_colour(small_photo, n_colors):
    result = quantize(small_photo, n_colors, rng=1)
    pixels = small_photo.reshape(-1, 3).astype(float)
    distances = ((pixels[:, None] - result.palette[None].astype(float)) ** 2).sum(axis=2)
    chosen = distances[np.arange(len(pixels)), result.labels.reshape(-1)]
    np.testing.assert_array_equal(chosen, distances.min(axis=1))


def test_same_seed_same_result_and_input_untouched(small_photo):
    copy = small_photo.copy()
    first = quantize(copy, 8, rng=42)
    second = quantize(copy, 8, rng=42)
    np.testing.assert_array_equal(first.palette, second.palette)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(copy, small_photo)


def test_more_restarts_never_worse(small_photo):
    generator_seed = 3
    one = quantize(small_photo, 12, n_init=1, rng=generator_seed)
    five = quantize(small_photo, 12, n_init=5, rng=generator_seed)
    # The first restart of both draws from the same generator state, so five includes it.
    assert five.inertia <= one.inertia


def test_fewer_colours_than_k_are_kept_exactly_with_a_warning():
    image = np.zeros((5, 6, 3), dtype=np.uint8)
    image[2:, :] = [10, 200, 30]
    image[:, 4:] = [255, 255, 255]
    with pytest.warns(KmquantWarning, match="only 3 distinct colours, fewer than n_colors=16"):
        result = quantize(image, 16)
    assert result.n_colors == 3
    np.testing.assert_array_equal(result.to_image(), image)
    assert result.inertia == 0.0 and result.n_iter == 0


def test_exactly_k_colours_gives_no_warning():
    image = np.arange(4, dtype=np.uint8).reshape(2, 2, 1).repeat(3, axis=2) * 60
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = quantize(image, 4)
    np.testing.assert_array_equal(result.to_image(), image)


def test_entries_no_pixel_takes_are_dropped_and_labels_renumbered(small_photo):
    from kmquant import color_histogram
    from kmquant.quantize import apply_palette

    # Two centres that round to one colour: the second copy is nobody's nearest entry
    # (ties go to the lower index), so it is dropped and white's index moves down.
    palette = np.array([[0, 0, 0], [0, 0, 0], [255, 255, 255]], dtype=np.uint8)
    histogram = color_histogram(small_photo)
    pixels = small_photo.astype(float)
    by_black = (pixels**2).sum(axis=2)
    by_white = ((pixels - 255) ** 2).sum(axis=2)
    whiter = by_white < by_black
    assert 0 < whiter.sum() < whiter.size
    shape = small_photo.shape[:2]
    dropped = apply_palette(histogram, shape, palette)
    np.testing.assert_array_equal(dropped.palette, palette[[0, 2]])
    np.testing.assert_array_equal(dropped.labels, np.where(whiter, 1, 0))
    kept = apply_palette(histogram, shape, palette, drop_unused=False)
    np.testing.assert_array_equal(kept.palette, palette)
    np.testing.assert_array_equal(kept.labels, np.where(whiter, 2, 0))
    assert dropped.inertia == kept.inertia == pytest.approx(np.minimum(by_black, by_white).sum())


def test_greyscale_2d_input_gives_2d_output(small_photo):
    grey = small_photo.mean(axis=2).astype(np.uint8)
    result = quantize(grey, 4, rng=0)
    assert result.palette.shape == (4, 1)
    assert result.to_image().shape == grey.shape


def test_dtypes_are_normalised(small_photo):
    as_uint16 = small_photo.astype(np.uint16) * 257
    as_float = small_photo / 255.0
    reference = quantize(small_photo, 6, rng=0)
    for variant in (as_uint16, as_float):
        np.testing.assert_array_equal(quantize(variant, 6, rng=0).palette, reference.palette)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_colors": 0}, "n_colors must be >= 1, got 0"),
        ({"n_colors": 257}, "n_colors must be in 1..256, got 257"),
        ({"n_colors": 2.5}, "n_colors must be an integer"),
        ({"init": "median"}, "init must be one of"),
        ({"n_init": 0}, "n_init must be an integer >= 1"),
        ({"tol": float("nan")}, "tol must be a finite number"),
    ],
)
def test_bad_options_name_the_argument(small_photo, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        quantize(small_photo, **kwargs)


def test_bad_images_are_rejected():
    with pytest.raises(ValueError, match="1 to 4 channels"):
        quantize(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="must lie in 0..255"):
        quantize(np.full((4, 4, 3), 300, dtype=np.int32))
    with pytest.raises(ValueError, match="at least one pixel"):
        quantize(np.zeros((0, 4, 3), dtype=np.uint8))


# ------------------------------------------------------------------ speed="fast" on RGB


@pytest.mark.parametrize("n_colors", [16, 256])
def test_fast_maps_pixels_by_cell_with_an_exact_inertia(sample_image, n_colors):
    from PIL import Image

    from kmquant.histogram import cell_histogram

    result = quantize(sample_image, n_colors, speed="fast")
    image = result.to_image()
    assert result.n_colors == n_colors and result.n_input_colors is None
    assert np.unique(result.labels).size == result.n_colors  # every entry used
    assert result.inertia == metrics.mse(sample_image, image) * sample_image.size
    # Every pixel of a cell gets one entry: the nearest to the cell's mean colour.
    cells = cell_histogram(sample_image, 5)
    pixels = sample_image.reshape(-1, 3).astype(np.int64)
    cell = (pixels[:, 0] >> 3) << 10 | (pixels[:, 1] >> 3) << 5 | pixels[:, 2] >> 3
    labels = result.labels.reshape(-1)
    first = np.unique(cell, return_index=True)[1]
    np.testing.assert_array_equal(labels, labels[first][np.searchsorted(cells.cells, cell)])
    palette = result.palette.astype(float)
    distances = ((cells.means[:, None] - palette[None]) ** 2).sum(axis=2)
    chosen = distances[np.arange(cells.n_cells), labels[first]]
    np.testing.assert_array_equal(chosen, distances.min(axis=1))
    # Far better than the peer it races (Pillow's fast octree), and no seed involved.
    octree = Image.fromarray(sample_image).quantize(
        n_colors, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    assert (
        result.inertia
        < 0.6 * metrics.mse(sample_image, np.asarray(octree.convert("RGB"))) * sample_image.size
    )
    again = quantize(sample_image, n_colors, speed="fast", rng=7)
    np.testing.assert_array_equal(again.labels, result.labels)


def test_fast_keeps_few_colours_exactly_and_other_inputs_take_the_histogram(small_photo):
    two_tones = np.zeros((8, 8, 3), dtype=np.uint8)
    two_tones[:, 4:] = [2, 250, 7]  # two cells, K = 4: the colours are kept exactly
    with pytest.warns(KmquantWarning, match="distinct colours"):
        kept = quantize(two_tones, 4, speed="fast")
    assert sorted(kept.palette.tolist()) == [[0, 0, 0], [2, 250, 7]]
    # Dithering, restarts asked for, or alpha: the colour-histogram route (colours counted).
    for options in ({"dither": "ordered"}, {"n_init": 2}):
        assert quantize(small_photo, 8, speed="fast", rng=0, **options).n_input_colors > 100
    rgba = np.dstack([small_photo, np.full(small_photo.shape[:2], 255, np.uint8)])
    assert quantize(rgba, 8, speed="fast", rng=0).n_input_colors > 100


@pytest.mark.parametrize("space", ["lab", "oklab", "hsv"])
def test_fast_works_in_every_space(small_photo, space):
    result = quantize(small_photo, 8, speed="fast", space=space)
    assert 1 <= result.n_colors <= 8
    assert result.inertia == metrics.mse(small_photo, result.to_image()) * small_photo.size


@pytest.mark.parametrize(
    ("n_colors", "dither"), [(16, "none"), (64, "none"), (16, "floyd-steinberg")]
)
def test_large_image_path_labels_pixels_without_the_map(
    monkeypatch, sample_image, n_colors, dither
):
    # Above LOOKED_UP_FROM pixels quantize keeps no map from pixels to colours (undithered);
    # lowered to 1 pixel here, the sample must give the same result either way.
    import sys

    module = sys.modules["kmquant.quantize"]
    expected = quantize(sample_image, n_colors, dither=dither, rng=3)
    monkeypatch.setattr(module, "LOOKED_UP_FROM", 1)
    result = quantize(sample_image, n_colors, dither=dither, rng=3)
    np.testing.assert_array_equal(result.palette, expected.palette)
    np.testing.assert_array_equal(result.labels, expected.labels)
    assert result.inertia == expected.inertia
