r"""The fast path of k-means on a colour histogram: coarse to fine, restarts, swaps.

:mod:`kmquant.kmeans` is the readable reference; this module reaches a lower within-cluster
sum of squares J, faster, with the compiled kernels of :mod:`kmquant._kernels`:

1. *Coarse to fine.* A photo has 30,000 to 300,000 distinct colours. They are merged into
   M = 192 sqrt(K) boxes (768 at K = 16, 3,072 at K = 256) by variance splitting
   (:func:`box_points`): the box with the largest sum of squares is cut at its mean, again
   and again, so boxes are small where colours are dense, and each box becomes one point at
   its weighted mean with its summed weight. J on those points differs little from the full
   one. (With alpha, colours sharing their top ``coarse_bits`` bits per channel are merged
   instead: cells never mix alpha classes.)
2. *Restarts.* Greedy k-means++ and Lloyd run ``n_init`` times on the coarse points, side by
   side on numba's threads; the lowest J is kept. Up to K = 96 Lloyd checks each point's
   label against every centre (:func:`by_scan`), above it keeps Hamerly's bounds: on a few
   thousand points a scan of a few dozen centres costs less than the bounds' upkeep.
3. *Swaps.* Lloyd stops in a local minimum: often one centre sits where it is hardly needed
   while another cluster is too wide. A swap removes the centre whose removal costs least
   (the points' extra squared distance to their second-nearest centre) and splits the cluster
   with the largest J along its principal axis, then runs Lloyd again. The swap is kept only
   when J drops. This is the targeted form of Fränti's random-swap clustering [1]_. Up to
   K = 96 a trial runs by scan from the current labels; above, from the current solution's
   bounds where the points and centres are many (:data:`_WARM_SWAP_PAIRS`), loosened by the
   two moved centres' moves, and at large K the next ranking, too, reads those bounds
   (:func:`_ranking_distances`). On the
   coarse points the next few trials run side by side on numba's threads, as if none were
   kept; the runs after a kept one are dropped.
4. *Refine.* Lloyd on all distinct colours from the coarse solution, to convergence, its
   first steps over-relaxed up to K = 96 (:attr:`SpeedPreset.refine_relaxation`). Up to
   K = 96 it runs by scan, each colour's first guess its box's nearest centre
   (:func:`box_guesses`); above, with bounds, its first scan box by box: a colour's three
   nearest centres are searched only among the few that can be near its box
   (:func:`kmquant._kernels.nearest_three_by_boxes`). Its labels are where the search for
   each colour's nearest palette entry starts.

``speed="fast"`` on RGB pixels skips all of this (:func:`kmquant.quantize.quantize_by_cells`):
the pixels are counted in cells of 5 bits per channel, the cells' means are split by
variance (:func:`split_centers`) and take 2 to 10 Lloyd steps, and no distinct colour is ever
handled, so it races Pillow's fast octree rather than libimagequant.

References
----------
.. [1] P. Fränti, "Efficiency of random swap clustering", Journal of Big Data 5:13, 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from . import _kernels
from .kmeans import _init_random, _tolerance, _tolerance_of_spread

__all__ = [
    "PRESETS",
    "Boxes",
    "FitResult",
    "SpeedPreset",
    "box_points",
    "fit_centers",
    "split_centers",
    "split_into_boxes",
    "working_points",
]


@dataclass(frozen=True)
class SpeedPreset:
    """How much work :func:`fit_centers` does.

    Attributes
    ----------
    coarse_bits : int or None
        Bits per channel kept when merging colours into cells for the restarts and swaps
        (where ``box_points`` is None or the colours have alpha classes); None works on all
        distinct colours throughout.
    n_init : int
        k-means++ restarts.
    swap_trials : int
        Swap attempts after the restarts (0: none).
    refine : bool
        Run Lloyd on all distinct colours at the end (otherwise the coarse centres are final).
    finer_above : int or None
        Above this K, keep one more bit per channel: a few thousand coarse points are too
        few for hundreds of centres (measured: 5 bits costs 0.4 to 2.5% MSE at K = 256), and
        use ``large_n_init`` restarts and ``large_swap_trials`` swaps on the larger set.
    large_n_init, large_swap_trials : int or None
        Restarts and swaps above ``finer_above`` (None: as below it).
    box_points : float or None
        Merge colours without alpha into ``round(box_points * sqrt(K))`` variance-split
        boxes (see :func:`box_points`) rather than into cells.
    refine_relaxation : float
        Over-relaxation of the refine's first Lloyd steps up to ``finer_above``
        (:func:`kmquant._kernels.lloyd_from`; 1: plain steps, as above it).
    """

    coarse_bits: int | None
    n_init: int
    swap_trials: int
    refine: bool = True
    finer_above: int | None = None
    large_n_init: int | None = None
    large_swap_trials: int | None = None
    box_points: float | None = None
    refine_relaxation: float = 1.0

    def is_large(self, n_colors: int) -> bool:
        """Whether K = ``n_colors`` is above :attr:`finer_above`."""
        return self.finer_above is not None and n_colors > self.finer_above

    def restarts_for(self, n_colors: int, n_points: int) -> int:
        """k-means++ restarts for K = ``n_colors`` on ``n_points`` working points.

        Small problems (icons, graphics: at most 16,384 point-centre pairs, under a
        millisecond a run) get at least 10 restarts: there one unlucky start decides the
        result, and ten cost less than one run on a photo. A photo's 768 boxes at K = 16 are
        one too (12,288 pairs), and there the ten matter: with two to six, kodim02 fell
        behind the best peer (scikit-learn on all its pixels, within 0.13% of the
        reference) by up to 0.5% for some seeds of 0 to 3, and 30 or 40 swaps instead of
        20 did not make up for it (exploratory).
        """
        restarts = self.n_init
        if self.is_large(n_colors) and self.large_n_init is not None:
            restarts = self.large_n_init
        if n_points * n_colors <= _SMALL_PROBLEM:
            restarts = max(restarts, _SMALL_PROBLEM_RESTARTS)
        return restarts

    def swaps_for(self, n_colors: int) -> int:
        """Swap attempts for K = ``n_colors``."""
        if self.is_large(n_colors) and self.large_swap_trials is not None:
            return self.large_swap_trials
        return self.swap_trials

    def relaxation_for(self, n_colors: int) -> float:
        """The refine's over-relaxation for K = ``n_colors``."""
        return 1.0 if self.is_large(n_colors) else self.refine_relaxation

    def boxes_for(self, n_colors: int) -> int | None:
        """Variance-split boxes for K = ``n_colors`` (None: cells or all colours)."""
        if self.box_points is None:
            return None
        return round(self.box_points * math.sqrt(n_colors))

    def bits_for(self, n_colors: int) -> int | None:
        """Coarse bits per channel for K = ``n_colors``."""
        if self.coarse_bits is None:
            return None
        if self.is_large(n_colors):
            return min(8, self.coarse_bits + 1)
        return self.coarse_bits


