"""The orchestrator: an image in, K colours and an index per pixel out.

It reads like the algorithm: normalise the image, count its colours, run k-means on the
weighted colours (with restarts), round the centres to a uint8 palette, and give every pixel
the index of its nearest palette entry through the histogram.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._exceptions import KmquantWarning
from ._kernels import (
    labels_through_cells,
    palette_tally,
    places_through_rows,
)
from .colorspace import (
    PARTIAL,
    SPACES,
    TRANSPARENT,
    alpha_classes,
    color_features,
    features_to_palette,
    to_space,
)
from .engine import PRESETS, fit_centers, split_centers
from .histogram import ColorHistogram, cell_histogram, color_histogram
from .kmeans import INIT_METHODS, _check_n_colors
from .palette import luminance_order, palette_image
from .remap import DITHERS, dither_labels, guesses_help, nearest_palette_labels

__all__ = [
    "ClusteringProblem",
    "QuantizedImage",
    "apply_palette",
    "as_uint8_image",
    "clustering_problem",
    "prepare_pixels",
    "quantize",
    "quantize_by_cells",
    "quantize_histogram",
    "remap_image",
    "takes_cells",
]

MAX_COLORS = 256
DEFAULT_N_INIT = None  # the speed preset decides
SPEEDS = tuple(PRESETS)
DEFAULT_MAX_ITER = 300
DEFAULT_TOL = 1e-4


@dataclass(frozen=True)
class QuantizedImage:
    """An image reduced to a palette and one palette index per pixel.

    Attributes
    ----------
    palette : ndarray of uint8, shape (n_colors, n_channels)
        The colours, darkest first; every entry is used by at least one pixel.
    labels : ndarray of uint8, shape (height, width)
        The palette index of every pixel.
    inertia : float
        Sum over all pixels and channels of the squared difference between the image and
        ``to_image()`` (0..255 scale): k-means' objective J for the returned palette.
    n_iter : int
        Lloyd iterations of the restart that was kept (0 when no k-means was needed).
    n_input_colors : int or None
        Distinct colours in the (normalised) input image; None where they were not counted
        (``speed="fast"`` on RGB, see :func:`quantize_by_cells`).
    squeeze_channels : bool
        True when the input was a 2-D greyscale array, so ``to_image()`` is 2-D too.
    """

    palette: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    n_input_colors: int | None
    squeeze_channels: bool = False

    @property
    def n_colors(self) -> int:
        """Number of palette entries."""
        return int(self.palette.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the image ``to_image()`` returns."""
        height, width = self.labels.shape
        if self.squeeze_channels:
            return (height, width)
        return (height, width, int(self.palette.shape[1]))

    def to_image(self) -> np.ndarray:
        """The quantized image, ``palette[labels]``, as uint8 (same layout as the input)."""
        image = palette_image(self.labels, self.palette)
        if self.squeeze_channels:
            return image[:, :, 0]
        return image


def as_uint8_image(image: np.ndarray, *, copy: bool = True) -> tuple[np.ndarray, bool]:
    """Bring an image array to uint8, shape (height, width, channels).

    Parameters
    ----------
    image : array_like
        2-D (greyscale) or 3-D with 1 to 4 channels (grey, grey+alpha, RGB, RGBA). uint8 is
        taken as is; uint16 is scaled by 255/65535; bool maps to 0/255; floats are taken as
        0..1 and clipped; other integer types must already lie in 0..255.
    copy : bool, optional
        Copy a uint8 input too (default). With False a uint8 input comes back as a view of
        it, for callers that only read the pixels (it saves the image's size in memory).

    Returns
    -------
    pixels : ndarray of uint8, shape (height, width, channels)
        A new array when any conversion was needed or ``copy`` is set; otherwise a view.
    squeezed : bool
        True if the input was 2-D.

    Raises
    ------
    TypeError, ValueError
        For any other dtype, shape, or out-of-range values.
    """
    array = np.asarray(image)
    squeezed = array.ndim == 2
    if squeezed:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise ValueError(
            f"image must be 2-D or 3-D with 1 to 4 channels, got shape {np.asarray(image).shape}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image must have at least one pixel, got shape {array.shape}")
    kind = array.dtype.kind
    if array.dtype == np.uint8:
        pixels = array.copy() if copy else array
    elif array.dtype == np.uint16:
        pixels = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif kind == "b":
        pixels = array.astype(np.uint8) * np.uint8(255)
    elif kind == "f":
        if not np.all(np.isfinite(array)):
            raise ValueError("image must be finite, got NaN or infinity")
        pixels = np.floor(np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"integer image of dtype {array.dtype} must lie in 0..255, got {low}..{high}"
            )
        pixels = array.astype(np.uint8)
    else:
        raise TypeError(f"image must be a numeric array, got dtype={array.dtype}")
    return pixels, squeezed


