r"""Choosing K: the elbow of the inertia curve, quality targets and a size budget.

Three answers to "how many colours do I need?":

* :func:`elbow_curve` sweeps K, recording the inertia (within-cluster sum of squares), PSNR
  and PNG size of each, and marks the *knee* found by Kneedle [1]_: the K after which more
  colours buy little.
* :func:`fewest_colors` finds the smallest K whose result meets quality targets (PSNR, SSIM,
  CIEDE2000), like pngquant's ``--quality``.
* :func:`best_within_bytes` finds the largest K (the best quality) whose PNG fits a budget.

All three count the image's colours once and reuse that histogram for every K.

References
----------
.. [1] V. Satopaa, J. Albrecht, D. Irwin and B. Raghavan, "Finding a 'Kneedle' in a
   haystack: detecting knee points in system behavior", ICDCS Workshops, 2011.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numba
import numpy as np

from . import _kernels
from ._exceptions import QualityTooLowError
from .colorspace import features_to_palette
from .engine import (
    LloydRun,
    cells_of,
    initial_centers,
    lloyd,
    working_points,
)
from .histogram import ColorHistogram, color_histogram
from .io import encode_png
from .kmeans import _tolerance
from .metrics import delta_e, indexed_quality_report
from .quantize import (
    MAX_COLORS,
    QuantizedImage,
    apply_palette,
    clustering_problem,
    prepare_pixels,
    quantize_histogram,
)

__all__ = [
    "Choice",
    "ElbowCurve",
    "ElbowPoint",
    "best_within_bytes",
    "elbow_curve",
    "fewest_colors",
    "find_knee",
]

# What a search measures of each K it tries (a report, or a PNG's bytes).
Figures = TypeVar("Figures")


@dataclass(frozen=True)
class ElbowPoint:
    """One K of an elbow sweep."""

    n_colors: int
    inertia: float
    mse: float
    psnr: float
    n_bytes: int


@dataclass(frozen=True)
class ElbowCurve:
    """An elbow sweep and its knee."""

    points: tuple[ElbowPoint, ...]
    knee: int

    @property
    def n_colors(self) -> list[int]:
        return [point.n_colors for point in self.points]

    @property
    def inertia(self) -> list[float]:
        return [point.inertia for point in self.points]


@dataclass(frozen=True)
class Choice:
    """A K chosen by a target, the result for it, and why it was chosen.

    Attributes
    ----------
    result : QuantizedImage
        The quantized image at the chosen K.
    n_colors : int
        The chosen K.
    met : bool
        Whether the target was met (False only for a best effort).
    reason : str
        One sentence: which target, the value at K and at K - 1 (or K + 1).
    values : dict
        The measured values at the chosen K (``psnr``, ``ssim``, ``delta_e``, ``bytes``).
    """

    result: QuantizedImage
    n_colors: int
    met: bool
    reason: str
    values: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------- knee


def find_knee(x: Sequence[float], y: Sequence[float]) -> int:
    """Index of the knee of a decreasing, convex curve (an elbow), by Kneedle.

    Parameters
    ----------
    x : sequence of float
        Increasing abscissae (the K values).
    y : sequence of float
        The curve (the inertia), decreasing as ``x`` grows.

    Returns
    -------
    int
        Index into ``x`` of the knee.

    Notes
    -----
    Both axes are scaled to [0, 1]. For a decreasing convex curve the scaled curve is flipped
    to :math:`\\hat y = 1 - y_n`, which rises steeply then flattens, and the knee is the point
    farthest above the diagonal: :math:`\\arg\\max_i (\\hat y_i - x_{n,i})`. It is the point
    where a unit of extra K (scaled) stops buying a unit of error (scaled). The online
    refinements of the paper (sensitivity, local maxima) are not needed for one sweep.

    Examples
    --------
    >>> x = [1, 2, 3, 4, 5, 6, 7, 8]
    >>> y = [100, 40, 20, 15, 12, 10, 9, 8]
    >>> x[find_knee(x, y)]
    3
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {xs.shape}, {ys.shape}")
    x_scaled = (xs - xs[0]) / (xs[-1] - xs[0]) if xs[-1] != xs[0] else np.zeros_like(xs)
    span = ys.max() - ys.min()
    y_scaled = (ys - ys.min()) / span if span > 0 else np.zeros_like(ys)
    return int(np.argmax((1.0 - y_scaled) - x_scaled))


