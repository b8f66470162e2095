"""Pixels to palette indices, through the colour histogram.

Every pixel with the same colour gets the same index, so the nearest palette entry is found
once per distinct colour and then looked up for every pixel.
"""

from __future__ import annotations

import numpy as np

from ._kernels import nearest_labels

__all__ = ["nearest_palette_labels"]


def nearest_palette_labels(colors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette entry (squared Euclidean distance) of each colour.

    Parameters
    ----------
    colors : ndarray, shape (n_colors_in, n_channels)
    palette : ndarray, shape (n_entries, n_channels)

    Returns
    -------
    labels : ndarray of intp, shape (n_colors_in,)
    """
    labels = np.empty(len(colors), dtype=np.intp)
    nearest_labels(
        np.ascontiguousarray(colors, dtype=np.float64),
        np.ascontiguousarray(palette, dtype=np.float64),
        labels,
    )
    return labels