PRESETS: dict[str, SpeedPreset] = {
    "fast": SpeedPreset(coarse_bits=4, n_init=1, swap_trials=0, refine=False, finer_above=32),
    # Boxes against 5-bit cells (6 bits above K = 96), benchmarks/compare.py on the photos:
    # mean MSE 70.90 -> 70.81, 20.05 -> 20.02 and 6.926 -> 6.920 at K = 16, 64 and 256;
    # seconds 0.029 -> 0.019, 0.052 -> 0.038 and 0.184 -> 0.109 (the bitmap histogram's 4 ms
    # included). 192 sqrt(K) boxes did better than 128 or 256 sqrt(K) (exploratory).
    # Two restarts, not three: the swaps that follow leave the same J either way (mean MSE
    # of the photos, seeds 0 to 3, K = 24 to 96: 0.9999 to 1.0005 x three's), and on two
    # cores three side by side take the time of four (3.2 against 1.6 ms at K = 64).
    # The refine over-relaxes: it starts near a minimum that the colours approach only
    # slowly, and plain steps stop on the tolerance before reaching it. The photos at K = 16
    # and 64 (exploratory): mean MSE 70.811 -> 70.799 and 20.010 -> 20.004 in 8.8 -> 7.9
    # and 20.0 -> 14.9 steps, the refine 2.80 -> 2.65 and 9.0 -> 7.7 ms an image (a relaxed
    # step loosens the bounds more); 1.3 and 1.7 did no better. Above K = 96 the relaxed
    # refine ran further (the large images at K = 256: 44.5 -> 50.5 steps, J 0.3% lower)
    # and took 1.18x the time, so it stays plain there.
    "default": SpeedPreset(
        coarse_bits=5,
        n_init=2,
        swap_trials=20,
        finer_above=96,
        large_n_init=2,
        large_swap_trials=5,
        box_points=192.0,
        refine_relaxation=1.5,
    ),
    "best": SpeedPreset(coarse_bits=None, n_init=3, swap_trials=30),
}

# Point-centre pairs up to which a problem counts as small, and its restarts.
_SMALL_PROBLEM = 16384
_SMALL_PROBLEM_RESTARTS = 10

# Merge colours into cells only when the coarse set still has this many points per centre...
_MIN_COARSE_POINTS_PER_CENTER = 8
# ... and, above ``finer_above``, only for images with more distinct colours than this: there
# the full set is affordable, and merging into cells cost 5% MSE (kodim02, 13,452 colours,
# K = 256). Boxes need neither rule: they follow the colours' density.
_MIN_COLORS_TO_MERGE = 16384


@dataclass(frozen=True)
class FitResult:
    """Centres found by :func:`fit_centers` and the Lloyd iterations spent on the final run.

    ``labels``, when not None, gives every colour's nearest centre (the final Lloyd run on
    all colours); mapping the colours to the rounded palette can start from them.
    """

    centers: np.ndarray
    n_iter: int
    labels: np.ndarray | None = None