def _check_options(init: str, n_init: int | None, max_iter: int, tol: float, speed: str) -> None:
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}")
    if speed not in PRESETS:
        raise ValueError(f"speed must be one of {SPEEDS}, got {speed!r}")
    for name, value in (("n_init", n_init), ("max_iter", max_iter)):
        if name == "n_init" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")


# Pixels from which quantize() keeps no map from pixels to colours but looks each pixel's
# colour up again to label it: 32 MiB of map saved at the threshold, for one more lookup pass
# (photos: 1.26 -> 1.50 ms for the histogram and labels, exploratory).
LOOKED_UP_FROM = 1 << 23


def quantize(
    image: np.ndarray,
    n_colors: int = 16,
    *,
    init: str = "k-means++",
    n_init: int | None = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    speed: str = "default",
    space: str = "rgb",
    dither: str = "none",
    dither_strength: float = 1.0,
    rng: int | np.random.Generator | None = None,
) -> QuantizedImage:
    r"""Reduce an image to at most ``n_colors`` colours found by k-means.

    Parameters
    ----------
    image : array_like
        Greyscale (H, W) or (H, W, C) with C in 1..4; see :func:`as_uint8_image` for dtypes.
        The caller's array is never modified. An alpha channel is kept (see Notes).
    n_colors : int, optional
        Number of colours K, 1 to 256 (default 16).
    init : {"k-means++", "random"}, optional
        How each restart picks its first centres (see :func:`kmeans_init_centroids`).
    n_init : int, optional
        Number of k-means restarts; the one with the lowest inertia is kept (default: the
        speed preset's, 1 for "fast", 3 otherwise (2 above K = 96), and at least 10 for
        small problems such as icons with a few hundred colours).
    max_iter : int, optional
        Most Lloyd iterations per restart (default 300).
    tol : float, optional
        Relative tolerance on the centre shift (see :func:`run_kmeans`; default 1e-4).
    speed : {"fast", "default", "best"}, optional
        How hard to search (see :mod:`kmquant.engine`): "default" merges colours into
        192 sqrt(K) variance-split boxes (with alpha: cells of 5 bits per channel, 6 above
        K = 96) for 3 restarts and 20 swaps (2 restarts and 5 swaps above K = 96), then
        refines on every distinct colour; "best" does 3 restarts and 30 swaps
        on every distinct colour. "fast", for an RGB image without dithering and with the
        default ``init`` and ``n_init``, never counts distinct colours: it counts pixels in
        the 32,768 cells of their top 5 bits per channel, splits the cells' means into K
        clusters by variance (no random draw: ``rng`` does not matter), takes 2 to 10 Lloyd
        steps and maps every pixel through its cell's entry (see :func:`quantize_by_cells`).
        Otherwise "fast" runs k-means once on colours merged to 4 bits per channel (5 above
        K = 32).
    space : {"rgb", "lab", "oklab", "hsv"}, optional
        Colour space k-means runs in (see :mod:`kmquant.colorspace`); the palette always
        comes back as exact sRGB. "rgb" (default) minimises the MSE, so it gives the best
        PSNR; "lab" and "oklab" spend colours where the eye sees differences.
    dither : {"none", "floyd-steinberg", "ordered"}, optional
        Map pixels to the palette with serpentine Floyd-Steinberg error diffusion (over the
        image's four quarters of rows apart) or an 8x8 Bayer ordered dither, computed in
        ``space`` (default "none": nearest entry).
    dither_strength : float, optional
        0..1, how much of the error is diffused (or how wide the ordered offsets are).
    rng : int, numpy.random.Generator or None, optional
        Seed or generator; the same seed on the same image gives the same result.

    Returns
    -------
    QuantizedImage
        The palette, the per-pixel indices, the inertia and the iteration count.

    Warns
    -----
    KmquantWarning
        If the image has fewer distinct colours than ``n_colors`` (they are returned exactly).

    Notes
    -----
    k-means runs on the image's colour histogram: the distinct colours :math:`x_j` weighted by
    their pixel counts :math:`n_j`. Because :math:`J = \sum_j n_j \lVert x_j - \mu_{c(j)}
    \rVert^2` is exactly the per-pixel sum of squares, this gives the same centres as k-means
    on all pixels. The centres are rounded to uint8 and every colour is then mapped to its
    nearest palette entry, which can only lower J further.

    With an alpha channel (grey+alpha or RGBA), k-means sees each colour composited over black
    and over white (see :func:`kmquant.colorspace.color_features`), so its objective is the
    error as seen on either background and differences that cannot be seen cost nothing;
    all fully transparent pixels share one palette entry; and opaque, partially transparent
    and transparent pixels are clustered apart, so no pixel changes alpha class (given at
    least one entry per class present).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> image[:, 2:] = [200, 30, 30]
    >>> result = quantize(image, 2, rng=0)
    >>> result.palette.tolist(), result.inertia
    ([[0, 0, 0], [200, 30, 30]], 0.0)
    """
    pixels, squeezed = prepare_pixels(image)
    if takes_cells(pixels, speed, dither, dither_strength, init=init, n_init=n_init):
        n_colors = _checked_request(
            n_colors, init, n_init, max_iter, tol, speed, space, dither, dither_strength
        )
        by_cells = quantize_by_cells(pixels, n_colors, space=space, squeeze_channels=squeezed)
        if by_cells is not None:
            return by_cells
    # A large image, undithered, has each pixel labelled once: it is looked up again then
    # rather than holding the map from pixels to colours (4 bytes a pixel) throughout.
    n_pixels = pixels.shape[0] * pixels.shape[1]
    lean = not _dithers(dither, dither_strength) and n_pixels >= LOOKED_UP_FROM
    histogram = color_histogram(pixels, store_inverse=not lean)
    return quantize_histogram(
        histogram,
        pixels.shape[:2],
        n_colors,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        speed=speed,
        space=space,
        dither=dither,
        dither_strength=dither_strength,
        rng=rng,
        squeeze_channels=squeezed,
    )


