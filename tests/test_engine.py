"""The fast path (compiled kernels, coarse-to-fine, swaps) against the readable reference."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmquant import _kernels, color_histogram, kmeans_init_centroids, quantize, run_kmeans
from kmquant.engine import (
    PRESETS,
    box_points,
    coarse_points,
    fit_centers,
    improve_by_swaps,
    initial_centers,
    lloyd,
    split_centers,
    split_into_boxes,
)
from kmquant.histogram import cell_histogram, pack_colors
from kmquant.kmeans import _lloyd, _tolerance


def reference_histogram(pixels):
    keys, inverse, counts = np.unique(pack_colors(pixels), return_inverse=True, return_counts=True)
    return keys, counts, inverse.reshape(-1)


@pytest.mark.parametrize("n_channels", [1, 2, 3, 4])
def test_hash_histogram_equals_np_unique(sample_image, n_channels):
    rng = np.random.default_rng(n_channels)
    pixels = sample_image.reshape(-1, 3)[::7]
    extra = rng.integers(0, 256, (pixels.shape[0], 1), dtype=np.uint8)
    pixels = np.ascontiguousarray(np.hstack([pixels, extra, 255 - extra])[:, :n_channels])
    histogram = color_histogram(pixels)
    keys, counts, inverse = reference_histogram(pixels)
    np.testing.assert_array_equal(pack_colors(histogram.colors), keys)
    np.testing.assert_array_equal(histogram.counts, counts)
    np.testing.assert_array_equal(histogram.inverse, inverse)


def test_hash_histogram_handles_full_32_bit_keys():
    pixels = np.array([[255, 255, 255, 255], [0, 0, 0, 0], [255, 255, 255, 255]], np.uint8)
    histogram = color_histogram(pixels)
    assert histogram.colors.tolist() == [[0, 0, 0, 0], [255, 255, 255, 255]]
    assert histogram.counts.tolist() == [1, 2]


def compiled_lloyd(X, weights, centers, max_iter, tol_abs, relaxation=1.0, by_scan=False):
    """The compiled Lloyd from a full scan (or by scan, every guess 0), in place on
    ``centers``: labels, n_iter, converged."""
    nearest = np.zeros((3, X.shape[0]), dtype=np.intp)
    bounds = np.empty((3, X.shape[0]))
    no_state = np.empty((0, centers.shape[1]))
    n_iter, converged = _kernels.lloyd_from(
        X, weights, centers, max_iter, tol_abs, nearest, bounds, no_state, relaxation, by_scan
    )
    return nearest[0], n_iter, converged


def assert_same_lloyd_run_as_reference(X, weights, n_colors, seed):
    """The compiled Lloyd, with bounds and by scan, and the reference from the same start:
    the same run. Returns n_iter."""
    start = kmeans_init_centroids(X, n_colors, sample_weight=weights, rng=seed)
    tol_abs = _tolerance(X, weights, 1e-4)
    reference = _lloyd(X, start.copy(), weights, 300, tol_abs)
    for by_scan in (False, True):
        centers = start.copy()
        labels, n_iter, converged = compiled_lloyd(X, weights, centers, 300, tol_abs, 1.0, by_scan)
        np.testing.assert_allclose(centers, reference.centers, rtol=0, atol=1e-9)
        np.testing.assert_array_equal(labels, reference.labels)
        assert (n_iter, converged) == (reference.n_iter, reference.converged)
    return n_iter


@pytest.mark.parametrize(("n_colors", "seed"), [(2, 0), (3, 4), (8, 1), (32, 2), (64, 3)])
def test_compiled_lloyd_equals_reference_lloyd(small_photo, n_colors, seed):
    # K = 2 has no third centre, K = 3 no centre beyond the third.
    histogram = color_histogram(small_photo)
    X = histogram.colors.astype(float)
    weights = histogram.counts.astype(float)
    assert_same_lloyd_run_as_reference(X, weights, n_colors, seed)


def test_compiled_lloyd_equals_reference_lloyd_at_k_256(sample_image):
    # 16,000 colours and 256 centres: many points lie near two or three clusters at once, so
    # every way the bounds settle a label (second centre nearer, search in the band) is taken.
    histogram = color_histogram(sample_image[::2, ::2])
    X = histogram.colors.astype(float)
    weights = histogram.counts.astype(float)
    assert assert_same_lloyd_run_as_reference(X, weights, 256, 5) > 10


@pytest.mark.parametrize("n_colors", [2, 16, 256])
def test_separation_walk_by_norm_equals_all_pairs(sample_image, n_colors):
    rng = np.random.default_rng(n_colors)
    pixels = sample_image.reshape(-1, 3)
    centers = pixels[rng.choice(len(pixels), n_colors, replace=False)] + rng.random((n_colors, 3))
    shift = rng.random(n_colors)
    shift[rng.random(n_colors) < 0.5] = 0.0  # centres that did not move
    distances = np.sqrt(((centers[:, None] - centers[None]) ** 2).sum(2))
    np.fill_diagonal(distances, np.inf)
    half_gap = distances.min(1) / 2
    reach = 2 * _kernels._NEIGHBOURHOOD_GAPS * half_gap
    local_shift = [shift[distances[k] < reach[k]].max(initial=0.0) for k in range(n_colors)]
    # Nearest others unknown, or remembered wrongly (a remembered one only starts the walk,
    # which still finds the nearest and remembers it).
    for remembered in (np.full(n_colors, -1), (np.arange(n_colors) + 1) % n_colors):
        separation = (*(np.empty(n_colors) for _ in range(3)), remembered)
        _kernels._separation(centers, _kernels._centers_by_norm(centers), shift, separation)
        np.testing.assert_allclose(separation[0], half_gap, rtol=1e-12)
        np.testing.assert_allclose(separation[1], reach, rtol=1e-12)
        np.testing.assert_array_equal(separation[2], local_shift)
        np.testing.assert_allclose(distances[np.arange(n_colors), remembered], 2 * half_gap)


@pytest.mark.parametrize("n_colors", [16, 64])
def test_over_relaxed_lloyd_ends_at_a_fixed_point_by_another_path(sample_image, n_colors):
    # Over-relaxed first steps, then plain ones: with no tolerance the run ends where no label
    # moves, every centre its cluster's weighted mean and every label the nearest centre; the
    # path differs from plain Lloyd's (fewer steps here) and J is no worse.
    histogram = color_histogram(sample_image)
    X, weights = histogram.colors.astype(float), histogram.counts.astype(float)
    start = kmeans_init_centroids(X, n_colors, sample_weight=weights, rng=4)
    runs = {}
    for relaxation in (1.0, 1.5):
        centers = start.copy()
        found, n_iter, converged = compiled_lloyd(X, weights, centers, 500, 0.0, relaxation)
        assert converged
        means = centers.copy()
        _kernels.weighted_means(X, weights, found, means)
        np.testing.assert_allclose(centers, means, rtol=1e-12, atol=1e-9)
        labels = np.empty(X.shape[0], dtype=np.intp)
        _kernels.nearest_labels(X, centers, labels)
        np.testing.assert_array_equal(found, labels)
        runs[relaxation] = (n_iter, _kernels.weighted_squared_error(X, weights, centers, labels))
    assert runs[1.5][0] < runs[1.0][0]
    assert runs[1.5][1] <= runs[1.0][1] * (1 + 1e-3)


@pytest.mark.parametrize("n_colors", [16, 256])
def test_lloyd_after_a_run_equals_lloyd_from_a_full_scan(sample_image, n_colors):
    # A swap's start differs from a converged run in two centres; starting from that run's
    # bounds must give the same run as a full scan, and leave a state that serves again.
    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    X, weights = box_points(colors, counts, 3072)
    tol_abs = _tolerance(X, weights, 1e-4)
    start = initial_centers(X, weights, n_colors, "k-means++", np.random.default_rng(1))
    converged = lloyd(X, weights, start, 300, tol_abs)
    rng = np.random.default_rng(2)
    previous = converged
    for _ in range(3):
        swapped = previous.centers.copy()
        swapped[rng.choice(n_colors, 2, replace=False)] = X[rng.choice(len(X), 2)]
        cold = lloyd(X, weights, swapped, 300, tol_abs)
        warm = lloyd(X, weights, swapped, 300, tol_abs, after=previous)
        np.testing.assert_array_equal(warm.centers, cold.centers)
        np.testing.assert_array_equal(warm.labels, cold.labels)
        assert warm.n_iter == cold.n_iter
        previous = warm


def guessing_case(sample_image, n_entries, guessing):
    """The sample's distinct colours, a palette of ``n_entries`` of them (from three on, with
    a repeated entry and near ties, the last entry half a unit from the third), every
    colour's nearest entry by the full scan (ties to the lowest index) and guesses of it:
    ``right``, ``random`` or all ``zero``."""
    colors = color_histogram(sample_image).colors.astype(np.float64)
    rng = np.random.default_rng(n_entries)
    palette = colors[rng.choice(len(colors), n_entries, replace=False)].round()
    if n_entries > 2:
        palette[1] = palette[0]  # a repeated entry
        palette[-1] = palette[2] + 0.5  # near ties
    expected = np.empty(len(colors), dtype=np.intp)
    _kernels.nearest_labels(colors, palette, expected)
    guesses = {
        "right": expected,
        "random": rng.integers(0, n_entries, len(colors)),
        "zero": np.zeros(len(colors), dtype=np.intp),
    }[guessing]
    return colors, palette, expected, guesses


@pytest.mark.parametrize("n_entries", [1, 2, 64, 256])
@pytest.mark.parametrize("guessing", ["right", "random", "zero"])
def test_nearest_labels_from_guesses_equal_the_full_scan(sample_image, n_entries, guessing):
    # Whatever the guesses, the labels are the full scan's, ties to the lowest index
    # (repeated entries tie); the sample's colours take the parallel path, a slice the serial.
    from kmquant.remap import nearest_palette_labels

    colors, palette, expected, guesses = guessing_case(sample_image, n_entries, guessing)
    assert len(colors) > _kernels._PARALLEL_ASSIGN_POINTS
    for count in (len(colors), 700):
        labels = np.empty(count, dtype=np.intp)
        _kernels.nearest_labels_from(colors[:count], palette, guesses[:count], labels)
        np.testing.assert_array_equal(labels, expected[:count])
    np.testing.assert_array_equal(nearest_palette_labels(colors, palette, guesses), expected)


@pytest.mark.parametrize("n_entries", [1, 2, 3, 5, 6, 16, 64, 96])
@pytest.mark.parametrize("guessing", ["right", "random", "zero"])
def test_nearest_labels_by_scan_equal_the_full_scan(sample_image, n_entries, guessing):
    # Three features, a few entries: whatever the guesses, the full scan's labels, ties to
    # the lowest index (repeated entries and near ties); through nearest_palette_labels too.
    # Up to 5 entries every other entry is a neighbour the scan checks first; from 6 on,
    # some are not.
    from kmquant.remap import GUESSES_SCAN_UP_TO, nearest_palette_labels

    assert n_entries <= GUESSES_SCAN_UP_TO
    colors, palette, expected, guesses = guessing_case(sample_image, n_entries, guessing)
    guesses = guesses.astype(np.uint8)  # as quantize keeps them
    labels = np.empty(len(colors), dtype=np.intp)
    _kernels.nearest_labels_by_scan(colors, palette, guesses, labels)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(nearest_palette_labels(colors, palette, guesses), expected)


@pytest.mark.parametrize("n_entries", [1, 2, 16, 64, 256])
@pytest.mark.parametrize("space", ["rgb", "lab", "grey", "two"])
def test_nearest_labels_by_grid_equal_the_full_scan(sample_image, n_entries, space):
    # The grid's candidates must hold every colour's nearest entry and every entry tied with
    # it (repeated entries tie; a colour halfway between two entries ties them), in index
    # order, and the cells must cover colours on the range's edges: the labels are the full
    # scan's, ties to the lowest index. The grid serves three features; one and two go
    # through the other searches, with the same labels.
    from kmquant.colorspace import color_features
    from kmquant.remap import nearest_palette_labels

    colors = color_histogram(sample_image).colors
    points = {
        "rgb": colors.astype(np.float64),
        "lab": color_features(colors, "lab"),
        "grey": colors[:, :1].astype(np.float64),
        "two": colors[:, 1:].astype(np.float64),
    }[space]
    rng = np.random.default_rng(n_entries)
    palette = points[rng.choice(len(points), n_entries, replace=False)].round()
    if n_entries > 2:
        palette[1] = palette[0]  # a repeated entry
        palette[-1] = palette[2] + 0.5  # near ties
        palette[6] = points.min(axis=0) - 40.0  # outside the colours' range
        # Colours exactly halfway between entries 3 and 4 (both rows are ties for them).
        halfway = (palette[3] + palette[4]) / 2
        points = np.vstack([points, halfway[None, :], points.max(axis=0)[None, :]])
    expected = np.empty(len(points), dtype=np.intp)
    _kernels.nearest_labels(points, palette, expected)
    if points.shape[1] == 3:
        labels = np.empty(len(points), dtype=np.intp)
        _kernels.nearest_labels_by_grid(np.ascontiguousarray(points), palette, labels)
        np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(nearest_palette_labels(points, palette), expected)
    guesses = np.zeros(len(points), dtype=np.intp)
    np.testing.assert_array_equal(nearest_palette_labels(points, palette, guesses), expected)


def test_nearest_labels_by_grid_on_one_colour_and_none():
    # One distinct colour (every feature's range is a single value) and no colours at all.
    palette = np.array([[10.0, 10.0, 10.0], [200.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
    labels = np.full(3, -1, dtype=np.intp)
    _kernels.nearest_labels_by_grid(np.full((3, 3), 150.0), palette, labels)
    np.testing.assert_array_equal(labels, [1, 1, 1])
    _kernels.nearest_labels_by_grid(np.empty((0, 3)), palette, labels[:0])


@pytest.mark.parametrize("n_centers", [1, 2, 64, 256])
def test_norm_table_finds_the_places_searchsorted_finds(n_centers):
    # The band search of Lloyd's assignment finds its ends through the table; it must land
    # where binary search does, for norms below, inside, on and above the centres' norms.
    rng = np.random.default_rng(n_centers)
    sorted_norms = np.sort(np.round(rng.uniform(10, 400, n_centers), 1))
    sorted_norms[n_centers // 2 :] = np.maximum.accumulate(sorted_norms[n_centers // 2 :])
    if n_centers > 4:
        sorted_norms[3] = sorted_norms[2]  # repeated norms
    table, low, scale = _kernels._norm_table(sorted_norms)
    values = np.concatenate([sorted_norms, rng.uniform(-5, 450, 2000), [-np.inf, np.inf]])
    for value in values:
        assert _kernels._first_norm_from(sorted_norms, table, low, scale, value) == (
            np.searchsorted(sorted_norms, value)
        )
        assert _kernels._first_norm_above(sorted_norms, table, low, scale, value) == (
            np.searchsorted(sorted_norms, value, side="right")
        )


@pytest.mark.parametrize("n_colors", [8, 64])
def test_compiled_lloyd_equals_reference_lloyd_on_box_means(sample_image, n_colors):
    # Box means are not integers, so the kernel's running cluster sums (updated only for the
    # points that move) round differently from the reference's recount: still the same run.
    histogram = color_histogram(sample_image)
    X, weights = box_points(histogram.colors.astype(float), histogram.counts.astype(float), 4 * 192)
    assert assert_same_lloyd_run_as_reference(X, weights, n_colors, n_colors) > 3


def test_compiled_lloyd_relocates_empty_clusters_like_the_reference():
    X = np.array([[0.0], [1.0], [10.0], [11.0], [30.0]])
    weights = np.ones(5)
    start = np.array([[0.0], [100.0], [200.0]])  # two centres start far from every point
    reference = run_kmeans(X, start, 50, tol=0)
    centers = start.copy()
    labels, _, _ = compiled_lloyd(X, weights, centers, 50, 0.0)
    np.testing.assert_allclose(np.sort(centers[:, 0]), np.sort(reference.centers[:, 0]))
    assert np.all(np.isfinite(centers))
    assert len(set(labels.tolist())) == 3


def test_compiled_kmeans_plusplus_picks_distinct_points_one_per_group():
    rng = np.random.default_rng(0)
    groups = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=float)
    X = np.concatenate([g + rng.normal(0, 3, (50, 3)) for g in groups])
    for seed in range(10):
        centers = initial_centers(X, np.ones(len(X)), 4, "k-means++", np.random.default_rng(seed))
        nearest = np.argmin(((centers[:, None] - groups[None]) ** 2).sum(2), axis=1)
        assert sorted(nearest.tolist()) == [0, 1, 2, 3]
        assert all((X == row).all(axis=1).any() for row in centers)


def test_kmeans_plusplus_trial_potentials_same_serial_or_parallel(small_photo):
    # The potentials are summed per block of points and the blocks in order, so the serial
    # and the threaded drivers must agree to the last bit, and with a plain sum to rounding,
    # blocks out of a candidate's reach included.
    hist = color_histogram(small_photo)
    X = hist.colors.astype(np.float64)
    weights = hist.counts.astype(np.float64)
    seeds = _kernels._seeds_of(_kernels._seed_frame(X, weights))
    for point in (0, len(X) // 3, len(X) - 1):  # three centres, in the sorted order
        _kernels._closer_to(seeds, point)
    closest = seeds.closest[np.argsort(seeds.order)]  # back in X's order
    n_blocks = seeds.reach.shape[0]
    assert n_blocks > 1
    candidates = np.array([3, len(X) // 2, len(X) - 2], dtype=np.intp)
    serial = np.empty((n_blocks, 3))
    threaded = np.empty((n_blocks, 3))
    _kernels._trial_potentials_serial(
        seeds, candidates, serial, np.empty((n_blocks, _kernels._SEED_BLOCK))
    )
    _kernels._trial_potentials_parallel(
        seeds, candidates, threaded, np.empty((n_blocks, _kernels._SEED_BLOCK))
    )
    assert np.array_equal(serial, threaded)
    expected = [
        np.sum(weights * np.minimum(closest, ((X - X[seeds.order[c]]) ** 2).sum(1)))
        for c in candidates
    ]
    np.testing.assert_allclose(serial.sum(0), expected, rtol=1e-12)


def greedy_kmeans_plusplus(X, weights, uniforms):
    """Greedy k-means++ with every distance computed, drawing from ``uniforms`` as the kernel."""
    cumulative = np.cumsum(weights)
    chosen = [int(np.searchsorted(cumulative, uniforms[0, 0] * cumulative[-1], side="right"))]
    closest = ((X - X[chosen[0]]) ** 2).sum(1)
    for draws in uniforms[1:]:
        cumulative = np.cumsum(weights * closest)
        candidates = np.minimum(
            np.searchsorted(cumulative, draws * cumulative[-1], side="right"), len(X) - 1
        )
        trials = np.minimum(closest, ((X[None] - X[candidates][:, None]) ** 2).sum(2))
        best = int(np.argmin(trials @ weights))
        chosen.append(int(candidates[best]))
        closest = trials[best]
    return X[chosen]


@pytest.mark.parametrize("n_colors", [16, 256])
def test_pruned_kmeans_plusplus_equals_greedy_kmeans_plusplus(sample_image, n_colors):
    # Pruning blocks by norm must never change a potential's winner or a draw.
    histogram = color_histogram(sample_image[::2, ::2])
    X, weights = box_points(histogram.colors.astype(float), histogram.counts.astype(float), 3072)
    uniforms = np.random.default_rng(n_colors).random((n_colors, 2 + int(np.log(n_colors))))
    centers, n_found = _kernels.kmeans_plusplus(X, weights, n_colors, uniforms)
    assert n_found == n_colors
    np.testing.assert_array_equal(centers, greedy_kmeans_plusplus(X, weights, uniforms))


@pytest.mark.parametrize("by_scan", [False, True])
@pytest.mark.parametrize("n_points", [3072, 20000])
def test_restarts_side_by_side_equal_restarts_one_after_another(sample_image, n_points, by_scan):
    # 20,000 points: each run's Lloyd reaches its parallel assignment, nested in the loop
    # over runs; the results must not depend on that, nor on the number of threads, nor on
    # whether Lloyd keeps bounds or scans.
    import numba

    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    X, weights = box_points(colors, counts, n_points)
    assert X.shape[0] > 8192 or n_points < 8192
    n_colors, n_runs = 32, 3
    uniforms = np.random.default_rng(n_points).random((n_runs, n_colors, 5))
    tol_abs = _tolerance(X, weights, 1e-4)
    expected = []
    for draws in uniforms:
        start, _ = _kernels.kmeans_plusplus(X, weights, n_colors, draws)
        expected.append(lloyd(X, weights, start, 300, tol_abs))
    threads = numba.get_num_threads()
    try:
        for n_threads in {1, threads}:
            numba.set_num_threads(n_threads)
            starts = np.empty((n_runs, n_colors, 3))
            nearest = np.empty((n_runs, 3, X.shape[0]), dtype=np.intp)
            bounds = np.empty((n_runs, 3, X.shape[0]))
            n_iters = np.zeros(n_runs, dtype=np.intp)
            n_found = np.empty(n_runs, dtype=np.intp)
            state = X[:0]  # none: full scans
            _kernels.restarts(
                X,
                weights,
                uniforms,
                starts,
                300,
                tol_abs,
                nearest,
                bounds,
                state,
                n_iters,
                n_found,
                by_scan,
            )
            labels = nearest[:, 0]
            assert n_found.tolist() == [n_colors] * n_runs
            for run, reference in enumerate(expected):
                np.testing.assert_array_equal(starts[run], reference.centers)
                np.testing.assert_array_equal(labels[run], reference.labels)
                assert n_iters[run] == reference.n_iter
    finally:
        numba.set_num_threads(threads)


def test_best_restart_is_the_same_side_by_side_or_one_after_another(sample_image, monkeypatch):
    # On 20,000 points the restarts run one after another (each on every thread); with the
    # threshold raised they run side by side: same centres, J and iterations.
    from kmquant import engine

    histogram = color_histogram(sample_image)
    X, weights = box_points(histogram.colors.astype(float), histogram.counts.astype(float), 20000)
    tol_abs = _tolerance(X, weights, 1e-4)
    options = dict(init="k-means++", n_init=3, max_iter=300, tol_abs=tol_abs)
    one_after_another = engine.best_restart(X, weights, 24, rng=np.random.default_rng(5), **options)
    monkeypatch.setattr(engine, "_LLOYD_SERIAL_BELOW", 10**9)
    side_by_side = engine.best_restart(X, weights, 24, rng=np.random.default_rng(5), **options)
    np.testing.assert_array_equal(side_by_side[0], one_after_another[0])
    assert side_by_side[1:] == one_after_another[1:]


def test_restarts_from_given_centres_and_too_few_points():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    weights = np.ones(4)
    starts = np.array([[[0.0, 0.0], [5.0, 5.0]]])
    nearest = np.empty((1, 3, 4), dtype=np.intp)
    bounds = np.empty((1, 3, 4))
    n_iters = np.zeros(1, dtype=np.intp)
    n_found = np.empty(1, dtype=np.intp)
    no_draws = np.empty((1, 0, 0))
    no_state = np.empty((0, 2))
    _kernels.restarts(
        X, weights, no_draws, starts, 50, 0.0, nearest, bounds, no_state, n_iters, n_found, False
    )
    labels = nearest[:, 0]
    assert n_found[0] == 2
    np.testing.assert_allclose(starts[0], [[1 / 3, 1 / 3], [5.0, 5.0]])
    assert labels[0].tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="only 3 distinct points"):
        fit_centers(
            np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], dtype=np.uint8),
            np.ones(3),
            4,
            preset=PRESETS["default"],
            init="k-means++",
            n_init=2,
            max_iter=50,
            tol=1e-4,
            rng=np.random.default_rng(0),
        )


def test_compiled_kmeans_plusplus_reports_too_few_points():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="only 2 distinct points"):
        initial_centers(X, np.ones(3), 3, "k-means++", np.random.default_rng(0))


def test_coarse_points_keep_total_weight_and_mean(small_photo):
    histogram = color_histogram(small_photo)
    points, weights = coarse_points(histogram.colors, histogram.counts, 4)
    assert weights.sum() == histogram.counts.sum()
    assert points.shape[0] < histogram.n_colors
    np.testing.assert_allclose(
        weights @ points, histogram.counts @ histogram.colors.astype(float), rtol=1e-12
    )


def test_box_points_keep_weight_and_mean_and_lose_less_than_cells_of_the_same_number(
    sample_image,
):
    histogram = color_histogram(sample_image)
    X, weights = histogram.colors.astype(np.float64), histogram.counts.astype(np.float64)
    mean = np.average(X, axis=0, weights=weights)

    def sum_of_squares_about_mean(points, point_weights):
        return float(point_weights @ ((points - mean) ** 2).sum(axis=1))

    for bits in (4, 5):
        cells, cell_weights = coarse_points(histogram.colors, histogram.counts, bits)
        boxes, box_weights = box_points(X, weights, cells.shape[0])
        assert boxes.shape == cells.shape
        assert box_weights.sum() == pytest.approx(weights.sum(), rel=1e-12)
        np.testing.assert_allclose(box_weights @ boxes, weights @ X, rtol=1e-9)
        # Merging loses each group's own sum of squares: the total about the mean drops by
        # exactly that. Boxes, small where colours are dense, lose far less than cells.
        full = sum_of_squares_about_mean(X, weights)
        lost_by_cells = full - sum_of_squares_about_mean(cells, cell_weights)
        lost_by_boxes = full - sum_of_squares_about_mean(boxes, box_weights)
        assert 0 < lost_by_boxes < 0.5 * lost_by_cells


def test_box_points_leave_few_points_as_they_are():
    X = np.array([[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    weights = np.array([1.0, 2.0])
    points, point_weights = box_points(X, weights, 2)
    assert points is X and point_weights is weights
    merged, merged_weights = box_points(X, weights, 1)
    np.testing.assert_allclose(merged, [[6.0, 6.0, 6.0]])
    assert merged_weights.tolist() == [3.0]


def test_boxes_hold_every_point_once_at_their_means(sample_image):
    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    boxes = split_into_boxes(colors, counts, 768)
    assert sorted(boxes.members.tolist()) == list(range(len(colors)))
    for box in range(len(boxes.points)):
        held = boxes.members[boxes.starts[box] : boxes.stops[box]]
        assert counts[held].sum() == boxes.weights[box]
        np.testing.assert_allclose(
            boxes.points[box], np.average(colors[held], axis=0, weights=counts[held])
        )
    # The colours' own spread, which sets the final Lloyd's tolerance.
    assert boxes.scatter == pytest.approx(
        _tolerance(colors, counts, 1.0) * counts.sum() * 3, rel=1e-9
    )
    assert split_into_boxes(colors[:3], counts[:3], 3) is None


def test_three_feature_cuts_equal_the_general_ones(sample_image):
    # A fourth feature that is always 0 is never the widest, so every cut is the same: the
    # general partition (any number of features) must then give the three-feature one's
    # boxes exactly, sums included.
    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    padded = np.column_stack([colors, np.zeros(len(colors))])
    three = split_into_boxes(colors, counts, 768)
    general = split_into_boxes(padded, counts, 768)
    np.testing.assert_array_equal(general.points[:, :3], three.points)
    for name in ("weights", "members", "starts", "stops"):
        np.testing.assert_array_equal(getattr(general, name), getattr(three, name))
    assert general.scatter == three.scatter


@pytest.mark.parametrize("n_boxes", [768, 3072])
def test_packed_colours_give_the_same_boxes(sample_image, n_boxes):
    # The packed route sums each cut's low side apart and partitions without branches.
    # Everything but the order of the colours within a box must be the general route's,
    # bit for bit.
    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors, histogram.counts
    general = split_into_boxes(colors.astype(float), counts.astype(float), n_boxes)
    packed = split_into_boxes(
        colors.astype(float), counts.astype(float), n_boxes, colors=colors, counts=counts
    )
    for name in ("points", "weights", "starts", "stops"):
        np.testing.assert_array_equal(getattr(packed, name), getattr(general, name))
    assert packed.scatter == general.scatter
    for start, stop in zip(general.starts, general.stops, strict=True):
        np.testing.assert_array_equal(
            np.sort(packed.members[start:stop]), np.sort(general.members[start:stop])
        )
    assert not np.array_equal(packed.members, general.members)  # the branch-free cuts ran


def _assert_same_boxes(found, expected):
    """Boxes equal in everything but the order of the points within each box."""
    for index in (0, 1, 3, 4):  # means, weights, starts, stops
        np.testing.assert_array_equal(found[index], expected[index])
    assert found[5] == expected[5]
    for start, stop in zip(expected[3], expected[4], strict=True):
        np.testing.assert_array_equal(
            np.sort(found[2][start:stop]), np.sort(expected[2][start:stop])
        )


@pytest.mark.parametrize("n_boxes", [2, 3, 768, 3072])
def test_halves_cut_side_by_side_give_one_trees_boxes(sample_image, n_boxes):
    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors, histogram.counts
    _assert_same_boxes(
        _kernels.split_colors_into_boxes_in_halves(colors, counts, n_boxes),
        _kernels.split_colors_into_boxes(colors, counts, n_boxes),
    )


def test_a_half_that_needs_nearly_every_box_goes_on_cutting(sample_image):
    # One white colour weighing ten times the photo pulls the first cut's mean near white:
    # the high half is that colour and a few more, and the low half needs nearly every box,
    # far past the share it cuts side by side.
    histogram = color_histogram(sample_image)
    keep = np.any(histogram.colors != 255, axis=1)
    colors = np.vstack([histogram.colors[keep], [[255, 255, 255]]]).astype(np.uint8)
    counts = np.append(histogram.counts[keep], 10 * histogram.counts.sum())
    found = _kernels.split_colors_into_boxes_in_halves(colors, counts, 768)
    _assert_same_boxes(found, _kernels.split_colors_into_boxes(colors, counts, 768))
    high_half = found[3][1]  # box 1 is the high half's first, starting where it starts
    assert np.sum(found[3] < high_half) > 0.9 * 768


def test_boxes_of_equal_spread_are_cut_in_the_order_of_their_points():
    # Consecutive grey levels, one pixel each: boxes of as many levels have exactly the same
    # J_b, so the order of cutting rests on the tie rule (the box whose points come first),
    # which the halves side by side must follow as one tree does.
    colors = np.zeros((1000, 3), dtype=np.uint8)
    colors[:, 0], colors[:, 1] = np.arange(1000) % 256, np.arange(1000) // 256
    counts = np.ones(1000, dtype=np.int64)
    one_tree = _kernels.split_colors_into_boxes(colors, counts, 300)
    _, spreads = np.unique(one_tree[1], return_counts=True)
    assert spreads.max() > 10  # many boxes of the same size, so of the same J_b
    _assert_same_boxes(_kernels.split_colors_into_boxes_in_halves(colors, counts, 300), one_tree)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_points=st.integers(2, 400),
    n_boxes=st.integers(2, 120),
    levels=st.sampled_from([4, 16, 256]),
)
def test_halves_give_one_trees_boxes_on_any_colours(seed, n_points, n_boxes, levels):
    # Few levels a channel make many boxes of equal J_b; counts from 1 to 1,000.
    rng = np.random.default_rng(seed)
    keys = rng.choice(levels**3, size=min(n_points, levels**3), replace=False)
    colors = np.stack([keys // levels**2, keys // levels % levels, keys % levels], axis=1)
    colors = (colors * (255 // (levels - 1))).astype(np.uint8)
    counts = rng.integers(1, 1001, len(colors))
    _assert_same_boxes(
        _kernels.split_colors_into_boxes_in_halves(colors, counts, n_boxes),
        _kernels.split_colors_into_boxes(colors, counts, n_boxes),
    )


def test_colours_the_packed_route_cannot_hold_take_the_general_one(sample_image):
    histogram = color_histogram(sample_image[:64, :64])
    colors, counts = histogram.colors, histogram.counts
    # Counts whose sums would no longer be exact integers in float64, and grey colours.
    huge = counts * (1 << 30)
    for these_colors, these_counts in ((colors, huge), (colors[:, :1], counts)):
        points, weights = these_colors.astype(float), these_counts.astype(float)
        expected = split_into_boxes(points, weights, 64)
        found = split_into_boxes(points, weights, 64, colors=these_colors, counts=these_counts)
        for name in ("points", "weights", "members", "starts", "stops"):
            np.testing.assert_array_equal(getattr(found, name), getattr(expected, name))


def test_compiled_inertia_and_pixel_labels_match_numpy(sample_image):
    histogram = color_histogram(sample_image[:101, :103])  # not a whole number of blocks
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    rng = np.random.default_rng(0)
    centers = rng.uniform(0, 255, (16, 3))
    labels = rng.integers(0, 16, len(colors))
    expected = np.sum(counts * np.sum((colors - centers[labels]) ** 2, axis=1))
    assert _kernels.weighted_squared_error(colors, counts, centers, labels) == pytest.approx(
        expected, rel=1e-12
    )
    color_labels = labels.astype(np.uint8)
    pixel_labels = _kernels.pixel_labels(color_labels, histogram.inverse)
    assert pixel_labels.dtype == np.uint8
    np.testing.assert_array_equal(pixel_labels, color_labels[histogram.inverse])


def test_per_pixel_sums_over_blocks_match_numpy(sample_image):
    # 393,216 pixels: six blocks of 2^16, the last one short of nothing; then a ragged crop.
    for image in (sample_image, sample_image[:301, :307]):
        histogram = color_histogram(image)
        palette = quantize(image, 16, rng=0).palette
        rng = np.random.default_rng(1)
        labels = rng.integers(0, 16, image.shape[0] * image.shape[1]).astype(np.uint8)
        np.testing.assert_array_equal(
            _kernels.label_counts(labels, 16), np.bincount(labels, minlength=16)
        )
        pixels = histogram.colors[histogram.inverse].astype(np.int64)
        expected = int(np.sum((pixels - palette[labels].astype(np.int64)) ** 2))
        # Integer squares: exact in any order.
        assert _kernels.pixel_squared_error(
            histogram.colors, histogram.inverse, palette, labels
        ) == float(expected)


def test_serial_full_scan_equals_the_parallel_one(sample_image):
    # Lloyd's first scan runs serially on few points (inside the side-by-side restarts a
    # parallel kernel would open a nested parallel region): the same nearest three, ties
    # included (centres on colours, one repeated).
    histogram = color_histogram(sample_image)
    colors = histogram.colors.astype(float)
    rng = np.random.default_rng(3)
    centers = colors[rng.choice(len(colors), 16, replace=False)]
    centers[-1] = centers[0]
    found = []
    for scan in (_kernels._nearest_three, _kernels._nearest_three_serial):
        state = (np.empty((3, len(colors)), dtype=np.intp), np.empty((3, len(colors))))
        scan(colors, centers, *state)
        found.append(state)
    for parallel, serial in zip(*found, strict=True):
        np.testing.assert_array_equal(serial, parallel)


@pytest.mark.parametrize("n_colors", [1, 2, 16, 256])
def test_scan_box_by_box_equals_the_full_scan(sample_image, n_colors):
    # Centres on colours (integer distances, so exact ties) and one repeated: the three
    # nearest and their distances must be those of the full scan, ties included.
    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    boxes = split_into_boxes(colors, counts, 192 * 16)
    rng = np.random.default_rng(n_colors)
    centers = colors[rng.choice(len(colors), n_colors, replace=False)]
    centers[-1] = centers[0]
    expected = (np.empty((3, len(colors)), dtype=np.intp), np.empty((3, len(colors))))
    _kernels._nearest_three(colors, centers, *expected)
    found = (np.empty((3, len(colors)), dtype=np.intp), np.empty((3, len(colors))))
    _kernels.nearest_three_by_boxes(
        colors, centers, boxes.points, boxes.members, boxes.starts, boxes.stops, *found
    )
    np.testing.assert_array_equal(found[0], expected[0])
    np.testing.assert_array_equal(found[1], expected[1])
    tol_abs = _tolerance(colors, counts, 1e-4)
    by_boxes = lloyd(colors, counts, centers, 300, tol_abs, boxes=boxes)
    full = lloyd(colors, counts, centers, 300, tol_abs)
    np.testing.assert_array_equal(by_boxes.centers, full.centers)
    assert by_boxes.n_iter == full.n_iter


def test_threads_at_most_limits_numba_threads_inside_and_restores_them():
    import numba

    from kmquant._kernels import threads_at_most

    before = numba.get_num_threads()
    with threads_at_most(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with pytest.raises(RuntimeError), threads_at_most(1):
        raise RuntimeError("inside")
    assert numba.get_num_threads() == before
    with threads_at_most(None), threads_at_most(before + 1):
        assert numba.get_num_threads() == before


def test_swaps_escape_a_bad_local_minimum():
    # Three tight groups; Lloyd from two centres in the first group and one between the other
    # two is stuck. One swap (remove a redundant centre, split the wide cluster) fixes it.
    rng = np.random.default_rng(0)
    groups = [np.array([0.0, 0.0]), np.array([100.0, 0.0]), np.array([0.0, 100.0])]
    X = np.concatenate([g + rng.normal(0, 1, (40, 2)) for g in groups])
    weights = np.ones(len(X))
    stuck = lloyd(X, weights, np.array([[-1.0, 0.0], [1.0, 0.0], [50.0, 50.0]]), 100, 0.0).centers
    stuck_inertia = float(weights @ ((X[:, None] - stuck[None]) ** 2).sum(2).min(1))
    better, inertia, accepted = improve_by_swaps(
        X, weights, stuck, trials=5, max_iter=100, tol_abs=0.0
    )
    assert accepted >= 1
    assert inertia < stuck_inertia / 10
    nearest_group = np.argmin(((better[:, None] - np.array(groups)[None]) ** 2).sum(2), axis=1)
    assert sorted(nearest_group.tolist()) == [0, 1, 2]


@pytest.mark.parametrize(("n_boxes", "n_colors", "trials"), [(2172, 128, 8), (3072, 256, 6)])
def test_swaps_from_bounds_equal_swaps_from_full_scans(
    sample_image, monkeypatch, n_boxes, n_colors, trials
):
    # From 65,536 point-centre pairs the trials start from the current bounds and the first
    # ranking reads Lloyd's state; at K = 256 the ranking after a kept swap computes exact
    # second distances only where it may need them. With the threshold raised, every step
    # scans in full.
    from kmquant import engine

    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    X, weights = box_points(colors, counts, n_boxes)
    tol_abs = _tolerance(X, weights, 1e-4)
    start = initial_centers(X, weights, n_colors, "k-means++", np.random.default_rng(3))
    assert X.shape[0] * n_colors >= engine._WARM_SWAP_PAIRS
    monkeypatch.setattr(engine, "_trials_side_by_side", lambda n_points: 1)
    warm = improve_by_swaps(X, weights, start, trials=trials, max_iter=300, tol_abs=tol_abs)
    monkeypatch.setattr(engine, "_WARM_SWAP_PAIRS", 10**12)
    cold = improve_by_swaps(X, weights, start, trials=trials, max_iter=300, tol_abs=tol_abs)
    np.testing.assert_array_equal(warm[0], cold[0])
    assert warm[1:] == cold[1:]
    assert warm[2] >= 2


@pytest.mark.parametrize(("n_boxes", "n_colors"), [(768, 16), (1536, 64), (2172, 128)])
def test_swap_trials_side_by_side_equal_trials_one_after_another(
    sample_image, monkeypatch, n_boxes, n_colors
):
    # Two to four trials at a time, as if none were kept, the runs after a kept one dropped:
    # the same centres, J and kept swaps as one trial at a time (at K = 16 and 64 the trials
    # run by scan, from the current labels; at K = 128 they start from the bounds).
    from kmquant import engine

    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    X, weights = box_points(colors, counts, n_boxes)
    tol_abs = _tolerance(X, weights, 1e-4)
    start = initial_centers(X, weights, n_colors, "k-means++", np.random.default_rng(3))
    results = {}
    for width in (1, 2, 3, 4):
        monkeypatch.setattr(engine, "_trials_side_by_side", lambda n_points, w=width: w)
        results[width] = improve_by_swaps(
            X, weights, start, trials=20, max_iter=300, tol_abs=tol_abs
        )
    _, _, kept = results[1]
    assert 1 <= kept < 20  # trials both kept and not
    for width in (2, 3, 4):
        np.testing.assert_array_equal(results[width][0], results[1][0])
        assert results[width][1:] == results[1][1:]


def test_ranking_from_bounds_gives_the_cheapest_centres_exactly(sample_image):
    # Removal costs from Lloyd's bounds: exact for the centres that can be among the cheapest,
    # never below the exact cost elsewhere, so the cheapest are the same centres.
    from kmquant import engine

    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    X, weights = box_points(colors, counts, 3072)
    tol_abs = _tolerance(X, weights, 1e-4)
    n_points = X.shape[0]
    for seed in range(4):
        start = initial_centers(X, weights, 256, "k-means++", np.random.default_rng(seed))
        run = lloyd(X, weights, start, 300, tol_abs)
        labels, nearest, second = np.empty(n_points, dtype=np.intp), *np.empty((2, n_points))
        engine._ranking_distances(X, weights, run, labels, nearest, second)
        exact = np.empty(n_points, dtype=np.intp), *np.empty((2, n_points))
        _kernels.nearest_two(X, run.centers, *exact, np.empty(n_points, dtype=np.intp))
        np.testing.assert_array_equal(labels, exact[0])
        np.testing.assert_array_equal(nearest, exact[1])
        cost = np.bincount(labels, weights=weights * (second**2 - nearest**2), minlength=256)
        exact_cost = np.bincount(
            labels, weights=weights * (exact[2] ** 2 - exact[1] ** 2), minlength=256
        )
        cheapest = np.argsort(exact_cost, kind="stable")[: engine._RANKED]
        np.testing.assert_array_equal(cost[cheapest], exact_cost[cheapest])
        assert np.all(cost >= exact_cost)
        assert (second < exact[2]).sum() == 0 and (second > exact[2]).any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_colors=st.integers(2, 12), trials=st.integers(1, 8))
def test_swaps_never_raise_inertia(small_photo, seed, n_colors, trials):
    histogram = color_histogram(small_photo[::3, ::3])
    X = histogram.colors.astype(float)
    weights = histogram.counts.astype(float)
    start = kmeans_init_centroids(X, n_colors, sample_weight=weights, rng=seed)
    centers = lloyd(X, weights, start, 100, 0.0).centers
    before = float(weights @ ((X[:, None] - centers[None]) ** 2).sum(2).min(1))
    _, after, _ = improve_by_swaps(X, weights, centers, trials=trials, max_iter=50, tol_abs=0.0)
    assert after <= before * (1 + 1e-12)


@pytest.mark.parametrize("n_colors", [8, 32])
def test_default_preset_beats_plain_kmeans_plusplus(sample_image, n_colors):
    histogram = color_histogram(sample_image[::2, ::2])
    X = histogram.colors.astype(float)
    weights = histogram.counts.astype(float)
    plain = [
        run_kmeans(
            X,
            kmeans_init_centroids(X, n_colors, sample_weight=weights, rng=seed),
            sample_weight=weights,
        ).inertia
        for seed in range(3)
    ]
    fit = fit_centers(
        histogram.colors,
        histogram.counts,
        n_colors,
        preset=PRESETS["default"],
        init="k-means++",
        n_init=3,
        max_iter=300,
        tol=1e-4,
        rng=np.random.default_rng(0),
    )
    ours = float(weights @ ((X[:, None] - fit.centers[None]) ** 2).sum(2).min(1))
    assert ours <= min(plain) * 1.002


@pytest.mark.parametrize("speed", ["fast", "default", "best"])
def test_every_speed_gives_a_valid_result(small_photo, speed):
    result = quantize(small_photo, 8, speed=speed, rng=0)
    assert 1 <= result.n_colors <= 8
    assert result.to_image().shape == small_photo.shape


def test_fast_is_coarser_but_still_far_better_than_two_colours(sample_image):
    fast = quantize(sample_image, 16, speed="fast", rng=0)
    default = quantize(sample_image, 16, rng=0)
    two = quantize(sample_image, 2, rng=0)
    assert default.inertia <= fast.inertia * 1.001
    assert fast.inertia < two.inertia / 3


@pytest.mark.parametrize(
    ("speed", "options", "rows"),
    [
        ("default", [], 200),
        ("fast", [], 200),
        # The whole photo: several blocks of the per-pixel counts and sums after dithering.
        ("default", ["--dither", "floyd-steinberg"], None),
    ],
)
def test_same_bytes_with_one_or_two_numba_threads(tmp_path, sample_image, speed, options, rows):
    from PIL import Image

    source = tmp_path / "in.png"
    Image.fromarray(sample_image[:rows, : None if rows is None else 300]).save(source)
    outputs = []
    for threads in ("1", "2"):
        target = tmp_path / f"out-{threads}.png"
        environment = {**os.environ, "NUMBA_NUM_THREADS": threads}
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kmquant",
                "compress",
                str(source),
                "-k",
                "64",
                "--speed",
                speed,
                *options,
                "-o",
                str(target),
            ],
            check=True,
            capture_output=True,
            env=environment,
            timeout=300,
        )
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1]


# ------------------------------------------------------------------ speed="fast" on RGB


def sum_of_squares(X, weights, labels, centers):
    return float(np.einsum("i,ij,ij->", weights, X - centers[labels], X - centers[labels]))


def test_variance_split_cuts_lower_j_at_every_step(sample_image):
    cells = cell_histogram(sample_image, 5)
    X, weights = cells.means, cells.counts.astype(np.float64)
    previous = np.inf
    for n_colors in (1, 2, 5, 16, 64):
        centers, box_weights = _kernels.variance_split(X, weights, n_colors)
        assert box_weights.sum() == pytest.approx(weights.sum())
        assert centers.shape == (n_colors, 3)
        labels = np.empty(len(X), dtype=np.intp)
        _kernels.nearest_labels(X, centers, labels)
        j = sum_of_squares(X, weights, labels, centers)
        assert j < previous
        previous = j
    # One cluster: the weighted mean of all points.
    np.testing.assert_allclose(
        _kernels.variance_split(X, weights, 1)[0][0], np.average(X, axis=0, weights=weights)
    )


@pytest.mark.parametrize("n_features", [1, 2, 3, 4, 5])
def test_principal_axis_is_numpy_eigh_largest_pair(n_features):
    rng = np.random.default_rng(n_features)
    for trial in range(50):
        spread = rng.normal(size=(n_features, n_features)) * rng.uniform(0.01, 100, n_features)
        matrix = spread @ spread.T
        if trial == 0:  # already diagonal: no rotation at all
            matrix = np.diag(rng.uniform(0, 10, n_features))
        value, vector = _kernels.principal_axis(matrix)
        values, vectors = np.linalg.eigh(matrix)
        assert value == pytest.approx(values[-1], rel=1e-12, abs=1e-12 * values[-1])
        np.testing.assert_allclose(matrix @ vector, value * vector, atol=1e-10 * values[-1])
        assert np.linalg.norm(vector) == pytest.approx(1.0, rel=1e-12)
        assert vector[np.argmax(np.abs(vector))] > 0  # the sign is fixed
        if n_features == 1 or values[-1] > values[-2] * (1 + 1e-6):  # one largest: the same axis
            assert abs(vector @ vectors[:, -1]) == pytest.approx(1.0, rel=1e-9)


def test_split_cluster_cuts_along_the_weighted_principal_axis(sample_image):
    histogram = color_histogram(sample_image)
    X, weights = histogram.colors.astype(float), histogram.counts.astype(float)
    centers = kmeans_init_centroids(X, 8, rng=0, sample_weight=weights)
    labels = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(axis=2), axis=1)
    split, removed = int(np.bincount(labels, weights=weights).argmax()), 3
    candidate = np.empty_like(centers)
    members = labels == split
    assert _kernels.split_cluster(X, weights, labels, centers, removed, split, candidate) == int(
        members.sum()
    )
    differences = X[members] - centers[split]
    spread = (differences * weights[members, None]).T @ differences / weights[members].sum()
    values, vectors = np.linalg.eigh(spread)
    offset = vectors[:, -1] * np.sqrt(values[-1]) * 0.8
    halves = np.sort([candidate[split] - centers[split], candidate[removed] - centers[split]], 0)
    np.testing.assert_allclose(halves, np.sort([offset, -offset], axis=0), atol=1e-9)
    untouched = np.ones(len(centers), dtype=bool)
    untouched[[split, removed]] = False
    np.testing.assert_array_equal(candidate[untouched], centers[untouched])
    # A cluster with no point: nothing written.
    labels[labels == removed] = split
    assert _kernels.split_cluster(X, weights, labels, centers, split, removed, candidate) == 0


def test_variance_split_stops_when_nothing_is_left_to_cut():
    X = np.array([[0.0, 0, 0], [0, 0, 0], [9, 9, 9]])
    centers, box_weights = _kernels.variance_split(X, np.ones(3), 4)
    assert sorted(zip(centers.tolist(), box_weights.tolist(), strict=True)) == [
        ([0.0, 0.0, 0.0], 2.0),
        ([9.0, 9.0, 9.0], 1.0),
    ]


def test_lloyd_steps_after_the_split_lower_j(sample_image):
    cells = cell_histogram(sample_image, 5)
    X, weights = cells.means, cells.counts.astype(np.float64)
    values = []
    for steps in (0, 1, 3):
        centers = split_centers(X, weights, 32, steps).centers
        labels = np.empty(len(X), dtype=np.intp)
        _kernels.nearest_labels(X, centers, labels)
        values.append(sum_of_squares(X, weights, labels, centers))
    assert values[0] > values[1] > values[2]


def test_cell_ranks_equal_numpy_unique():
    from kmquant.engine import _rank_of_values

    rng = np.random.default_rng(3)
    for high in (50, 1 << 18, 1 << 30):  # table below 2^21 possible cells, sort above
        values = rng.integers(0, high, 5000).astype(np.int64)
        expected = np.unique(values, return_inverse=True)[1].reshape(-1)
        np.testing.assert_array_equal(_rank_of_values(values), expected)


@pytest.mark.parametrize("n_colors", [16, 32, 64, 96])
def test_fit_by_scan_equals_fit_with_bounds(sample_image, n_colors, monkeypatch):
    # The restarts, the swap trials and the refine run by scan at small K (the trials from
    # the current labels, the refine from each colour's box guess); with every run made to
    # keep its bounds (from K = 64 the trials then start from them) the fit is the same:
    # centres, iterations and every colour's label.
    from kmquant import engine

    histogram = color_histogram(sample_image)
    options = dict(preset=PRESETS["default"], init="k-means++", n_init=None, max_iter=300, tol=1e-4)
    assert engine.by_scan(n_colors)
    fits = []
    for scan_up_to in (engine._SCAN_UP_TO, 0):
        monkeypatch.setattr(engine, "_SCAN_UP_TO", scan_up_to)
        fits.append(
            fit_centers(
                histogram.colors,
                histogram.counts,
                n_colors,
                rng=np.random.default_rng(3),
                points_are_colors=True,
                **options,
            )
        )
    by_scan, with_bounds = fits
    np.testing.assert_array_equal(by_scan.centers, with_bounds.centers)
    np.testing.assert_array_equal(by_scan.labels, with_bounds.labels)
    assert by_scan.n_iter == with_bounds.n_iter


def test_box_guesses_are_each_box_means_nearest_centre(sample_image):
    from kmquant.engine import box_guesses

    histogram = color_histogram(sample_image)
    colors, counts = histogram.colors.astype(float), histogram.counts.astype(float)
    boxes = split_into_boxes(colors, counts, 768)
    centers = boxes.points[::48][:16]
    guesses = box_guesses(boxes, centers)
    box_of = np.empty(colors.shape[0], dtype=np.intp)
    for box, (start, stop) in enumerate(zip(boxes.starts, boxes.stops, strict=True)):
        box_of[boxes.members[start:stop]] = box
    distances = ((boxes.points[:, None] - centers[None]) ** 2).sum(2)
    np.testing.assert_array_equal(guesses, distances.argmin(1)[box_of])


def test_a_run_by_scan_keeps_no_bounds_to_start_from(sample_image):
    histogram = color_histogram(sample_image[::4, ::4])
    X, weights = histogram.colors.astype(float), histogram.counts.astype(float)
    start = X[:: X.shape[0] // 8][:8].copy()
    run = lloyd(X, weights, start, 50, 0.0, keep_state=False)
    assert run.bounds is None
    kept = lloyd(X, weights, start, 50, 0.0)
    np.testing.assert_array_equal(run.centers, kept.centers)
    np.testing.assert_array_equal(run.labels, kept.labels)
    with pytest.raises(ValueError, match="keeps no bounds"):
        lloyd(X, weights, start, 50, 0.0, after=run)