# --------------------------------------------------------------------------------------- elbow


# The elbow sweep's Lloyd runs on colours merged to this many bits per channel.
_ELBOW_CELL_BITS = 5
# The sweep's images waiting to be encoded: at most this many, and at most this many bytes
# of labels (at least one image), and from this many queued on the encoding thread the
# fitting thread encodes the next one itself.
_ELBOW_WAITING = 4
_ELBOW_WAITING_BYTES = 64 << 20
_ELBOW_ENCODE_HERE_FROM = 3


def _widen(X: np.ndarray, weights: np.ndarray, run: LloydRun) -> np.ndarray:
    """One more centre: split the cluster with the largest inertia along its main axis.

    ``run`` is Lloyd's run on ``X``, whose labels are every point's nearest centre.
    """
    centers, labels = run.centers, run.labels
    nearest = np.empty(X.shape[0])
    _kernels.distances_to(X, centers, labels, nearest)
    cluster_inertia = np.bincount(labels, weights=weights * nearest**2, minlength=len(centers))
    widest = int(np.argmax(cluster_inertia))
    # The new centre is row k: it takes the other half.
    grown = np.vstack([centers, centers[widest : widest + 1]])
    widened = np.empty_like(grown)
    _kernels.split_cluster(X, weights, labels, grown, len(centers), widest, widened)
    return widened


def _encoded_here(result: QuantizedImage) -> Future[bytes]:
    """The elbow sweep's PNG of ``result`` encoded on this thread, as a done future."""
    encoded: Future[bytes] = Future()
    encoded.set_result(encode_png(result, optimize=0))
    return encoded


