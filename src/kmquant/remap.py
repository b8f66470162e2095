"""Pixels to palette indices, through the colour histogram.

Every pixel with the same colour gets the same index, so the nearest palette entry is found
once per distinct colour and then looked up for every pixel.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._kernels import (
    _BAYER_8,
    dither_floyd_steinberg,
    dither_floyd_steinberg_3,
    dither_ordered,
    label_counts,
    nearest_labels,
    nearest_labels_by_grid,
    nearest_labels_by_scan,
    nearest_labels_from,
    pixel_squared_error,
)

__all__ = ["DITHERS", "dither_labels", "nearest_palette_labels"]

DITHERS = ("none", "floyd-steinberg", "ordered")
# Cap on the error Floyd-Steinberg carries into a pixel, in units of the typical gap between
# palette entries (measured: see the dithering benchmark in the README).
ERROR_LIMIT = 0.3
# Floyd-Steinberg diffuses a pixel's error times 1 / (1 + (g / (EDGE_GAP x gap))^2), g its
# largest step to a neighbour: full in smooth areas, little across edges and texture, as
# pngquant does. `benchmarks/perception.py dither` on the 14 photos, against pngquant at K = 16
# and 64: without the weight SSIM at least pngquant's on 12 and 12 of 14, mean dE00 on 13 and
# 6; with EDGE_GAP = 0.15 on 14 of 14 for both, at both K.
EDGE_GAP = 0.15
# Colours of this many features find their nearest entry through a grid
# (:func:`kmquant._kernels.nearest_labels_by_grid`): `python benchmarks/kernels.py
# ../shared/corpus/photos --only mapping` gives the photos' colours against their palettes
# 0.20, 0.37 and 0.89 ms at K = 16, 64 and 256, against 0.50, 1.30 and 4.64 ms for the full
# scan and 0.86 and 1.21 ms from guesses at K = 64 and 256 (what quantize used before).
GRID_FEATURES = 3
# From this many palette entries on, guesses of the nearest entry are worth using where the
# grid is not (RGBA's seven features, grey's one): below, the full scan is as fast (exploratory, the
# photos' colours against their palettes: 0.54 against 0.62 ms at K = 16, 1.19 against 1.01
# at K = 64, 3.40 against 1.50 at K = 256).
GUESSES_FROM_ENTRIES = 32
# Up to this many entries, colours of three features with guesses are mapped by a scan of
# every entry from their guess (:func:`kmquant._kernels.nearest_labels_by_scan`) rather than
# through the grid: the photos' colours against their palettes, with the refine's labels as
# guesses (exploratory, order alternated): 0.153 against 0.240 ms at K = 16, 0.214 against
# 0.301 at K = 32, 0.301 against 0.389 at K = 64, but 0.533 against 0.549 at K = 128. With
# the scan's cheaper check (every centre as near counted), `benchmarks/kernels.py --only
# mapping`: 0.31 against 0.45 ms at K = 96, 0.37 against 0.53 at 128, 0.79 against 0.84 at
# 256; but quantize, in process against the grid above 64, took 0.989x the time at K = 80
# and 96 and 1.004x and 1.001x at 128 and 256 (exploratory).
GUESSES_SCAN_UP_TO = 96


def guesses_help(n_entries: int, n_features: int) -> bool:
    """Whether :func:`nearest_palette_labels` makes use of guesses for such a palette."""
    if n_features == GRID_FEATURES:
        return n_entries <= GUESSES_SCAN_UP_TO
    return n_entries >= GUESSES_FROM_ENTRIES


def nearest_palette_labels(
    colors: np.ndarray, palette: np.ndarray, guesses: np.ndarray | None = None
) -> np.ndarray:
    """Index of the nearest palette entry (squared Euclidean distance) of each colour.

    Parameters
    ----------
    colors : ndarray, shape (n_colors_in, n_channels)
    palette : ndarray, shape (n_entries, n_channels)
    guesses : ndarray of int, shape (n_colors_in,), optional
        A likely nearest entry of each colour (such as the k-means labels of the centres
        the palette was rounded from). The result does not depend on them; with good
        guesses it comes faster for a small palette of three channels
        (:func:`kmquant._kernels.nearest_labels_by_scan`) and a large palette of other
        than three (:func:`kmquant._kernels.nearest_labels_from`), see
        :func:`guesses_help`. Otherwise three channels find their nearest entry through a
        grid.

    Returns
    -------
    labels : ndarray of intp, shape (n_colors_in,)
        Ties go to the lowest index.
    """
    labels = np.empty(len(colors), dtype=np.intp)
    colors = np.ascontiguousarray(colors, dtype=np.float64)
    palette = np.ascontiguousarray(palette, dtype=np.float64)
    three = colors.shape[1] == GRID_FEATURES
    if guesses is not None and guesses_help(len(palette), colors.shape[1]):
        guesses = np.ascontiguousarray(guesses)
        if three:
            nearest_labels_by_scan(colors, palette, guesses, labels)
        else:
            nearest_labels_from(colors, palette, guesses, labels)
    elif three and len(palette) <= 256:
        nearest_labels_by_grid(colors, palette, labels)
    else:
        nearest_labels(colors, palette, labels)
    return labels


class Dithered(NamedTuple):
    """:func:`dither_labels`' result."""

    labels: np.ndarray
    """Every pixel's palette index, uint8 (height, width)."""
    counts: np.ndarray
    """Pixels per palette entry, int64 (n_entries,)."""
    squared_error: float
    """Sum over pixels and channels of (colour - entry)^2, on the 0..255 scale."""


