import math

import numpy as np
import pytest

from kmquant import metrics, quantize
from kmquant.quantize import QuantizedImage


def test_mse_and_psnr_by_hand():
    reference = np.zeros((2, 2, 3), dtype=np.uint8)
    distorted = reference.copy()
    distorted[0, 0, 0] = 12  # one sample off by 12: MSE = 144 / 12 = 12
    assert metrics.mse(reference, distorted) == 12.0
    assert metrics.psnr(reference, distorted) == pytest.approx(10 * math.log10(255**2 / 12))
    assert metrics.psnr(reference, reference) == math.inf


def test_psnr_respects_data_range():
    assert metrics.psnr(np.zeros(4), np.full(4, 0.5), data_range=1.0) == pytest.approx(
        6.0206, abs=1e-4
    )


def test_ssim_matches_scikit_image_on_a_real_result(sample_image):
    from skimage.metrics import structural_similarity

    compressed = quantize(sample_image, 8, rng=0).to_image()
    expected = structural_similarity(sample_image, compressed, channel_axis=-1, data_range=255)
    assert metrics.ssim(sample_image, compressed) == pytest.approx(expected)
    assert 0.5 < expected < 1.0
    assert metrics.ssim(sample_image, sample_image) == 1.0


def test_ssim_of_tiny_images_is_defined():
    image = np.array([[[10, 20, 30], [200, 100, 0]]], dtype=np.uint8)
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    assert metrics.ssim(image, 255 - image) < 0.5


def test_shapes_must_match():
    with pytest.raises(ValueError, match="same shape"):
        metrics.mse(np.zeros((2, 2)), np.zeros((2, 3)))


def test_bits_and_ratio():
    assert metrics.bits_per_pixel(3 * 100, 100) == 24.0
    assert metrics.compression_ratio(1000, 250) == 4.0
    with pytest.raises(ValueError, match="compressed_bytes must be positive"):
        metrics.compression_ratio(1000, 0)


@pytest.mark.parametrize("shape", [(512, 768, 3), (97, 61), (9, 11, 3), (5, 40, 3)])
def test_compiled_ssim_equals_scikit_image_to_rounding(sample_image, shape):
    from skimage.metrics import structural_similarity

    reference = sample_image[: shape[0], : shape[1]]
    if len(shape) == 2:
        reference = reference[:, :, 1]
    reference = np.ascontiguousarray(reference)
    distorted = quantize(reference, 6, rng=0).to_image()
    window = min(7, min(shape[:2]) if min(shape[:2]) % 2 else min(shape[:2]) - 1)
    expected = structural_similarity(
        reference,
        distorted,
        win_size=window,
        data_range=255,
        channel_axis=-1 if len(shape) == 3 else None,
    )
    # Exact integer window sums: closer to the float64 formula than any float filter.
    assert metrics.ssim(reference, distorted) == pytest.approx(expected, abs=1e-12)
    # Non-uint8 input takes scikit-image itself (float32 bands).
    as_float = metrics.ssim(reference.astype(np.float64), distorted.astype(np.float64))
    assert as_float == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("band_pixels", [1 << 20, 2_000])
def test_indexed_report_equals_the_report_on_the_rebuilt_image(
    monkeypatch, sample_image, band_pixels
):
    # Small bands put many band edges (and SSIM's overlapping rows) inside the image.
    monkeypatch.setattr(metrics, "_INDEXED_BAND_PIXELS", band_pixels)
    # Undithered, each colour has one label (CIEDE2000 through the colours' histogram);
    # dithered, colours have several (through the hashed pairs).
    for n_colors, dither in ((2, "none"), (16, "none"), (256, "none"), (16, "floyd-steinberg")):
        result = quantize(sample_image, n_colors, rng=0, dither=dither)
        expected = metrics.quality_report(sample_image, result.to_image())
        report = metrics.indexed_quality_report(sample_image, result.labels, result.palette)
        assert report.keys() == expected.keys()
        for key, value in expected.items():
            assert report[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize(
    "shape", [(7, 7), (6, 40), (40, 6), (1, 1), (9, 300), (3, 3, 4), (8, 8, 1)]
)
def test_indexed_report_on_small_and_other_images(shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, shape if len(shape) == 3 else (*shape, 3), dtype=np.uint8)
    n_entries = 4
    palette = rng.integers(0, 256, (n_entries, image.shape[2]), dtype=np.uint8)
    labels = rng.integers(0, n_entries, image.shape[:2]).astype(np.uint8)
    expected = metrics.quality_report(image, palette[labels])
    report = metrics.indexed_quality_report(image, labels, palette)
    for key, value in expected.items():
        if math.isinf(value):
            assert math.isinf(report[key])
        else:
            assert report[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


def test_indexed_report_and_to_image_reject_labels_outside_the_palette(sample_image):
    result = quantize(sample_image[:32, :40], 4, rng=0)
    labels = result.labels.copy()
    labels[3, 5] = 4  # one past the end
    with pytest.raises(ValueError, match="outside a palette of 4 entries"):
        metrics.indexed_quality_report(sample_image[:32, :40], labels, result.palette)
    bad = QuantizedImage(
        palette=result.palette, labels=labels, inertia=0.0, n_iter=0, n_input_colors=0
    )
    with pytest.raises(ValueError, match="outside a palette"):
        bad.to_image()