def prepare_pixels(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The uint8 (H, W, C) pixels k-means sees: C is 1 (grey), 3 (RGB) or 4 (RGBA).

    Grey+alpha becomes RGBA. Returns the pixels and whether the input was 2-D (see
    :func:`as_uint8_image`). A uint8 input is not copied: the pixels are only read.
    """
    pixels, squeezed = as_uint8_image(image, copy=False)
    if pixels.shape[2] == 2:
        pixels = np.concatenate([np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1:]], 2)
    return pixels, squeezed


def _dithers(dither: str, dither_strength: float) -> bool:
    """Whether pixels are dithered, not each mapped to its nearest entry."""
    return dither != "none" and dither_strength > 0


def _check_rendering(space: str, dither: str, dither_strength: float) -> None:
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if dither not in DITHERS:
        raise ValueError(f"dither must be one of {DITHERS}, got {dither!r}")
    if not (isinstance(dither_strength, (int, float)) and 0 <= dither_strength <= 1):
        raise ValueError(f"dither_strength must be in 0..1, got {dither_strength!r}")


def _checked_request(
    n_colors: int,
    init: str,
    n_init: int | None,
    max_iter: int,
    tol: float,
    speed: str,
    space: str,
    dither: str,
    dither_strength: float,
) -> int:
    """Validate a quantize request; returns K as an int (ValueError says what is wrong)."""
    n_colors = _check_n_colors(n_colors)
    if n_colors > MAX_COLORS:
        raise ValueError(f"n_colors must be in 1..{MAX_COLORS}, got {n_colors}")
    _check_options(init, n_init, max_iter, tol, speed)
    _check_rendering(space, dither, dither_strength)
    return n_colors


def _palette_order(palette: np.ndarray) -> np.ndarray:
    """Transparent, then partially transparent, then opaque entries; each darkest first.

    Entries with alpha < 255 first keep the PNG's tRNS chunk as short as it can be.
    """
    order = luminance_order(palette[:, :3] if palette.shape[1] == 4 else palette)
    if palette.shape[1] != 4:
        return order
    classes = alpha_classes(palette[order, 3])
    rank = np.select([classes == TRANSPARENT, classes == PARTIAL], [0, 1], 2)
    return order[np.argsort(rank, kind="stable")]


@dataclass(frozen=True)
class ClusteringProblem:
    """What k-means clusters for a colour histogram, and what it leaves out.

    With an alpha channel, every fully transparent colour maps to one reserved entry
    (0, 0, 0, 0) and k-means sees only the other colours, with their alpha classes.

    Attributes
    ----------
    reserved : ndarray of uint8, shape (0 or 1, n_channels)
        Entries every palette gets before the k-means centres.
    colors, counts : ndarray
        The candidate colours (not reserved) and their pixel counts.
    points : ndarray of float64
        The candidates' features in the space k-means runs in.
    all_points : ndarray of float64
        Features of every colour of the histogram, for mapping pixels to a palette.
    classes : ndarray of int or None
        Alpha classes of the candidates (None without alpha).
    tolerance_columns : int or None
        Columns that set Lloyd's tolerance: all but the class column, which would swamp it.
    """

    reserved: np.ndarray
    colors: np.ndarray
    counts: np.ndarray
    points: np.ndarray
    all_points: np.ndarray
    classes: np.ndarray | None
    tolerance_columns: int | None

    @property
    def n_channels(self) -> int:
        """Channels of the colours (1, 3 or 4)."""
        return int(self.reserved.shape[1])

    @property
    def n_candidates(self) -> int:
        """Distinct colours k-means may cluster."""
        return int(self.colors.shape[0])

    def palette_with(self, found: np.ndarray) -> np.ndarray:
        """The reserved entries plus ``found``, transparent first, then darkest first."""
        return self.palette_and_places(found)[0]

    def palette_and_places(self, found: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`palette_with` and, for each row of ``found``, its index in that palette."""
        entries = np.concatenate([self.reserved, found])
        order = _palette_order(entries)
        places = np.empty(len(order), dtype=np.intp)
        places[order] = np.arange(len(order))
        return entries[order], places[len(self.reserved) :]

    def entry_guesses(
        self,
        palette: np.ndarray,
        places: np.ndarray,
        center_labels: np.ndarray | None,
        rows: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """A likely palette entry of every colour of the histogram, one byte each, from
        each candidate's nearest k-means centre and where those centres went in the palette
        (``places``, from :meth:`palette_and_places`); None where guesses are not worth it
        (palettes searched through a grid or small, reserved colours, no labels).

        ``center_labels`` are the candidates' nearest centres, or, with ``rows``, those of
        the points k-means ran on, candidate i's being point ``rows[i]``.
        """
        if (
            center_labels is None
            or self.n_candidates != len(self.all_points)
            or not guesses_help(len(palette), self.all_points.shape[1])
        ):
            return None
        if rows is None:
            return places.astype(np.uint8)[center_labels]
        return places_through_rows(places, center_labels, rows)


def clustering_problem(histogram: ColorHistogram, space: str) -> ClusteringProblem:
    """Split a histogram into reserved entries and the colours k-means clusters in ``space``."""
    colors, counts = histogram.colors, histogram.counts
    n_channels = colors.shape[1]
    all_points = color_features(colors, space)
    reserved = np.zeros((0, n_channels), dtype=np.uint8)
    if n_channels != 4:
        return ClusteringProblem(reserved, colors, counts, all_points, all_points, None, None)
    candidates = colors[:, 3] != 0
    if not candidates.all():
        reserved = np.zeros((1, 4), dtype=np.uint8)
    return ClusteringProblem(
        reserved,
        colors[candidates],
        counts[candidates],
        all_points[candidates],
        all_points,
        alpha_classes(colors[candidates, 3]),
        all_points.shape[1] - 1,
    )


def quantize_histogram(
    histogram: ColorHistogram,
    shape: tuple[int, int],
    n_colors: int,
    *,
    init: str = "k-means++",
    n_init: int | None = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    speed: str = "default",
    space: str = "rgb",
    dither: str = "none",
    dither_strength: float = 1.0,
    rng: int | np.random.Generator | None = None,
    squeeze_channels: bool = False,
) -> QuantizedImage:
    """:func:`quantize` for an image whose colour histogram is already counted.

    Lets a caller that tries several K (choosing K, elbow curves) count the colours once.
    ``shape`` is the image's (height, width).
    """
    n_colors = _checked_request(
        n_colors, init, n_init, max_iter, tol, speed, space, dither, dither_strength
    )
    problem = clustering_problem(histogram, space)
    n_free = n_colors - len(problem.reserved)
    n_iter = 0
    fit_labels = None
    if problem.n_candidates <= n_free:
        if problem.n_candidates + len(problem.reserved) < n_colors:
            warnings.warn(
                f"the image has only {problem.n_candidates + len(problem.reserved)} distinct "
                f"colours, fewer than n_colors={n_colors}; they are kept exactly",
                KmquantWarning,
                stacklevel=3,
            )
        found = problem.colors
    elif n_free < 1:
        found = np.zeros((0, problem.n_channels), dtype=np.uint8)
    else:
        fit = fit_centers(
            problem.colors,
            problem.counts,
            n_free,
            preset=PRESETS[speed],
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol=tol,
            rng=np.random.default_rng(rng),
            points=problem.points,
            classes=problem.classes,
            tolerance_columns=problem.tolerance_columns,
            points_are_colors=space == "rgb",
        )
        found = features_to_palette(fit.centers, space, problem.n_channels)
        n_iter, fit_labels = fit.n_iter, fit.labels
        del fit
    palette, places = problem.palette_and_places(found)
    # k-means's labels of every colour are good guesses of its nearest palette entry, kept
    # in a byte each (at most 256 entries) while the pixels are mapped.
    guesses = problem.entry_guesses(palette, places, fit_labels)
    del fit_labels  # 8 bytes a colour
    return apply_palette(
        histogram,
        shape,
        palette,
        n_iter=n_iter,
        squeeze_channels=squeeze_channels,
        space=space,
        dither=dither,
        dither_strength=dither_strength,
        color_points=problem.all_points,
        color_guesses=guesses,
    )


# Bits per channel of the cells of ``speed="fast"``; its Lloyd steps, as many as fit in
# this many point-centre distances (2 to 10 steps): on the photos 10 at K = 16, about 8 at
# K = 64, 2 at K = 256. Against 2 steps everywhere, K = 16 went from MSE 80.0 in 2.1 ms to
# 76.3 in 2.6 ms (benchmarks/compare.py, README).
FAST_CELL_BITS = 5
FAST_LLOYD_WORK = 1_500_000
FAST_LLOYD_STEPS = (2, 10)


def takes_cells(
    pixels: np.ndarray,
    speed: str,
    dither: str,
    dither_strength: float,
    *,
    init: str = "k-means++",
    n_init: int | None = None,
) -> bool:
    """Whether ``speed="fast"`` goes by cells (:func:`quantize_by_cells`) for these pixels.

    It does for RGB pixels mapped without dithering, when no k-means option (``init``,
    ``n_init``) asks for the histogram route.
    """
    return (
        speed == "fast"
        and pixels.ndim == 3
        and pixels.shape[2] == 3
        and not _dithers(dither, dither_strength)
        and init == "k-means++"
        and n_init is None
    )


def quantize_by_cells(
    pixels: np.ndarray,
    n_colors: int,
    *,
    space: str = "rgb",
    bits: int = FAST_CELL_BITS,
    n_steps: int | None = None,
    squeeze_channels: bool = False,
) -> QuantizedImage | None:
    """``speed="fast"`` for RGB pixels: k-means on cell means, pixels mapped by cell.

    1. One pass counts the pixels of every cell of the colour cube (the top ``bits`` bits of
       each channel; :func:`kmquant.histogram.cell_histogram`), with the sums that give each
       cell's mean colour.
    2. The cell means, weighted by their pixel counts and taken into ``space``, are split
       into ``n_colors`` clusters by variance and refined by ``n_steps`` Lloyd steps
       (:func:`kmquant.engine.split_centers`; default: as many as 1.5 million point-centre
       distances allow, 2 to 10).
    3. Each cell gets the palette entry nearest its mean; a second pass gives every pixel
       its cell's entry. All pixels of a cell share an entry, so a pixel may miss a nearer
       one; that is the price of never handling distinct colours.

    The inertia is exact (see :meth:`kmquant.histogram.CellHistogram.squared_error`);
    ``n_input_colors`` is None, since distinct colours are not counted. Returns None when
    the image fills no more than ``n_colors`` cells: it may have so few colours that they
    can be kept exactly, which only the colour histogram can tell.
    """
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels.reshape(-1, 3))
    cells = cell_histogram(rows, bits)
    if cells.n_cells <= n_colors:
        return None
    means = cells.means
    points = to_space(means, space)
    if n_steps is None:
        fewest, most = FAST_LLOYD_STEPS
        n_steps = min(most, max(fewest, FAST_LLOYD_WORK // (cells.n_cells * n_colors)))
    fit = split_centers(points, cells.counts, n_colors, n_steps)
    palette = features_to_palette(fit.centers, space, 3)
    palette = palette[_palette_order(palette)]
    cell_entries = nearest_palette_labels(points, color_features(palette, space))
    palette, cell_entries = _keep_used_entries(
        palette,
        np.bincount(cell_entries, weights=cells.counts, minlength=len(palette)),
        cell_entries.astype(np.uint8),
    )
    lookup = np.zeros(1 << (3 * bits), dtype=np.uint8)
    lookup[cells.cells] = cell_entries
    labels = np.empty(rows.shape[0], dtype=np.uint8)
    labels_through_cells(rows, bits, lookup, labels)
    return QuantizedImage(
        palette=np.ascontiguousarray(palette),
        labels=labels.reshape(height, width),
        inertia=float(cells.squared_error(palette[cell_entries])),
        n_iter=fit.n_iter,
        n_input_colors=None,
        squeeze_channels=squeeze_channels,
    )


def remap_image(
    image: np.ndarray,
    palette: np.ndarray,
    *,
    space: str = "rgb",
    dither: str = "none",
    dither_strength: float = 1.0,
) -> QuantizedImage:
    """Map an image onto a given palette: every pixel gets its nearest entry.

    Parameters
    ----------
    image : array_like
        As for :func:`quantize`.
    palette : array_like of uint8, shape (n_entries, n_channels)
        1 to 256 colours with the image's channels (3 for RGB, 4 for RGBA); every entry is
        kept, used or not, so a series of images can share one palette. An RGB palette is
        taken as opaque for an RGBA image.
    space, dither, dither_strength : optional
        As for :func:`quantize`: where "nearest" is measured, and how.

    Examples
    --------
    >>> image = np.array([[[10, 10, 10], [250, 240, 245]]], dtype=np.uint8)
    >>> remap_image(image, np.array([[0, 0, 0], [255, 255, 255]], np.uint8)).labels.tolist()
    [[0, 1]]
    """
    _check_rendering(space, dither, dither_strength)
    pixels, squeezed = prepare_pixels(image)
    entries = np.asarray(palette)
    if entries.ndim == 2 and entries.shape[1] == 3 and pixels.shape[2] == 4:
        entries = np.column_stack([entries, np.full(len(entries), 255)])
    if entries.ndim != 2 or entries.shape[1] != pixels.shape[2] or not 1 <= len(entries) <= 256:
        raise ValueError(
            f"palette must have shape (1..256, {pixels.shape[2]}), got {entries.shape}"
        )
    return apply_palette(
        color_histogram(pixels),
        pixels.shape[:2],
        entries.astype(np.uint8),
        squeeze_channels=squeezed,
        drop_unused=False,
        space=space,
        dither=dither,
        dither_strength=dither_strength,
    )


def _keep_used_entries(
    palette: np.ndarray, uses_per_entry: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Drop the entries no pixel uses (rounding can merge two centres, or leave one unused).

    ``uses_per_entry`` counts what takes each entry (pixels, cells or distinct colours):
    only whether it is 0 matters. Returns the used entries, in their order, and ``labels``
    (uint8) renumbered to match; both unchanged when every entry is used.
    """
    used = np.flatnonzero(uses_per_entry)
    if len(used) == len(palette):
        return palette, labels
    relabel = np.zeros(len(palette), dtype=np.uint8)
    relabel[used] = np.arange(len(used), dtype=np.uint8)
    return palette[used], relabel[labels]


def apply_palette(
    histogram: ColorHistogram,
    shape: tuple[int, int],
    palette: np.ndarray,
    *,
    n_iter: int = 0,
    squeeze_channels: bool = False,
    drop_unused: bool = True,
    space: str = "rgb",
    dither: str = "none",
    dither_strength: float = 1.0,
    color_points: np.ndarray | None = None,
    color_guesses: np.ndarray | None = None,
) -> QuantizedImage:
    """Give every pixel a palette entry: the nearest one in ``space``, or dithered.

    Parameters
    ----------
    histogram : ColorHistogram
        Of the image's pixels.
    shape : (height, width)
    palette : ndarray of uint8, shape (n_entries, n_channels)
        1 to 256 entries, channels as the histogram's.
    n_iter, squeeze_channels
        Stored in the result.
    drop_unused : bool, optional
        Remove entries no pixel uses (default True); keep them for a shared palette.
    space, dither, dither_strength : optional
        As for :func:`quantize`.
    color_points : ndarray, optional
        ``color_features(histogram.colors, space)`` when the caller already has it.
    color_guesses : ndarray of int, optional
        A likely nearest entry of each distinct colour: the search starts from it (see
        :func:`kmquant.remap.nearest_palette_labels`); the result is the same without.
    """
    palette = np.asarray(palette, dtype=np.uint8)
    if color_points is None:
        color_points = color_features(histogram.colors, space)
    palette_points = color_features(palette, space)
    dithered = _dithers(dither, dither_strength)
    if dithered:
        dithered_pixels = dither_labels(
            color_points,
            histogram.inverse,
            shape,
            palette_points,
            method=dither,
            strength=dither_strength,
            n_diffused=palette_points.shape[1] - (1 if palette.shape[1] == 4 else 0),
            colors=histogram.colors,
            palette=palette,
        )
        labels = dithered_pixels.labels
        inertia = dithered_pixels.squared_error
    else:
        # Same colour, same entry: find it once per distinct colour; pixels look it up below.
        color_labels = nearest_palette_labels(color_points, palette_points, color_guesses).astype(
            np.uint8
        )
        # Every distinct colour has pixels, so an entry no colour takes is one no pixel
        # takes: counting colours is enough, with the squared error in the same pass.
        colors_per_entry, squared_error = palette_tally(
            histogram.colors, histogram.counts, palette, color_labels
        )
        inertia = float(squared_error)
    if drop_unused:
        if dithered:
            palette, labels = _keep_used_entries(palette, dithered_pixels.counts, labels)
        else:
            palette, color_labels = _keep_used_entries(palette, colors_per_entry, color_labels)
    if not dithered:
        labels = histogram.pixel_labels(color_labels).reshape(shape)
    return QuantizedImage(
        palette=np.ascontiguousarray(palette),
        labels=np.ascontiguousarray(labels),
        inertia=inertia,
        n_iter=n_iter,
        n_input_colors=histogram.n_colors,
        squeeze_channels=squeeze_channels,
    )