def elbow_curve(
    image: np.ndarray,
    k_values: Sequence[int],
    *,
    rng: int | np.random.Generator | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
) -> ElbowCurve:
    """Inertia, PSNR and PNG bytes for every K of ``k_values``, and the knee.

    Parameters
    ----------
    image : array_like
        As for :func:`kmquant.quantize`.
    k_values : sequence of int
        The K values, 1..256 (sorted and deduplicated here).
    rng : int, Generator or None, optional
    max_iter, tol : optional
        Lloyd's limits at each K.

    Returns
    -------
    ElbowCurve
        ``points`` (one per K) and ``knee`` (the K at the knee of the inertia curve).

    Notes
    -----
    One histogram serves every K, and K + 1 starts from the centres of K with the widest
    cluster split in two along its main axis (a warm start), so Lloyd needs only a few
    iterations per K. Each K's palette is applied to every distinct colour, so inertia and PSNR
    are exact; bytes are the PNG at ``optimize=0`` (libdeflate level 1, the fastest), which
    shows how size grows with K; ``--optimize 2`` files are about 20% smaller.
    """
    ks = sorted({int(k) for k in k_values})
    if not ks or ks[0] < 1 or ks[-1] > MAX_COLORS:
        raise ValueError(f"k_values must lie in 1..{MAX_COLORS}, got {k_values!r}")
    if len(ks) < 2:
        raise ValueError(f"k_values must hold at least two values, got {ks}")
    pixels, squeezed = prepare_pixels(image)
    shape = pixels.shape[:2]
    histogram = color_histogram(pixels)
    generator = np.random.default_rng(rng)
    # The same problem quantize() solves: with alpha, transparent pixels share a reserved
    # entry and the other colours are clustered as seen over black and white, by alpha class.
    problem = clustering_problem(histogram, "rgb")
    n_reserved = len(problem.reserved)
    X, weights = working_points(
        problem.colors,
        problem.counts,
        max(1, ks[-1] - n_reserved),
        _ELBOW_CELL_BITS,
        points=problem.points,
        classes=problem.classes,
    )
    tol_abs = _tolerance(X[:, : problem.tolerance_columns], weights, tol)
    # Each candidate's row of X: the nearest centre of that row is where the search for the
    # colour's palette entry may start (ClusteringProblem.entry_guesses; the result does not
    # depend on it).
    rows = (
        np.arange(len(X))
        if X is problem.points
        else cells_of(problem.colors, _ELBOW_CELL_BITS, classes=problem.classes)
    )
    n_pixel_values = float(pixels.shape[0] * pixels.shape[1] * pixels.shape[2])
    wanted = set(ks)
    points: list[ElbowPoint] = []
    # PNG sizes are encoded on one thread (zlib releases the GIL) while the next K is fitted
    # with one core fewer for numba: half the sweep's time was encoding, and numba's parallel
    # loops stall when another thread holds one of their cores. Fitting a K now takes less
    # than encoding one, so when the encoding thread has _ELBOW_ENCODE_HERE_FROM images
    # queued, this thread encodes the next itself (on the sample: 0.15 s against 0.17 s
    # with the encoding thread alone, `python benchmarks/elbow.py`).
    n_waiting = max(1, min(_ELBOW_WAITING, _ELBOW_WAITING_BYTES // max(1, shape[0] * shape[1])))
    pending: deque[tuple[int, QuantizedImage, Future[bytes]]] = deque()

    def collect_oldest() -> None:
        k, quantized, encoded = pending.popleft()
        inertia = quantized.inertia
        error = inertia / n_pixel_values
        points.append(
            ElbowPoint(
                n_colors=k,
                inertia=inertia,
                mse=error,
                psnr=math.inf if error == 0 else 10 * math.log10(255.0**2 / error),
                n_bytes=len(encoded.result()),
            )
        )

    fitting_threads = max(1, numba.get_num_threads() - 1)
    with _kernels.threads_at_most(fitting_threads), ThreadPoolExecutor(1) as encoder:
        run = None
        for k in range(ks[0], ks[-1] + 1):
            n_free = k - n_reserved
            clustered = 1 <= n_free < problem.n_candidates
            if clustered:
                # Every K in the range moves the centres on (the warm start of K + 1)...
                start = (
                    initial_centers(X, weights, n_free, "k-means++", generator)
                    if run is None
                    else _widen(X, weights, run)
                )
                run = lloyd(X, weights, start, max_iter, tol_abs, keep_state=False)
            if k not in wanted:
                continue
            # ... but only the K asked for become palettes and images.
            guesses = None
            if run is not None and clustered:
                found = features_to_palette(run.centers, "rgb", problem.n_channels)
                palette, places = problem.palette_and_places(found)
                guesses = problem.entry_guesses(palette, places, run.labels, rows)
            else:
                found = problem.colors if n_free >= 1 else problem.reserved[:0]
                palette = problem.palette_with(found)
            result = apply_palette(
                histogram,
                shape,
                palette,
                squeeze_channels=squeezed,
                color_points=problem.all_points,
                color_guesses=guesses,
            )
            queued = sum(not encoded.done() for _, _, encoded in pending)
            if queued >= _ELBOW_ENCODE_HERE_FROM:
                pending.append((k, result, _encoded_here(result)))
            else:
                pending.append((k, result, encoder.submit(encode_png, result, optimize=0)))
            while len(pending) > n_waiting:
                collect_oldest()
        # Every K is fitted: this thread encodes what the encoding thread has not started.
        for index, (k, waiting, encoded) in enumerate(pending):
            if encoded.cancel():
                pending[index] = (k, waiting, _encoded_here(waiting))
        while pending:
            collect_oldest()
    knee_index = find_knee([p.n_colors for p in points], [p.inertia for p in points])
    return ElbowCurve(points=tuple(points), knee=points[knee_index].n_colors)


# ------------------------------------------------------------------------------ quality targets


def _results_by_k(
    image: np.ndarray,
    *,
    speed: str,
    space: str,
    dither: str,
    dither_strength: float,
    rng: int | np.random.Generator | None,
) -> tuple[np.ndarray, ColorHistogram, Callable[[int], QuantizedImage]]:
    """The image's pixels, its histogram (counted once), and K -> quantized image.

    Every K gets the same seed (a generator is turned into one seed first), so a K's result
    does not depend on which other K were tried before it.
    """
    pixels, squeezed = prepare_pixels(image)
    histogram = color_histogram(pixels)
    seed = (
        rng
        if rng is None or isinstance(rng, (int, np.integer))
        else int(np.random.default_rng(rng).integers(2**32))
    )

    def result_for(k: int) -> QuantizedImage:
        return quantize_histogram(
            histogram,
            pixels.shape[:2],
            k,
            speed=speed,
            space=space,
            dither=dither,
            dither_strength=dither_strength,
            rng=seed,
            squeeze_channels=squeezed,
        )

    return pixels, histogram, result_for


def _search_smallest(predicate: Callable[[int], bool], high: int) -> int | None:
    """Smallest k in 1..high with predicate(k), assuming it is (nearly) monotone.

    Gallops 1, 2, 4, ... to bracket the answer, bisects, then steps down while k - 1 also
    passes, so the answer passes and its predecessor does not.
    """
    if not predicate(high):
        return None
    low, upper = 0, 1
    while upper < high and not predicate(upper):
        low, upper = upper, min(2 * upper, high)
    while upper - low > 1:
        middle = (low + upper) // 2
        if predicate(middle):
            upper = middle
        else:
            low = middle
    while upper > 1 and predicate(upper - 1):
        upper -= 1
    return upper


class _Tries(Generic[Figures]):
    """The figures of each K a search tries, and the quantized images of only those that can
    still be its answer: the best K that passes so far (the smallest or the largest) and
    ``fallback``, returned when none passes. Every image is 1 byte a pixel, and a search
    tries about 2 log2(high) K; any other K's image is quantized again if asked for (the same
    seed gives the same image).
    """

    def __init__(
        self,
        result_for: Callable[[int], QuantizedImage],
        measure: Callable[[QuantizedImage], Figures],
        passes: Callable[[Figures], bool],
        *,
        prefer_smaller: bool,
        fallback: int | None = None,
    ) -> None:
        self._result_for, self._measure, self._passes = result_for, measure, passes
        self._prefer_smaller, self._fallback = prefer_smaller, fallback
        self._figures: dict[int, Figures] = {}
        self.kept: dict[int, QuantizedImage] = {}

    def figures(self, k: int) -> Figures:
        if k not in self._figures:
            result = self._result_for(k)
            self._figures[k] = self._measure(result)
            self.kept[k] = result
            passing = [j for j in self.kept if self._passes(self._figures[j])]
            best = (min if self._prefer_smaller else max)(passing, default=None)
            self.kept = {j: kept for j, kept in self.kept.items() if j in (best, self._fallback)}
        return self._figures[k]

    def passes(self, k: int) -> bool:
        return self._passes(self.figures(k))

    def result(self, k: int) -> QuantizedImage:
        return self.kept[k] if k in self.kept else self._result_for(k)


def fewest_colors(
    image: np.ndarray,
    *,
    min_psnr: float | None = None,
    min_ssim: float | None = None,
    max_delta_e: float | None = None,
    max_colors: int = MAX_COLORS,
    best_effort: bool = False,
    speed: str = "default",
    space: str = "rgb",
    dither: str = "none",
    dither_strength: float = 1.0,
    rng: int | np.random.Generator | None = None,
) -> Choice:
    """The fewest colours (1..``max_colors``) whose result meets every target given.

    Parameters
    ----------
    image : array_like
    min_psnr : float, optional
        PSNR in dB the result must reach.
    min_ssim : float, optional
        SSIM the result must reach.
    max_delta_e : float, optional
        Mean CIEDE2000 difference the result must stay under.
    max_colors : int, optional
        Upper limit of the search (default 256).
    best_effort : bool, optional
        If no K meets the targets, return the ``max_colors`` result (``met=False``) instead of
        raising.
    speed, rng : optional
        As for :func:`kmquant.quantize`; every K uses the same seed.

    Returns
    -------
    Choice

    Raises
    ------
    QualityTooLowError
        If even ``max_colors`` colours miss a target and ``best_effort`` is False.
    ValueError
        If no target is given.

    Notes
    -----
    Each K is quantized independently with the same seed, from one shared histogram, and
    cached. The search gallops (1, 2, 4, ...) to bracket the answer, bisects, then checks that
    K - 1 misses, so the answer is the smallest K in its neighbourhood; quality grows with K
    almost monotonically, so this is the smallest overall except for rare ties.
    """
    targets = {"psnr": min_psnr, "ssim": min_ssim, "delta_e": max_delta_e}
    if all(value is None for value in targets.values()):
        raise ValueError("give at least one of min_psnr, min_ssim, max_delta_e")
    pixels, histogram, result_for = _results_by_k(
        image, speed=speed, space=space, dither=dither, dither_strength=dither_strength, rng=rng
    )
    high = min(max_colors, histogram.n_colors, MAX_COLORS)

    def measure(result: QuantizedImage) -> dict[str, float]:
        # Transparency is judged as seen: over black and white, the worse of the two;
        # for it every metric is reported, as before, else only the targeted ones.
        with_alpha = pixels.shape[2] == 4
        report = indexed_quality_report(
            pixels,
            result.labels,
            result.palette,
            with_ssim=with_alpha or min_ssim is not None,
            with_delta_e=with_alpha or max_delta_e is not None,
        )
        values: dict[str, float] = {
            name: report[name] for name in ("psnr", "ssim", "delta_e") if name in report
        }
        if max_delta_e is not None and "delta_e" not in values:
            delta_e(pixels, result.to_image().reshape(pixels.shape))  # raises: needs colour
        return values

    def meets(values: dict[str, float]) -> bool:
        return (
            (min_psnr is None or values["psnr"] >= min_psnr)
            and (min_ssim is None or values["ssim"] >= min_ssim)
            and (max_delta_e is None or values["delta_e"] <= max_delta_e)
        )

    tries = _Tries(result_for, measure, meets, prefer_smaller=True, fallback=high)

    labels = {"psnr": "PSNR >= {:g} dB", "ssim": "SSIM >= {:g}", "delta_e": "mean dE00 <= {:g}"}
    wanted = ", ".join(
        labels[name].format(value) for name, value in targets.items() if value is not None
    )
    chosen = _search_smallest(tries.passes, high)
    if chosen is None:
        result, values = tries.result(high), tries.figures(high)
        message = f"{high} colours cannot reach {wanted} (got {_describe(values)})"
        if not best_effort:
            raise QualityTooLowError(message)
        return Choice(result, result.n_colors, False, f"best effort: {message}", values)
    result, values = tries.result(chosen), tries.figures(chosen)
    reason = f"fewest colours for {wanted}: K={chosen} gives {_describe(values)}"
    if chosen > 1:
        reason += f"; K={chosen - 1} gives {_describe(tries.figures(chosen - 1))}"
    return Choice(result, result.n_colors, True, reason, values)


def _describe(values: dict[str, float]) -> str:
    parts = []
    for name, value in values.items():
        if name == "psnr":
            parts.append("PSNR inf dB" if math.isinf(value) else f"PSNR {value:.2f} dB")
        elif name == "ssim":
            parts.append(f"SSIM {value:.4f}")
        elif name == "delta_e":
            parts.append(f"mean dE00 {value:.2f}")
        elif name == "bytes":
            parts.append(f"{int(value):,} bytes")
    return ", ".join(parts)


def best_within_bytes(
    image: np.ndarray,
    max_bytes: int,
    *,
    optimize: int = 2,
    max_colors: int = MAX_COLORS,
    speed: str = "default",
    space: str = "rgb",
    dither: str = "none",
    dither_strength: float = 1.0,
    rng: int | np.random.Generator | None = None,
) -> Choice:
    """The largest K (best quality) whose PNG, at ``optimize``, fits in ``max_bytes``.

    Raises
    ------
    QualityTooLowError
        If even one colour does not fit.

    Notes
    -----
    Bytes grow with K almost monotonically; the search is :func:`fewest_colors`'s run
    backwards (bracket, bisect, then step up while K + 1 still fits).
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    pixels, histogram, result_for = _results_by_k(
        image, speed=speed, space=space, dither=dither, dither_strength=dither_strength, rng=rng
    )
    high = min(max_colors, histogram.n_colors, MAX_COLORS)
    tries = _Tries(
        result_for,
        lambda result: len(encode_png(result, optimize=optimize)),
        lambda n_bytes: n_bytes <= max_bytes,
        prefer_smaller=False,
    )
    # "K = high + 1 - j fits" is monotone in j: search the smallest j.
    first_fit = _search_smallest(lambda j: tries.passes(high + 1 - j), high)
    if first_fit is None:
        raise QualityTooLowError(
            f"no palette fits in {max_bytes:,} bytes (1 colour takes {tries.figures(1):,})"
        )
    chosen = high + 1 - first_fit
    result, n_bytes = tries.result(chosen), tries.figures(chosen)
    peak = indexed_quality_report(
        pixels, result.labels, result.palette, with_ssim=False, with_delta_e=False
    )["psnr"]
    values = {"psnr": peak, "bytes": float(n_bytes)}
    reason = f"most colours within {max_bytes:,} bytes: K={chosen} takes {n_bytes:,} bytes"
    if chosen < high:
        reason += f"; K={chosen + 1} takes {tries.figures(chosen + 1):,}"
    return Choice(result, result.n_colors, True, reason, values)
