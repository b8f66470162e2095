r"""How close a quantized image is to the original, and how small it got.

All error metrics compare two images of the same shape, (H, W) or (H, W, C), on the scale
given by ``data_range`` (255 for uint8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ._kernels import pair_histogram_unsorted, palette_rows, pixel_squared_error, ssim_sum
from .histogram import color_histogram, pack_colors, unpack_keys
from .palette import check_labels

# Values per block of the MSE's float64 differences (2 MiB).
_BLOCK_VALUES = 1 << 18
# Pixels per band of rows for SSIM: skimage keeps about 15 float arrays of a band at once.
_SSIM_BAND_PIXELS = 1 << 20
# Distinct colour pairs per CIEDE2000 call: scikit-image keeps a score of float arrays of
# them at once (about 7 MiB at this size).
_DELTA_E_CHUNK = 1 << 16
# Pixels per band of rows rebuilt from palette indices for indexed_quality_report's SSIM.
_INDEXED_BAND_PIXELS = 1 << 20

__all__ = [
    "DeltaE",
    "bits_per_pixel",
    "composite",
    "compression_ratio",
    "delta_e",
    "indexed_quality_report",
    "mse",
    "psnr",
    "quality_report",
    "ssim",
]


def mse(reference: np.ndarray, distorted: np.ndarray) -> float:
    r"""Mean squared error over all pixels and channels.

    .. math:: \mathrm{MSE} = \frac{1}{N} \sum_{n=1}^{N} (a_n - b_n)^2 ,

    with :math:`N` = pixels x channels. For a quantized image this is k-means' inertia divided
    by :math:`N`.

    Examples
    --------
    >>> mse(np.array([0, 0, 0, 0]), np.array([2, 0, 0, 0]))
    1.0
    """
    first, second = np.asarray(reference), np.asarray(distorted)
    if first.shape != second.shape:
        raise ValueError(f"images must have the same shape, got {first.shape} and {second.shape}")
    if first.size == 0:
        raise ValueError("images must not be empty")
    return _squared_error_sum(first, second) / first.size


def _squared_error_sum(first: np.ndarray, second: np.ndarray) -> float:
    """Sum of squared differences of two arrays of one shape."""
    flat_first, flat_second = first.reshape(-1), second.reshape(-1)
    total = 0.0
    # In blocks, so a 100-megapixel image never needs full float64 copies.
    for start in range(0, flat_first.size, _BLOCK_VALUES):
        difference = flat_first[start : start + _BLOCK_VALUES].astype(np.float64)
        difference -= flat_second[start : start + _BLOCK_VALUES]
        # einsum, not np.dot: BLAS would run this on several threads that then spin idle,
        # taking a core from whatever runs next (benchmarks/batch.py, one worker: 5.9 -> 6.7
        # images/s).
        total += float(np.einsum("i,i->", difference, difference))
    return total


def psnr(reference: np.ndarray, distorted: np.ndarray, *, data_range: float = 255.0) -> float:
    r"""Peak signal-to-noise ratio in decibels (infinite for identical images).

    .. math:: \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}} ,

    with :math:`R` = ``data_range`` (255 for uint8).

    Examples
    --------
    >>> round(psnr(np.zeros(4), np.full(4, 255.0)), 6)
    0.0
    """
    return _psnr_from_mse(mse(reference, distorted), data_range)


def _psnr_from_mse(error: float, data_range: float = 255.0) -> float:
    if error == 0:
        return math.inf
    return float(10.0 * math.log10(data_range**2 / error))


def _global_ssim(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """SSIM with one window covering the whole image, for images too small to slide one."""
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mean_1, mean_2 = first.mean(), second.mean()
    var_1, var_2 = first.var(), second.var()
    covariance = ((first - mean_1) * (second - mean_2)).mean()
    return float(
        ((2 * mean_1 * mean_2 + c1) * (2 * covariance + c2))
        / ((mean_1**2 + mean_2**2 + c1) * (var_1 + var_2 + c2))
    )


def _ssim_window(shape: tuple[int, ...]) -> int:
    """Side of SSIM's windows: 7, or the largest odd side that fits a smaller image."""
    shortest_side = min(shape[0], shape[1]) if len(shape) >= 2 else shape[0]
    return min(7, shortest_side if shortest_side % 2 else shortest_side - 1)


