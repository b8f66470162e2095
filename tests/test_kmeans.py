"""The four k-means functions: hand-worked toys, an oracle, and invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kmquant import (
    color_histogram,
    compute_centroids,
    find_closest_centroids,
    kmeans_init_centroids,
    run_kmeans,
)

# ---------------------------------------------------------------- kmeans_init_centroids


def test_random_init_picks_distinct_rows_even_with_duplicates():
    X = np.array([[0, 0]] * 50 + [[1, 1]] * 50 + [[5, 5]])
    for seed in range(20):
        centroids = kmeans_init_centroids(X, 3, method="random", rng=seed)
        assert len({tuple(row) for row in centroids}) == 3
        assert {tuple(row) for row in centroids} == {(0, 0), (1, 1), (5, 5)}


def test_random_init_never_picks_zero_weight_points():
    X = np.array([[0], [1], [2], [3]])
    weights = np.array([1.0, 0.0, 1.0, 0.0])
    for seed in range(20):
        centroids = kmeans_init_centroids(X, 2, method="random", sample_weight=weights, rng=seed)
        assert sorted(centroids[:, 0].tolist()) == [0.0, 2.0]


def test_random_init_follows_the_weights():
    # Picking one centre out of two points weighted 99:1 is like picking a random pixel.
    X = np.array([[0.0], [1.0]])
    picks = [
        kmeans_init_centroids(X, 1, method="random", sample_weight=[99, 1], rng=seed)[0, 0]
        for seed in range(200)
    ]
    assert picks.count(0.0) > 180


@pytest.mark.parametrize("method", ["random", "k-means++"])
def test_init_refuses_more_centres_than_distinct_points(method):
    with pytest.raises(ValueError, match="fewer than n_colors=3"):
        kmeans_init_centroids([[0, 0], [0, 0], [1, 1]], 3, method=method, rng=0)


def test_kmeans_plusplus_puts_one_centre_in_each_separated_group():
    rng = np.random.default_rng(1)
    groups = np.array([[0, 0, 0], [200, 0, 0], [0, 200, 0], [0, 0, 200]], dtype=float)
    X = np.concatenate([group + rng.normal(0, 2, size=(40, 3)) for group in groups])
    for seed in range(10):
        centroids = kmeans_init_centroids(X, 4, rng=seed)
        nearest_group = find_closest_centroids(centroids, groups)
        assert sorted(nearest_group.tolist()) == [0, 1, 2, 3]


def test_kmeans_plusplus_centres_are_distinct_rows_of_x(small_photo):
    hist = color_histogram(small_photo)
    centroids = kmeans_init_centroids(hist.colors, 64, sample_weight=hist.counts, rng=3)
    rows = {tuple(row) for row in hist.colors.astype(float)}
    assert len({tuple(row) for row in centroids}) == 64
    assert all(tuple(row) in rows for row in centroids)


def test_same_seed_same_centres_and_unknown_method_rejected():
    X = np.random.default_rng(0).random((100, 3))
    np.testing.assert_array_equal(
        kmeans_init_centroids(X, 5, rng=7), kmeans_init_centroids(X, 5, rng=7)
    )
    with pytest.raises(ValueError, match="method must be one of"):
        kmeans_init_centroids(X, 5, method="median")


# ---------------------------------------------------------------- find_closest_centroids


def test_find_closest_centroids_by_hand():
    X = [[0, 0], [1, 0], [4, 4], [6, 5], [9, 9]]
    centroids = [[0, 0], [5, 5], [10, 10]]
    assert find_closest_centroids(X, centroids).tolist() == [0, 0, 1, 1, 2]


def test_find_closest_centroids_breaks_ties_towards_the_lowest_index():
    assert find_closest_centroids([[5.0]], [[10.0], [0.0]]).tolist() == [0]
    assert find_closest_centroids([[5.0]], [[0.0], [10.0]]).tolist() == [0]


def test_find_closest_centroids_checks_feature_counts():
    with pytest.raises(ValueError, match="3 features like X, got 2"):
        find_closest_centroids([[0, 0, 0]], [[0, 0]])


# ---------------------------------------------------------------- compute_centroids


def test_compute_centroids_by_hand_unweighted_and_weighted():
    X = [[0, 0], [2, 2], [10, 10], [12, 14]]
    assert compute_centroids(X, [0, 0, 1, 1], 2).tolist() == [[1, 1], [11, 12]]
    weighted = compute_centroids(X, [0, 0, 1, 1], 2, sample_weight=[3, 1, 1, 0])
    assert weighted.tolist() == [[0.5, 0.5], [10, 10]]


def test_empty_cluster_takes_the_worst_represented_point():
    # One cluster holds 0, 1 and 10 (mean 11/3): 10 costs most, so it founds the empty
    # cluster and the donor's mean becomes (0 + 1) / 2.
    centroids = compute_centroids([[0.0], [1.0], [10.0]], [0, 0, 0], 2)
    assert centroids.tolist() == [[0.5], [10.0]]


def test_empty_cluster_relocation_uses_weighted_cost():
    # -10 is farthest from the mean (1.44), but 3 carries 100 pixels: 100 * 1.56^2 > 11.4^2,
    # so 3 is the worst-represented colour and founds the empty cluster.
    X = [[-10.0], [0.0], [3.0]]
    centroids = compute_centroids(X, [0, 0, 0], 2, sample_weight=[1, 100, 100])
    assert centroids[1, 0] == 3.0
    assert centroids[0, 0] == pytest.approx(-10 / 101)


def test_surplus_clusters_never_become_nan():
    centroids = compute_centroids([[2.0], [2.0]], [0, 0], 3)
    assert np.all(np.isfinite(centroids))


def test_compute_centroids_validates_labels():
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        compute_centroids([[0], [1]], [0, 2], 2)
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        compute_centroids([[0], [1]], [0, 1], 2, sample_weight=[1, -1])


# ---------------------------------------------------------------- run_kmeans


def test_run_kmeans_by_hand():
    X = [[0, 0], [0, 2], [10, 10], [10, 12]]
    result = run_kmeans(X, [[0, 0], [0, 2]], 100)
    # Iteration 1: {0,0} alone, {0,2},{10,10},{10,12} -> centres (0,0), (20/3, 8).
    # Iteration 2: (0,2) moves to the first centre -> (0,1), (10,11); then nothing changes.
    assert result.centers.tolist() == [[0.0, 1.0], [10.0, 11.0]]
    assert result.labels.tolist() == [0, 0, 1, 1]
    assert result.inertia == 4.0
    assert result.converged
    # J at the start: (10,10) and (10,12) are 164 and 200 from (0,2).
    assert result.inertia_history[0] == 364.0


def test_run_kmeans_with_weights_equals_repeated_points():
    X = np.array([[0.0], [3.0], [10.0], [11.0]])
    weights = np.array([2, 1, 1, 3])
    repeated = np.repeat(X, weights, axis=0)
    start = np.array([[0.0], [11.0]])
    weighted = run_kmeans(X, start, sample_weight=weights, tol=0)
    plain = run_kmeans(repeated, start, tol=0)
    np.testing.assert_allclose(weighted.centers, plain.centers)
    assert weighted.inertia == pytest.approx(plain.inertia)
    assert weighted.centers.tolist() == [[1.0], [10.75]]


def test_run_kmeans_stops_at_max_iter():
    X = np.random.default_rng(0).random((500, 3))
    result = run_kmeans(X, X[:8], 2, tol=0)
    assert result.n_iter == 2 and not result.converged


def test_run_kmeans_validates_arguments():
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1, got 0"):
        run_kmeans([[0.0]], [[0.0]], 0)
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        run_kmeans([[0.0]], [[0.0]], tol=-1)
    with pytest.raises(ValueError, match="X must be finite"):
        run_kmeans([[np.nan]], [[0.0]])


@pytest.mark.parametrize("n_colors", [4, 16])
def test_oracle_same_result_as_scikit_learn_lloyd(small_photo, n_colors):
    from sklearn.cluster import KMeans

    hist = color_histogram(small_photo)
    X = hist.colors.astype(float)
    weights = hist.counts.astype(float)
    start = kmeans_init_centroids(X, n_colors, sample_weight=weights, rng=11)
    ours = run_kmeans(X, start, 300, sample_weight=weights, tol=0)
    reference = KMeans(n_colors, init=start, n_init=1, max_iter=300, tol=0, algorithm="lloyd")
    reference.fit(X, sample_weight=weights)
    np.testing.assert_allclose(ours.centers, reference.cluster_centers_, rtol=1e-9, atol=1e-7)
    assert ours.inertia == pytest.approx(reference.inertia_, rel=1e-9)
    np.testing.assert_array_equal(ours.labels, reference.labels_)


def test_histogram_kmeans_equals_per_pixel_kmeans(small_photo):
    pixels = small_photo.reshape(-1, 3).astype(float)
    hist = color_histogram(small_photo)
    start = kmeans_init_centroids(hist.colors, 12, sample_weight=hist.counts, rng=5)
    on_histogram = run_kmeans(hist.colors, start, sample_weight=hist.counts, tol=0)
    on_pixels = run_kmeans(pixels, start, tol=0)
    np.testing.assert_allclose(on_histogram.centers, on_pixels.centers, rtol=1e-10)
    assert on_histogram.inertia == pytest.approx(on_pixels.inertia, rel=1e-10)
    assert on_histogram.n_iter == on_pixels.n_iter
    np.testing.assert_array_equal(on_histogram.labels[hist.inverse], on_pixels.labels)


# ---------------------------------------------------------------- properties

points = arrays(
    np.float64,
    st.tuples(st.integers(8, 60), st.integers(1, 4)),
    # Colour-like values: three decimals, so that distinct points are measurably apart.
    elements=st.floats(0, 255, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 3)),
)


@settings(max_examples=60, deadline=None)
@given(
    X=points,
    n_colors=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    weighted=st.booleans(),
    init=st.sampled_from(["k-means++", "random"]),
)
def test_inertia_never_increases_and_labels_end_nearest(X, n_colors, seed, weighted, init):
    distinct = np.unique(X, axis=0).shape[0]
    n_colors = min(n_colors, distinct)
    weights = np.random.default_rng(seed).integers(1, 50, X.shape[0]) if weighted else None
    start = kmeans_init_centroids(X, n_colors, method=init, sample_weight=weights, rng=seed)
    result = run_kmeans(X, start, 50, sample_weight=weights, tol=0)

    history = np.array([*result.inertia_history, result.inertia])
    # Rounding noise scales with the squared magnitude of the data, not with J (which can be 0).
    total_weight = X.shape[0] if weights is None else weights.sum()
    scale = max(1.0, total_weight * float((X**2).sum(axis=1).max()))
    assert np.all(np.diff(history) <= 1e-12 * scale)

    distances = ((X[:, None, :] - result.centers[None, :, :]) ** 2).sum(axis=2)
    chosen = distances[np.arange(X.shape[0]), result.labels]
    assert np.all(chosen <= distances.min(axis=1) + 1e-7 * scale)
    assert np.all(np.isfinite(result.centers))
