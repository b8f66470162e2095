r"""How close a quantized image is to the original, and how small it got.

All error metrics compare two images of the same shape, (H, W) or (H, W, C), on the scale
given by ``data_range`` (255 for uint8).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bits_per_pixel", "compression_ratio", "mse", "psnr", "ssim"]


def _pair(reference: np.ndarray, distorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(reference)
    second = np.asarray(distorted)
    if first.shape != second.shape:
        raise ValueError(f"images must have the same shape, got {first.shape} and {second.shape}")
    if first.size == 0:
        raise ValueError("images must not be empty")
    return first.astype(np.float64), second.astype(np.float64)


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
    first, second = _pair(reference, distorted)
    return float(np.mean((first - second) ** 2))


def psnr(reference: np.ndarray, distorted: np.ndarray, *, data_range: float = 255.0) -> float:
    r"""Peak signal-to-noise ratio in decibels (infinite for identical images).

    .. math:: \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}} ,

    with :math:`R` = ``data_range`` (255 for uint8).

    Examples
    --------
    >>> round(psnr(np.zeros(4), np.full(4, 255.0)), 6)
    0.0
    """
    error = mse(reference, distorted)
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


def ssim(reference: np.ndarray, distorted: np.ndarray, *, data_range: float = 255.0) -> float:
    r"""Mean structural similarity (Wang et al. 2004), 1.0 for identical images.

    Computed by :func:`skimage.metrics.structural_similarity` with 7x7 uniform windows,
    averaged over channels (the last axis of a 3-D image). Images with a side under 7 pixels
    use the largest odd window that fits, or one window over the whole image.

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
    from skimage.metrics import structural_similarity

    first, second = _pair(reference, distorted)
    shortest_side = min(first.shape[0], first.shape[1]) if first.ndim >= 2 else first.shape[0]
    window = min(7, shortest_side if shortest_side % 2 else shortest_side - 1)
    if first.ndim < 2 or window < 3:
        return _global_ssim(first, second, data_range)
    channel_axis = -1 if first.ndim == 3 else None
    return float(
        structural_similarity(
            first,
            second,
            win_size=window,
            data_range=data_range,
            channel_axis=channel_axis,
        )
    )


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