def ssim(reference: np.ndarray, distorted: np.ndarray, *, data_range: float = 255.0) -> float:
    r"""Mean structural similarity (Wang et al. 2004), 1.0 for identical images.

    As :func:`skimage.metrics.structural_similarity` computes it, with 7x7 uniform windows,
    averaged over channels (the last axis of a 3-D image). Images with a side under 7 pixels
    use the largest odd window that fits, or one window over the whole image. uint8 images
    (with ``data_range`` 255) go through a compiled kernel on exact integer window sums,
    equal to skimage's float64 result to 1e-12 and many times faster; other inputs through
    skimage itself.

    References
    ----------
    .. [1] Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment:
       from error visibility to structural similarity", IEEE Trans. Image Processing, 2004.

    Examples
    --------
    >>> image = np.random.default_rng(0).integers(0, 256, (16, 16, 3))
    >>> ssim(image, image)
    1.0
    """

    first, second = np.asarray(reference), np.asarray(distorted)
    if first.shape != second.shape:
        raise ValueError(f"images must have the same shape, got {first.shape} and {second.shape}")
    if first.size == 0:
        raise ValueError("images must not be empty")
    window = _ssim_window(first.shape)
    if first.ndim < 2 or window < 3:
        return _global_ssim(first.astype(np.float64), second.astype(np.float64), data_range)
    if first.dtype == np.uint8 and second.dtype == np.uint8 and data_range == 255.0:
        # Compiled, from exact integer window sums; the same formula as skimage's.
        pixels = first.reshape(first.shape[0], first.shape[1], -1)
        other = second.reshape(pixels.shape)
        c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
        total = ssim_sum(np.ascontiguousarray(pixels), np.ascontiguousarray(other), window, c1, c2)
        inner = (pixels.shape[0] - window + 1) * (pixels.shape[1] - window + 1) * pixels.shape[2]
        return float(total / inner)
    channel_axis = -1 if first.ndim == 3 else None
    return _banded_ssim(first, second, window, data_range, channel_axis)


