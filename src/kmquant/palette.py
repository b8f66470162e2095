"""Palettes: from float centres to exact uint8 colours, in a useful order."""

from __future__ import annotations

import numpy as np

__all__ = ["centers_to_palette", "luminance_order"]

# Rec. 709 luma weights: sorting by luma puts similar colours next to each other, which keeps
# neighbouring pixels' indices close and helps the PNG's deflate stage a little.
_LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722])


def centers_to_palette(centers: np.ndarray) -> np.ndarray:
    """Round k-means centres (0..255 scale) to the nearest uint8 colours.

    Parameters
    ----------
    centers : ndarray, shape (n_colors, n_channels)

    Returns
    -------
    palette : ndarray of uint8, shape (n_colors, n_channels)

    Examples
    --------
    >>> centers_to_palette(np.array([[0.4, 127.5, 300.0]])).tolist()
    [[0, 128, 255]]
    """
    # np.rint rounds half to even; add a tiny bias so 127.5 -> 128 like a person expects.
    return np.clip(np.floor(np.asarray(centers, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def luminance_order(palette: np.ndarray) -> np.ndarray:
    """Permutation that sorts palette entries by luma, darkest first (ties: by channels).

    Parameters
    ----------
    palette : ndarray of uint8, shape (n_colors, n_channels)

    Returns
    -------
    order : ndarray of intp, shape (n_colors,)
        ``palette[order]`` is sorted.
    """
    palette = np.asarray(palette, dtype=np.float64)
    if palette.shape[1] >= 3:
        luma = palette[:, :3] @ _LUMA_WEIGHTS
    else:
        luma = palette[:, 0]
    keys = [palette[:, channel] for channel in range(palette.shape[1] - 1, -1, -1)]
    return np.lexsort((*keys, luma))