def coarse_points(
    colors: np.ndarray,
    counts: np.ndarray,
    bits: int,
    *,
    points: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge colours sharing their top ``bits`` bits per channel into weighted means.

    Parameters
    ----------
    colors : ndarray of uint8, shape (n, c)
        Decide the cells.
    counts : ndarray, shape (n,)
    bits : int
        1 to 8.
    points : ndarray of float, shape (n, d), optional
        What is averaged in each cell (default: ``colors``): the colours in the space k-means
        runs in.
    classes : ndarray of int, shape (n,), optional
        Colours of different classes (alpha classes) never share a cell.

    Returns
    -------
    points : ndarray of float64, shape (m, d)
        Weighted mean of each occupied cell, cells in increasing order.
    weights : ndarray of float64, shape (m,)
        Total count of each cell.
    """
    cell_index = cells_of(colors, bits, classes=classes)
    source = colors.astype(np.float64) if points is None else points
    weights = np.bincount(cell_index, weights=counts.astype(np.float64))
    merged = np.empty((weights.shape[0], source.shape[1]))
    for feature in range(source.shape[1]):
        merged[:, feature] = np.bincount(cell_index, weights=counts * source[:, feature])
    merged /= weights[:, None]
    return merged, weights


def cells_of(colors: np.ndarray, bits: int, *, classes: np.ndarray | None = None) -> np.ndarray:
    """Each colour's cell of :func:`coarse_points`: the rank of its top ``bits`` bits per
    channel (and class) among the occupied cells, so its row of the merged points."""
    shift = 8 - bits
    cells = (
        np.zeros(colors.shape[0], dtype=np.int64) if classes is None else classes.astype(np.int64)
    )
    for channel in range(colors.shape[1]):
        cells = (cells << bits) | (colors[:, channel].astype(np.int64) >> shift)
    return _rank_of_values(cells)


# Up to this many possible cells, cells are ranked by a table rather than by sorting.
_MAX_CELL_TABLE = 1 << 21


def _rank_of_values(values: np.ndarray) -> np.ndarray:
    """For each value, its rank among the distinct values: ``np.unique``'s inverse.

    Cells of 5 or 6 bits per channel number at most 2^18 (RGB): a table of which are present
    gives the ranks in one pass over the colours instead of a sort.
    """
    if values.size == 0 or int(values.max()) >= _MAX_CELL_TABLE:
        return np.unique(values, return_inverse=True)[1].reshape(-1)
    present = np.flatnonzero(np.bincount(values))
    rank = np.zeros(int(present[-1]) + 1, dtype=np.intp)
    rank[present] = np.arange(present.size)
    return rank[values]


class Boxes(NamedTuple):
    """Weighted points merged into boxes (:func:`split_into_boxes`): each box's mean
    (``points`` (m, d)) and total weight (``weights`` (m,)), and the indices of the points
    it holds, box b's being ``members[starts[b]:stops[b]]``; ``scatter``, the points' sum of
    w * ||x - mean||^2 (what the first cut started from)."""

    points: np.ndarray
    weights: np.ndarray
    members: np.ndarray
    starts: np.ndarray
    stops: np.ndarray
    scatter: float


# Packed colours (kmquant._kernels.split_colors_into_boxes) keep their sums exact integers
# in float64 below this many pixels.
_PACKED_PIXELS_BELOW = 1 << 36


def split_into_boxes(
    points: np.ndarray,
    weights: np.ndarray,
    n_boxes: int,
    *,
    colors: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> Boxes | None:
    """:func:`box_points`, with which points each box holds; None for no more than
    ``n_boxes`` points (nothing to merge).

    ``colors`` and ``counts``, when given, are ``points`` and ``weights`` as uint8 colours
    and integer pixel counts. Colours of three channels then take the packed route, the two
    halves of the first cut cut side by side
    (:func:`kmquant._kernels.split_colors_into_boxes_in_halves`): the same boxes, the points
    within each perhaps in another order, in about 0.55 times the time on two threads (0.8
    in one tree, :func:`kmquant._kernels.split_colors_into_boxes`).
    """
    if points.shape[0] <= n_boxes:
        return None
    if (
        colors is not None
        and counts is not None
        and colors.ndim == 2
        and colors.shape[1] == 3
        and colors.dtype == np.uint8
        and np.issubdtype(counts.dtype, np.integer)
        and int(np.sum(counts)) < _PACKED_PIXELS_BELOW
    ):
        return Boxes(
            *_kernels.split_colors_into_boxes_in_halves(
                np.ascontiguousarray(colors), np.ascontiguousarray(counts), n_boxes
            )
        )
    return Boxes(
        *_kernels.split_into_boxes(
            np.ascontiguousarray(points, dtype=np.float64),
            np.ascontiguousarray(weights, dtype=np.float64),
            n_boxes,
        )
    )


def box_points(
    points: np.ndarray, weights: np.ndarray, n_boxes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge weighted points into at most ``n_boxes`` variance-split boxes.

    The box with the largest within-box sum of squares is cut at its weighted mean across
    its widest feature until there are ``n_boxes`` (:func:`kmquant._kernels.variance_split`);
    each box gives one point, its weighted mean, with its total weight. Where colours are
    dense the boxes are small, so a few thousand points stand for a photo's 30,000 to
    300,000 colours better than cells of fixed size: J on the box means differs from J on
    the colours only by the boxes' own sums of squares, which the splitting keeps small.

    Parameters
    ----------
    points : ndarray of float, shape (n, d)
    weights : ndarray of float, shape (n,)
    n_boxes : int

    Returns
    -------
    points, weights : ndarray
        The box means (m, d) and weights (m,), m <= ``n_boxes``; the inputs themselves when
        there are no more than ``n_boxes`` points.
    """
    boxes = split_into_boxes(points, weights, n_boxes)
    if boxes is None:
        return points, weights
    return boxes.points, boxes.weights


def working_points(
    colors: np.ndarray,
    counts: np.ndarray,
    n_colors: int,
    bits: int | None,
    *,
    points: np.ndarray | None = None,
    classes: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The weighted points the search runs on: merged to ``bits`` bits, or all colours.

    Colours are merged (see :func:`coarse_points`) only when that still leaves at least 8
    points per centre and really reduces them; otherwise ``points`` (default: ``colors`` as
    floats) come back as they are, the same array, with ``counts`` as weights.
    """
    features = colors.astype(np.float64) if points is None else points
    weights = np.asarray(counts, dtype=np.float64)
    if bits is None:
        return features, weights
    coarse, coarse_weights = coarse_points(colors, counts, bits, points=features, classes=classes)
    if coarse.shape[0] >= _MIN_COARSE_POINTS_PER_CENTER * n_colors and (
        coarse.shape[0] < features.shape[0]
    ):
        return coarse, coarse_weights
    return features, weights


class LloydRun(NamedTuple):
    """Result of :func:`lloyd`: the centres, the iterations run, and the bounds' state for
    the centres (``nearest`` (3, n), whose first row is the labels, and ``bounds`` (3, n);
    see :func:`kmquant._kernels.lloyd_from`). A run by scan keeps no state: ``bounds`` is
    None and only the labels of ``nearest`` are set."""

    centers: np.ndarray
    n_iter: int
    nearest: np.ndarray
    bounds: np.ndarray | None

    @property
    def labels(self) -> np.ndarray:
        """Every point's nearest centre."""
        return self.nearest[0]

    @property
    def kept_bounds(self) -> np.ndarray:
        """``bounds``; a ValueError for a run by scan, which keeps none."""
        if self.bounds is None:
            raise ValueError("a Lloyd run by scan keeps no bounds to start from")
        return self.bounds


# Up to this many centres, a Lloyd run whose state is not kept scans every centre rather
# than keeping bounds (kmquant._kernels._scan_assign): the restarts, the swap trials that
# start cold and the refine. The photos, quantize against bounds everywhere (in process,
# order alternated, exploratory): 0.77 / 0.87 / 0.97 to 0.99x the time at K = 16 / 32 / 64.
# Up to 128: no gain at K = 96 and 128 (0.99 to 1.00x); the refine by scan took 1.07x at
# K = 96 and 1.39x at K = 128, where the bounds skip most of the work. Once the scan counted
# every centre as near as the current one (a tie left to the search), scanning up to 128
# against up to 64 took 0.911x the time at K = 80 and 0.945x at 96, but 1.037x at 112 and
# 1.036x at 128 (same comparison).
_SCAN_UP_TO = 96


def by_scan(n_colors: int) -> bool:
    """Whether a Lloyd run for K = ``n_colors`` that keeps no state runs by scan."""
    return n_colors <= _SCAN_UP_TO


def lloyd(
    X: np.ndarray,
    weights: np.ndarray,
    centers: np.ndarray,
    max_iter: int,
    tol_abs: float,
    *,
    after: LloydRun | None = None,
    boxes: Boxes | None = None,
    relaxation: float = 1.0,
    keep_state: bool = True,
    guesses: np.ndarray | None = None,
) -> LloydRun:
    """Compiled Lloyd from ``centers`` (not modified); the labels match the new centres.

    ``after``, a run on the same points, lends its bounds: a start that differs from its
    centres in a few centres then needs no full scan. ``boxes``, the points merged into
    boxes, lets the first scan run box by box
    (:func:`kmquant._kernels.nearest_three_by_boxes`). The result is the same either way.
    ``relaxation`` > 1 over-relaxes the first steps (see
    :func:`kmquant._kernels.lloyd_from`); that does change the result.

    ``keep_state=False``, for a caller that needs only the centres and labels, lets a run
    with few centres (:func:`by_scan`) go without bounds; ``guesses`` (n,), any centre per
    point, then start its first scan. The result is the same.
    """
    result = np.ascontiguousarray(centers, dtype=np.float64).copy()
    if not keep_state and after is None and by_scan(result.shape[0]):
        nearest = np.zeros((1, X.shape[0]), dtype=np.intp)
        if guesses is not None:
            nearest[0] = guesses
        no_bounds = np.empty((1, 0))
        n_iter, _ = _kernels.lloyd_from(
            X, weights, result, max_iter, tol_abs, nearest, no_bounds, result[:0], relaxation, True
        )
        return LloydRun(result, int(n_iter), nearest, None)
    if after is not None:
        nearest, bounds = after.nearest.copy(), after.kept_bounds.copy()
        state_centers = after.centers
    else:
        nearest = np.empty((3, X.shape[0]), dtype=np.intp)
        bounds = np.empty((3, X.shape[0]))
        state_centers = np.empty((0, result.shape[1]))
        if boxes is not None:
            _kernels.nearest_three_by_boxes(
                X, result, boxes.points, boxes.members, boxes.starts, boxes.stops, nearest, bounds
            )
            state_centers = result.copy()
    n_iter, _ = _kernels.lloyd_from(
        X, weights, result, max_iter, tol_abs, nearest, bounds, state_centers, relaxation, False
    )
    return LloydRun(result, int(n_iter), nearest, bounds)


def initial_centers(
    X: np.ndarray, weights: np.ndarray, n_colors: int, init: str, rng: np.random.Generator
) -> np.ndarray:
    """k-means++ (compiled) or random starting centres, drawing from ``rng``."""
    if init == "random":
        return _init_random(X, n_colors, weights, rng)
    centers, n_found = _kernels.kmeans_plusplus(
        X, weights, n_colors, _plusplus_uniforms(n_colors, rng)
    )
    _check_seeded(n_found, n_colors)
    return centers


def _plusplus_uniforms(n_colors: int, rng: np.random.Generator) -> np.ndarray:
    """The uniform draws of one greedy k-means++ run: 2 + ln K candidates per centre."""
    return rng.random((n_colors, 2 + int(math.log(n_colors))))


def _check_seeded(n_found: int, n_colors: int) -> None:
    """Raise when k-means++ ran out of distinct points before placing every centre."""
    if n_found < n_colors:
        raise ValueError(
            f"X has only {n_found} distinct points with positive weight, "
            f"fewer than n_colors={n_colors}"
        )


# Below this many points Lloyd's assignment is serial anyway, so restarts and swap trials run
# side by side there, and the search keeps to a few threads (_COARSE_THREADS). On more,
# restarts run one after another, each on every thread (``speed="best"`` on all of a photo's
# colours, 3 restarts: 211 -> 170 ms an image at K = 64 one after another, exploratory).
_LLOYD_SERIAL_BELOW = _kernels._PARALLEL_ASSIGN_POINTS


def best_restart(
    X: np.ndarray,
    weights: np.ndarray,
    n_colors: int,
    *,
    init: str,
    n_init: int,
    max_iter: int,
    tol_abs: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float, int]:
    """Seed and run Lloyd ``n_init`` times; the centres with the lowest J (first on ties).

    Returns the centres, their J on ``X`` and the iterations of their Lloyd run. The random
    numbers of every restart are drawn first, in order. On fewer points than Lloyd's
    assignment spreads over threads, the restarts then run side by side on numba's threads
    (:func:`kmquant._kernels.restarts`); on more, or for a single restart, one after
    another, each on every thread. Either way the results are those of one after another,
    on however many threads.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    starts = np.empty((n_init, n_colors, X.shape[1]))
    if init == "random":
        for run in range(n_init):
            starts[run] = initial_centers(X, weights, n_colors, init, rng)
        draws = np.empty((n_init, 0, 0))
    else:
        draws = np.stack([_plusplus_uniforms(n_colors, rng) for _ in range(n_init)])
    labels = np.empty((n_init, X.shape[0]), dtype=np.intp)
    n_iters = np.zeros(n_init, dtype=np.intp)
    n_found = np.full(n_init, n_colors, dtype=np.intp)
    if n_init > 1 and X.shape[0] < _LLOYD_SERIAL_BELOW:
        nearest = np.empty((n_init, 3, X.shape[0]), dtype=np.intp)  # Lloyd's state: labels first
        bounds = np.empty((n_init, 3, X.shape[0]))
        # X[:0], no state: each run starts with a full scan.
        _kernels.restarts(
            X,
            weights,
            draws,
            starts,
            max_iter,
            tol_abs,
            nearest,
            bounds,
            X[:0],
            n_iters,
            n_found,
            by_scan(n_colors),
        )
        labels = nearest[:, 0]
    else:
        # Side by side each run would be serial inside (a parallel loop nested in another
        # runs on one thread), slower than one run on every thread.
        for run in range(n_init):
            if init != "random":
                starts[run], n_found[run] = _kernels.kmeans_plusplus(
                    X, weights, n_colors, draws[run]
                )
                _check_seeded(int(n_found[run]), n_colors)
            done = lloyd(X, weights, starts[run], max_iter, tol_abs, keep_state=False)
            starts[run], labels[run], n_iters[run] = done.centers, done.labels, done.n_iter
    _check_seeded(int(n_found.min()), n_colors)
    best = 0
    best_inertia = math.inf
    for run in range(n_init):
        inertia = _kernels.weighted_squared_error(X, weights, starts[run], labels[run])
        if inertia < best_inertia:
            best, best_inertia = run, inertia
    return starts[best], best_inertia, int(n_iters[best])


# From this many point-centre pairs on, swap trials beyond by_scan's K start from the
# current bounds rather than a full scan. Exploratory, all the swaps of the photos, before the
# trials by scan: 7.85 -> 5.78 ms an image at K = 256 (3,072 boxes), 6.68 -> 5.77 at K = 64
# (1,536), but 3.65 -> 3.85 at K = 16 (768 x 16 pairs).
_WARM_SWAP_PAIRS = 65536


# Centres ranked by removal cost and by width (see improve_by_swaps).
_RANKED = 4
# From this many centres on, a kept swap's ranking reads the run's bounds and computes exact
# second distances only where it may need them (_ranking_distances). All the swaps of the
# photos (exploratory): 4.81 -> 4.04 ms an image at K = 256, where about a quarter of the
# points need them, but 5.31 -> 5.69 at K = 64, where most do.
_RANKING_FROM_BOUNDS = 128


def _ranking_distances(
    X: np.ndarray,
    weights: np.ndarray,
    run: LloydRun,
    labels: np.ndarray,
    nearest: np.ndarray,
    second: np.ndarray,
) -> None:
    """What the swaps' ranking reads after a kept swap, from that run's converged state.

    Writes ``labels``, ``nearest`` (the distance to each point's centre, exact) and
    ``second``: the exact distance to the second-nearest centre for the points of every
    centre that can be among the ``_RANKED`` cheapest to remove, an upper bound elsewhere.
    A centre's removal cost lies between its points' sums of w (s^2 - d^2) with s a lower
    bound on the second distance (Lloyd's bounds) and with s an upper bound (the distance to
    the state's second centre); a centre whose lower sum exceeds the fourth smallest upper
    sum cannot be among the cheapest, so the ranking is that of exact distances everywhere
    (:func:`kmquant._kernels.nearest_two`), which at K = 256 is needed for about a quarter
    of the points (exploratory).
    """
    n_colors = run.centers.shape[0]
    labels[:] = run.labels
    _kernels.distances_to(X, run.centers, labels, nearest)
    if n_colors <= _RANKED:
        _kernels.nearest_two(X, run.centers, labels, nearest, second, np.empty_like(labels))
        return
    _kernels.distances_to(X, run.centers, run.nearest[1], second)
    lower = np.maximum(nearest, np.minimum(run.kept_bounds[1], run.kept_bounds[2]))
    highest = np.bincount(
        labels, weights=weights * (second * second - nearest * nearest), minlength=n_colors
    )
    lowest = np.bincount(
        labels, weights=weights * (lower * lower - nearest * nearest), minlength=n_colors
    )
    bar = np.partition(highest, _RANKED - 1)[_RANKED - 1]
    # Slack for rounding: ranking a centre exactly is always safe.
    candidates = lowest * (1.0 - 1e-9) - 1e-9 <= bar
    points = np.flatnonzero(candidates[labels])
    found = np.empty(len(points), dtype=np.intp)
    upper, lower_found = np.empty(len(points)), np.empty(len(points))
    _kernels.nearest_two(
        np.ascontiguousarray(X[points]),
        run.centers,
        found,
        upper,
        lower_found,
        np.empty_like(found),
    )
    second[points] = lower_found


def improve_by_swaps(
    X: np.ndarray,
    weights: np.ndarray,
    centers: np.ndarray,
    *,
    trials: int,
    max_iter: int,
    tol_abs: float,
) -> tuple[np.ndarray, float, int]:
    """Targeted swaps: move the least useful centre into the widest cluster, keep if J drops.

    Returns the improved centres, their J on ``X`` and the number of accepted swaps.

    The trials are those of one after another, each pair in turn until one is kept; where
    Lloyd's assignment is serial (few points), the next few run side by side on numba's
    threads (:func:`_trials_side_by_side`) as if none were kept, and the runs after the first
    kept one are dropped, so the result does not depend on the number of threads.
    """
    n_points, n_colors = X.shape[0], centers.shape[0]
    labels = np.empty(n_points, dtype=np.intp)
    nearest = np.empty(n_points)
    second = np.empty(n_points)
    second_labels = np.empty(n_points, dtype=np.intp)

    def rank_centers() -> tuple[np.ndarray, np.ndarray]:
        """Centres by removal cost, cheapest first, and by cluster J, widest first, from
        ``labels``, ``nearest`` and ``second``."""
        # einsum and bincount rather than np.dot: BLAS would take large sums on several
        # threads that then spin idle and slow what follows (benchmarks/compare.py, K = 256
        # on the photos: 0.266 -> 0.182 s per image, with the same change in kmeans._inertia
        # and colorspace).
        removal_cost = np.bincount(
            labels, weights=weights * (second * second - nearest * nearest), minlength=n_colors
        )
        cluster_inertia = np.bincount(
            labels, weights=weights * nearest * nearest, minlength=n_colors
        )
        return (
            np.argsort(removal_cost, kind="stable")[:_RANKED],
            np.argsort(-cluster_inertia, kind="stable")[:_RANKED],
        )

    # The current centres' bounds: each trial starts from them (see lloyd's ``after``),
    # unless a full scan costs next to nothing. Lloyd's state after a full scan and no
    # iteration holds the exact nearest and second-nearest distances.
    side_by_side = _trials_side_by_side(n_points)
    # Trials by scan start from the current labels instead (see lloyd_runs).
    warm = n_points * n_colors >= _WARM_SWAP_PAIRS and not by_scan(n_colors)
    current = None
    if warm:
        current = lloyd(X, weights, centers, 0, tol_abs)
        labels[:], second_labels[:] = current.nearest[0], current.nearest[1]
        nearest[:], second[:] = current.kept_bounds[0], current.kept_bounds[1]
    else:
        _kernels.nearest_two(X, centers, labels, nearest, second, second_labels)
    pairs = _pairs_in_turn(*rank_centers())
    inertia = _kernels.weighted_squared_error(X, weights, centers, labels)
    # Each round's trial starts, written in place: no new array per trial, no stack per
    # round (with the pairs listed once, quantize took 0.981x at K = 16, exploratory).
    trial_starts = np.empty((side_by_side, n_colors, centers.shape[1]))
    accepted = 0
    spent = 0  # trials taken, as one after another would take them
    while spent < trials and n_colors >= 2:
        # The next trials one after another would take were none kept: the pairs in order,
        # a pair whose cluster has fewer than two points spending its trial without a run.
        planned: list[int] = []  # trials spent up to each start
        taken = spent
        while taken < trials and len(planned) < side_by_side and pairs:
            removed, split = pairs.pop()
            taken += 1
            start = trial_starts[len(planned)]
            if _kernels.split_cluster(X, weights, labels, centers, removed, split, start) < 2:
                continue
            planned.append(taken)
        if not planned:
            break
        runs = lloyd_runs(
            X,
            weights,
            trial_starts[: len(planned)],
            max_iter,
            tol_abs,
            after=current,
            guesses=None if warm else labels,
        )
        spent = taken
        for run, taken_by_then in zip(runs, planned, strict=True):
            # Lloyd's labels price the trial; the second-nearest distances, which only the
            # next removal costs need, are found only for a swap that is kept.
            candidate_inertia = _kernels.weighted_squared_error(X, weights, run.centers, run.labels)
            if candidate_inertia < inertia * (1.0 - 1e-9):
                # Kept: the later runs started from centres no longer current, and are dropped.
                spent = taken_by_then
                centers, inertia = run.centers, candidate_inertia
                current = run if warm else None
                if warm and n_colors >= _RANKING_FROM_BOUNDS:
                    _ranking_distances(X, weights, run, labels, nearest, second)
                else:
                    _kernels.nearest_two(X, centers, labels, nearest, second, second_labels)
                pairs = _pairs_in_turn(*rank_centers())
                accepted += 1
                break
    return centers, inertia, accepted


def _pairs_in_turn(cheapest: np.ndarray, widest: np.ndarray) -> list[tuple[int, int]]:
    """The (centre to remove, cluster to split) pairs in the order they are tried, last
    first (the caller pops them): the cheapest removal first, each with the widest clusters
    in turn, never a centre with its own cluster."""
    in_turn = [
        (int(removed), int(split))
        for removed in cheapest.tolist()
        for split in widest.tolist()
        if removed != split
    ]
    return in_turn[::-1]


# Swap trials run side by side on at most this many threads. The runs after a kept trial are
# wasted, and a trial is kept about one time in three at K = 64 on the photos, so each
# further run adds less: with that rate, two, three and four side by side make 1.7, 2.1 and
# 2.5 trials a round. All the swaps of the photos on two cores, two side by side
# (exploratory): 3.20 -> 2.55 ms an image at K = 16, 4.65 -> 4.0 at K = 64, but 3.64 -> 4.08
# at K = 256, where every trial is kept and a round lasts as long as its slower run. On a
# 16-core machine (four photos, 16 threads, exploratory), one to four side by side: 9.6,
# 7.5, 6.0, 5.3 ms at K = 16; 11.8, 9.9, 8.7, 9.2 ms at K = 64; 9.4, 10.5, 10.7, 11.4 ms
# at K = 256. Three did best over the three.
_MAX_TRIALS_SIDE_BY_SIDE = 3


def _trials_side_by_side(n_points: int) -> int:
    """How many swap trials :func:`improve_by_swaps` runs at once on ``n_points`` points:
    one per numba thread (at most ``_MAX_TRIALS_SIDE_BY_SIDE``) where Lloyd's assignment is
    serial anyway, one on more points (Lloyd then uses every thread)."""
    if n_points >= _LLOYD_SERIAL_BELOW:
        return 1
    return max(1, min(_MAX_TRIALS_SIDE_BY_SIDE, numba.get_num_threads()))


def lloyd_runs(
    X: np.ndarray,
    weights: np.ndarray,
    starts: np.ndarray,
    max_iter: int,
    tol_abs: float,
    *,
    after: LloydRun | None = None,
    guesses: np.ndarray | None = None,
) -> list[LloydRun]:
    """:func:`lloyd` from each of ``starts`` (n_runs, k, d), all from the same ``after`` (or
    each from a full scan): side by side on numba's threads
    (:func:`kmquant._kernels.restarts`), with the results of one after another. Runs without
    ``after`` keep no state when they run by scan (:func:`by_scan`), starting from
    ``guesses`` (see :func:`lloyd`) if given. ``starts`` is not modified."""
    if len(starts) == 1:
        return [
            lloyd(
                X,
                weights,
                starts[0],
                max_iter,
                tol_abs,
                after=after,
                keep_state=False,
                guesses=guesses,
            )
        ]
    n_runs = len(starts)
    centers = np.array(starts, dtype=np.float64)  # a copy: the runs write their centres
    scan = after is None and by_scan(centers.shape[1])
    if scan:
        nearest = np.zeros((n_runs, 1, X.shape[0]), dtype=np.intp)
        if guesses is not None:
            nearest[:, 0] = guesses
        bounds = np.empty((n_runs, 1, 0))
        state = np.empty((0, centers.shape[2]))
    elif after is None:
        nearest = np.empty((n_runs, 3, X.shape[0]), dtype=np.intp)
        bounds = np.empty((n_runs, 3, X.shape[0]))
        state = np.empty((0, centers.shape[2]))  # none: each run scans on its own thread
    else:
        nearest = np.repeat(after.nearest[None], n_runs, axis=0)
        bounds = np.repeat(after.kept_bounds[None], n_runs, axis=0)
        state = after.centers
    n_iters = np.zeros(n_runs, dtype=np.intp)
    n_found = np.empty(n_runs, dtype=np.intp)
    draws = np.empty((n_runs, 0, 0))  # none: the runs start from ``centers``
    _kernels.restarts(
        X,
        weights,
        draws,
        centers,
        max_iter,
        tol_abs,
        nearest,
        bounds,
        state,
        n_iters,
        n_found,
        scan,
    )
    return [
        LloydRun(centers[run], int(n_iters[run]), nearest[run], None if scan else bounds[run])
        for run in range(n_runs)
    ]


# Threads for the restarts and swaps on a few thousand coarse points: there a parallel loop
# on many threads costs more than it gives. On a 16-core machine, four photos (exploratory):
# with 16 threads the swaps took 61% of 74.9 ms an image at K = 16, with 4 threads 24% of
# 21.6 ms. The results do not depend on the number of threads.
_COARSE_THREADS = 4


def fit_centers(
    colors: np.ndarray,
    counts: np.ndarray,
    n_colors: int,
    *,
    preset: SpeedPreset,
    init: str,
    n_init: int | None,
    max_iter: int,
    tol: float,
    rng: np.random.Generator,
    points: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    tolerance_columns: int | None = None,
    points_are_colors: bool = False,
) -> FitResult:
    """K centres for weighted colours, by the strategy of ``preset``.

    Parameters
    ----------
    colors : ndarray of uint8, shape (m, c)
        The distinct colours (they decide the coarse cells).
    counts : ndarray, shape (m,)
        Pixels of each colour; there must be more than ``n_colors`` distinct points.
    n_colors : int
    preset : SpeedPreset
    init, n_init, max_iter, tol, rng
        As for :func:`kmquant.quantize`; ``n_init`` overrides the preset's restarts (None:
        :meth:`SpeedPreset.restarts_for` the working points).
    points : ndarray of float, shape (m, d), optional
        The colours in the space k-means runs in (default: ``colors``).
    classes : ndarray of int, shape (m,), optional
        Classes never merged into one coarse cell (alpha classes).
    tolerance_columns : int, optional
        Only the first columns set the convergence tolerance (a class-separating column,
        whose variance is huge, would make it meaningless).
    points_are_colors : bool
        ``points`` are ``colors`` as floats (RGB), so boxes may be cut on the colours
        themselves (see :func:`split_into_boxes`).
    """
    features = colors.astype(np.float64) if points is None else np.ascontiguousarray(points)
    weights_all = counts.astype(np.float64)
    n_boxes = preset.boxes_for(n_colors)
    boxes = None
    if n_boxes is not None and classes is None:
        packed = points is None or points_are_colors
        boxes = split_into_boxes(
            features,
            weights_all,
            n_boxes,
            colors=colors if packed else None,
            counts=counts if packed else None,
        )
        X, weights = (features, weights_all) if boxes is None else (boxes.points, boxes.weights)
    else:
        small_and_large_k = preset.is_large(n_colors) and features.shape[0] <= _MIN_COLORS_TO_MERGE
        bits = None if small_and_large_k else preset.bits_for(n_colors)
        X, weights = working_points(
            colors, weights_all, n_colors, bits, points=features, classes=classes
        )

    def tolerance(data: np.ndarray, data_weights: np.ndarray) -> float:
        return _tolerance(data[:, :tolerance_columns], data_weights, tol)

    tol_abs = tolerance(X, weights)
    if n_init is None:
        n_init = preset.restarts_for(n_colors, X.shape[0])
    coarse = X.shape[0] < _LLOYD_SERIAL_BELOW
    with _kernels.threads_at_most(_COARSE_THREADS if coarse else None):
        best_centers, _, n_iter = best_restart(
            X,
            weights,
            n_colors,
            init=init,
            n_init=n_init,
            max_iter=max_iter,
            tol_abs=tol_abs,
            rng=rng,
        )
        swap_trials = preset.swaps_for(n_colors)
        if swap_trials:
            best_centers, _, _ = improve_by_swaps(
                X, weights, best_centers, trials=swap_trials, max_iter=max_iter, tol_abs=tol_abs
            )
    if preset.refine and X is not features:
        if boxes is not None and tolerance_columns is None:
            # The boxes' first cut already summed the colours' spread: no pass to repeat.
            refine_tol = _tolerance_of_spread(
                boxes.scatter, float(np.sum(weights_all)), features.shape[1], tol
            )
        else:
            refine_tol = tolerance(features, weights_all)
        guesses = None
        if boxes is not None and by_scan(n_colors):
            guesses = box_guesses(boxes, best_centers)
        refined = lloyd(
            features,
            weights_all,
            best_centers,
            max_iter,
            refine_tol,
            boxes=boxes,
            relaxation=preset.relaxation_for(n_colors),
            keep_state=guesses is None,
            guesses=guesses,
        )
        # A copy: the labels are a row of Lloyd's state, which is three times their size.
        labels = refined.labels.copy()
        return FitResult(centers=refined.centers, n_iter=refined.n_iter, labels=labels)
    return FitResult(centers=best_centers, n_iter=n_iter)


def box_guesses(boxes: Boxes, centers: np.ndarray) -> np.ndarray:
    """Each point's guess of its nearest centre: its box mean's nearest."""
    box_labels = np.empty(boxes.points.shape[0], dtype=np.intp)
    _kernels.nearest_labels(boxes.points, centers, box_labels)
    return _kernels.box_labels_to_points(box_labels, boxes.members, boxes.starts, boxes.stops)


def split_centers(
    points: np.ndarray, weights: np.ndarray, n_colors: int, n_steps: int
) -> FitResult:
    """Centres for ``speed="fast"``: variance splitting, then ``n_steps`` Lloyd steps.

    :func:`kmquant._kernels.variance_split` cuts the weighted points into ``n_colors`` boxes,
    always cutting the box with the largest within-cluster sum of squares J_c at its mean
    across its widest feature; each cut lowers J, and no random draw is involved. A few
    Lloyd steps (assign every point to its nearest centre, move each centre to its points'
    weighted mean) then lower J further; empty clusters are relocated as in
    :func:`kmquant.compute_centroids`. There may be fewer centres than ``n_colors`` only when
    the points allow no more cuts.
    """
    points = np.ascontiguousarray(points, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    centers, _ = _kernels.variance_split(points, weights, n_colors)
    labels = np.empty(points.shape[0], dtype=np.intp)
    # Every centre is tried: the grid of nearest_palette_labels gave the same labels in the
    # same time here (a few thousand cells; 1.01 to 1.03x, exploratory, order alternated).
    for _ in range(n_steps):
        _kernels.nearest_labels(points, centers, labels)
        _kernels.weighted_means(points, weights, labels, centers)
    return FitResult(centers=centers, n_iter=n_steps)
