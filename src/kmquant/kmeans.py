r"""K-means clustering, written out step by step.

K-means looks for ``K`` centres :math:`\mu_1, \dots, \mu_K` and an assignment :math:`c(i)` of
every point :math:`x^{(i)}` to one centre that minimise the within-cluster sum of squares
(the *inertia*, or distortion)

.. math::

    J(c, \mu) = \sum_{i=1}^{m} w_i \, \lVert x^{(i)} - \mu_{c(i)} \rVert^2 ,

where :math:`w_i \ge 0` is the weight of point :math:`i` (1 for plain k-means; the pixel count
of a colour when k-means runs on an image's colour histogram). Lloyd's algorithm alternates two
steps, each of which can only lower :math:`J`:

1. *assignment* (:func:`find_closest_centroids`): with the centres fixed, give every point the
   nearest centre, :math:`c(i) = \arg\min_k \lVert x^{(i)} - \mu_k \rVert^2`;
2. *update* (:func:`compute_centroids`): with the assignment fixed, move every centre to the
   weighted mean of its points, :math:`\mu_k = \sum_{c(i)=k} w_i x^{(i)} / \sum_{c(i)=k} w_i`.

:func:`run_kmeans` repeats them from the centres :func:`kmeans_init_centroids` picks until the
assignment stops changing or the centres barely move. The result is a local minimum of
:math:`J`; restarting from several initialisations and keeping the lowest :math:`J` finds a
better one.

These four functions are the readable reference. They validate their input; the ``_private``
helpers compute and assume valid input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "KMeansResult",
    "compute_centroids",
    "find_closest_centroids",
    "kmeans_init_centroids",
    "run_kmeans",
]

INIT_METHODS = ("k-means++", "random")

# Rows of X per block when computing point-to-centre distances, so that a block of squared
# distances (rows x K float64) stays near 32 MiB whatever the image size.
_DISTANCE_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class KMeansResult:
    """What :func:`run_kmeans` found.

    Attributes
    ----------
    centers : ndarray of float64, shape (n_colors, n_features)
        The final centres.
    labels : ndarray of intp, shape (n_samples,)
        The index of each point's nearest centre in ``centers``.
    inertia : float
        Weighted sum of squared distances of the points to their centres, :math:`J`.
    n_iter : int
        Number of assignment + update iterations run.
    converged : bool
        True if the assignment stopped changing or the centres moved less than the tolerance
        before ``max_iter`` was reached.
    inertia_history : tuple of float
        :math:`J` after each assignment step, in order; never increases.
    """

    centers: np.ndarray
    labels: np.ndarray
    inertia: float
    n_iter: int
    converged: bool
    inertia_history: tuple[float, ...] = field(default=())


# --------------------------------------------------------------------------------------------
# Validation helpers


def _as_points(X: np.ndarray, name: str = "X") -> np.ndarray:
    points = np.asarray(X)
    if points.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype={points.dtype}")
    if points.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {points.shape}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one point and one feature, got {points.shape}")
    points = points.astype(np.float64, copy=False)
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{name} must be finite, got NaN or infinity")
    return points


def _as_weights(sample_weight: np.ndarray | None, n_samples: int) -> np.ndarray:
    if sample_weight is None:
        return np.ones(n_samples, dtype=np.float64)
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape ({n_samples},), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError("sample_weight must be finite and non-negative")
    if not weights.sum() > 0:
        raise ValueError("sample_weight must have a positive sum, got 0")
    return weights


def _check_n_colors(n_colors: int, name: str = "n_colors") -> int:
    if isinstance(n_colors, bool) or not isinstance(n_colors, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {n_colors!r}")
    if n_colors < 1:
        raise ValueError(f"{name} must be >= 1, got {n_colors}")
    return int(n_colors)


def _as_labels(labels: np.ndarray, n_samples: int, n_colors: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n_samples,):
        raise ValueError(f"labels must have shape ({n_samples},), got {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype={labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_colors):
        raise ValueError(
            f"labels must lie in 0..{n_colors - 1}, got {labels.min()}..{labels.max()}"
        )
    return labels.astype(np.intp, copy=False)


# --------------------------------------------------------------------------------------------
# Private computing helpers


def _squared_distances(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """All squared distances ``||X[i] - centers[k]||^2``, shape (n_samples, n_centers)."""
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2: one matrix product instead of an
    # (n, K, C) difference tensor. Rounding can make tiny results negative; clip them.
    distances = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ centers.T)
    distances += np.einsum("ij,ij->i", centers, centers)[None, :]
    np.maximum(distances, 0.0, out=distances)
    return distances


def _assign(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre of every point and the squared distance to it (ties: lowest index)."""
    n_samples = X.shape[0]
    labels = np.empty(n_samples, dtype=np.intp)
    min_distances = np.empty(n_samples, dtype=np.float64)
    block = max(1, _DISTANCE_BLOCK_ELEMENTS // max(1, centers.shape[0]))
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        distances = _squared_distances(X[start:stop], centers)
        labels[start:stop] = np.argmin(distances, axis=1)
        min_distances[start:stop] = distances[np.arange(stop - start), labels[start:stop]]
    return labels, min_distances


def _inertia(X: np.ndarray, weights: np.ndarray, centers: np.ndarray, labels: np.ndarray) -> float:
    """Exact J: differences taken directly, not through the dot-product expansion."""
    differences = X - centers[labels]
    return float(np.einsum("i,ij,ij->", weights, differences, differences))


def _cluster_sums(
    X: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_colors: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster weighted sums of the points and total weights."""
    totals = np.bincount(labels, weights=weights, minlength=n_colors)
    sums = np.empty((n_colors, X.shape[1]), dtype=np.float64)
    for feature in range(X.shape[1]):
        sums[:, feature] = np.bincount(labels, weights=weights * X[:, feature], minlength=n_colors)
    return sums, totals


def _update(X: np.ndarray, labels: np.ndarray, weights: np.ndarray, n_colors: int) -> np.ndarray:
    """Weighted means of the clusters; empty clusters relocated (see compute_centroids)."""
    sums, totals = _cluster_sums(X, labels, weights, n_colors)
    non_empty = totals > 0
    centers = np.empty_like(sums)
    centers[non_empty] = sums[non_empty] / totals[non_empty, None]
    empty = np.flatnonzero(~non_empty)
    if empty.size:
        _relocate_empty_clusters(X, labels, weights, centers, sums, totals, empty)
    return centers


def _relocate_empty_clusters(
    X: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    centers: np.ndarray,
    sums: np.ndarray,
    totals: np.ndarray,
    empty: np.ndarray,
) -> None:
    """Give each empty cluster the point that costs the most where it is.

    Reads ``X, labels, weights, sums, totals``; writes ``centers`` (all rows of empty clusters,
    and the rows of the clusters that gave a point away), ``sums`` and ``totals``.

    The cost of a point is its contribution to J, ``w * ||x - mu||^2``: moving it to a cluster
    of its own lowers J by at least that much. A cluster never gives away its last point.
    """
    differences = X - centers[labels]
    cost = weights * np.einsum("ij,ij->i", differences, differences)
    candidates = np.argsort(-cost, kind="stable")
    next_candidate = 0
    for cluster in empty:
        while next_candidate < candidates.size:
            point = candidates[next_candidate]
            next_candidate += 1
            donor = labels[point]
            if cost[point] <= 0 or totals[donor] - weights[point] <= 0:
                continue
            sums[donor] -= weights[point] * X[point]
            totals[donor] -= weights[point]
            centers[donor] = sums[donor] / totals[donor]
            centers[cluster] = X[point]
            sums[cluster] = weights[point] * X[point]
            totals[cluster] = weights[point]
            break
        else:
            # Fewer distinct points than clusters: no point is badly represented, so there is
            # nothing to relocate to. Park the cluster on the data's mean rather than NaN.
            centers[cluster] = np.average(X, axis=0, weights=weights)


def _tolerance(X: np.ndarray, weights: np.ndarray, tol: float) -> float:
    """Absolute tolerance on the summed squared centre shift: tol x mean feature variance.

    The mean feature variance is sum_i w_i ||x_i - mean||^2 / (sum_i w_i * d), with einsum
    (np.average made three (n, d) temporaries).
    """
    total = float(np.sum(weights))
    mean = np.einsum("i,ij->j", weights, X) / total
    deviations = X - mean
    spread = float(np.einsum("i,ij,ij->", weights, deviations, deviations))
    return _tolerance_of_spread(spread, total, X.shape[1], tol)


def _tolerance_of_spread(spread: float, total_weight: float, n_features: int, tol: float) -> float:
    """:func:`_tolerance` from the points' spread sum_i w_i ||x_i - mean||^2, known already."""
    return spread / (total_weight * n_features) * tol


def _distinct_rows(X: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of X with positive weight, and their summed weights."""
    positive = weights > 0
    rows, inverse = np.unique(X[positive], axis=0, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=weights[positive], minlength=rows.shape[0])
    return rows, summed


def _init_random(
    X: np.ndarray, n_colors: int, weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    rows, summed = _distinct_rows(X, weights)
    if rows.shape[0] < n_colors:
        raise ValueError(
            f"X has {rows.shape[0]} distinct points with positive weight, "
            f"fewer than n_colors={n_colors}"
        )
    chosen = rng.choice(rows.shape[0], size=n_colors, replace=False, p=summed / summed.sum())
    return rows[chosen].copy()


def _init_kmeans_plusplus(
    X: np.ndarray, n_colors: int, weights: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    n_samples = X.shape[0]
    n_local_trials = 2 + int(np.log(n_colors))
    centers = np.empty((n_colors, X.shape[1]), dtype=np.float64)

    first = rng.choice(n_samples, p=weights / weights.sum())
    centers[0] = X[first]
    closest = _squared_distances(X, centers[:1])[:, 0]
    potential = float(np.dot(weights, closest))

    for index in range(1, n_colors):
        cumulative = np.cumsum(weights * closest)
        potential = float(cumulative[-1])
        if not potential > 0:
            raise ValueError(
                f"X has only {index} distinct points with positive weight, "
                f"fewer than n_colors={n_colors}"
            )
        # side="right" never lands on a point of zero mass (already a centre), so the
        # centres stay distinct.
        draws = rng.uniform(size=n_local_trials) * potential
        candidate_ids = np.minimum(np.searchsorted(cumulative, draws, side="right"), n_samples - 1)
        candidate_distances = _squared_distances(X[candidate_ids], X)
        np.minimum(closest[None, :], candidate_distances, out=candidate_distances)
        candidate_potentials = candidate_distances @ weights
        best = int(np.argmin(candidate_potentials))
        centers[index] = X[candidate_ids[best]]
        closest = candidate_distances[best]
    return centers


# --------------------------------------------------------------------------------------------
# Public functions


def kmeans_init_centroids(
    X: np.ndarray,
    n_colors: int,
    *,
    method: str = "k-means++",
    sample_weight: np.ndarray | None = None,
    rng: int | np.random.Generator | None = None,
) -> np.ndarray:
    r"""Pick ``n_colors`` distinct starting centres among the points of ``X``.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        The points (for an image: colours, one row each).
    n_colors : int
        Number of centres K.
    method : {"k-means++", "random"}, optional
        ``"random"`` draws K distinct points, each with probability proportional to its
        weight (like picking K random pixels of an image, but never the same colour twice).
        ``"k-means++"`` (default) is the greedy k-means++ of Arthur & Vassilvitskii [1]_.
    sample_weight : array_like of shape (n_samples,), optional
        Non-negative weight of each point (pixel counts); all ones by default.
    rng : int, numpy.random.Generator or None, optional
        Seed or generator passed to :func:`numpy.random.default_rng`.

    Returns
    -------
    centroids : ndarray of float64, shape (n_colors, n_features)
        Distinct rows of ``X``.

    Raises
    ------
    ValueError
        If ``method`` is unknown or ``X`` has fewer than ``n_colors`` distinct points of
        positive weight.

    Notes
    -----
    k-means++ picks the first centre with probability proportional to the weight
    :math:`w_i`, then each next one with probability proportional to :math:`w_i D(x_i)^2`,
    where :math:`D(x)` is the distance from :math:`x` to the nearest centre chosen so far. The
    *greedy* variant draws :math:`2 + \lfloor \ln K \rfloor` candidates at each step and keeps
    the one that lowers :math:`\sum_i w_i D(x_i)^2` most (as scikit-learn does). Points already
    chosen have :math:`D = 0` and are never drawn again, so the centres are distinct. The
    expected :math:`J` of k-means++ alone is within :math:`O(\log K)` of the optimum [1]_.

    References
    ----------
    .. [1] D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding",
       Proc. ACM-SIAM SODA, 2007.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0, 0], [0, 1], [10, 10], [10, 11]])
    >>> centroids = kmeans_init_centroids(X, 2, rng=0)
    >>> sorted(centroids[:, 0].tolist())   # one centre in each group
    [0.0, 10.0]
    """
    points = _as_points(X)
    n_colors = _check_n_colors(n_colors)
    weights = _as_weights(sample_weight, points.shape[0])
    generator = np.random.default_rng(rng)
    if method == "random":
        return _init_random(points, n_colors, weights, generator)
    if method == "k-means++":
        return _init_kmeans_plusplus(points, n_colors, weights, generator)
    raise ValueError(f"method must be one of {INIT_METHODS}, got {method!r}")


def find_closest_centroids(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    r"""Index of the nearest centre of every point (the assignment step).

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        The points.
    centroids : array_like, shape (n_colors, n_features)
        The centres.

    Returns
    -------
    labels : ndarray of intp, shape (n_samples,)
        :math:`c(i) = \arg\min_k \lVert x^{(i)} - \mu_k \rVert^2`; ties go to the lowest index.

    Notes
    -----
    With the centres fixed, this choice minimises every term of :math:`J` separately, so it
    minimises :math:`J`. Squared distances are computed as
    :math:`\lVert x \rVert^2 - 2\,x\cdot\mu + \lVert \mu \rVert^2` (one matrix product), in
    blocks of points so that memory stays bounded.

    Examples
    --------
    >>> find_closest_centroids([[0, 0], [9, 9], [4, 4]], [[0, 0], [10, 10]]).tolist()
    [0, 1, 0]
    """
    points = _as_points(X)
    centers = _as_points(centroids, "centroids")
    if centers.shape[1] != points.shape[1]:
        raise ValueError(
            f"centroids must have {points.shape[1]} features like X, got {centers.shape[1]}"
        )
    labels, _ = _assign(points, centers)
    return labels


def compute_centroids(
    X: np.ndarray,
    labels: np.ndarray,
    n_colors: int,
    *,
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    r"""Move every centre to the weighted mean of its points (the update step).

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        The points.
    labels : array_like of int, shape (n_samples,)
        The cluster of each point, in ``0..n_colors-1``.
    n_colors : int
        Number of clusters K.
    sample_weight : array_like of shape (n_samples,), optional
        Non-negative weight of each point; all ones by default.

    Returns
    -------
    centroids : ndarray of float64, shape (n_colors, n_features)
        :math:`\mu_k = \sum_{c(i)=k} w_i x^{(i)} / \sum_{c(i)=k} w_i`.

    Notes
    -----
    With the assignment fixed, :math:`J` is a sum of one quadratic per cluster, each minimised
    by the cluster's weighted mean. An *empty* cluster (no point, or only zero weights) has no
    mean; it is relocated to the point that costs the most where it is (largest
    :math:`w_i \lVert x^{(i)} - \mu_{c(i)} \rVert^2`), which is taken out of its old cluster
    (whose mean is updated). This lowers :math:`J` and never leaves NaN. If there are fewer
    distinct points than clusters the surplus clusters sit on the overall mean.

    Examples
    --------
    >>> compute_centroids([[0, 0], [2, 2], [10, 10]], [0, 0, 1], 2).tolist()
    [[1.0, 1.0], [10.0, 10.0]]
    >>> compute_centroids([[0, 0], [2, 2], [10, 10]], [0, 0, 1], 2,
    ...                   sample_weight=[3, 1, 1]).tolist()
    [[0.5, 0.5], [10.0, 10.0]]
    """
    points = _as_points(X)
    n_colors = _check_n_colors(n_colors)
    checked_labels = _as_labels(labels, points.shape[0], n_colors)
    weights = _as_weights(sample_weight, points.shape[0])
    return _update(points, checked_labels, weights, n_colors)


def run_kmeans(
    X: np.ndarray,
    initial_centroids: np.ndarray,
    max_iter: int = 300,
    *,
    sample_weight: np.ndarray | None = None,
    tol: float = 1e-4,
) -> KMeansResult:
    r"""Lloyd's algorithm from given starting centres.

    Parameters
    ----------
    X : array_like, shape (n_samples, n_features)
        The points.
    initial_centroids : array_like, shape (n_colors, n_features)
        Starting centres, for example from :func:`kmeans_init_centroids`.
    max_iter : int, optional
        Most assignment + update iterations (default 300).
    sample_weight : array_like of shape (n_samples,), optional
        Non-negative weight of each point; all ones by default. K-means on the distinct
        colours of an image weighted by their pixel counts gives the same result as k-means on
        every pixel.
    tol : float, optional
        Stop when the summed squared shift of the centres in one iteration is at most
        ``tol`` times the mean variance of the features of ``X`` (default 1e-4, as
        scikit-learn). ``tol=0`` runs until the assignment no longer changes.

    Returns
    -------
    KMeansResult
        ``centers``, ``labels``, ``inertia`` (:math:`J`), ``n_iter``, ``converged`` and the
        ``inertia_history``.

    Notes
    -----
    Each iteration does the assignment step (:func:`find_closest_centroids`) then the update
    step (:func:`compute_centroids`); neither can raise

    .. math:: J(c, \mu) = \sum_i w_i \lVert x^{(i)} - \mu_{c(i)} \rVert^2 ,

    and there are finitely many assignments, so the loop ends. It stops when the assignment is
    the same as in the previous iteration (the centres are then a fixed point) or when the
    centres moved less than the tolerance. After the loop, one last assignment makes the
    labels match the returned centres, and ``inertia`` is :math:`J` for that pair.

    Examples
    --------
    >>> X = [[0, 0], [0, 2], [10, 10], [10, 12]]
    >>> result = run_kmeans(X, [[0, 0], [10, 10]])
    >>> result.centers.tolist(), result.labels.tolist(), result.inertia
    ([[0.0, 1.0], [10.0, 11.0]], [0, 0, 1, 1], 4.0)
    """
    points = _as_points(X)
    centers = _as_points(initial_centroids, "initial_centroids").copy()
    if centers.shape[1] != points.shape[1]:
        raise ValueError(
            f"initial_centroids must have {points.shape[1]} features like X, got {centers.shape[1]}"
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(tol, (int, float, np.floating)) and np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    weights = _as_weights(sample_weight, points.shape[0])
    return _lloyd(points, centers, weights, int(max_iter), _tolerance(points, weights, tol))


def _lloyd(
    X: np.ndarray, centers: np.ndarray, weights: np.ndarray, max_iter: int, tol_abs: float
) -> KMeansResult:
    """The Lloyd loop on valid input (``tol_abs`` already scaled)."""
    n_colors = centers.shape[0]
    previous_labels: np.ndarray | None = None
    history: list[float] = []
    converged = False
    n_iter = 0
    for iteration in range(max_iter):
        labels, distances = _assign(X, centers)
        history.append(float(np.dot(weights, distances)))
        new_centers = _update(X, labels, weights, n_colors)
        n_iter = iteration + 1
        shift = float(np.sum((new_centers - centers) ** 2))
        centers = new_centers
        if previous_labels is not None and np.array_equal(labels, previous_labels):
            converged = True
            break
        if shift <= tol_abs:
            converged = True
            break
        previous_labels = labels
    labels, _ = _assign(X, centers)
    return KMeansResult(
        centers=centers,
        labels=labels,
        inertia=_inertia(X, weights, centers, labels),
        n_iter=n_iter,
        converged=converged,
        inertia_history=tuple(history),
    )