def dither_labels(
    color_points: np.ndarray,
    inverse: np.ndarray,
    shape: tuple[int, int],
    palette_points: np.ndarray,
    *,
    method: str,
    strength: float,
    n_diffused: int,
    colors: np.ndarray,
    palette: np.ndarray,
) -> Dithered:
    """Palette index of every pixel with dithering, in whatever space the points are in,
    with the pixels per entry and the squared error they come to.

    Parameters
    ----------
    color_points : ndarray, shape (n_colors, d)
        The features of the image's distinct colours (see
        :func:`kmquant.colorspace.color_features`).
    inverse : ndarray of int, shape (height * width,)
        Each pixel's row of ``color_points``, in row-major order.
    shape : (height, width)
    palette_points : ndarray, shape (n_entries, d)
        The palette's features, same space.
    method : {"floyd-steinberg", "ordered"}
    strength : float
        0..1: the share of the error diffused, or the width of the ordered offsets relative to
        the typical gap between palette entries.
    n_diffused : int
        Leading features that dithering may change (colour, and alpha for Floyd-Steinberg);
        the alpha-class feature after them never moves, so no pixel changes alpha class.
    colors : ndarray of uint8, shape (n_colors, n_channels)
        The distinct colours themselves (the histogram's), for the squared error.
    palette : ndarray of uint8, shape (n_entries, n_channels)
        The palette whose features ``palette_points`` are.

    Returns
    -------
    Dithered
        ``labels`` (height, width), ``counts`` and ``squared_error``. Floyd-Steinberg on
        three features counts them as it diffuses, each part of the image its own rows.
    """
    points = np.ascontiguousarray(color_points, dtype=np.float64)
    inverse = np.ascontiguousarray(inverse).reshape(-1)
    height, width = shape
    palette_points = np.ascontiguousarray(palette_points, dtype=np.float64)
    colors, palette = np.ascontiguousarray(colors), np.ascontiguousarray(palette)
    if method == "floyd-steinberg":
        gap = _typical_gap(palette_points[:, : min(3, n_diffused)])
        limit = ERROR_LIMIT * gap
        pixels = (points, inverse, height, width, palette_points, float(strength))
        limits = (max(limit, 1e-9), EDGE_GAP * gap)
        if points.shape[1] == 3 and n_diffused == 3:  # RGB, Lab, OKLab, HSV: the faster kernel
            labels, counts, squared_error = dither_floyd_steinberg_3(
                *pixels, *limits, colors, palette
            )
            return Dithered(labels, counts, float(squared_error))
        labels = dither_floyd_steinberg(*pixels, int(n_diffused), *limits)
    elif method == "ordered":
        n_colour = min(3, n_diffused)
        # The same offset moves every colour feature: along the grey diagonal, whose length
        # is sqrt(n) times the offset. Scale it so one full sweep spans one typical gap.
        spread = _typical_gap(palette_points[:, :n_colour]) / np.sqrt(n_colour)
        labels = dither_ordered(
            points,
            inverse,
            height,
            width,
            palette_points,
            float(strength) * spread,
            n_colour,
            _BAYER_8,
        )
    else:
        raise ValueError(f"dither must be one of {DITHERS}, got {method!r}")
    flat = labels.reshape(-1)
    squared_error = pixel_squared_error(colors, inverse, palette, flat)
    return Dithered(labels, label_counts(flat, len(palette)), float(squared_error))


def _typical_gap(palette_points: np.ndarray) -> float:
    """Median distance from each palette entry to its nearest other entry."""
    if len(palette_points) < 2:
        return 0.0
    differences = palette_points[:, None, :] - palette_points[None, :, :]
    distances = np.sqrt((differences**2).sum(axis=2))
    np.fill_diagonal(distances, np.inf)
    return float(np.median(distances.min(axis=1)))