def _banded_ssim(
    first: np.ndarray, second: np.ndarray, window: int, data_range: float, channel_axis: int | None
) -> float:
    """skimage's mean SSIM, computed in bands of rows so memory stays bounded.

    skimage averages the SSIM map without a border of (window - 1) / 2 pixels. Each band is
    filtered with that many extra rows above and below, so its inner rows see exactly the
    neighbourhood they have in the whole image; their sum over all bands, divided by their
    count, is the same mean. float32 halves memory and time; the 4th decimal holds.
    """
    from skimage.metrics import structural_similarity

    pad = (window - 1) // 2
    height, width = first.shape[:2]
    band_rows = max(4 * window, _SSIM_BAND_PIXELS // width)
    total = 0.0
    count = 0
    for start in range(pad, height - pad, band_rows):
        stop = min(start + band_rows, height - pad)
        low, high = start - pad, stop + pad
        _, ssim_map = structural_similarity(
            first[low:high].astype(np.float32),
            second[low:high].astype(np.float32),
            win_size=window,
            data_range=data_range,
            channel_axis=channel_axis,
            full=True,
        )
        inner = ssim_map[pad : pad + stop - start, pad : width - pad]
        total += float(inner.sum(dtype=np.float64))
        count += inner.size
    return total / count


class DeltaE(NamedTuple):
    """Summary of per-pixel CIEDE2000 colour differences."""

    mean: float
    p95: float


def delta_e(reference: np.ndarray, distorted: np.ndarray) -> DeltaE:
    r"""CIEDE2000 colour difference between two sRGB uint8 images: mean and 95th percentile.

    Each pixel's sRGB colour is converted to CIELAB (D65) and the CIEDE2000 difference
    :math:`\Delta E_{00}` [1]_ of the two images' colours is taken per pixel. A difference
    of about 1 is the smallest a person notices side by side; above about 5 colours look
    different at a glance.

    The differences are computed once per distinct pair of colours and weighted by how many
    pixels have that pair, which is exact and fast for quantized images.

    References
    ----------
    .. [1] G. Sharma, W. Wu and E. N. Dalal, "The CIEDE2000 color-difference formula:
       implementation notes, supplementary test data, and mathematical observations",
       Color Research & Application 30(1), 2005.

    Examples
    --------
    >>> white = np.full((2, 2, 3), 255, np.uint8)
    >>> delta_e(white, white)
    DeltaE(mean=0.0, p95=0.0)
    """
    first, second = np.asarray(reference), np.asarray(distorted)
    if first.shape != second.shape:
        raise ValueError(f"images must have the same shape, got {first.shape} and {second.shape}")
    if (
        first.ndim != 3
        or first.shape[2] != 3
        or first.dtype != np.uint8
        or second.dtype != np.uint8
    ):
        raise ValueError("delta_e needs two uint8 RGB images of shape (H, W, 3)")
    # Distinct (reference, distorted) colour pairs by the compiled hash table: no sort and no
    # copy of every pixel. Keys pack the 6 bytes big-endian, as pack_colors does.
    keys, counts, _ = pair_histogram_unsorted(
        np.ascontiguousarray(first).reshape(-1, 3),
        np.ascontiguousarray(second).reshape(-1, 3),
        False,
    )

    def pair_colors(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distinct = unpack_keys(chunk, 6)
        return distinct[:, :3], distinct[:, 3:]

    return _pairs_delta_e(keys, counts, pair_colors)


def _pairs_delta_e(
    keys: np.ndarray,
    counts: np.ndarray,
    pair_colors: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> DeltaE:
    """CIEDE2000's mean and 95th percentile over distinct colour pairs weighted by ``counts``.

    ``pair_colors`` turns a chunk of ``keys`` into the pairs' two uint8 sRGB colours, (n, 3)
    each.
    """
    from skimage.color import deltaE_ciede2000, rgb2lab

    differences = np.empty(keys.shape[0])
    # In chunks: scikit-image keeps a score of float arrays per call, and a big photo has
    # millions of distinct pairs.
    for start in range(0, keys.shape[0], _DELTA_E_CHUNK):
        stop = min(start + _DELTA_E_CHUNK, keys.shape[0])
        first, second = pair_colors(keys[start:stop])
        differences[start:stop] = deltaE_ciede2000(
            rgb2lab(first[None].astype(np.float64) / 255.0)[0],
            rgb2lab(second[None].astype(np.float64) / 255.0)[0],
        )
    order = np.argsort(differences)
    cumulative = np.cumsum(counts[order])
    p95 = differences[order][np.searchsorted(cumulative, 0.95 * cumulative[-1])]
    mean = float(np.einsum("i,i->", differences, counts) / counts.sum())
    return DeltaE(mean=mean, p95=float(p95))


def bits_per_pixel(n_bytes: int, n_pixels: int) -> float:
    """File size per pixel in bits: 24 for raw RGB, at most 4 plus overhead for 16 colours.

    Examples
    --------
    >>> bits_per_pixel(1000, 2000)
    4.0
    """
    if n_pixels <= 0:
        raise ValueError(f"n_pixels must be positive, got {n_pixels}")
    return 8.0 * n_bytes / n_pixels


def compression_ratio(original_bytes: int, compressed_bytes: int) -> float:
    """How many times smaller the compressed file is: ``original_bytes / compressed_bytes``.

    Examples
    --------
    >>> compression_ratio(500_000, 125_000)
    4.0
    """
    if compressed_bytes <= 0:
        raise ValueError(f"compressed_bytes must be positive, got {compressed_bytes}")
    return original_bytes / compressed_bytes


def composite(image: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """An RGBA (H, W, 4) uint8 image composited over a solid background, as RGB uint8.

    Examples
    --------
    >>> composite(np.array([[[255, 0, 0, 128]]], np.uint8), (0, 0, 255)).tolist()
    [[[128, 0, 127]]]
    """
    pixels = np.asarray(image)
    alpha = pixels[:, :, 3:4].astype(np.float64) / 255.0
    mixed = pixels[:, :, :3] * alpha + np.asarray(background, dtype=np.float64) * (1 - alpha)
    return np.floor(mixed + 0.5).astype(np.uint8)


BLACK = (0, 0, 0)
WHITE = (255, 255, 255)


def _reference_label_pairs(pixels: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs of a reference colour and a label, packed as (r, g, b, label) into
    int64 keys, and how many pixels have each.

    Where every colour has one label, as in an undithered result, the pairs are the
    reference's colours (counted through the bitmap histogram, on every thread) with their
    labels: 0.27 -> 0.08 s at 24 megapixels (exploratory). Otherwise the pairs are hashed,
    in order of first sight.
    """
    histogram = color_histogram(pixels, store_inverse=False)
    color_labels = histogram.labels_by_color(labels)
    if color_labels is None:
        keys, counts, _ = pair_histogram_unsorted(pixels, labels[:, None], False)
        return keys, counts
    keys = (pack_colors(histogram.colors).astype(np.int64) << 8) | color_labels
    return keys, histogram.counts


def indexed_quality_report(
    reference: np.ndarray,
    labels: np.ndarray,
    palette: np.ndarray,
    *,
    with_ssim: bool = True,
    with_delta_e: bool = True,
) -> dict[str, float]:
    """:func:`quality_report` of ``reference`` against ``palette[labels]``, not built whole.

    For a uint8 RGB ``reference`` (H, W, 3) with ``labels`` (H, W) into a uint8 ``palette``
    (K, 3), and both sides at least 7 pixels, the quantized image is never whole: the MSE
    sums each pixel's squared difference to its palette entry in one compiled pass, SSIM
    rebuilds a band of rows at a time and sums its windows (bands overlap by the window's
    height less one row, so every window is counted once), and CIEDE2000 counts the
    distinct pairs of a reference colour and a palette index. A 96-megapixel image needs no
    288 MB copy. A label outside the palette is a ValueError. The values equal
    :func:`quality_report`'s up to the order of floating-point sums. Any other image is
    rebuilt whole and passed to :func:`quality_report`.
    """
    first, indices, entries = np.asarray(reference), np.asarray(labels), np.asarray(palette)
    check_labels(indices, len(entries))
    if not (
        first.ndim == 3
        and first.shape[2] == 3
        and first.dtype == np.uint8
        and entries.ndim == 2
        and entries.shape[1] == 3
        and entries.dtype == np.uint8
        and indices.shape == first.shape[:2]
        and min(first.shape[:2]) >= 7
    ):
        return quality_report(
            first, entries[indices], with_ssim=with_ssim, with_delta_e=with_delta_e
        )
    first = np.ascontiguousarray(first)
    indices = np.ascontiguousarray(indices, dtype=np.uint8)
    entries = np.ascontiguousarray(entries)
    height, width = indices.shape
    # Straight from the labels, on every thread: integer sums, so exactly the value of the
    # rebuilt image's (24 megapixels: 0.22 -> 0.02 s, exploratory).
    error = pixel_squared_error(first.reshape(-1, 3), None, entries, indices.reshape(-1))
    error /= first.size
    report = {"mse": error, "psnr": _psnr_from_mse(error)}
    if with_ssim:
        window = _ssim_window(first.shape)  # 7: both sides are at least 7
        c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
        total = 0.0
        band_rows = max(1, _INDEXED_BAND_PIXELS // width)
        rebuilt = np.empty((band_rows + window - 1, width, 3), dtype=np.uint8)
        # Windows whose top row is in [top, bottom) lie in rows [top, bottom + window - 1).
        tops = height - window + 1
        for top in range(0, tops, band_rows):
            bottom = min(tops, top + band_rows)
            rows = slice(top, bottom + window - 1)
            band = palette_rows(indices[rows], entries, rebuilt[: bottom + window - 1 - top])
            total += ssim_sum(first[rows], band, window, c1, c2)
        report["ssim"] = float(total / (tops * (width - window + 1) * 3))
    if with_delta_e:
        keys, counts = _reference_label_pairs(first.reshape(-1, 3), indices.reshape(-1))

        def pair_colors(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            distinct = unpack_keys(chunk, 4)
            return distinct[:, :3], entries[distinct[:, 3]]

        difference = _pairs_delta_e(keys, counts, pair_colors)
        report["delta_e"], report["delta_e_p95"] = difference.mean, difference.p95
    return report


def quality_report(
    reference: np.ndarray,
    distorted: np.ndarray,
    *,
    with_ssim: bool = True,
    with_delta_e: bool = True,
) -> dict[str, float]:
    """Every quality metric of a result: MSE, PSNR, SSIM and CIEDE2000 (mean and p95).

    For RGB(A) uint8 images of the same shape. An image with alpha (4 channels) is judged
    as it would be seen: composited over black and over white, keeping the worse value of
    each metric. Greyscale images get no CIEDE2000. ``with_ssim`` and ``with_delta_e`` leave
    out the costly metrics when a caller needs only the error.

    Returns
    -------
    dict
        ``mse``, ``psnr``, ``ssim``, and for colour ``delta_e`` (mean), ``delta_e_p95``.
    """
    first, second = np.asarray(reference), np.asarray(distorted)
    if first.ndim == 3 and first.shape[2] == 4:
        views = [(composite(first, b), composite(second, b)) for b in (BLACK, WHITE)]
    else:
        views = [(first, second)]
    reports = []
    for a, b in views:
        error = mse(a, b)
        report = {"mse": error, "psnr": _psnr_from_mse(error)}
        if with_ssim:
            report["ssim"] = ssim(a, b)
        if with_delta_e and a.ndim == 3 and a.shape[2] == 3:
            difference = delta_e(a, b)
            report["delta_e"], report["delta_e_p95"] = difference.mean, difference.p95
        reports.append(report)
    worse_is_higher = {"mse", "delta_e", "delta_e_p95"}
    return {
        key: (max if key in worse_is_higher else min)(r[key] for r in reports) for key in reports[0]
    }
