"""Colour histogram: the distinct colours of an image and how many pixels have each.

K-means on an image only ever sees colours, not positions, so running it on the distinct
colours weighted by their pixel counts gives exactly the same centres, labels and inertia as
running it on every pixel, at a fraction of the cost (a 768x512 photo has 393,216 pixels but
typically 30,000 to 80,000 distinct colours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ._kernels import (
    cell_sums,
    color_labels_by_bitmap,
    histogram_by_bitmap,
    histogram_unsorted,
    look_up_by_bitmap,
    pixel_labels,
    relabel_in_place,
)

__all__ = [
    "CellHistogram",
    "ColorHistogram",
    "cell_histogram",
    "color_histogram",
    "hashed_histogram",
    "pack_colors",
    "unpack_keys",
]


# The bitmap route (see :func:`color_histogram`) while the bitmap has at most this many bytes
# per pixel: below about 25,000 RGB pixels clearing and scanning its 2 MiB costs more than
# hashing them (exploratory timing: 0.30 against 0.25 ms at 16,384 pixels, 0.39 against
# 0.55 ms at 32,761).
_BITMAP_BYTES_PER_PIXEL = 64


class ColorHistogram:
    """Distinct colours of a set of pixels, with counts and the pixel-to-colour map.

    Attributes
    ----------
    colors : ndarray of uint8, shape (n_unique, n_channels)
        The distinct colours, in increasing order of their packed value.
    counts : ndarray of int64, shape (n_unique,)
        How many pixels have each colour; ``counts.sum()`` is the number of pixels.
    inverse : ndarray of int32, shape (n_pixels,)
        For every pixel, the row of ``colors`` it has: ``colors[inverse]`` rebuilds the pixels.
        A histogram made with ``color_histogram(pixels, store_inverse=False)`` builds it from
        the pixels when it is first read.
    """

    __slots__ = ("_inverse", "_lookup", "colors", "counts")

    def __init__(
        self,
        colors: np.ndarray,
        counts: np.ndarray,
        inverse: np.ndarray | None = None,
        *,
        lookup: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if inverse is None and lookup is None:
            raise ValueError("a ColorHistogram needs its inverse or a lookup to rebuild it")
        self.colors = colors
        self.counts = counts
        self._inverse = inverse
        # (pixels (n, c), bitmap, ranks_before) of histogram_by_bitmap, when no inverse is kept
        self._lookup = lookup

    def __repr__(self) -> str:
        return f"ColorHistogram(n_colors={self.n_colors}, n_pixels={int(self.counts.sum())})"

    @property
    def n_colors(self) -> int:
        """Number of distinct colours."""
        return int(self.colors.shape[0])

    @property
    def inverse(self) -> np.ndarray:
        """For every pixel, the row of ``colors`` it has (int32, built on first use if needed)."""
        if self._inverse is None:
            assert self._lookup is not None
            pixels = self._lookup[0]
            self._inverse = look_up_by_bitmap(
                *self._lookup, np.empty(0, np.int32), np.empty(pixels.shape[0], np.int32)
            )
        return self._inverse

    def pixel_labels(self, color_labels: np.ndarray) -> np.ndarray:
        """Every pixel's label from its colour's: ``color_labels[inverse]``, flat.

        Without a stored inverse each pixel's colour is looked up again in the histogram's
        bitmap, so the 4-byte-per-pixel map is never built.
        """
        if self._inverse is None:
            assert self._lookup is not None
            labels = np.empty(self._lookup[0].shape[0], dtype=color_labels.dtype)
            return look_up_by_bitmap(*self._lookup, color_labels, labels)
        return pixel_labels(color_labels, self._inverse)

    def labels_by_color(self, labels: np.ndarray) -> np.ndarray | None:
        """Each colour's label, from the pixels' ``labels`` (n_pixels,), where all the
        pixels of every colour share one (an undithered result's labels do); else None."""
        labels = np.ascontiguousarray(labels).reshape(-1)
        color_labels = np.empty(self.n_colors, dtype=labels.dtype)
        if self._inverse is None:
            assert self._lookup is not None
            consistent = color_labels_by_bitmap(*self._lookup, labels, color_labels)
        else:
            color_labels[self._inverse] = labels
            consistent = np.array_equal(color_labels[self._inverse], labels)
        return color_labels if consistent else None


def pack_colors(pixels: np.ndarray) -> np.ndarray:
    """Pack each row of up to four uint8 channels into one uint32 key.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (n_pixels, n_channels)
        ``n_channels`` from 1 to 4.

    Returns
    -------
    keys : ndarray of uint32, shape (n_pixels,)
        ``sum(pixels[:, c] << 8 * (n_channels - 1 - c))``: sorting keys sorts colours
        lexicographically.
    """
    n_channels = pixels.shape[1]
    keys = np.zeros(pixels.shape[0], dtype=np.uint32)
    for channel in range(n_channels):
        keys <<= np.uint32(8)
        keys |= pixels[:, channel]
    return keys


def unpack_keys(keys: np.ndarray, n_channels: int) -> np.ndarray:
    """Invert the big-endian packing of :func:`pack_colors` (up to 8 bytes per key)."""
    packed = np.asarray(keys).astype(np.uint64, copy=False)
    shifts = np.arange(n_channels - 1, -1, -1, dtype=np.uint64) * np.uint64(8)
    return ((packed[:, None] >> shifts[None, :]) & np.uint64(0xFF)).astype(np.uint8)


def color_histogram(pixels: np.ndarray, *, store_inverse: bool = True) -> ColorHistogram:
    """Count the distinct colours of a set of pixels.

    Parameters
    ----------
    pixels : array_like of uint8, shape (n_pixels, n_channels) or (height, width, n_channels)
        ``n_channels`` from 1 to 4.
    store_inverse : bool, optional
        True (default): the histogram holds the map from pixels to colours, 4 bytes a pixel.
        False: where the bitmap route is taken (below), it holds the pixels and the bitmap
        instead and looks pixels up again when their labels are asked for
        (:meth:`ColorHistogram.pixel_labels`); ``pixels`` must then not change while the
        histogram is in use. For a large image whose pixels are labelled once.

    Returns
    -------
    ColorHistogram
        The distinct colours, their counts and the map from pixels to colours; the same as
        ``np.unique(pack_colors(pixels), return_inverse=True, return_counts=True)``.

    Raises
    ------
    TypeError
        If ``pixels`` is not uint8.
    ValueError
        If it has no pixels or more than four channels.

    Notes
    -----
    No pixel is sorted. Up to three channels (grey, RGB), from 1 pixel per 64 bytes of bitmap
    on (32,768 pixels for RGB), one bit per possible colour marks those present and the
    count of set bits below a colour's bit is its index (compiled, parallel; about 4 times
    faster than hashing on the photos, ``python benchmarks/kernels.py``, same results).
    Otherwise :func:`hashed_histogram`: one pass with an open-addressing hash table, then a
    sort of the distinct colours only.

    Examples
    --------
    >>> import numpy as np
    >>> hist = color_histogram(np.array([[0, 0, 0], [255, 0, 0], [0, 0, 0]], dtype=np.uint8))
    >>> hist.colors.tolist(), hist.counts.tolist(), hist.inverse.tolist()
    ([[0, 0, 0], [255, 0, 0]], [2, 1], [0, 1, 0])
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"pixels must be uint8, got dtype={pixels.dtype}")
    if pixels.ndim == 3:
        pixels = pixels.reshape(-1, pixels.shape[2])
    if pixels.ndim != 2 or not 1 <= pixels.shape[1] <= 4:
        raise ValueError(f"pixels must have shape (n, 1..4), got {pixels.shape}")
    if pixels.shape[0] == 0:
        raise ValueError("pixels must hold at least one pixel, got 0")
    pixels = np.ascontiguousarray(pixels)
    n_channels = pixels.shape[1]
    bitmap_bytes = 1 << (8 * n_channels - 3)
    if n_channels <= 3 and bitmap_bytes <= _BITMAP_BYTES_PER_PIXEL * pixels.shape[0]:
        colors, counts, inverse, bitmap, ranks_before = histogram_by_bitmap(
            pixels, bitmap_parts(pixels.shape[0]), store_inverse
        )
        if store_inverse:
            return ColorHistogram(colors, counts, inverse)
        return ColorHistogram(colors, counts, lookup=(pixels, bitmap, ranks_before))
    return hashed_histogram(pixels)


# Pixels per slice of the bitmap histogram, above two slices: each slice sets bits in a
# bitmap of its own (2 MiB for RGB), which are zeroed and OR-ed. On a 16-core machine, 16
# threads (exploratory): a photo (0.4 MP) took 3.7 / 3.1 / 3.3 / 3.9 / 10.5 ms with 1 / 2 /
# 4 / 8 / 16 slices, a 25 MP image 139 / 98 / 67 / 62 / 62 ms.
_BITMAP_PIXELS_PER_PART = 1 << 21


def bitmap_parts(n_pixels: int) -> int:
    """Slices of :func:`kmquant._kernels.histogram_by_bitmap` for ``n_pixels`` pixels: one
    per numba thread, but no more than two or one per 2 Mi pixels, whichever is more (the
    histogram is the same for any number)."""
    return max(1, min(numba.get_num_threads(), max(2, n_pixels // _BITMAP_PIXELS_PER_PART)))


def hashed_histogram(pixels: np.ndarray) -> ColorHistogram:
    """:func:`color_histogram` through the compiled hash table, for any 1 to 4 channels.

    ``pixels`` is C-contiguous uint8 (n, c), already checked. One pass hashes the colours in
    order of first sight; then the distinct colours alone are sorted, so the histogram is
    canonical (the same as np.unique's), whatever the pixel order.
    """
    keys, counts, inverse = histogram_unsorted(pixels, True)
    order = np.argsort(keys)  # keys are distinct: any sort gives the same order
    rank = np.empty(order.shape[0], dtype=np.int32)
    rank[order] = np.arange(order.shape[0], dtype=np.int32)
    relabel_in_place(inverse, rank)
    return ColorHistogram(
        colors=unpack_keys(keys[order], pixels.shape[1]), counts=counts[order], inverse=inverse
    )


@dataclass(frozen=True)
class CellHistogram:
    """RGB pixels counted in cells of the colour cube: the coarse histogram of ``speed="fast"``.

    A cell holds the colours that share their top ``bits`` bits per channel (at 5 bits,
    32,768 cells of 8 x 8 x 8 levels). Each occupied cell keeps its pixel count and the sums
    of its pixels' channels, so its mean colour is exact, and the image's sum of squared
    channels is kept, so the squared error of any per-cell choice of colour is exact too (see
    :meth:`squared_error`).

    Attributes
    ----------
    bits : int
        Bits per channel that name a cell.
    cells : ndarray of int64, shape (m,)
        The occupied cells, increasing: ``r >> (8 - bits)``, then g, then b, packed.
    counts : ndarray of int64, shape (m,)
        Pixels in each cell.
    sums : ndarray of int64, shape (m, 3)
        Sum of each channel over the cell's pixels.
    total_square : int
        Sum over all pixels and channels of the squared value.
    """

    bits: int
    cells: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    total_square: int

    @property
    def n_cells(self) -> int:
        """Number of occupied cells."""
        return int(self.cells.shape[0])

    @property
    def means(self) -> np.ndarray:
        """Mean colour of each cell, float64 (m, 3) on the 0..255 scale."""
        return self.sums / self.counts[:, None]

    def squared_error(self, colors: np.ndarray) -> int:
        """Sum over pixels and channels of (pixel - ``colors[its cell]``)^2, exactly.

        For a cell with n pixels x_i and channel sums S, giving it colour p costs
        sum ||x_i - p||^2 = sum ||x_i||^2 - 2 p . S + n ||p||^2; summed over cells, the first
        terms make :attr:`total_square`. Integer colours give an exact integer.
        """
        p = np.asarray(colors, dtype=np.int64)
        cross = int(np.einsum("ij,ij->", p, self.sums))
        norms = int(np.einsum("i,ij,ij->", self.counts, p, p))
        return self.total_square - 2 * cross + norms


def cell_histogram(pixels: np.ndarray, bits: int) -> CellHistogram:
    """Count RGB pixels in the cells of their top ``bits`` bits per channel (one pass).

    Parameters
    ----------
    pixels : ndarray of uint8, shape (n_pixels, 3) or (height, width, 3)
    bits : int
        1 to 7.

    Examples
    --------
    >>> import numpy as np
    >>> pixels = np.array([[0, 0, 0], [6, 2, 4], [255, 0, 0]], dtype=np.uint8)
    >>> cells = cell_histogram(pixels, 5)
    >>> cells.counts.tolist(), cells.means.tolist()
    ([2, 1], [[3.0, 1.0, 2.0], [255.0, 0.0, 0.0]])
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be uint8 RGB, got {pixels.dtype} {pixels.shape}")
    if not 1 <= bits <= 7:
        raise ValueError(f"bits must be in 1..7, got {bits}")
    rows = np.ascontiguousarray(pixels.reshape(-1, 3))
    counts, sums, total_square = cell_sums(rows, bits, numba.get_num_threads())
    occupied = np.flatnonzero(counts)
    return CellHistogram(
        bits=bits,
        cells=occupied,
        counts=counts[occupied],
        sums=sums[occupied],
        total_square=int(total_square),
    )
