"""Colour conversions against published reference values, and round trips."""

import numpy as np
import pytest

from kmquant import colorspace, quantize

PRIMARIES = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]], dtype=np.uint8
)


def test_cielab_of_the_srgb_primaries():
    # Published CIELAB (D65) of the sRGB primaries, e.g. in Lindbloom's and Wikipedia's tables.
    expected = [
        [53.24, 80.09, 67.20],
        [87.73, -86.18, 83.18],
        [32.30, 79.19, -107.86],
        [100.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(colorspace.srgb_to_lab(PRIMARIES), expected, atol=0.01)


def test_oklab_reference_values():
    # Ottosson's OKLab: white is (1, 0, 0); sRGB primaries as listed in his reference code.
    expected = [
        [0.627955, 0.224863, 0.125846],
        [0.866440, -0.233888, 0.179498],
        [0.452014, -0.032457, -0.311528],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(colorspace.srgb_to_oklab(PRIMARIES), expected, atol=1e-5)


def test_srgb_transfer_curve_by_hand():
    assert colorspace.srgb_to_linear(np.array([0, 255]))[1] == pytest.approx(1.0)
    # 0.04045 is the knee of the piecewise curve: linear below, power above.
    assert colorspace.srgb_to_linear(np.array([10.0]))[0] == pytest.approx(10 / 255 / 12.92)
    assert colorspace.srgb_to_linear(np.array([128.0]))[0] == pytest.approx(
        ((128 / 255 + 0.055) / 1.055) ** 2.4
    )


@pytest.mark.parametrize("space", colorspace.SPACES)
def test_every_space_round_trips_every_8_bit_colour_exactly(space):
    rng = np.random.default_rng(0)
    colors = np.vstack([PRIMARIES, rng.integers(0, 256, (5000, 3), dtype=np.uint8)])
    back = colorspace.from_space(colorspace.to_space(colors, space), space)
    np.testing.assert_array_equal(np.floor(back + 0.5).astype(np.uint8), colors)


def test_hue_wraps_around():
    # Hue 0 and hue 359 degrees are neighbours in the HSV cone, far apart as raw hue.
    near_zero = np.array([[255, 0, 4]])
    near_360 = np.array([[255, 4, 0]])
    distance = np.linalg.norm(
        colorspace.to_space(near_zero, "hsv") - colorspace.to_space(near_360, "hsv")
    )
    assert distance < 10
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = [255, 0, 4]
    image[:, 4:] = [255, 4, 0]
    image[4:, :] = [0, 0, 255]
    result = quantize(image, 2, space="hsv", rng=0)
    reds = result.palette[result.labels[0, 0]], result.palette[result.labels[0, 7]]
    assert result.labels[0, 0] == result.labels[0, 7]  # both reds in one cluster
    assert reds[0][0] == 255 and reds[0][1] <= 4 and reds[0][2] <= 4


@pytest.mark.parametrize("space", colorspace.SPACES)
def test_quantize_in_any_space_gives_exact_srgb_palettes(small_photo, space):
    result = quantize(small_photo, 8, space=space, rng=0)
    assert result.palette.dtype == np.uint8 and result.palette.shape[1] == 3
    image = result.to_image()
    assert {tuple(c) for c in image.reshape(-1, 3)} <= {tuple(c) for c in result.palette}


def test_rgb_gives_the_best_psnr_of_all_spaces(sample_image):
    # k-means in RGB minimises exactly the squared RGB error; other spaces trade it away.
    from kmquant import metrics

    image = sample_image[::2, ::2]
    psnrs = {
        space: metrics.psnr(image, quantize(image, 16, space=space, rng=0).to_image())
        for space in colorspace.SPACES
    }
    assert max(psnrs, key=psnrs.get) == "rgb"


def random_rgba(n: int = 500) -> np.ndarray:
    rng = np.random.default_rng(3)
    colors = rng.integers(0, 256, (n, 4)).astype(np.uint8)
    colors[: n // 5, 3] = 255
    colors[n // 5 : n // 4, 3] = 0
    colors[colors[:, 3] == 0, :3] = 0
    return colors


@pytest.mark.parametrize("space", colorspace.SPACES)
def test_rgba_features_round_trip_to_the_same_palette(space):
    colors = random_rgba()
    back = colorspace.features_to_palette(colorspace.color_features(colors, space), space, 4)
    np.testing.assert_array_equal(back[:, 3], colors[:, 3])
    visible = colors[:, 3] >= 8  # below that, a colour step is under half a level of alpha
    assert np.abs(back[visible, :3].astype(int) - colors[visible, :3]).max() <= 1


def test_rgba_feature_distance_is_the_error_over_black_plus_over_white():
    colors = random_rgba().astype(np.float64)
    features = colorspace.color_features(colors.astype(np.uint8), "rgb")
    first, second = colors[::2][:200], colors[1::2][:200]
    expected = np.zeros(len(first))
    for background in (0.0, 255.0):
        over = [
            c[:, :3] * c[:, 3:] / 255 + background * (1 - c[:, 3:] / 255) for c in (first, second)
        ]
        expected += ((over[0] - over[1]) ** 2).sum(1)
    difference = features[::2][:200, :6] - features[1::2][:200, :6]
    np.testing.assert_allclose((difference**2).sum(1), expected, rtol=1e-9, atol=1e-9)
