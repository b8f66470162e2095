"""Numba-compiled inner loops: the colour bitmap and hash table, bounded Lloyd iterations.

Every kernel says what it reads and what it writes. They assume valid input (the callers in
``histogram``, ``kmeans`` and ``quantize`` validate) and are compiled on first use and cached on
disk (``cache=True``), so only the very first run on a machine pays for compilation.

Compilation: a kernel that calls another links in the callee's code and optimises it again
with its own, so a first run's compilation (about 45 s on 2 cores for a default
``compress``) grows with every layer of calls; a parallel kernel pays twice, for its loop
body and for itself. ``restarts`` therefore calls :func:`lloyd_from` with no wrapper between,
and the serial steps that only one kernel calls, :func:`_bounded_assign`,
:func:`_scan_assign` and :func:`_seeds_of`, are inlined into it (``inline="always"``:
3 s less).

Indexing: numba wraps a negative index as Python does, and it cannot rule one out for an
index that runs from a start known only at run time, so every such load and store in a hot
loop pays a check (and a vectorised loop turns its loads into gathers). Hot loops over part of
an array therefore take a slice of that part and run from 0 (a slice is one reference count,
so it is taken once per block, never per point): the photos' boxes took 0.54x, the histogram
0.84x and a k-means++ seeding 0.59x the time, with the same results (exploratory).

Determinism: the parallel loops (``prange``) only do independent work (per point, per
restart, per half of the boxes); every floating-point sum across points runs serially in a
fixed order, so the results are bit-identical whatever the number of threads.
"""

from __future__ import annotations

import os
import sys
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numba
import numpy as np
from numba import njit, prange
from numba.core import event as numba_event


def let_idle_threads_sleep() -> None:
    """Make idle OpenMP threads sleep rather than spin, unless ``OMP_WAIT_POLICY`` is set.

    By default an OpenMP thread that finishes a parallel loop spins for a while, waiting for
    the next one. Where kmquant's kernels alternate with other work (oxipng's threads, numpy,
    decoding), that spinning takes a core from the work: on the 2-core benchmark machine a
    one-worker batch (benchmarks/batch.py) ran 4.7 images/s with spinning threads and 5.9
    with sleeping ones. Takes effect only before the first parallel kernel runs (numba reads
    it when it starts its OpenMP threads); the command line calls it first thing, and child
    processes inherit it.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def threads_at_most(n_threads: int | None) -> Iterator[None]:
    """Run the block on at most ``n_threads`` numba threads (None: as many as now). numba's
    thread count is per Python thread, so other threads are not affected; the results of
    the kernels do not depend on it."""
    before = numba.get_num_threads()
    if n_threads is None or before <= n_threads:
        yield
        return
    numba.set_num_threads(n_threads)
    try:
        yield
    finally:
        numba.set_num_threads(before)


def when_compiling(callback: Callable[[], None]) -> None:
    """Call ``callback()`` once, when numba next starts compiling a function in this process.

    The kernels are cached on disk, so numba compiles only where the cache lacks them: the
    first run on a machine, or the first after kmquant changed. That takes about a minute on
    2 cores, far longer than any run from the cache, and the command line uses this hook to
    say why it is silent. Loading kernels from the cache calls nothing. Each call arms the
    hook again, with its own callback.
    """
    global _compilation_listener
    if _compilation_listener is None:
        _compilation_listener = _CompilationListener()
        numba_event.register("numba:compile", _compilation_listener)
    _compilation_listener.callback = callback


def say_compiling() -> None:
    """On a terminal, say on stderr that the kernels are being compiled (for
    :func:`when_compiling`)."""
    if sys.stderr.isatty():
        print(
            "kmquant: compiling its kernels for this machine, once (about a minute); "
            "later runs load them from the cache",
            file=sys.stderr,
            flush=True,
        )


class _CompilationListener(numba_event.Listener):  # type: ignore[misc]
    """Calls its ``callback`` at the start of the next compilation, then forgets it."""

    callback: Callable[[], None] | None = None

    def on_start(self, event: Any) -> None:
        callback, self.callback = self.callback, None
        if callback is not None:
            callback()

    def on_end(self, event: Any) -> None:
        pass


_compilation_listener: _CompilationListener | None = None


# Fibonacci hashing: 2^64 / golden ratio; the top bits of key * constant index the table.
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True)
def _hash_slot(key, shift):  # pragma: no cover - compiled
    return np.int64((np.uint64(key) * _HASH_MULTIPLIER) >> shift)


@njit(cache=True, nogil=True)
def _rehash(keys, n_unique, capacity_bits):  # pragma: no cover - compiled
    """A slot table of 2^capacity_bits entries holding the first ``n_unique`` keys."""
    slots = np.full(1 << capacity_bits, -1, dtype=np.int32)
    mask = (1 << capacity_bits) - 1
    shift = np.uint64(64 - capacity_bits)
    for index in range(n_unique):
        slot = _hash_slot(keys[index], shift)
        while slots[slot] != -1:
            slot = (slot + 1) & mask
        slots[slot] = index
    return slots


@njit(cache=True, nogil=True)
def histogram_unsorted(pixels, with_inverse):  # pragma: no cover - compiled
    """Distinct colours of ``pixels``; see :func:`pair_histogram_unsorted`."""
    return pair_histogram_unsorted(pixels, pixels[:, :0], with_inverse)


@njit(cache=True, nogil=True)
def pair_histogram_unsorted(pixels, others, with_inverse):  # pragma: no cover - compiled
    """Distinct colours of ``pixels`` by open-addressing hashing, in order of first sight.

    Reads ``pixels`` (n, c) and ``others`` (n, e) uint8 with c + e <= 8: each row of the two
    side by side is one colour (``others`` may have no columns), so pairs of images need no
    concatenated copy. Returns ``keys`` (m,) int64 (the colours packed big-endian, as
    :func:`kmquant.histogram.pack_colors`), ``counts`` (m,) int64 and
    ``inverse`` (n,) int32 with ``keys[inverse[i]]`` the key of pixel i (empty unless
    ``with_inverse``). The table starts small and doubles whenever it is half full, so its
    memory follows the number of distinct colours, not of pixels.
    """
    n_pixels, n_channels = pixels.shape
    n_others = others.shape[1]
    capacity_bits = 12
    slots = np.full(1 << capacity_bits, -1, dtype=np.int32)
    mask = (1 << capacity_bits) - 1
    shift = np.uint64(64 - capacity_bits)
    keys = np.empty(1 << (capacity_bits - 1), dtype=np.int64)
    counts = np.zeros(1 << (capacity_bits - 1), dtype=np.int64)
    inverse = np.empty(n_pixels if with_inverse else 0, dtype=np.int32)
    n_unique = 0
    previous_key = -1
    previous_index = -1
    for i in range(n_pixels):
        key = 0
        for channel in range(n_channels):
            key = (key << 8) | np.int64(pixels[i, channel])
        for channel in range(n_others):
            key = (key << 8) | np.int64(others[i, channel])
        # Runs of one colour are common (flat areas, graphics): skip the table for them.
        if key == previous_key:
            counts[previous_index] += 1
            if with_inverse:
                inverse[i] = previous_index
            continue
        slot = _hash_slot(key, shift)
        while True:
            index = slots[slot]
            if index == -1:
                if n_unique == keys.shape[0]:
                    # Half full: double the table (and the key and count arrays), rehash.
                    capacity_bits += 1
                    slots = _rehash(keys, n_unique, capacity_bits)
                    mask = (1 << capacity_bits) - 1
                    shift = np.uint64(64 - capacity_bits)
                    grown_keys = np.empty(2 * n_unique, dtype=np.int64)
                    grown_counts = np.zeros(2 * n_unique, dtype=np.int64)
                    for unique in range(n_unique):  # element by element: see _copy_rows
                        grown_keys[unique] = keys[unique]
                        grown_counts[unique] = counts[unique]
                    keys, counts = grown_keys, grown_counts
                    slot = _hash_slot(key, shift)
                    while slots[slot] != -1:
                        slot = (slot + 1) & mask
                slots[slot] = n_unique
                keys[n_unique] = key
                counts[n_unique] = 1
                index = n_unique
                n_unique += 1
                break
            if keys[index] == key:
                counts[index] += 1
                break
            slot = (slot + 1) & mask
        if with_inverse:
            inverse[i] = index
        previous_key = key
        previous_index = index
    return keys[:n_unique].copy(), counts[:n_unique].copy(), inverse


@njit(cache=True, nogil=True, inline="always")
def _popcount(word):  # pragma: no cover - compiled
    """Number of set bits of a uint64 (the SWAR count: pairs, nibbles, then bytes summed)."""
    word = word - ((word >> np.uint64(1)) & np.uint64(0x5555555555555555))
    word = (word & np.uint64(0x3333333333333333)) + (
        (word >> np.uint64(2)) & np.uint64(0x3333333333333333)
    )
    word = (word + (word >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((word * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, nogil=True, inline="always")
def _packed_key(pixels, i):  # pragma: no cover - compiled
    """Pixel i's channels packed big-endian into one integer, as ``pack_colors``."""
    if pixels.shape[1] == 3:  # unrolled: twice as fast as the loop for RGB
        return (
            (np.int64(pixels[i, 0]) << 16) | (np.int64(pixels[i, 1]) << 8) | np.int64(pixels[i, 2])
        )
    key = np.int64(0)
    for channel in range(pixels.shape[1]):
        key = (key << 8) | np.int64(pixels[i, channel])
    return key


# Pixels per block of the bitmap histogram's parallel lookup.
_LOOKUP_BLOCK = 4096
# Slices of the bitmap's words whose colours are listed side by side, and of the colours
# whose per-part tallies are summed side by side.
_EXTRACT_SLICES = 64


@njit(cache=True, nogil=True, inline="always")
def _bitmap_rank(bitmap, ranks_before, key):  # pragma: no cover - compiled
    """The index of colour ``key`` among those set in ``bitmap``: the set bits below it."""
    below = bitmap[key >> 6] & ((np.uint64(1) << np.uint64(key & 63)) - np.uint64(1))
    return ranks_before[key >> 6] + _popcount(below)


@njit(cache=True, nogil=True, parallel=True)
def histogram_by_bitmap(pixels, n_parts, with_inverse):  # pragma: no cover - compiled
    """Distinct colours of ``pixels`` (n, c <= 3) in increasing key order, by a bitmap.

    Every possible colour has one bit: 2^24 bits (2 MiB) for RGB. Each of ``n_parts`` slices of
    the pixels sets the bits of its colours in its own bitmap; the bitmaps are OR-ed; a prefix
    count of set bits per 64-bit word then gives every colour its rank among the present ones,
    which is the pixel's index: no hash table, no sort. The colours are listed from slices of
    the words side by side, each from its first word's rank (photos: 1.39 -> 1.20 ms an image
    for the whole histogram, in process, exploratory). Each part also clears its own bitmap
    and tallies its own pixels' colours, on its own thread, the tallies then summed colour by
    colour: on 2 threads 1.68 -> 1.45 ms a photo, 13.7 -> 12.0 ms a large image, the same on
    one (exploratory, order alternated). Returns ``colors`` (m, c) uint8 in
    increasing order of their packed keys, ``counts`` (m,) int64 and ``inverse`` (n,) int32,
    the same as :func:`histogram_unsorted` followed by a sort of the keys. OR and integer
    counts do not depend on the order of the work, so any number of threads or parts gives
    the same result.

    Without ``with_inverse`` the inverse is empty and each part counts its pixels' colours
    as it looks them up: 4 bytes a pixel less at the peak of a large image's run. Either way
    ``bitmap`` (n_words,) and ``ranks_before`` (n_words,) come back too, for
    :func:`look_up_by_bitmap` to look pixels up later.
    """
    n_pixels = pixels.shape[0]
    n_words = max(1, (1 << (8 * pixels.shape[1])) >> 6)
    bitmaps = np.empty((n_parts, n_words), dtype=np.uint64)
    size = (n_pixels + n_parts - 1) // n_parts
    for part in prange(n_parts):
        bitmap = bitmaps[part]
        bitmap[:] = 0  # each part zeroes its own bitmap, on its own thread
        part_pixels = pixels[part * size : (part + 1) * size]
        for i in range(part_pixels.shape[0]):
            key = _packed_key(part_pixels, i)
            bitmap[key >> 6] |= np.uint64(1) << np.uint64(key & 63)
    bitmap = bitmaps[0]
    for part in range(1, n_parts):
        for word in range(n_words):
            bitmap[word] |= bitmaps[part, word]
    ranks_before = np.empty(n_words, dtype=np.int64)
    n_unique = 0
    for word in range(n_words):
        ranks_before[word] = n_unique
        n_unique += _popcount(bitmap[word])
    n_channels = pixels.shape[1]
    colors = np.empty((n_unique, n_channels), dtype=np.uint8)
    # Each slice of words knows where its colours go (the prefix count), so the slices are
    # read side by side.
    words_per_slice = (n_words + _EXTRACT_SLICES - 1) // _EXTRACT_SLICES
    for first in prange(_EXTRACT_SLICES):
        start = first * words_per_slice
        if start >= n_words:
            continue
        slice_words = bitmap[start : start + words_per_slice]
        slice_colors = colors[ranks_before[start] :]
        position = 0
        for offset in range(slice_words.shape[0]):
            bits = slice_words[offset]
            while bits:
                lowest = bits & (~bits + np.uint64(1))
                key = ((start + offset) << 6) | _popcount(lowest - np.uint64(1))
                for channel in range(n_channels):
                    shift = 8 * (n_channels - 1 - channel)
                    slice_colors[position, channel] = (key >> shift) & 255
                position += 1
                bits ^= lowest
    if not with_inverse:
        inverse = np.empty(0, dtype=np.int32)
        if n_parts == 1:
            counts = np.zeros(n_unique, dtype=np.int64)
            for i in range(n_pixels):
                counts[_bitmap_rank(bitmap, ranks_before, _packed_key(pixels, i))] += 1
            return colors, counts, inverse, bitmap, ranks_before
    else:
        inverse = look_up_by_bitmap(
            pixels, bitmap, ranks_before, np.empty(0, np.int32), np.empty(n_pixels, np.int32)
        )
        if n_parts == 1:
            counts = np.zeros(n_unique, dtype=np.int64)
            for i in range(n_pixels):
                counts[inverse[i]] += 1
            return colors, counts, inverse, bitmap, ranks_before
    # Each part tallies its pixels on its own thread, then the tallies are summed colour by
    # colour (each at most the part's pixels: int32 holds them).
    tallies = np.empty((n_parts, n_unique), dtype=np.int32)
    for part in prange(n_parts):
        tally = tallies[part]
        tally[:] = 0
        if with_inverse:
            part_inverse = inverse[part * size : (part + 1) * size]
            for i in range(part_inverse.shape[0]):
                tally[np.uint32(part_inverse[i])] += 1  # unsigned: see the module
        else:
            # Looked up a block at a time into a small buffer, then tallied: the lookups of a
            # block do not wait on each other's increments (each pixel looked up and counted
            # in turn took 1.24x the histogram's time on the photos, 1.31x at 24 MP).
            ranks = np.empty(_LOOKUP_BLOCK, dtype=np.uint32)
            part_pixels = pixels[part * size : (part + 1) * size]
            for start in range(0, part_pixels.shape[0], _LOOKUP_BLOCK):
                block_pixels = part_pixels[start : start + _LOOKUP_BLOCK]
                for i in range(block_pixels.shape[0]):
                    ranks[i] = _bitmap_rank(bitmap, ranks_before, _packed_key(block_pixels, i))
                for i in range(block_pixels.shape[0]):
                    tally[ranks[i]] += 1
    counts = np.empty(n_unique, dtype=np.int64)
    colors_per_slice = (n_unique + _EXTRACT_SLICES - 1) // _EXTRACT_SLICES
    for first in prange(_EXTRACT_SLICES):
        start = first * colors_per_slice
        slice_counts = counts[start : start + colors_per_slice]
        for offset in range(slice_counts.shape[0]):
            total = np.int64(tallies[0, start + offset])
            for part in range(1, n_parts):
                total += tallies[part, start + offset]
            slice_counts[offset] = total
    return colors, counts, inverse, bitmap, ranks_before


@njit(cache=True, nogil=True, parallel=True)
def look_up_by_bitmap(pixels, bitmap, ranks_before, color_labels, out):  # pragma: no cover
    """Each pixel's colour index into ``out`` (n,) from :func:`histogram_by_bitmap`'s bitmap,
    or, where ``color_labels`` is not empty, that colour's label, ``color_labels[index]``:
    the labels with no map from pixels to colours."""
    n_pixels = pixels.shape[0]
    through_labels = color_labels.shape[0] > 0
    for block in prange((n_pixels + _LOOKUP_BLOCK - 1) // _LOOKUP_BLOCK):
        block_pixels = pixels[block * _LOOKUP_BLOCK : (block + 1) * _LOOKUP_BLOCK]
        block_out = out[block * _LOOKUP_BLOCK : (block + 1) * _LOOKUP_BLOCK]
        for i in range(block_pixels.shape[0]):
            rank = _bitmap_rank(bitmap, ranks_before, _packed_key(block_pixels, i))
            if through_labels:
                block_out[i] = color_labels[np.uint64(rank)]  # unsigned: see the module
            else:
                block_out[i] = rank
    return out


@njit(cache=True, nogil=True, parallel=True)
def color_labels_by_bitmap(pixels, bitmap, ranks_before, labels, color_labels):  # pragma: no cover
    """Each colour's label, where every pixel of that colour has the same one: writes
    ``color_labels[c]`` from the pixels of colour c (looked up in
    :func:`histogram_by_bitmap`'s bitmap) and returns whether every pixel's ``labels[i]`` is
    its colour's. Pixels of one colour write the same value, so the blocks may run side by
    side; where two labels of one colour differ, one of them is left and a pixel with the
    other fails the check."""
    n_pixels = pixels.shape[0]
    n_blocks = (n_pixels + _LOOKUP_BLOCK - 1) // _LOOKUP_BLOCK
    for block in prange(n_blocks):
        block_pixels = pixels[block * _LOOKUP_BLOCK : (block + 1) * _LOOKUP_BLOCK]
        block_labels = labels[block * _LOOKUP_BLOCK : (block + 1) * _LOOKUP_BLOCK]
        for i in range(block_pixels.shape[0]):
            rank = _bitmap_rank(bitmap, ranks_before, _packed_key(block_pixels, i))
            color_labels[np.uint64(rank)] = block_labels[i]  # unsigned: see the module
    mismatched = 0
    for block in prange(n_blocks):
        block_pixels = pixels[block * _LOOKUP_BLOCK : (block + 1) * _LOOKUP_BLOCK]
        block_labels = labels[block * _LOOKUP_BLOCK : (block + 1) * _LOOKUP_BLOCK]
        count = 0
        for i in range(block_pixels.shape[0]):
            rank = _bitmap_rank(bitmap, ranks_before, _packed_key(block_pixels, i))
            count += color_labels[np.uint64(rank)] != block_labels[i]
        mismatched += count
    return mismatched == 0


@njit(cache=True, nogil=True, parallel=True)
def relabel_in_place(indices, new_index):  # pragma: no cover - compiled
    """``indices[i] = new_index[indices[i]]`` for every i, without a second array."""
    for i in prange(indices.shape[0]):
        indices[i] = new_index[indices[i]]


@njit(cache=True, nogil=True, inline="always")
def _squared_distance(X, i, centers, k):  # pragma: no cover - compiled
    """``||X[i] - centers[k]||^2`` in float64 (uint8 rows too: no wrap-around)."""
    total = 0.0
    for feature in range(X.shape[1]):
        difference = np.float64(X[i, feature]) - np.float64(centers[k, feature])
        total += difference * difference
    return total


@njit(cache=True, nogil=True, inline="always")
def _band_distances(X, i, centers_t, start, stop, out):  # pragma: no cover - compiled
    """``out[j - start] = ||X[i] - centre j||^2`` for the centres ``start`` to ``stop`` of
    ``centers_t`` (d, k), with the same sums as :func:`_squared_distance`.

    All the distances are computed first and searched after: computing each one just
    before its comparison cost 10% more of Lloyd's assignment at K = 256 (exploratory).
    Three features, the usual case, are written out.
    """
    if X.shape[1] == 3:
        x0, x1, x2 = X[i, 0], X[i, 1], X[i, 2]
        # Slices from 0: indexed from ``start``, the loads were gathers (see the module).
        row_0, row_1, row_2 = (
            centers_t[0, start:stop],
            centers_t[1, start:stop],
            centers_t[2, start:stop],
        )
        for j in range(stop - start):
            e0 = x0 - row_0[j]
            e1 = x1 - row_1[j]
            e2 = x2 - row_2[j]
            out[j] = e0 * e0 + e1 * e1 + e2 * e2
        return
    for j in range(stop - start):
        out[j] = 0.0
    for feature in range(X.shape[1]):
        value = X[i, feature]
        row = centers_t[feature, start:stop]
        for j in range(stop - start):
            difference = value - row[j]
            out[j] += difference * difference


# Points per block of the parallel loops: each block reuses one scratch row of distances.
_BLOCK = 512


@njit(cache=True, nogil=True, inline="always")
def _squared_distances_of(X, i, centers_t, distances):  # pragma: no cover - compiled
    """``distances[k] = ||X[i] - centre k||^2`` for every centre of ``centers_t`` (d, k).

    With the centres transposed, the distances are computed feature by feature in
    contiguous, vectorisable loops.
    """
    for k in range(centers_t.shape[1]):
        distances[k] = 0.0
    for feature in range(centers_t.shape[0]):
        value = X[i, feature]
        row = centers_t[feature]
        for k in range(centers_t.shape[1]):
            difference = value - row[k]
            distances[k] += difference * difference


@njit(cache=True, nogil=True, inline="always")
def _nearest_two_of(X, i, centers_t, distances):  # pragma: no cover - compiled
    """Nearest and second-nearest centre of point i: (index, squared distance) of each.

    ``centers_t`` is (d, k), the centres transposed; ``distances`` (k,) is scratch (see
    :func:`_squared_distances_of`). Ties go to the lowest index.
    """
    n_centers = centers_t.shape[1]
    _squared_distances_of(X, i, centers_t, distances)
    best = np.inf
    second = np.inf
    best_index = 0
    second_index = 0
    for k in range(n_centers):
        distance = distances[k]
        if distance < second:
            if distance < best:
                second, second_index, best, best_index = best, best_index, distance, k
            else:
                second, second_index = distance, k
    return best_index, best, second_index, second


@njit(cache=True, nogil=True, parallel=True)
def nearest_two(X, centers, labels, upper, lower, second_labels):  # pragma: no cover
    """Full assignment: nearest centre of every point and the two smallest distances.

    Reads ``X`` (n, d), ``centers`` (k, d). Writes ``labels`` (n,) (ties: lowest index),
    ``upper`` (n,) the distance to the nearest centre, ``lower`` (n,) the distance to the
    second nearest (infinity when k == 1) and ``second_labels`` (n,) its index. Distances are
    Euclidean, not squared.
    """
    centers_t = np.ascontiguousarray(centers.T)
    n_points = X.shape[0]
    for block in prange((n_points + _BLOCK - 1) // _BLOCK):
        distances = np.empty(centers.shape[0])
        for i in range(block * _BLOCK, min(n_points, (block + 1) * _BLOCK)):
            best_index, best, second_index, second = _nearest_two_of(X, i, centers_t, distances)
            labels[i] = best_index
            second_labels[i] = second_index
            upper[i] = np.sqrt(best)
            lower[i] = np.sqrt(second)


# Jacobi rotations stop when the off-diagonal entries' squares sum to this share of the
# matrix's, or after this many sweeps (a symmetric 3 x 3 matrix takes three or four).
_JACOBI_TOLERANCE = 1e-30
_JACOBI_SWEEPS = 50


@njit(cache=True, nogil=True)
def principal_axis(matrix):  # pragma: no cover - compiled
    """The largest eigenvalue of the symmetric ``matrix`` (d, d) and a unit eigenvector of
    it, by cyclic Jacobi rotations (Golub & Van Loan, 8.5): each rotation zeroes one
    off-diagonal entry, and sweeps over all of them until the rest are negligible. The
    vector's largest component (the first of equals) is positive. ``matrix`` is not
    modified."""
    n = matrix.shape[0]
    a = matrix.copy()
    vectors = np.eye(n)
    total = 0.0
    for row in range(n):
        for column in range(n):
            total += a[row, column] * a[row, column]
    for _ in range(_JACOBI_SWEEPS):
        off = 0.0
        for row in range(n):
            for column in range(row + 1, n):
                off += 2.0 * a[row, column] * a[row, column]
        if off <= _JACOBI_TOLERANCE * total:
            break
        for p in range(n - 1):
            for q in range(p + 1, n):
                if a[p, q] == 0.0:
                    continue
                theta = (a[q, q] - a[p, p]) / (2.0 * a[p, q])
                t = 1.0 / (abs(theta) + np.sqrt(theta * theta + 1.0))
                if theta < 0.0:
                    t = -t
                c = 1.0 / np.sqrt(t * t + 1.0)
                s = t * c
                for k in range(n):  # A <- A J (columns p and q)
                    a_kp, a_kq = a[k, p], a[k, q]
                    a[k, p], a[k, q] = c * a_kp - s * a_kq, s * a_kp + c * a_kq
                for k in range(n):  # A <- J^T A (rows p and q)
                    a_pk, a_qk = a[p, k], a[q, k]
                    a[p, k], a[q, k] = c * a_pk - s * a_qk, s * a_pk + c * a_qk
                for k in range(n):
                    v_kp, v_kq = vectors[k, p], vectors[k, q]
                    vectors[k, p], vectors[k, q] = c * v_kp - s * v_kq, s * v_kp + c * v_kq
    largest = 0
    for k in range(1, n):
        if a[k, k] > a[largest, largest]:
            largest = k
    vector = vectors[:, largest].copy()
    biggest = 0
    for k in range(1, n):
        if abs(vector[k]) > abs(vector[biggest]):
            biggest = k
    if vector[biggest] < 0.0:
        vector = -vector
    return a[largest, largest], vector


@njit(cache=True, nogil=True)
def split_cluster(X, weights, labels, centers, removed, split, candidate):  # pragma: no cover
    """A swap's start: ``centers`` with cluster ``split`` cut in two and ``removed`` gone.

    Reads ``X`` (n, d), ``weights`` (n,), ``labels`` (n,) and ``centers`` (k, d). With
    C = sum w (x - c)(x - c)^T / sum w over the points labelled ``split`` (c their centre)
    and (lambda, v) its largest eigenpair (:func:`principal_axis`), writes ``centers`` into
    ``candidate`` (k, d) with c + 0.8 sqrt(lambda) v in place of centre ``split`` and
    c - 0.8 sqrt(lambda) v in place of ``removed``: 0.8 sigma either side is where the two
    halves of a Gaussian have their means (sqrt(2 / pi)). Returns how many points the
    cluster has; ``candidate`` is written when there is at least one (one point has no
    spread: its two halves are then 8e-7 apart).
    """
    n_features = X.shape[1]
    spread = np.zeros((n_features, n_features))
    difference = np.empty(n_features)
    total = 0.0
    n_members = 0
    for i in range(X.shape[0]):
        if labels[i] != split:
            continue
        n_members += 1
        total += weights[i]
        for feature in range(n_features):
            difference[feature] = X[i, feature] - centers[split, feature]
        for row in range(n_features):
            for column in range(row, n_features):
                spread[row, column] += weights[i] * difference[row] * difference[column]
    if n_members == 0:
        return 0
    for row in range(n_features):
        for column in range(row, n_features):
            spread[row, column] /= total
            spread[column, row] = spread[row, column]
    value, vector = principal_axis(spread)
    scale = np.sqrt(max(value, 1e-12)) * 0.8
    candidate[:] = centers
    for feature in range(n_features):
        offset = scale * vector[feature]
        candidate[split, feature] = centers[split, feature] + offset
        candidate[removed, feature] = centers[split, feature] - offset
    return n_members


@njit(cache=True, nogil=True)
def distances_to(X, centers, which, out):  # pragma: no cover - compiled
    """``out[i] = ||X[i] - centers[which[i]]||``, as :func:`nearest_two` computes it."""
    for i in range(X.shape[0]):
        out[i] = np.sqrt(_squared_distance(X, i, centers, which[i]))


@njit(cache=True, nogil=True, parallel=True)
def nearest_labels(X, centers, labels):  # pragma: no cover - compiled
    """Nearest centre of every point (ties: lowest index).

    Reads ``X`` (n, d), ``centers`` (k, d); writes ``labels`` (n,).
    """
    centers_t = np.ascontiguousarray(centers.T)
    n_points = X.shape[0]
    for block in prange((n_points + _BLOCK - 1) // _BLOCK):
        distances = np.empty(centers.shape[0])
        for i in range(block * _BLOCK, min(n_points, (block + 1) * _BLOCK)):
            labels[i] = _nearest_two_of(X, i, centers_t, distances)[0]


# Cells per feature of the grids of :func:`nearest_labels_by_grid` and of dithering
# (:func:`_list_cell`; a constant: as a variable, the divisions that find a cell's corners
# made the dithering grid a third slower), points per task of the pass that finds the points'
# range, and cells per task of the pass that lists candidates.
_GRID_CELLS = 16
_RANGE_BLOCK = 4096
_CELLS_PER_TASK = 64


@njit(cache=True, nogil=True, parallel=True)
def nearest_labels_by_grid(X, centers, labels):  # pragma: no cover - compiled
    """:func:`nearest_labels` for points of three features and at most 256 centres,
    through a grid: the same labels, ties included, from a few candidates a point.

    The points' range is cut into ``_GRID_CELLS`` cells per feature. Each cell that
    holds a point gets its candidates (:func:`_cell_candidates`, as the dithering grid's
    cells do), the only centres that can be nearest to one of its points or tie with it, in
    increasing index so that a tie goes to the lowest index as in the full scan; a point
    tries only its cell's, with one variable per feature (a fifth faster than a loop over
    features). A photo's colours against its palette: 2.6, 6.7 and 19 candidates a cell at
    K = 16, 64 and 256.
    """
    n_points = X.shape[0]
    n_centers = centers.shape[0]
    if n_points == 0:
        return
    cells = _GRID_CELLS
    low, size = _grid_over(X)
    per_0, per_1, per_2 = 1.0 / size[0], 1.0 / size[1], 1.0 / size[2]
    cell_of = np.empty(n_points, dtype=np.int32)
    slot = np.full(cells**3, -1, dtype=np.int32)  # of an occupied cell: its row
    for i in prange(n_points):
        position_0 = min(cells - 1, int((X[i, 0] - low[0]) * per_0))
        position_1 = min(cells - 1, int((X[i, 1] - low[1]) * per_1))
        position_2 = min(cells - 1, int((X[i, 2] - low[2]) * per_2))
        cell = (position_0 * cells + position_1) * cells + position_2
        cell_of[i] = cell
        slot[cell] = 0
    n_occupied = 0
    for cell in range(slot.shape[0]):
        if slot[cell] == 0:
            slot[cell] = n_occupied
            n_occupied += 1
    occupied = np.empty(n_occupied, dtype=np.int32)
    for cell in range(slot.shape[0]):
        if slot[cell] >= 0:
            occupied[slot[cell]] = cell
    counts = np.empty(n_occupied, dtype=np.int32)
    candidates = np.empty((n_occupied, n_centers), dtype=np.uint8)
    for task in prange((n_occupied + _CELLS_PER_TASK - 1) // _CELLS_PER_TASK):
        cell_low, cell_high, closest = _candidate_scratch(n_centers)
        for row in range(task * _CELLS_PER_TASK, min(n_occupied, (task + 1) * _CELLS_PER_TASK)):
            counts[row] = _cell_candidates(
                occupied[row],
                low,
                size,
                centers,
                candidates,
                row,
                cell_low,
                cell_high,
                closest,
            )
    centers_t = np.ascontiguousarray(centers.T)
    first, second, third = centers_t[0], centers_t[1], centers_t[2]
    for i in prange(n_points):
        row = slot[cell_of[i]]
        point = (X[i, 0], X[i, 1], X[i, 2])
        best = np.inf
        best_k = 0
        for j in range(counts[row]):
            k = candidates[row, j]
            distance = _squared_distance_3(point, (first, second, third), k)
            if distance < best:
                best, best_k = distance, k
        labels[i] = best_k


@njit(cache=True, nogil=True, parallel=True)
def _grid_over(X):  # pragma: no cover - compiled
    """(low, size): each feature's smallest value and cell width for ``_GRID_CELLS`` cells
    over the points' range (width 1 where all values are equal)."""
    n_points, n_features = X.shape
    n_blocks = (n_points + _RANGE_BLOCK - 1) // _RANGE_BLOCK
    block_low = np.empty((n_blocks, n_features))
    block_high = np.empty((n_blocks, n_features))
    for block in prange(n_blocks):
        for feature in range(n_features):
            low, high = np.inf, -np.inf
            for i in range(block * _RANGE_BLOCK, min(n_points, (block + 1) * _RANGE_BLOCK)):
                low = min(low, X[i, feature])
                high = max(high, X[i, feature])
            block_low[block, feature], block_high[block, feature] = low, high
    low = np.empty(n_features)
    size = np.empty(n_features)
    for feature in range(n_features):
        low[feature] = block_low[:, feature].min()
        spread = block_high[:, feature].max() - low[feature]
        size[feature] = spread / _GRID_CELLS if spread > 0 else 1.0
    return low, size


@njit(cache=True, nogil=True)
def _candidate_scratch(n_centers):  # pragma: no cover - compiled
    """Scratch arrays for :func:`_cell_candidates`: a cell's two corners, and distances."""
    return np.empty(3), np.empty(3), np.empty(n_centers)


@njit(cache=True, nogil=True, inline="always")
def _cell_candidates(
    cell, low, size, centers, candidates, row, cell_low, cell_high, closest
):  # pragma: no cover - compiled
    """Writes the centres (three features) that can be nearest to some point of grid cell
    ``cell`` into row ``row`` of ``candidates``, in increasing index; returns how many there
    are.

    The grid has ``_GRID_CELLS`` cells per feature from ``low``, of width ``size``; cell numbers
    run with the last feature fastest. Let b be the smallest, over centres, of the largest
    squared distance from the centre to the cell: every point of the cell has a centre
    within b, so only centres whose smallest squared distance to the cell is at most b can
    be its nearest, or tie with it. The cell is widened by a millionth of its width, and b
    raised a little, so that rounding cannot drop a candidate. ``cell_low``, ``cell_high``
    and ``closest`` are scratch (:func:`_candidate_scratch`). The loops run over exactly
    three features: over a feature count, the dithering grid took 0.78 instead of 0.27 ms
    at K = 16 (exploratory).
    """
    remainder = cell
    for feature in range(2, -1, -1):
        position = remainder % _GRID_CELLS
        remainder //= _GRID_CELLS
        margin = 1e-6 * size[feature]  # a point rounded onto the cell's edge is inside
        cell_low[feature] = low[feature] + position * size[feature] - margin
        cell_high[feature] = low[feature] + (position + 1) * size[feature] + margin
    bound = np.inf
    for k in range(centers.shape[0]):
        near = 0.0
        far = 0.0
        for feature in range(3):
            below = cell_low[feature] - centers[k, feature]
            above = centers[k, feature] - cell_high[feature]
            far += max(below * below, above * above)
            gap = max(below, above, 0.0)
            near += gap * gap
        closest[k] = near
        bound = min(bound, far)
    bound = _widened(bound)
    count = 0
    for k in range(centers.shape[0]):
        if closest[k] <= bound:
            candidates[row, count] = k
            count += 1
    return count


@njit(cache=True, nogil=True, fastmath={"nnan", "ninf", "nsz", "reassoc"})
def _least(values):  # pragma: no cover - compiled
    """The smallest of ``values`` (no NaN). A minimum is exact in any order, so the loop
    may run as a vectorised reduction; in order it waits on each comparison in turn."""
    least = np.inf
    for value in values:
        least = min(least, value)
    return least


@njit(cache=True, nogil=True, inline="always")
def _half_gaps(centers, centers_t, half_gap, row):  # pragma: no cover - compiled
    """``half_gap[k]``: half the distance from centre k of ``centers`` (k, d) to its nearest
    other one (infinity for a single centre); ``centers_t`` is ``centers`` transposed and
    ``row`` (k,) scratch.

    Each centre's squared distances to all the others are summed as
    :func:`_squared_distance` sums them, in a vectorised row, and their least found by
    :func:`_least`: one pair at a time, with a branch for the centre itself, took
    6.2 instead of 1.8 microseconds for 64 centres and 13.2 instead of 4.0 for 96, at every
    step of Lloyd by scan (exploratory).
    """
    n_centers = centers.shape[0]
    for k in range(n_centers):
        _squared_distances_of(centers, k, centers_t, row)
        row[k] = np.inf
        half_gap[k] = 0.5 * np.sqrt(_least(row))


@njit(cache=True, nogil=True, parallel=True)
def nearest_labels_by_scan(X, centers, guesses, labels):  # pragma: no cover - compiled
    """:func:`nearest_labels` for points of three features, from a guess of each point's
    nearest centre, every centre scanned where need be: the same labels, ties included,
    whatever the guesses.

    Reads ``X`` (n, 3), ``centers`` (k, 3), ``guesses`` (n,) any centre indices; writes
    ``labels`` (n,). A point nearer its guess than half the gap from the guess to its
    nearest other centre keeps it (every other centre is then farther). So does one nearer
    than half the gap to the guess's ``_NEIGHBOURS + 1``-th nearest other centre, if its
    ``_NEIGHBOURS`` nearest others are all farther from the point than the guess. Any other
    point's guess is checked against every centre in one pass that counts those as near,
    and only a point with another as near is searched (:func:`_nearest_by_scan`).

    Each test runs over a block's points in turn, listing those it leaves in doubt without
    a branch for the next: whether a point passes is a coin toss to the processor (about
    half pass the first test), and the branch it mispredicted cost more than the tests. On
    the elbow sweep's 63 palettes of the sample photo (35,000 colours, one thread): 22.4
    against 25.9 ms, the neighbours' test 0.90 x the time at K = 49 to 64 and the lists
    0.90 x overall (exploratory). For a few centres and Lloyd's own labels as guesses this
    is quicker than the grid of :func:`nearest_labels_by_grid` (see
    :data:`kmquant.remap.GUESSES_SCAN_UP_TO`).
    """
    n_points, n_centers = X.shape[0], centers.shape[0]
    centers_t = np.ascontiguousarray(centers.T)
    neighbours, quarter_gap, quarter_reach = _scan_neighbours(centers, centers_t)
    n_neighbours = min(_NEIGHBOURS, n_centers - 1)
    rows = (centers_t[0], centers_t[1], centers_t[2])
    for block in prange((n_points + _BLOCK - 1) // _BLOCK):
        distances = np.empty(n_centers)
        doubtful = np.empty(_BLOCK, dtype=np.uint32)
        owns = np.empty(_BLOCK)
        first, last = block * _BLOCK, (block + 1) * _BLOCK
        block_X, block_guesses, block_labels = (
            X[first:last],
            guesses[first:last],
            labels[first:last],
        )
        n_doubtful = 0
        for i in range(block_X.shape[0]):
            guess = np.uint64(block_guesses[i])
            own = _squared_distance(block_X, i, centers, guess)
            block_labels[i] = guess
            doubtful[n_doubtful] = i
            owns[n_doubtful] = own
            n_doubtful += own >= quarter_gap[guess]
        n_left = 0
        for position in range(n_doubtful):
            i = np.uint64(doubtful[position])
            guess = np.uint64(block_guesses[i])
            own = owns[position]
            point = (block_X[i, 0], block_X[i, 1], block_X[i, 2])
            n_as_near = 0
            for rank in range(n_neighbours):
                n_as_near += _squared_distance_3(point, rows, neighbours[guess, rank]) <= own
            doubtful[n_left] = i
            n_left += (n_as_near > 0) | (own >= quarter_reach[guess])
        for position in range(n_left):
            i = np.uint64(doubtful[position])
            guess = np.uint64(block_guesses[i])
            block_labels[i] = _nearest_by_scan(block_X, i, centers_t, guess, distances)[0]


# Nearest other centres of each centre that nearest_labels_by_scan checks a point against
# before it counts every centre.
_NEIGHBOURS = 4


@njit(cache=True, nogil=True)
def _scan_neighbours(centers, centers_t):  # pragma: no cover - compiled
    """For each centre g of ``centers`` (k, d; ``centers_t`` its transpose): its
    ``_NEIGHBOURS`` nearest other centres (``neighbours`` (k, _NEIGHBOURS), nearest first),
    a quarter of the squared gap to its nearest other one (``quarter_gap``) and to the next
    after its neighbours (``quarter_reach``), both narrowed for rounding, infinity where
    there is none. A point whose squared distance to g is below ``quarter_gap[g]`` has no
    other centre as near; below ``quarter_reach[g]``, none but perhaps g's neighbours."""
    n_centers = centers.shape[0]
    n_neighbours = min(_NEIGHBOURS, n_centers - 1)
    neighbours = np.zeros((n_centers, _NEIGHBOURS), dtype=np.uint64)
    quarter_gap = np.full(n_centers, np.inf)
    quarter_reach = np.full(n_centers, np.inf)
    row = np.empty(n_centers)
    for g in range(n_centers):
        _squared_distances_of(centers, g, centers_t, row)
        row[g] = np.inf
        for rank in range(min(n_neighbours + 1, n_centers - 1)):  # the nearest, in turn
            nearest = 0
            for k in range(n_centers):
                if row[k] < row[nearest]:
                    nearest = k
            if rank == 0:
                quarter_gap[g] = _narrowed(row[nearest] / 4.0)
            if rank < n_neighbours:
                neighbours[g, rank] = nearest
                row[nearest] = np.inf
            else:
                quarter_reach[g] = _narrowed(row[nearest] / 4.0)
    return neighbours, quarter_gap, quarter_reach


@njit(cache=True, nogil=True)
def nearest_labels_from(X, centers, guesses, labels):  # pragma: no cover - compiled
    """:func:`nearest_labels` starting from a guess of each point's nearest centre.

    Reads ``X`` (n, d), ``centers`` (k, d), ``guesses`` (n,) any centre indices; writes
    ``labels`` (n,), the same as :func:`nearest_labels` whatever the guesses: they only
    decide the work. With the guess g at distance r, g is the nearest when r is below half
    the gap from g to its nearest other centre (every other centre is then farther than r);
    otherwise only the centres of norm within r of ``||x||`` can be nearer, and they are
    searched (ties: lowest index). With Lloyd's own labels as guesses, mapping a photo's
    colours to their rounded palette of K = 256 took 1.5 ms instead of the full scan's 3.4
    (exploratory); at K = 16 the full scan is faster. For three features
    :func:`nearest_labels_by_grid` is faster still, so this serves RGBA's seven and grey's one.
    """
    n_centers = centers.shape[0]
    by_norm = _centers_by_norm(centers)
    sorted_norms, sorted_centers_t, norm_table, norm_low, norm_scale = _sorted_centers(
        centers, by_norm
    )
    separation = _new_separation(n_centers)
    _separation(centers, by_norm, np.zeros(n_centers), separation)
    order, half_gap = by_norm[1], separation[0]
    frame = (order, sorted_norms, sorted_centers_t, norm_table, half_gap)
    n_blocks = (X.shape[0] + _BLOCK - 1) // _BLOCK
    if X.shape[0] >= _PARALLEL_ASSIGN_POINTS:
        _nearest_from_blocks_parallel(
            X, centers, guesses, labels, *frame, norm_low, norm_scale, n_blocks
        )
    else:
        for block in range(n_blocks):
            _nearest_from_block(X, centers, guesses, labels, frame, norm_low, norm_scale, block)


@njit(cache=True, nogil=True, parallel=True)
def _nearest_from_blocks_parallel(
    X,
    centers,
    guesses,
    labels,
    order,
    sorted_norms,
    sorted_centers_t,
    norm_table,
    half_gap,
    norm_low,
    norm_scale,
    n_blocks,
):  # pragma: no cover - compiled
    """:func:`_nearest_from_block` over every block, in parallel."""
    for block in prange(n_blocks):
        frame = (order, sorted_norms, sorted_centers_t, norm_table, half_gap)
        _nearest_from_block(X, centers, guesses, labels, frame, norm_low, norm_scale, block)


@njit(cache=True, nogil=True)
def _nearest_from_block(
    X, centers, guesses, labels, frame, norm_low, norm_scale, block
):  # pragma: no cover - compiled
    """:func:`nearest_labels_from` on the points of one block."""
    order, sorted_norms, sorted_centers_t, norm_table, half_gap = frame
    n_features = centers.shape[1]
    distances = np.empty(centers.shape[0])
    for i in range(block * _BLOCK, min(X.shape[0], (block + 1) * _BLOCK)):
        guess = guesses[i]
        best = _squared_distance(X, i, centers, guess)
        radius = _widened(np.sqrt(best))
        if radius < half_gap[guess]:
            labels[i] = guess
            continue
        norm = 0.0
        for feature in range(n_features):
            norm += X[i, feature] * X[i, feature]
        norm = np.sqrt(norm)
        start, stop = _band(sorted_norms, norm_table, norm_low, norm_scale, norm, radius)
        nearest = guess
        _band_distances(X, i, sorted_centers_t, start, stop, distances)
        for position in range(start, stop):
            distance = distances[position - start]
            if distance > best:
                continue
            k = order[position]
            if distance < best or k < nearest:
                best, nearest = distance, k
        labels[i] = nearest


@njit(cache=True, nogil=True)
def _means_from_sums(sums, totals, sizes, centers_out):  # pragma: no cover - compiled
    """``centers_out[k] = sums[k] / totals[k]`` where ``sizes[k] > 0``; returns how many are 0."""
    n_empty = 0
    for k in range(sums.shape[0]):
        if sizes[k] > 0:
            for feature in range(sums.shape[1]):
                centers_out[k, feature] = sums[k, feature] / totals[k]
        else:
            n_empty += 1
    return n_empty


@njit(cache=True, nogil=True)
def _cluster_sums(X, weights, labels, sums, totals, members):  # pragma: no cover - compiled
    """Per-cluster sums of w * x, of w, and member counts, from scratch (serial, in order)."""
    sums[:, :] = 0.0
    totals[:] = 0.0
    members[:] = 0
    if X.shape[1] == 3:
        _cluster_sums_3(X, weights, labels, sums, totals, members)
        return
    for i in range(X.shape[0]):
        k = np.uint32(labels[i])  # unsigned: no check for wrapping (see the module)
        totals[k] += weights[i]
        members[k] += 1
        for feature in range(X.shape[1]):
            sums[k, feature] += weights[i] * X[i, feature]


@njit(cache=True, nogil=True, inline="always")
def _cluster_sums_3(X, weights, labels, sums, totals, members):  # pragma: no cover - compiled
    """:func:`_cluster_sums` for three features, on zeroed sums: a run of points of one
    cluster (the colours come in order, so neighbours often share one) is summed in
    registers and stored when the cluster changes. Each sum takes the same additions in the
    same order, so the same values; summed in the arrays, each addition waited on the store
    of the one before (a photo's colours at K = 16: 108 -> 47 microseconds, exploratory)."""
    current = np.uint32(0)
    sum_0, sum_1, sum_2 = 0.0, 0.0, 0.0
    total, count = 0.0, 0
    for i in range(X.shape[0]):
        k = np.uint32(labels[i])  # unsigned: no check for wrapping (see the module)
        if k != current:
            sums[current, 0], sums[current, 1], sums[current, 2] = sum_0, sum_1, sum_2
            totals[current], members[current] = total, count
            current = k
            sum_0, sum_1, sum_2 = sums[k, 0], sums[k, 1], sums[k, 2]
            total, count = totals[k], members[k]
        w = weights[i]
        total += w
        count += 1
        sum_0 += w * X[i, 0]
        sum_1 += w * X[i, 1]
        sum_2 += w * X[i, 2]
    sums[current, 0], sums[current, 1], sums[current, 2] = sum_0, sum_1, sum_2
    totals[current], members[current] = total, count


@njit(cache=True, nogil=True)
def weighted_means(X, weights, labels, centers_out):  # pragma: no cover - compiled
    """Weighted mean of every cluster; empty clusters relocated as in ``compute_centroids``.

    Reads ``X`` (n, d), ``weights`` (n,), ``labels`` (n,); ``centers_out`` (k, d) holds the
    current centres on entry and the new ones on exit. Serial, so sums are thread-independent.
    """
    n_centers, n_features = centers_out.shape
    sums = np.empty((n_centers, n_features))
    totals = np.empty(n_centers)
    members = np.empty(n_centers, dtype=np.int64)
    _cluster_sums(X, weights, labels, sums, totals, members)
    n_empty = _means_from_sums(sums, totals, totals, centers_out)
    if n_empty == 0:
        return 0
    # Relocate empty clusters to the costliest points (w * squared distance), costliest first;
    # a cluster never gives away its last point.
    cost = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        cost[i] = weights[i] * _squared_distance(X, i, centers_out, labels[i])
    order = np.argsort(-cost, kind="mergesort")
    next_candidate = 0
    for k in range(n_centers):
        if totals[k] > 0:
            continue
        placed = False
        while next_candidate < order.shape[0]:
            point = order[next_candidate]
            next_candidate += 1
            donor = labels[point]
            if cost[point] <= 0 or totals[donor] - weights[point] <= 0:
                continue
            totals[donor] -= weights[point]
            for feature in range(n_features):
                sums[donor, feature] -= weights[point] * X[point, feature]
                centers_out[donor, feature] = sums[donor, feature] / totals[donor]
                centers_out[k, feature] = X[point, feature]
                sums[k, feature] = weights[point] * X[point, feature]
            totals[k] = weights[point]
            placed = True
            break
        if not placed:
            total_weight = 0.0
            for i in range(X.shape[0]):
                total_weight += weights[i]
            for feature in range(n_features):
                mean = 0.0
                for i in range(X.shape[0]):
                    mean += weights[i] * X[i, feature]
                centers_out[k, feature] = mean / total_weight
    return n_empty


# A centre's neighbourhood: the centres within this many times its distance to the nearest.
# Refine at K = 256 on the photos: 42.7 ms an image with the global largest shift only,
# 37.9 / 31.2 / 30.0 / 36.7 ms with 1.5 / 2 / 3 / 6 gaps (exploratory).
_NEIGHBOURHOOD_GAPS = 3.0


@njit(cache=True, nogil=True)
def _separation(centers, by_norm, shift, separation):  # pragma: no cover - compiled
    """Writes ``separation`` = (half_gap, reach, local_shift, nearest_other), per centre k:
    half the distance to its nearest other centre; ``_NEIGHBOURHOOD_GAPS`` times that
    distance; the largest ``shift`` of the other centres within that reach of it; the index
    of that nearest other centre. A ``nearest_other`` already set (not -1), such as the
    last iteration's, starts the search at its distance, which ends the walk sooner (Lloyd
    on every colour at K = 256: 0.97x the time, exploratory).

    ``by_norm`` is (norms, order) of the centres (:func:`_centers_by_norm`). Centres are
    visited in order of norm, outwards from each one: a centre whose norm differs by d is at
    least d away, so the walk stops as soon as that exceeds the nearest distance found (or
    the reach), and each centre meets a few dozen others, not all K. The walk for the local
    shift visits only the centres that moved.
    """
    half_gap, reach, local_shift, nearest_other = separation
    norms, order = by_norm
    n_centers = centers.shape[0]
    sorted_norms = norms[order]
    # The centres that moved, in order of norm (by position), and how many of them come
    # before each position: only they can raise a local shift.
    moved = np.empty(n_centers, dtype=np.intp)
    moved_before = np.empty(n_centers, dtype=np.intp)
    n_moved = 0
    for position in range(n_centers):
        moved_before[position] = n_moved
        if shift[order[position]] > 0.0:
            moved[n_moved] = position
            n_moved += 1
    for position in range(n_centers):
        k = order[position]
        nearest = np.inf  # squared
        if nearest_other[k] >= 0:
            nearest = _squared_distance(centers, k, centers, nearest_other[k])
        for step in (-1, 1):
            other = position + step
            while 0 <= other < n_centers and (sorted_norms[other] - norms[k]) ** 2 < nearest:
                distance = _squared_distance(centers, k, centers, order[other])
                if distance < nearest:
                    nearest = distance
                    nearest_other[k] = order[other]
                other += step
        half_gap[k] = 0.5 * np.sqrt(nearest)
        reach[k] = _NEIGHBOURHOOD_GAPS * np.sqrt(nearest)
        reach_squared = _NEIGHBOURHOOD_GAPS**2 * nearest
        local_shift[k] = 0.0
        first_after = moved_before[position]
        if first_after < n_moved and moved[first_after] == position:
            first_after += 1
        for step, start in ((-1, moved_before[position] - 1), (1, first_after)):
            j = start
            while 0 <= j < n_moved and (sorted_norms[moved[j]] - norms[k]) ** 2 < reach_squared:
                neighbour = order[moved[j]]
                # Only a larger shift needs the distance.
                if shift[neighbour] > local_shift[k] and (
                    _squared_distance(centers, k, centers, neighbour) < reach_squared
                ):
                    local_shift[k] = shift[neighbour]
                j += step


@njit(cache=True, nogil=True)
def _new_separation(n_centers):  # pragma: no cover - compiled
    """Arrays for :func:`_separation`, with no nearest other centre known yet."""
    return (
        np.empty(n_centers),
        np.empty(n_centers),
        np.empty(n_centers),
        np.full(n_centers, -1),
    )


@njit(cache=True, nogil=True)
def _sorted_centers(centers, by_norm):  # pragma: no cover - compiled
    """What a search of a band of norms reads: the sorted norms, the centres in that order
    transposed (d, k), and :func:`_norm_table`'s table, low and scale."""
    norms, order = by_norm
    sorted_centers_t = np.empty((centers.shape[1], centers.shape[0]))
    for position in range(centers.shape[0]):
        for feature in range(centers.shape[1]):  # element by element: see _copy_rows
            sorted_centers_t[feature, position] = centers[order[position], feature]
    sorted_norms = norms[order]
    norm_table, norm_low, norm_scale = _norm_table(sorted_norms)
    return sorted_norms, sorted_centers_t, norm_table, norm_low, norm_scale


@njit(cache=True, nogil=True, inline="always")
def _widened(value):  # pragma: no cover - compiled
    """``value`` with slack for rounding: a wider search, reach or bound is always safe."""
    return value * (1.0 + 1e-9) + 1e-9


@njit(cache=True, nogil=True, inline="always")
def _narrowed(value):  # pragma: no cover - compiled
    """``value`` with slack for rounding the other way: a narrower bound is always safe."""
    return value * (1.0 - 1e-9) - 1e-9


@njit(cache=True, nogil=True)
def _centers_by_norm(centers):  # pragma: no cover - compiled
    """(norms, order): the centres' norms and their indices in increasing norm."""
    norms = _row_norms(centers)
    return norms, np.argsort(norms)


@njit(cache=True, nogil=True)
def _row_norms(X):  # pragma: no cover - compiled
    """Euclidean norm of every row of ``X`` (n, d)."""
    norms = np.empty(X.shape[0])
    for i in range(X.shape[0]):
        total = 0.0
        for feature in range(X.shape[1]):
            total += X[i, feature] * X[i, feature]
        norms[i] = np.sqrt(total)
    return norms


@njit(cache=True, nogil=True, parallel=True)
def _nearest_three(X, centers, nearest, bounds):  # pragma: no cover - compiled
    """Full scan for Lloyd's bounds: the three nearest centres of every point.

    Writes ``nearest`` (3, n), the indices of each point's nearest, second and third nearest
    centres (ties: lowest index), and ``bounds`` (3, n), the Euclidean distances to them
    (infinity where there are fewer centres).
    """
    centers_t = np.ascontiguousarray(centers.T)
    n_points = X.shape[0]
    for block in prange((n_points + _BLOCK - 1) // _BLOCK):
        _nearest_three_of_block(X, centers_t, nearest, bounds, block)


@njit(cache=True, nogil=True)
def _nearest_three_serial(X, centers, nearest, bounds):  # pragma: no cover - compiled
    """:func:`_nearest_three` on the calling thread alone, for :func:`restarts`: inside a
    parallel loop a parallel kernel opens a nested parallel region, which cost more than the
    scan. Ten restarts on a photo's 768 boxes at K = 16 (Lloyd alone) took 2.75 ms side by
    side on two threads against 2.38 one after another, and 1.16 with this scan; two at
    K = 64 1.12 against 1.39, and 0.77 (exploratory)."""
    centers_t = np.ascontiguousarray(centers.T)
    for block in range((X.shape[0] + _BLOCK - 1) // _BLOCK):
        _nearest_three_of_block(X, centers_t, nearest, bounds, block)


@njit(cache=True, nogil=True, inline="always")
def _nearest_three_of_block(X, centers_t, nearest, bounds, block):  # pragma: no cover
    """:func:`_nearest_three` on the points of one block of ``_BLOCK``."""
    n_points, n_centers = X.shape[0], centers_t.shape[1]
    distances = np.empty(n_centers)
    for i in range(block * _BLOCK, min(n_points, (block + 1) * _BLOCK)):
        _squared_distances_of(X, i, centers_t, distances)
        # In index order, strict comparisons give ties to the lowest index.
        d1, k1, d2, k2, d3, k3 = np.inf, 0, np.inf, 0, np.inf, 0
        for k in range(n_centers):
            distance = distances[k]
            if distance < d3:
                if distance < d1:
                    d1, k1, d2, k2, d3, k3 = distance, k, d1, k1, d2, k2
                elif distance < d2:
                    d2, k2, d3, k3 = distance, k, d2, k2
                else:
                    d3, k3 = distance, k
        nearest[0, i], nearest[1, i], nearest[2, i] = k1, k2, k3
        bounds[0, i], bounds[1, i], bounds[2, i] = np.sqrt(d1), np.sqrt(d2), np.sqrt(d3)


@njit(cache=True, nogil=True, inline="always")
def _with_candidate(distance, k, d1, k1, d2, k2, d3, k3):  # pragma: no cover - compiled
    """The three nearest ``(d1, k1, d2, k2, d3, k3)`` once centre k at squared ``distance``
    is seen, for a candidate known to rank before the third (``distance < d3``, or equal
    with ``k < k3``); ties go to the lowest index, as in a scan in index order."""
    if distance < d1 or (distance == d1 and k < k1):
        return distance, k, d1, k1, d2, k2
    if distance < d2 or (distance == d2 and k < k2):
        return d1, k1, distance, k, d2, k2
    return d1, k1, d2, k2, distance, k


# Boxes per task of :func:`nearest_three_by_boxes`: each task reuses one set of scratch arrays.
_BOXES_PER_TASK = 16


@njit(cache=True, nogil=True, parallel=True)
def nearest_three_by_boxes(
    X, centers, means, members, starts, stops, nearest, bounds
):  # pragma: no cover - compiled
    """:func:`_nearest_three`'s result, the points' three nearest centres, box by box.

    The points of ``X`` (n, d) are grouped into boxes (:func:`split_into_boxes`): box b has
    mean ``means[b]`` and points ``members[starts[b]:stops[b]]``. Writes ``nearest`` and
    ``bounds`` (3, n) exactly as the full scan would, ties included, at a fraction of its
    distances (K = 256 on the photos: 14 candidates a colour, 5 distances, against 256).

    Let m be a box's mean, r its points' largest distance from m and d3 the distance from m
    to its third-nearest centre. A point x of the box has three centres within d3 + r, so
    its three nearest lie within d3 + 2r of m: only those are its box's candidates. They are
    visited in order of their distance e_c from m; once e_c - ||x - m|| exceeds the third
    distance found, every later candidate is farther than it, and the search stops.
    """
    centers_t = np.ascontiguousarray(centers.T)
    n_centers, n_features = centers.shape
    n_boxes = means.shape[0]
    n_tasks = (n_boxes + _BOXES_PER_TASK - 1) // _BOXES_PER_TASK
    for task in prange(n_tasks):
        distances = np.empty(n_centers)
        candidates = np.empty(n_centers, dtype=np.intp)
        reaches = np.empty(n_centers)
        candidate_centers = np.empty((n_centers, n_features))
        for box in range(task * _BOXES_PER_TASK, min(n_boxes, (task + 1) * _BOXES_PER_TASK)):
            n_candidates = _box_candidates(
                X,
                centers_t,
                means,
                box,
                members[starts[box] : stops[box]],
                distances,
                candidates,
                reaches,
            )
            for j in range(n_candidates):
                for feature in range(n_features):
                    candidate_centers[j, feature] = centers_t[feature, candidates[j]]
            for i in members[starts[box] : stops[box]]:
                offset = _widened(np.sqrt(_squared_distance(X, i, means, box)))
                d1, k1, d2, k2, d3, k3 = np.inf, 0, np.inf, 0, np.inf, 0
                for j in range(n_candidates):
                    gap = reaches[j] - offset
                    if gap > 0.0 and gap * gap > _widened(d3):
                        break
                    distance = _squared_distance(X, i, candidate_centers, j)
                    k = candidates[j]
                    if distance < d3 or (distance == d3 and k < k3):
                        d1, k1, d2, k2, d3, k3 = _with_candidate(
                            distance, k, d1, k1, d2, k2, d3, k3
                        )
                nearest[0, i], nearest[1, i], nearest[2, i] = k1, k2, k3
                bounds[0, i], bounds[1, i], bounds[2, i] = np.sqrt(d1), np.sqrt(d2), np.sqrt(d3)


@njit(cache=True, nogil=True)
def _box_candidates(
    X, centers_t, means, box, points, distances, candidates, reaches
):  # pragma: no cover - compiled
    """Writes the centres that can be among the three nearest of a point of ``box`` (see
    :func:`nearest_three_by_boxes`) into ``candidates``, nearest to the box's mean first,
    and their distances from it into ``reaches``; returns how many there are. ``points``
    are the box's indices into ``X``; ``distances`` (k,) is scratch."""
    radius = 0.0  # squared
    for i in points:
        radius = max(radius, _squared_distance(X, i, means, box))
    _squared_distances_of(means, box, centers_t, distances)
    d1, d2, d3 = np.inf, np.inf, np.inf
    for k in range(distances.shape[0]):
        distance = distances[k]
        if distance < d3:
            if distance < d1:
                d1, d2, d3 = distance, d1, d2
            elif distance < d2:
                d2, d3 = distance, d2
            else:
                d3 = distance
    reach = _widened(np.sqrt(d3) + 2.0 * np.sqrt(radius))
    n_candidates = 0
    for k in range(distances.shape[0]):
        if distances[k] <= reach * reach:  # by insertion, nearest first
            root = np.sqrt(distances[k])
            j = n_candidates
            while j > 0 and reaches[j - 1] > root:
                reaches[j], candidates[j] = reaches[j - 1], candidates[j - 1]
                j -= 1
            reaches[j], candidates[j] = root, k
            n_candidates += 1
    return n_candidates


@njit(cache=True, nogil=True, inline="always")
def _bounded_assign(
    X, point_norms, centers, nearest, bounds, shift, separation, moves, block_moves
):  # pragma: no cover - compiled
    """Hamerly's assignment with a second-nearest centre kept apart from the rest.

    Reads ``X``, ``point_norms`` (n,) = ||X[i]||, ``centers`` and ``shift`` (k,), how far
    each centre moved since the bounds were set; first writes ``separation`` for the centres
    (:func:`_separation`, the last call's nearest other centres as its start). Column i of
    ``nearest`` (3, n)
    holds point i's label, its second-nearest centre and a third centre (used only to
    size the search); column i of ``bounds`` (3, n) an upper bound on the distance to its
    label, a lower bound on the distance to its second centre and a lower bound on the
    distance to every other centre ("the rest"). Loosens the bounds by the shifts, updates
    both arrays in place and returns how many labels moved. The moves are listed block by
    block of ``_BLOCK`` points: ``block_moves[b]`` points of block b moved, and columns
    ``b * _BLOCK`` on of ``moves`` (2, n) hold them, each point and its previous label, in
    increasing order of the points.

    The bound on the rest is loosened by the largest shift among those centres, or, when
    that gives more, by the largest shift among the centres within its centre's reach
    (those farther are at least the reach minus the upper bound away). Hamerly's single
    bound is loosened by the largest shift of all, and at K = 256 some centre always moves
    far.

    A point keeps its label without any distance when its upper bound is at most half the
    gap from its centre to the nearest other centre or its lower bounds (Hamerly 2010). Next
    come the exact distances to its centre and to its second centre: among colours most
    doubtful points lie between two clusters, and those two settle it when the nearer is
    within the bound on the rest. Only the others are searched, in the band of the
    norm-sorted centres within r = the largest distance to its three known centres of ||x||
    (Drake and Hamerly's annulus), which holds its three nearest.

    Blocks of points run in parallel from ``_PARALLEL_ASSIGN_POINTS`` points on; below, on
    one thread: on a few thousand points a pass takes microseconds, less than waking
    sleeping OpenMP threads (``let_idle_threads_sleep``).
    """
    n_centers = centers.shape[0]
    by_norm = _centers_by_norm(centers)
    _separation(centers, by_norm, shift, separation)
    order = by_norm[1]
    sorted_norms, sorted_centers_t, norm_table, norm_low, norm_scale = _sorted_centers(
        centers, by_norm
    )
    # The three largest shifts and whose the first two are: the largest over the centres
    # other than a point's two is among them.
    top_shifts = np.zeros(3)
    top_indices = np.full(2, -1, dtype=np.intp)
    for k in range(n_centers):
        value = shift[k]
        if value > top_shifts[2]:
            if value > top_shifts[0]:
                top_shifts[2], top_shifts[1], top_shifts[0] = top_shifts[1], top_shifts[0], value
                top_indices[1], top_indices[0] = top_indices[0], k
            elif value > top_shifts[1]:
                top_shifts[2], top_shifts[1] = top_shifts[1], value
                top_indices[1] = k
            else:
                top_shifts[2] = value
    frame = (order, sorted_norms, sorted_centers_t, top_shifts, top_indices, norm_table)
    scalars = (norm_low, norm_scale)
    half_gap, reach, local_shift, _ = separation
    state = (X, point_norms, centers, nearest, bounds, shift, half_gap, reach, local_shift)
    n_blocks = (X.shape[0] + _BLOCK - 1) // _BLOCK
    if X.shape[0] >= _PARALLEL_ASSIGN_POINTS:
        return _assign_blocks_parallel(*state, *frame, *scalars, moves, block_moves, n_blocks)
    n_moved = 0
    for block in range(n_blocks):
        n_moved += _assign_block(state, frame, scalars, moves, block_moves, block)
    return n_moved


# Cells of the table that finds a norm's place among the sorted centre norms, per centre.
_NORM_CELLS_PER_CENTER = 4


@njit(cache=True, nogil=True)
def _norm_table(sorted_norms):  # pragma: no cover - compiled
    """(table, low, scale) for :func:`_first_norm_from` and :func:`_first_norm_above`.

    The range of ``sorted_norms`` is cut into cells of width 1 / scale from ``low``;
    ``table[j]`` is the first position whose norm's cell, ``(norm - low) * scale``, is at
    least j. A norm's cell, rounded down, then gives a position at or before its place in
    the sorted norms, a step or two away: two binary searches per searched point cost more
    than the rest of the search (exploratory, K = 256: 1.6 of 6.8 ms over a photo's colours).
    """
    n_centers = sorted_norms.shape[0]
    n_cells = _NORM_CELLS_PER_CENTER * n_centers
    low = sorted_norms[0]
    spread = sorted_norms[-1] - low
    scale = n_cells / spread if spread > 0 else 1.0
    table = np.empty(n_cells + 1, dtype=np.intp)
    cell = 0
    for position in range(n_centers):
        key = (sorted_norms[position] - low) * scale
        while cell <= n_cells and cell <= key:
            table[cell] = position
            cell += 1
    while cell <= n_cells:
        table[cell] = n_centers
        cell += 1
    return table, low, scale


@njit(cache=True, nogil=True, inline="always")
def _norm_cell(table, low, scale, value):  # pragma: no cover - compiled
    """The table's entry for ``value``'s cell (clipped to the table)."""
    key = (value - low) * scale
    if not key > 0:  # below the range (or NaN): the start
        return table[0]
    if key >= table.shape[0] - 1:
        return table[table.shape[0] - 1]
    return table[int(key)]


@njit(cache=True, nogil=True, inline="always")
def _first_norm_from(sorted_norms, table, low, scale, value):  # pragma: no cover - compiled
    """``np.searchsorted(sorted_norms, value)``: the first position with norm >= value."""
    position = _norm_cell(table, low, scale, value)
    while position < sorted_norms.shape[0] and sorted_norms[position] < value:
        position += 1
    return position


@njit(cache=True, nogil=True, inline="always")
def _band(sorted_norms, table, low, scale, norm, radius):  # pragma: no cover - compiled
    """(start, stop): the positions of the sorted norms within ``radius`` of ``norm``."""
    return (
        _first_norm_from(sorted_norms, table, low, scale, norm - radius),
        _first_norm_above(sorted_norms, table, low, scale, norm + radius),
    )


@njit(cache=True, nogil=True, inline="always")
def _first_norm_above(sorted_norms, table, low, scale, value):  # pragma: no cover - compiled
    """``np.searchsorted(sorted_norms, value, side="right")``: first position with norm > value."""
    position = _norm_cell(table, low, scale, value)
    while position < sorted_norms.shape[0] and sorted_norms[position] <= value:
        position += 1
    return position


# From this many points on, the bounded assignment runs its blocks in parallel.
_PARALLEL_ASSIGN_POINTS = 8192


@njit(cache=True, nogil=True, parallel=True)
def _assign_blocks_parallel(
    X,
    point_norms,
    centers,
    nearest,
    bounds,
    shift,
    half_gap,
    reach,
    local_shift,
    order,
    sorted_norms,
    sorted_centers_t,
    top_shifts,
    top_indices,
    norm_table,
    norm_low,
    norm_scale,
    moves,
    block_moves,
    n_blocks,
):  # pragma: no cover - compiled
    """:func:`_assign_block` over every block, in parallel (the arrays are passed one by one:
    numba's parallel loops take no tuples of arrays)."""
    n_moved = 0
    for block in prange(n_blocks):
        state = (X, point_norms, centers, nearest, bounds, shift, half_gap, reach, local_shift)
        frame = (order, sorted_norms, sorted_centers_t, top_shifts, top_indices, norm_table)
        n_moved += _assign_block(state, frame, (norm_low, norm_scale), moves, block_moves, block)
    return n_moved


@njit(cache=True, nogil=True, inline="always")
def _listed(doubtful, first, pending):  # pragma: no cover - compiled
    """The points ``first + j`` whose ``doubtful[j]`` is set, in order, listed without a
    branch in ``pending`` (uint32, at least as long as ``doubtful``); returns its part that
    holds them."""
    n_pending = 0
    for j in range(doubtful.shape[0]):
        pending[n_pending] = first + j
        n_pending += doubtful[j]
    return pending[:n_pending]


@njit(cache=True, nogil=True)
def _assign_block(state, frame, scalars, moves, block_moves, block):  # pragma: no cover
    """:func:`_bounded_assign` on the points of one block; returns how many moved."""
    X, point_norms, centers, nearest, bounds, shift, half_gap, reach, local_shift = state
    order, sorted_norms, sorted_centers_t, top_shifts, top_indices, norm_table = frame
    norm_low, norm_scale = scalars
    n_centers = centers.shape[0]
    distances = np.empty(n_centers)
    first, last = block * _BLOCK, min(X.shape[0], (block + 1) * _BLOCK)
    # First every point's bounds are loosened and tested, without a branch (most points,
    # 80 to 90% on a photo's colours, pass); the rest are listed and then settled in order.
    doubtful = np.empty(last - first, dtype=np.uint8)
    labels, seconds = nearest[0], nearest[1]
    uppers, lowers, rests = bounds[0], bounds[1], bounds[2]
    top_0, top_1, top_2 = top_shifts[0], top_shifts[1], top_shifts[2]
    index_0, index_1 = top_indices[0], top_indices[1]
    block_labels, block_seconds = labels[first:last], seconds[first:last]
    block_uppers, block_lowers, block_rests = (
        uppers[first:last],
        lowers[first:last],
        rests[first:last],
    )
    for j in range(block_labels.shape[0]):
        current, second_index = block_labels[j], block_seconds[j]
        upper = block_uppers[j] + shift[current]
        lower = block_lowers[j] - shift[second_index]
        # The largest shift among the centres other than the point's two.
        if (index_0 != current) & (index_0 != second_index):
            others = top_0
        elif (index_1 != current) & (index_1 != second_index):
            others = top_1
        else:
            others = top_2
        # The rest within the centre's reach moved at most local_shift; those beyond it
        # are at least reach - upper away.
        rest = block_rests[j]
        rest = max(rest - others, min(rest - local_shift[current], reach[current] - upper))
        block_uppers[j], block_lowers[j], block_rests[j] = upper, lower, rest
        doubtful[j] = upper > max(half_gap[current], min(lower, rest))
    n_moved = 0
    for i in _listed(doubtful, first, np.empty(doubtful.shape[0], dtype=np.uint32)):
        current, second_index = labels[i], seconds[i]
        upper, lower, rest = uppers[i], lowers[i], rests[i]
        bound = max(half_gap[current], min(lower, rest))
        upper = np.sqrt(_squared_distance(X, i, centers, current))
        bounds[0, i] = upper
        if upper <= bound:
            continue
        lower = np.sqrt(_squared_distance(X, i, centers, second_index))
        bounds[1, i] = lower
        if upper <= lower and upper <= rest:
            continue
        if lower < upper and lower <= rest:  # the second centre is the nearest
            moves[0, block * _BLOCK + n_moved], moves[1, block * _BLOCK + n_moved] = i, current
            nearest[0, i], nearest[1, i] = second_index, current
            bounds[0, i], bounds[1, i] = lower, upper
            n_moved += 1
            continue
        radius = max(upper, lower)
        if n_centers >= 3:
            radius = max(radius, np.sqrt(_squared_distance(X, i, centers, nearest[2, i])))
        radius = _widened(radius)
        start, stop = _band(sorted_norms, norm_table, norm_low, norm_scale, point_norms[i], radius)
        # The three centres above lie within the radius, so only those nearer can enter.
        d1, k1, d2, k2, d3, k3 = np.inf, 0, np.inf, 0, radius * radius, n_centers
        _band_distances(X, i, sorted_centers_t, start, stop, distances)
        for position in range(start, stop):
            distance = distances[position - start]
            if distance > d3:
                continue
            k = order[position]
            if distance < d3 or k < k3:  # ties go to the lowest index
                d1, k1, d2, k2, d3, k3 = _with_candidate(distance, k, d1, k1, d2, k2, d3, k3)
        if k1 != current:
            moves[0, block * _BLOCK + n_moved], moves[1, block * _BLOCK + n_moved] = i, current
            nearest[0, i] = k1
            n_moved += 1
        nearest[1, i], nearest[2, i] = k2, k3
        bounds[0, i], bounds[1, i], bounds[2, i] = np.sqrt(d1), np.sqrt(d2), np.sqrt(d3)
    block_moves[block] = n_moved
    return n_moved


@njit(cache=True, nogil=True, inline="always")
def _nearest_by_scan(X, i, centers_t, current, distances):  # pragma: no cover - compiled
    """Point i's nearest centre of ``centers_t`` (d, k), ties to the lowest index, and its
    squared distance. For three features, first whether ``current`` is, by every centre's
    distance compared with its own, then, if not or on a tie, which is. ``distances`` (k,)
    is scratch.

    Three features are written out and the check counts the centres as near without a
    branch, the distances compared as they come: storing them in ``distances`` first took
    2.5x the time at K = 16, and so did that store in the search after the check, which is
    written out too (exploratory). The sums are those of :func:`_squared_distances_of`.
    """
    n_centers = centers_t.shape[1]
    if X.shape[1] != 3:
        found, least, _, _ = _nearest_two_of(X, i, centers_t, distances)
        return found, least
    point = (X[i, 0], X[i, 1], X[i, 2])
    rows = (centers_t[0], centers_t[1], centers_t[2])
    own = _squared_distance_3(point, rows, current)
    # Centres at most as far as ``current``, itself included: one means no other is nearer
    # or ties. A tie is left to the search, which gives it to the lowest index; counting
    # only the ties that ``current`` would lose took 1.3x the time (exploratory).
    n_as_near = 0
    for k in range(n_centers):
        n_as_near += _squared_distance_3(point, rows, k) <= own
    if n_as_near == 1:
        return current, own
    found, least = 0, np.inf
    for k in range(n_centers):
        distance = _squared_distance_3(point, rows, k)
        if distance < least:
            found, least = k, distance
    return found, least


@njit(cache=True, nogil=True, inline="always")
def _squared_distance_3(point, rows, k):  # pragma: no cover - compiled
    """Squared distance from ``point`` (three values) to entry k of ``rows`` (three arrays,
    one per feature), summed as :func:`_squared_distances_of` sums it."""
    e_0 = point[0] - rows[0][k]
    e_1 = point[1] - rows[1][k]
    e_2 = point[2] - rows[2][k]
    return e_0 * e_0 + e_1 * e_1 + e_2 * e_2


@njit(cache=True, nogil=True)
def _scan_assign_block(state, block):  # pragma: no cover - compiled
    """:func:`_scan_assign` on the points of one block; returns how many moved. ``state`` is
    ``(X, centers_t, labels, upper, shift, half_gap, moves, block_moves, doubtful, pending,
    distances)``; the block's scratch is its part of ``doubtful`` (n,) uint8 and ``pending``
    (n,) uint32, and row ``block`` of ``distances`` (n_blocks, k)."""
    X, centers_t, labels, upper, shift, half_gap, moves, block_moves = state[:8]
    doubtful, pending, distances = state[8:]
    first, last = block * _BLOCK, min(X.shape[0], (block + 1) * _BLOCK)
    block_X, block_labels, block_upper = X[first:last], labels[first:last], upper[first:last]
    moved_points, moved_from = moves[0, first:last], moves[1, first:last]
    block_doubtful, block_distances = doubtful[first:last], distances[block]
    # First every point's bound is loosened and tested without a branch; the rest are
    # listed, then scanned in order.
    for j in range(block_labels.shape[0]):
        current = block_labels[j]
        bound = block_upper[j] + shift[current]
        block_upper[j] = bound
        block_doubtful[j] = _widened(bound) >= half_gap[current]
    n_moved = 0
    for j in _listed(block_doubtful, 0, pending[first:last]):
        current = block_labels[j]
        found, squared = _nearest_by_scan(block_X, j, centers_t, current, block_distances)
        block_upper[j] = np.sqrt(squared)
        if found != current:
            moved_points[n_moved], moved_from[n_moved] = first + j, current
            block_labels[j] = found
            n_moved += 1
    block_moves[block] = n_moved
    return n_moved


@njit(cache=True, nogil=True, parallel=True)
def _scan_assign_parallel(
    X, centers_t, labels, upper, shift, half_gap, moves, block_moves, doubtful, pending, distances
):  # pragma: no cover - compiled
    """:func:`_scan_assign_block` over every block, in parallel (the state's arrays are
    passed one by one: numba's parallel loops take no tuples of arrays)."""
    n_moved = 0
    for block in prange(block_moves.shape[0]):
        state = (X, centers_t, labels, upper, shift, half_gap, moves, block_moves)
        n_moved += _scan_assign_block((*state, doubtful, pending, distances), block)
    return n_moved


@njit(cache=True, nogil=True, inline="always")
def _scan_assign(
    X, centers, labels, upper, shift, half_gap, moves, block_moves, scratch
):  # pragma: no cover - compiled
    """Lloyd's assignment without Hamerly's bounds: ``labels`` (n,) become every point's
    nearest centre (ties: the lowest index), the moves listed as by :func:`_bounded_assign`;
    returns how many moved.

    Each point keeps one bound, ``upper`` (n,), on the distance to its centre, loosened by
    its centre's ``shift`` (k,) since it was set: a point within half the gap from its
    centre to the nearest other one keeps it (Hamerly's first test; ``half_gap`` (k,) is
    written here). That settles 40 to 50% of a photo's colours at K = 16 and 30 to 50% at
    K = 64 once converged. Every other point's label is checked against every centre
    (:func:`_nearest_by_scan`), and only a point with another as near is searched; its
    bound becomes exact. An infinite bound makes a point always checked. Few centres on
    few points are a few microseconds a step, less than the upkeep of all of Hamerly's
    bounds: ten restarts on a photo's boxes, one after another, took 0.41x the time with
    them on 768 boxes at K = 16, 0.65x on 1,536 at K = 64, but 1.34x on 3,072 at K = 256
    (exploratory). Blocks of points run in parallel from
    ``_PARALLEL_ASSIGN_POINTS`` points on.

    ``scratch`` is :func:`_scan_scratch`'s, made once per run: made at every step, its
    arrays took about a tenth of a step on a photo's 768 boxes (exploratory).
    """
    # Half the gap from each centre to its nearest other one, by every pair: for the few
    # centres here that is quicker than _separation's walk by norm, which also finds how far
    # each centre's neighbours moved (through it, quantize took 1.04x the time at K = 16,
    # exploratory).
    centers_t, row, doubtful, pending, distances = scratch
    for k in range(centers.shape[0]):
        for feature in range(centers.shape[1]):
            centers_t[feature, k] = centers[k, feature]
    _half_gaps(centers, centers_t, half_gap, row)
    state = (X, centers_t, labels, upper, shift, half_gap, moves, block_moves)
    state = (*state, doubtful, pending, distances)
    if X.shape[0] >= _PARALLEL_ASSIGN_POINTS:
        return _scan_assign_parallel(*state)
    n_moved = 0
    for block in range(block_moves.shape[0]):
        n_moved += _scan_assign_block(state, block)
    return n_moved


@njit(cache=True, nogil=True, inline="always")
def _scan_scratch(n_points, n_centers, n_features):  # pragma: no cover - compiled
    """:func:`_scan_assign`'s scratch for ``n_points`` points (none for 0): the centres
    transposed, a row of distances, and per point a flag and an index of the doubtful ones,
    and a row of distances per block."""
    n_blocks = (n_points + _BLOCK - 1) // _BLOCK
    return (
        np.empty((n_features, n_centers)),
        np.empty(n_centers),
        np.empty(n_points, dtype=np.uint8),
        np.empty(n_points, dtype=np.uint32),
        np.empty((n_blocks, n_centers)),
    )


# Above this share of moved points, the cluster sums are recounted rather than updated.
_RECOUNT_SHARE = 0.25


@njit(cache=True, nogil=True)
def lloyd_from(
    X, weights, centers, max_iter, tol_abs, nearest, bounds, state_centers, relaxation, by_scan
):  # pragma: no cover - compiled
    """Lloyd's algorithm with Hamerly's bounds, from a known state of the bounds or none, or
    (``by_scan``) with every centre scanned.

    Reads ``X`` (n, d), ``weights`` (n,); ``centers`` (k, d) holds the initial centres and is
    overwritten with the final ones. ``nearest`` (3, n) and ``bounds`` (3, n) are Lloyd's
    state (see :func:`_bounded_assign`): when ``state_centers`` (k, d) is not empty, they
    hold the state an assignment left for those centres (every label the nearest), and the
    first assignment loosens it by how far each initial centre lies from them, as after any
    Lloyd step (for the initial centres themselves, it is used as it is); otherwise a full
    scan sets it. On return they hold the state for the final centres (``nearest[0]``: the
    labels). Returns ``(n_iter, converged)``. A run whose initial centres differ from a
    converged run's in a few centres (a swap) so skips the full scan: at K = 256 on 3,072
    boxes it was 2.1 of a swap's 3.6 ms (exploratory).

    Each point keeps an upper bound on the distance to its centre and a lower bound on the
    distance to any other; after the centres move by ``shift[k]`` the bounds are loosened by
    those shifts, and a point whose upper bound is below both its lower bound and half the gap
    from its centre to the nearest other centre provably keeps its label (Hamerly 2010).
    The clusters' sums of w * x and w are kept from one iteration to the next and only the
    points that moved are taken out of one and put into another (serially, in index order),
    so the update step costs the moved points, not all of them; with integer colours and
    counts the sums are exact, hence equal to a recount.

    ``relaxation`` > 1 over-relaxes the first steps: each centre moves ``relaxation`` times
    the way from where it is to its cluster's mean, which crosses the long, slow stretches of
    Lloyd's path in fewer steps. Plain steps (``relaxation`` = 1 from the start) take over
    once a step would have been within the tolerance unrelaxed, once no label moved, or
    after a relocation, and only a plain step can converge, so a converged run ends at a
    fixed point of Lloyd: every centre is its cluster's mean and every label the nearest.

    ``by_scan`` runs the same steps with :func:`_scan_assign`, no bounds: faster for few
    centres on few points. ``nearest[0]`` then holds a guess of each label on entry (any
    centre: a guess that is right saves a search; the labels come out the same) and the
    labels on return; ``state_centers``, the rest of ``nearest`` and ``bounds`` are not used.
    """
    n_points = X.shape[0]
    n_centers, n_features = centers.shape
    labels = nearest[0]
    point_norms = np.empty(0) if by_scan else _row_norms(X)
    moves = np.empty((2, n_points), dtype=np.int32)  # 8 bytes a point: at most 2^31 points
    block_moves = np.empty((n_points + _BLOCK - 1) // _BLOCK, dtype=np.intp)
    separation = _new_separation(n_centers)
    shift = np.empty(n_centers)
    previous = centers.copy()
    sums = np.empty((n_centers, n_features))
    totals = np.empty(n_centers)
    members = np.empty(n_centers, dtype=np.int64)
    scratch = _scan_scratch(n_points if by_scan else 0, n_centers, n_features)
    if by_scan:
        # No bound yet: every point is checked.
        upper = np.full(n_points, np.inf)
        half_gap = np.empty(n_centers)
        shift[:] = 0.0
        _scan_assign(X, centers, labels, upper, shift, half_gap, moves, block_moves, scratch)
    elif state_centers.shape[0] > 0:
        # A state for these very centres (no shift at all) is exact as it is.
        if _shifts(centers, state_centers, shift) > 0.0:
            _bounded_assign(
                X, point_norms, centers, nearest, bounds, shift, separation, moves, block_moves
            )
    else:
        _nearest_three(X, centers, nearest, bounds)
    _cluster_sums(X, weights, labels, sums, totals, members)
    n_moved = 0
    n_iter = 0
    converged = False
    relaxing = relaxation != 1.0
    while n_iter < max_iter:  # on leaving, the labels match the centres
        n_iter += 1
        _copy_rows(centers, previous)
        n_empty = _means_from_sums(sums, totals, members, centers)
        if n_empty > 0:  # relocation, as compute_centroids does it
            weighted_means(X, weights, labels, centers)
            relaxing = False
        if n_iter > 1 and n_moved == 0:
            relaxing = False
        if relaxing:
            for k in range(n_centers):
                for feature in range(n_features):
                    step = centers[k, feature] - previous[k, feature]
                    centers[k, feature] = previous[k, feature] + relaxation * step
        total_shift = _shifts(centers, previous, shift)
        if relaxing:
            # The plain step, 1 / relaxation of this one, would have been within tolerance.
            relaxing = total_shift > tol_abs * relaxation * relaxation
            converged = False
        else:
            converged = (n_iter > 1 and n_moved == 0) or total_shift <= tol_abs
        if by_scan:
            n_moved = _scan_assign(
                X, centers, labels, upper, shift, half_gap, moves, block_moves, scratch
            )
        else:
            n_moved = _bounded_assign(
                X, point_norms, centers, nearest, bounds, shift, separation, moves, block_moves
            )
        if converged:
            break
        if n_moved > _RECOUNT_SHARE * n_points:
            _cluster_sums(X, weights, labels, sums, totals, members)
        elif n_moved > 0:
            for block in range(block_moves.shape[0]):  # the moves in order of the points
                first = block * _BLOCK
                moved_points = moves[0, first : first + block_moves[block]]
                moved_from = moves[1, first : first + block_moves[block]]
                for column in range(moved_points.shape[0]):
                    # Unsigned: numba then checks no index for wrapping (see the module).
                    i, source = np.uint32(moved_points[column]), np.uint32(moved_from[column])
                    target = np.uint32(labels[i])
                    totals[source] -= weights[i]
                    totals[target] += weights[i]
                    members[source] -= 1
                    members[target] += 1
                    for feature in range(n_features):
                        sums[source, feature] -= weights[i] * X[i, feature]
                        sums[target, feature] += weights[i] * X[i, feature]
    return n_iter, converged


@njit(cache=True, nogil=True)
def _shifts(centers, previous, shift):  # pragma: no cover - compiled
    """``shift[k] = ||centers[k] - previous[k]||``; returns the sum of their squares."""
    total = 0.0
    for k in range(centers.shape[0]):
        squared = 0.0
        for feature in range(centers.shape[1]):
            difference = centers[k, feature] - previous[k, feature]
            squared += difference * difference
        total += squared
        shift[k] = np.sqrt(squared)
    return total


@njit(cache=True, nogil=True)
def _first_above(cumulative, value):  # pragma: no cover - compiled
    """Index of the first entry of the non-decreasing ``cumulative`` that exceeds ``value``."""
    low = 0
    high = cumulative.shape[0] - 1
    while low < high:
        middle = (low + high) // 2
        if cumulative[middle] > value:
            high = middle
        else:
            low = middle + 1
    return low


# Points per block in k-means++: blocks of points close in norm, small enough that most of
# them lie out of a candidate's reach once a few centres are placed.
_SEED_BLOCK = 64

SeedPoints = namedtuple("SeedPoints", "X_t weights norms order closest reach base low high")
SeedPoints.__doc__ = """k-means++'s points in order of norm, and per block of them what prunes.

``X_t`` (d, n) the points transposed, ``weights`` and ``norms`` (n,), ``order`` (n,) their
indices in the caller's order, ``closest`` (n,) each one's squared distance to its nearest
centre; per block of ``_SEED_BLOCK`` points, ``reach`` the square root of the largest
``closest``, ``base`` the sum of ``weights * closest``, ``low`` and ``high`` the smallest
and largest norm.
"""


@njit(cache=True, nogil=True)
def _seed_frame(X, weights):  # pragma: no cover - compiled
    """What every k-means++ seeding of ``X`` (n, d) shares: the points sorted by norm.

    Returns ``(X_t, sorted_weights, norms, order, rank, low, high)``: as in
    :class:`SeedPoints`, and ``rank`` (n,) each point's position in ``order``. The restarts
    sort once for all their seedings (a tenth of a seeding's time on a photo's 768 boxes).
    """
    n_points, n_features = X.shape
    norms = _row_norms(X)
    order = np.argsort(norms, kind="mergesort")
    X_t = np.empty((n_features, n_points))
    for position in range(n_points):
        for feature in range(n_features):
            X_t[feature, position] = X[order[position], feature]
    rank = np.empty(n_points, dtype=np.intp)
    for position in range(n_points):  # element by element: see _copy_rows
        rank[order[position]] = position
    n_blocks = (n_points + _SEED_BLOCK - 1) // _SEED_BLOCK
    low = np.empty(n_blocks)
    high = np.empty(n_blocks)
    for block in range(n_blocks):
        low[block] = norms[order[block * _SEED_BLOCK]]
        high[block] = norms[order[min(n_points, (block + 1) * _SEED_BLOCK) - 1]]
    return X_t, weights[order], norms[order], order, rank, low, high


@njit(cache=True, nogil=True, inline="always")
def _seeds_of(frame):  # pragma: no cover - compiled
    """:class:`SeedPoints` on a :func:`_seed_frame`, with no centre yet (every block within
    reach)."""
    X_t, sorted_weights, norms, order, _, low, high = frame
    n_points, n_blocks = X_t.shape[1], low.shape[0]
    return SeedPoints(
        X_t,
        sorted_weights,
        norms,
        order,
        np.full(n_points, np.inf),
        np.full(n_blocks, np.inf),
        np.zeros(n_blocks),
        low,
        high,
    )


@njit(cache=True, nogil=True, inline="always")
def _within_reach(seeds, block, norm):  # pragma: no cover - compiled
    """Whether a centre of norm ``norm`` can be nearer than the current centres to any point
    of ``block``: ``|norm - ||x|| |`` bounds ``d(x, centre)`` from below, and the block's
    points have norms in ``[low, high]`` and squared distances to their centres at most
    ``reach^2`` (slack for rounding: reaching too far is always safe)."""
    reach = _widened(seeds.reach[block])
    return seeds.low[block] - reach < norm < seeds.high[block] + reach


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _block_potentials_3(seeds, candidates, block, out):  # pragma: no cover
    """:func:`_trial_potentials_of_block` for points of three features, each candidate's sum
    in one pass, each distance summed in registers as the scratch row sums it, feature by
    feature (through a tuple of rows, as :func:`_squared_distance_3` reads them, a seeding
    took 1.4 times as long).

    The block's rows are sliced once for all the candidates: each slice takes a reference
    on its array, and five of them per candidate cost more than the block's distances (54
    against 11 ns a block and candidate). Indexing the points from ``start`` instead lets
    numba wrap negative indices, which turns the loop's loads into gathers (90 ns). With
    :func:`_closer_to` on slices too, a seeding of a photo's 768 boxes at K = 16 takes 46
    instead of 78 microseconds, with the same centres (exploratory).
    """
    start = block * _SEED_BLOCK
    stop = min(seeds.X_t.shape[1], start + _SEED_BLOCK)
    x_0 = seeds.X_t[0, start:stop]
    x_1 = seeds.X_t[1, start:stop]
    x_2 = seeds.X_t[2, start:stop]
    weights = seeds.weights[start:stop]
    closest = seeds.closest[start:stop]
    for t in range(candidates.shape[0]):
        candidate = candidates[t]
        if not _within_reach(seeds, block, seeds.norms[candidate]):
            out[block, t] = seeds.base[block]
            continue
        v_0, v_1, v_2 = seeds.X_t[0, candidate], seeds.X_t[1, candidate], seeds.X_t[2, candidate]
        total = 0.0
        for i in range(stop - start):
            e_0 = x_0[i] - v_0
            e_1 = x_1[i] - v_1
            e_2 = x_2[i] - v_2
            total += weights[i] * min(closest[i], e_0 * e_0 + e_1 * e_1 + e_2 * e_2)
        out[block, t] = total


@njit(cache=True, nogil=True, fastmath=True)
def _trial_potentials_of_block(seeds, candidates, block, out, scratch):  # pragma: no cover
    """``out[block, t]``: sum over the block's points of ``w * min(closest, d(x, cand_t)^2)``.

    Points are in order of norm and transposed (d, n), so every loop runs over contiguous
    points and vectorises; ``fastmath`` lets the block's sum vectorise too. A block out of
    a candidate's reach (:func:`_within_reach`) keeps its sum of ``w * closest``. The block
    partition is fixed, so the sums do not depend on the number of threads. Three features
    take :func:`_block_potentials_3` instead.
    """
    start = block * _SEED_BLOCK
    stop = min(seeds.X_t.shape[1], start + _SEED_BLOCK)
    distances = scratch[block]
    for t in range(candidates.shape[0]):
        candidate = candidates[t]
        if not _within_reach(seeds, block, seeds.norms[candidate]):
            out[block, t] = seeds.base[block]
            continue
        for i in range(start, stop):
            distances[i - start] = 0.0
        for feature in range(seeds.X_t.shape[0]):
            row = seeds.X_t[feature]
            value = row[candidate]
            for i in range(start, stop):
                difference = row[i] - value
                distances[i - start] += difference * difference
        total = 0.0
        for i in range(start, stop):
            total += seeds.weights[i] * min(seeds.closest[i], distances[i - start])
        out[block, t] = total


# Three features take _block_potentials_3, inlined in the loop over blocks; others a call per
# block. Through a call per block, an inlined helper holding that choice, or the general loop
# inlined beside it, numba took a reference on every array of the seeds per block: 48 to 52
# against 11 ns a block and candidate (the same sums, exploratory).


@njit(cache=True, nogil=True, parallel=True, fastmath=True)
def _trial_potentials_parallel(seeds, candidates, out, scratch):  # pragma: no cover
    for block in prange(out.shape[0]):
        if seeds.X_t.shape[0] == 3:
            _block_potentials_3(seeds, candidates, block, out)
        else:
            _trial_potentials_of_block(seeds, candidates, block, out, scratch)


@njit(cache=True, nogil=True, fastmath=True)
def _trial_potentials_serial(seeds, candidates, out, scratch):  # pragma: no cover
    for block in range(out.shape[0]):
        if seeds.X_t.shape[0] == 3:
            _block_potentials_3(seeds, candidates, block, out)
        else:
            _trial_potentials_of_block(seeds, candidates, block, out, scratch)


@njit(cache=True, nogil=True)
def _closer_to(seeds, point):  # pragma: no cover - compiled
    """``closest[i] = min(closest[i], ||x_i - x_point||^2)`` for the points within reach;
    the blocks' reach and sums follow."""
    n_points = seeds.X_t.shape[1]
    for block in range(seeds.reach.shape[0]):
        if not _within_reach(seeds, block, seeds.norms[point]):
            continue
        start = block * _SEED_BLOCK
        stop = min(n_points, start + _SEED_BLOCK)
        if seeds.X_t.shape[0] == 3:
            largest, total = _closer_in_block_3(seeds, point, start, stop)
        else:
            largest = 0.0
            total = 0.0
            for i in range(start, stop):
                squared = 0.0
                for feature in range(seeds.X_t.shape[0]):
                    difference = seeds.X_t[feature, i] - seeds.X_t[feature, point]
                    squared += difference * difference
                closest = min(seeds.closest[i], squared)
                seeds.closest[i] = closest
                largest = max(largest, closest)
                total += seeds.weights[i] * closest
        seeds.reach[block] = np.sqrt(largest)
        seeds.base[block] = total


@njit(cache=True, nogil=True, inline="always")
def _closer_in_block_3(seeds, point, start, stop):  # pragma: no cover - compiled
    """:func:`_closer_to` on one block of points of three features; returns the block's
    largest ``closest`` and its sum of ``w * closest``, summed in order as the general
    loop sums them (so the same values). On slices of the block, as
    :func:`_block_potentials_3` reads them: indexed from ``start``, the 768 points of 12
    blocks took twice as long (1.95 against 0.97 microseconds a call, the same values,
    exploratory)."""
    x_0 = seeds.X_t[0, start:stop]
    x_1 = seeds.X_t[1, start:stop]
    x_2 = seeds.X_t[2, start:stop]
    weights = seeds.weights[start:stop]
    closest = seeds.closest[start:stop]
    v_0, v_1, v_2 = seeds.X_t[0, point], seeds.X_t[1, point], seeds.X_t[2, point]
    largest = 0.0
    total = 0.0
    for i in range(stop - start):
        d_0 = x_0[i] - v_0
        d_1 = x_1[i] - v_1
        d_2 = x_2[i] - v_2
        value = min(closest[i], d_0 * d_0 + d_1 * d_1 + d_2 * d_2)
        closest[i] = value
        largest = max(largest, value)
        total += weights[i] * value
    return largest, total


# Below this many point-trial distances per step, k-means++ stays on one thread: starting
# threads for each of the K steps would cost more than it saves.
_PARALLEL_TRIAL_WORK = 65536


@njit(cache=True, nogil=True)
def kmeans_plusplus(X, weights, n_colors, uniforms):  # pragma: no cover - compiled
    """Greedy weighted k-means++ with the random draws given.

    Reads ``X`` (n, d), ``weights`` (n,), ``uniforms`` (n_colors, n_trials) in [0, 1).
    Returns ``(centers, n_found)``: ``centers`` (n_colors, d) with rows ``n_found`` and after
    unset when the points ran out (fewer distinct points of positive weight than n_colors).
    Same algorithm as :func:`kmquant.kmeans.kmeans_init_centroids`: candidates are drawn in
    the points' own order. Each trial's potential is summed per block of points and the
    blocks in order, so one or several threads give the same sums; only the chosen
    candidate's distances are kept.

    The points are sorted by norm into blocks of 64. A candidate can lower a point's
    squared distance to its nearest centre only if it lies within that distance, and
    ``|norm(candidate) - norm(x)|`` is at most their distance: a block whose norms all lie
    farther from the candidate's than its points' largest distance keeps its sum without
    any distance computed. Once a few dozen centres are placed, most blocks are out of reach:
    at K = 256 on the photos' 3,072 boxes, seeding took 2.3x less time
    (``benchmarks/kernels.py --only stages``: 20 ms an image before, 8.8 after).
    """
    return _kmeans_plusplus_on(_seed_frame(X, weights), X, weights, n_colors, uniforms)


@njit(cache=True, nogil=True)
def _kmeans_plusplus_on(frame, X, weights, n_colors, uniforms):  # pragma: no cover - compiled
    """:func:`kmeans_plusplus` on ``frame``, ``X`` and ``weights``' :func:`_seed_frame`."""
    n_points, n_features = X.shape
    n_trials = uniforms.shape[1]
    centers = np.zeros((n_colors, n_features))
    cumulative = np.cumsum(weights)
    first = _first_above(cumulative, uniforms[0, 0] * cumulative[-1])
    seeds = _seeds_of(frame)
    rank = frame[4]
    _closer_to(seeds, rank[first])
    for feature in range(n_features):
        centers[0, feature] = X[first, feature]
    n_blocks = seeds.reach.shape[0]
    block_potentials = np.empty((n_blocks, n_trials))
    block_scratch = np.empty((n_blocks, _SEED_BLOCK))
    candidates = np.empty(n_trials, dtype=np.intp)
    parallel = n_points * n_trials >= _PARALLEL_TRIAL_WORK
    for index in range(1, n_colors):
        total = 0.0
        for i in range(n_points):
            total += weights[i] * seeds.closest[rank[i]]
            cumulative[i] = total
        if not total > 0:
            return centers, index
        for t in range(n_trials):
            drawn = min(_first_above(cumulative, uniforms[index, t] * total), n_points - 1)
            candidates[t] = rank[drawn]
        if parallel:
            _trial_potentials_parallel(seeds, candidates, block_potentials, block_scratch)
        else:
            _trial_potentials_serial(seeds, candidates, block_potentials, block_scratch)
        best_trial = 0
        best_potential = np.inf
        for t in range(n_trials):
            potential = 0.0
            for block in range(n_blocks):
                potential += block_potentials[block, t]
            if potential < best_potential:
                best_potential = potential
                best_trial = t
        chosen = candidates[best_trial]
        _closer_to(seeds, chosen)
        for feature in range(n_features):
            centers[index, feature] = X[seeds.order[chosen], feature]
    return centers, n_colors


@njit(cache=True, nogil=True, parallel=True)
def restarts(
    X,
    weights,
    uniforms,
    starts,
    max_iter,
    tol_abs,
    nearest,
    bounds,
    state_centers,
    n_iters,
    n_found,
    by_scan,
):  # pragma: no cover - compiled
    """Independent k-means runs side by side, one per thread: seeding, then Lloyd.

    Run r starts from greedy k-means++ with the draws ``uniforms[r]`` (n_colors, n_trials),
    or, when ``uniforms`` has no draws (shape (n_runs, 0, 0)), from ``starts[r]``. Writes the
    converged centres into ``starts`` (n_runs, n_colors, d), Lloyd's state into ``nearest``
    and ``bounds`` (n_runs, 3, n; ``nearest[r, 0]``: the labels, see :func:`lloyd_from`),
    Lloyd's iterations into ``n_iters`` (n_runs,) and the centres seeding found into
    ``n_found`` (n_runs,): fewer than n_colors when the points ran out, and then that run
    has no Lloyd. ``state_centers`` (k, d) are the centres that every run's state in
    ``nearest`` and ``bounds`` was left for (swap trials from a converged run), or (0, d):
    each run starts with a full scan. ``by_scan`` runs Lloyd without bounds (see
    :func:`lloyd_from`): ``nearest[r, 0]`` holds the guesses of a run from given centres
    (a seeded run guesses the first centre) and then the labels, nothing else of
    ``nearest`` and ``bounds`` is written, and ``state_centers`` is not used. Each run is
    serial inside (a nested parallel loop runs on its own thread), so the results do not
    depend on the number of threads. The function creates no array itself: numba would
    make that a parallel loop of its own.
    """
    n_runs, n_colors = starts.shape[0], starts.shape[1]
    # The points sorted once for every seeding (none to sort for runs from given centres).
    seeding = uniforms.shape[1] > 0
    frame = _seed_frame(X, weights) if seeding else _seed_frame(X[:0], weights[:0])
    for run in prange(n_runs):
        n_found[run] = n_colors
        if seeding:
            seeded, n_found[run] = _kmeans_plusplus_on(frame, X, weights, n_colors, uniforms[run])
            _copy_rows(seeded, starts[run])
        if n_found[run] == n_colors:
            state = state_centers
            if by_scan:
                if uniforms.shape[1] > 0:  # seeded: every guess the first centre
                    for i in range(X.shape[0]):
                        nearest[run, 0, i] = 0
            elif state_centers.shape[0] == 0:
                # The full scan here, on this thread: lloyd_from's is a parallel kernel, and
                # a nested parallel region costs more than the scan.
                _nearest_three_serial(X, starts[run], nearest[run], bounds[run])
                state = starts[run]  # the state is for these very centres
            n_iters[run], _ = lloyd_from(
                X,
                weights,
                starts[run],
                max_iter,
                tol_abs,
                nearest[run],
                bounds[run],
                state,
                1.0,
                by_scan,
            )


@njit(cache=True, nogil=True, inline="always")
def _copy_rows(source, target):  # pragma: no cover - compiled
    """``target[:, :] = source``, element by element. An array assigned to a slice makes
    numba compile a shape check whose error message formats strings; without the six such
    assignments of the default path, a first run's compilation fell from 50 to 40 s
    (exploratory)."""
    for row in range(source.shape[0]):
        for column in range(source.shape[1]):
            target[row, column] = source[row, column]


@njit(cache=True, nogil=True, inline="always")
def _nearest_of_vector(value, palette):  # pragma: no cover - compiled
    """Index of the palette row nearest to ``value`` (ties: lowest index)."""
    best = np.inf
    best_index = 0
    for k in range(palette.shape[0]):
        distance = 0.0
        for feature in range(palette.shape[1]):
            difference = value[feature] - palette[k, feature]
            distance += difference * difference
        if distance < best:
            best = distance
            best_index = k
    return best_index


@njit(cache=True, nogil=True)
def _grid_scratch(n_entries):  # pragma: no cover - compiled
    """``counts`` (``_GRID_CELLS`` ^ 3,) int64, all -1 (no cell listed yet), and
    ``candidates`` (cells, ``n_entries`` rounded up to ``_CANDIDATE_STEP``) uint8."""
    step = _CANDIDATE_STEP
    counts = np.full(_GRID_CELLS**3, -1, dtype=np.int64)
    candidates = np.empty((counts.shape[0], (n_entries + step - 1) // step * step), np.uint8)
    return counts, candidates


@njit(cache=True, nogil=True)
def _list_cell(
    cell, counts, candidates, low, size, palette, cell_low, cell_high, closest
):  # pragma: no cover - compiled
    """Lists grid cell ``cell``'s candidates (:func:`_cell_candidates`) into row ``cell`` of
    ``candidates``, in increasing index order and padded to a multiple of
    ``_CANDIDATE_STEP`` with the last one; stores and returns their number with the padding
    in ``counts[cell]``. A repeated candidate is never nearer than itself, so a search that
    keeps the first nearest finds the same entry. The grid has ``_GRID_CELLS`` cells of
    width ``size`` per feature from ``low``; Floyd-Steinberg lists a cell when a pixel first
    reaches it (about 450 of the 4,096 cells on a photo), which took 0.97x the time of
    listing every cell first at K = 16, 0.94x at K = 64 and 0.90x at K = 256 (exploratory)."""
    count = _cell_candidates(
        cell, low, size, palette, candidates, cell, cell_low, cell_high, closest
    )
    count = _beaten_dropped(candidates[cell, :count], palette, cell_low, cell_high)
    padded = (count + _CANDIDATE_STEP - 1) // _CANDIDATE_STEP * _CANDIDATE_STEP
    candidates[cell, count:padded] = candidates[cell, count - 1]
    counts[cell] = padded
    return padded


@njit(cache=True, nogil=True)
def _beaten_dropped(listed, palette, cell_low, cell_high):  # pragma: no cover - compiled
    """Drops from ``listed`` (a cell's candidates, in increasing order) each one that some
    other candidate is nearer to than it is at every point of the cell (corners
    ``cell_low`` and ``cell_high``), keeping the rest in order at the front; returns how
    many are kept. A dropped entry can be no point's nearest, so the search finds the same.

    ``|x - k|^2 - |x - a|^2 = sum_f (a_f - k_f)(2 x_f - a_f - k_f)`` is linear in x, so its
    least over the cell is at the corner each feature's sign picks; a beats k only where
    that least is above a margin a billion times the rounding of the sums, so a tie always
    stays. On the photos' dithering, a pixel then tries 2.2 instead of 3.2 candidates at
    K = 16 and 5.7 instead of 10.1 at K = 64 (before padding), and the kernel takes 0.96x,
    0.90x and 0.78x the time at K = 16, 64 and 256 (exploratory).
    """
    kept = 0
    for position in range(listed.shape[0]):
        k = listed[position]
        beaten = False
        for other in listed:  # the kept ones overwrite the front: every entry is a candidate
            least = 0.0
            scale = 0.0
            for feature in range(3):
                step = palette[other, feature] - palette[k, feature]
                corner = cell_low[feature] if step > 0.0 else cell_high[feature]
                reach = 2.0 * corner - palette[other, feature] - palette[k, feature]
                least += step * reach
                scale += abs(step) * (2.0 * abs(corner) + abs(palette[other, feature]))
                scale += abs(step) * abs(palette[k, feature])
            if least > 1e-9 * scale:  # never for other == k: its least is 0
                beaten = True
                break
        if not beaten:
            listed[kept] = k
            kept += 1
    return kept


# The dithering grid's candidate lists are padded to a multiple of this many: the search
# loop, unrolled by 4, then leaves no remainder, and a pixel's search ends less often where
# the processor did not predict it (0.94x the time of the diffusion kernel at K = 16 and 64
# on the photos; padded to 2, 0.96x; to 8, 1.08x at K = 16; exploratory).
_CANDIDATE_STEP = 4


@njit(cache=True, nogil=True, parallel=True)
def _dither_band(
    color_points, inverse, width, first_row, values, weights, strength, edge_gap
):  # pragma: no cover - compiled
    """Pixel features and diffusion shares of rows ``first_row ..`` (``values`` (rows, w, d),
    ``weights`` (rows, w)), gathered in parallel ahead of the serial diffusion
    (:func:`_gather_dither_row`)."""
    height = inverse.shape[0] // width
    for offset in prange(min(weights.shape[0], height - first_row)):
        _gather_dither_row(
            color_points, inverse, width, first_row, offset, values, weights, strength, edge_gap
        )


@njit(cache=True, nogil=True)
def _gather_dither_rows(
    color_points, inverse, width, first_row, values, weights, strength, edge_gap
):  # pragma: no cover - compiled
    """:func:`_dither_band` on one thread."""
    height = inverse.shape[0] // width
    for offset in range(min(weights.shape[0], height - first_row)):
        _gather_dither_row(
            color_points, inverse, width, first_row, offset, values, weights, strength, edge_gap
        )


@njit(cache=True, nogil=True)
def _gather_dither_row(
    color_points, inverse, width, first_row, offset, values, weights, strength, edge_gap
):  # pragma: no cover - compiled
    """Row ``first_row + offset``'s pixel features and diffusion shares into row ``offset``
    of ``values`` and ``weights``.

    A pixel diffuses ``strength / (1 + (g / edge_gap)^2)`` of its error, g being its largest
    step (first three features) to a 4-neighbour: across an edge the palette already shows
    the change, and diffusing the error there only adds noise; flat areas (g = 0) keep it
    all. ``edge_gap`` <= 0 keeps ``strength`` everywhere.
    """
    height = inverse.shape[0] // width
    n_compared = min(3, color_points.shape[1])
    row = first_row + offset
    for column in range(width):
        color = inverse[row * width + column]
        for feature in range(color_points.shape[1]):
            values[offset, column, feature] = color_points[color, feature]
        if edge_gap <= 0:
            weights[offset, column] = strength
            continue
        largest = 0.0
        for d_row, d_column in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            other_row = row + d_row
            other_column = column + d_column
            if 0 <= other_row < height and 0 <= other_column < width:
                other = inverse[other_row * width + other_column]
                squared = 0.0
                for feature in range(n_compared):
                    difference = color_points[other, feature] - color_points[color, feature]
                    squared += difference * difference
                largest = max(largest, squared)
        weights[offset, column] = strength / (1.0 + largest / (edge_gap * edge_gap))


@njit(cache=True, nogil=True, inline="always")
def _copy_row_features(color_points, inverse, start, out):  # pragma: no cover - compiled
    """``out[c] = color_points[inverse[start + c]]`` for every column c of ``out`` (w, 3)."""
    for column in range(out.shape[0]):
        color = inverse[start + column]
        out[column, 0] = color_points[color, 0]
        out[column, 1] = color_points[color, 1]
        out[column, 2] = color_points[color, 2]


@njit(cache=True, nogil=True, inline="always")
def _step_between(first, i, second, j):  # pragma: no cover - compiled
    """Squared step from row i of ``first`` to row j of ``second`` (three features), summed
    as :func:`_gather_dither_row` sums it (the same in either direction)."""
    difference_0 = second[j, 0] - first[i, 0]
    difference_1 = second[j, 1] - first[i, 1]
    difference_2 = second[j, 2] - first[i, 2]
    return (
        0.0
        + difference_0 * difference_0
        + difference_1 * difference_1
        + difference_2 * difference_2
    )


@njit(cache=True, nogil=True, error_model="numpy")
def _gather_dither_rows_3(
    color_points, inverse, width, first_row, values, weights, strength, edge_gap, outside, steps
):  # pragma: no cover - compiled
    """:func:`_gather_dither_rows` for three features, with the same values and shares.

    Each pixel's colour is read once: a band's rows are copied first (``outside`` (2, w, 3)
    holds the rows just above and below it), and the steps are taken between the copies; a
    row's steps to the row below (``steps`` (2, w)) are the next row's steps to the row
    above. The shares are divided in a loop of their own, vectorised (``error_model="numpy"``
    leaves out numba's check for a division by zero, which keeps a loop from vectorising).
    1.24 against 3.37 ms a photo on one thread.
    """
    height = inverse.shape[0] // width
    n_rows = min(weights.shape[0], height - first_row)
    for offset in range(n_rows):
        _copy_row_features(color_points, inverse, (first_row + offset) * width, values[offset])
    if edge_gap <= 0:
        weights[:n_rows] = strength
        return
    if first_row + n_rows < height:
        _copy_row_features(color_points, inverse, (first_row + n_rows) * width, outside[1])
    up_steps, down_steps = steps[0], steps[1]
    up_steps[:] = 0.0
    if first_row > 0:
        _copy_row_features(color_points, inverse, (first_row - 1) * width, outside[0])
        for column in range(width):
            up_steps[column] = _step_between(values[0], column, outside[0], column)
    for offset in range(n_rows):
        this = values[offset]
        down_steps[:] = 0.0
        if first_row + offset + 1 < height:
            down = outside[1] if offset == n_rows - 1 else values[offset + 1]
            for column in range(width):
                down_steps[column] = _step_between(this, column, down, column)
        shares = weights[offset]
        left = 0.0
        for column in range(width):
            right = 0.0
            if column + 1 < width:
                right = _step_between(this, column, this, column + 1)
            shares[column] = max(max(left, right), max(up_steps[column], down_steps[column]))
            left = right
        squared_gap = edge_gap * edge_gap
        for column in range(width):
            shares[column] = strength / (1.0 + shares[column] / squared_gap)
        up_steps, down_steps = down_steps, up_steps


# Floyd-Steinberg rows gathered at a time (in parallel, :func:`_dither_band`, or by each thread
# for itself).
_DITHER_BAND_ROWS = 32


@njit(cache=True, nogil=True)
def dither_floyd_steinberg(
    color_points, inverse, height, width, palette, strength, n_diffused, max_error, edge_gap
):  # pragma: no cover - compiled
    """Serpentine Floyd-Steinberg error diffusion.

    Reads the pixels as ``color_points[inverse[row * width + column]]`` (the distinct colours
    in the space k-means ran in, and each pixel's colour: no per-pixel copy of the features)
    and ``palette`` (k, d) in the same space. Returns the palette index of every pixel (h, w).
    Each pixel takes the entry nearest to its value plus the error carried to it;
    ``strength`` times its own error (first ``n_diffused`` features only, so an alpha-class
    column is never disturbed; less across edges when ``edge_gap`` > 0, see
    :func:`_dither_band`) goes to the unvisited neighbours with weights 7/16 (ahead),
    3/16, 5/16, 1/16 (next row). Rows alternate direction, which avoids the diagonal drift of
    a one-way scan. The error carried into a pixel is capped at ``max_error`` (Euclidean, in
    the space's units). The image is diffused in four parts of rows (:func:`_dither_parts`),
    each from no carried error and starting forward, so that the parts can be diffused side
    by side (no error crosses from one part into the next, as none enters the top row).
    :func:`dither_floyd_steinberg_3` does the same for three features.
    """
    n_features = color_points.shape[1]
    labels = np.empty((height, width), dtype=np.uint8)
    current = np.zeros((width + 2, n_features))
    following = np.zeros((width + 2, n_features))
    value = np.empty((1, n_features))  # one row, as _nearest_two_of reads points
    palette_t = np.ascontiguousarray(palette.T)
    distances = np.empty(palette.shape[0])
    values = np.empty((_DITHER_BAND_ROWS, width, n_features))
    weights = np.empty((_DITHER_BAND_ROWS, width))
    parts = _dither_parts(height)
    for part in range(_DITHER_PARTS):
        first, stop = parts[part], parts[part + 1]
        current[:, :] = 0.0
        following[:, :] = 0.0
        for row in range(first, stop):
            local = row - first
            band_row = local % _DITHER_BAND_ROWS
            if band_row == 0:
                _dither_band(color_points, inverse, width, row, values, weights, strength, edge_gap)
            forward = local % 2 == 0
            direction = 1 if forward else -1
            for step in range(width):
                column = step if forward else width - 1 - step
                # Limit the carried error: unbounded error diffusion lets colours the palette
                # cannot reach (a saturated highlight) pile up error and smear streaks of
                # wrong colour downstream. Errors above max_error are scaled back to it.
                carried = 0.0
                for feature in range(n_diffused):
                    carried += current[column + 1, feature] * current[column + 1, feature]
                scale = 1.0
                if carried > max_error * max_error:
                    scale = max_error / np.sqrt(carried)
                for feature in range(n_features):
                    value[0, feature] = values[band_row, column, feature]
                    if feature < n_diffused:
                        value[0, feature] += scale * current[column + 1, feature]
                index = _nearest_two_of(value, 0, palette_t, distances)[0]
                labels[row, column] = index
                weight = weights[band_row, column]
                for feature in range(n_diffused):
                    error = weight * (value[0, feature] - palette[index, feature])
                    current[column + 1 + direction, feature] += error * (7.0 / 16.0)
                    following[column + 1 - direction, feature] += error * (3.0 / 16.0)
                    following[column + 1, feature] += error * (5.0 / 16.0)
                    following[column + 1 + direction, feature] += error * (1.0 / 16.0)
            current, following = following, current
            following[:, :] = 0.0
    return labels


# Floyd-Steinberg cuts an image into this many parts of rows, diffused apart; each thread
# diffuses _DITHER_CHAINS of them side by side (see dither_floyd_steinberg_3).
_DITHER_PARTS = 4
_DITHER_CHAINS = 2


@njit(cache=True, nogil=True)
def _dither_parts(height):  # pragma: no cover - compiled
    """The rows of Floyd-Steinberg's parts: part p is rows ``parts[p] .. parts[p + 1] - 1``,
    ``parts[p] = ceil(p * height / _DITHER_PARTS)``. Of the two parts of a pair (0 and 1,
    2 and 3), diffused side by side, the second is never longer than the first: for
    ``height = 4m + r`` the parts have m rows each for r = 0, and (m+1, m, m, m),
    (m+1, m, m+1, m) and (m+1, m+1, m+1, m) rows for r = 1, 2 and 3."""
    parts = np.empty(_DITHER_PARTS + 1, dtype=np.int64)
    for part in range(_DITHER_PARTS + 1):
        parts[part] = (part * height + _DITHER_PARTS - 1) // _DITHER_PARTS
    return parts


@njit(cache=True, nogil=True)
def dither_floyd_steinberg_3(
    color_points, inverse, height, width, palette, strength, max_error, edge_gap, colors, entries
):  # pragma: no cover - compiled
    """:func:`dither_floyd_steinberg` for three features (RGB, Lab, OKLab, HSV), all diffused.

    The same diffusion and the same labels, written with one variable per feature (a third
    faster than the loops over features), and the nearest entry found through a grid: the
    box of every value a pixel can take (its colour plus a carried error of at most
    ``max_error``) is cut into cells, and only a cell's candidates (:func:`_list_cell`;
    a photo's pixels try 2.2 at K = 16 and 5.7 at K = 64 on average, before padding) are
    tried, in index order so ties go to the lowest index as in a full scan. Of the image's
    four parts (:func:`dither_floyd_steinberg`), each thread diffuses two side by side
    (:func:`_diffuse_sides_3`).

    Returns ``(labels, counts, squared_error)``: with the labels, the pixels per entry and
    the sum over pixels of ``||colors[inverse[i]] - entries[label]||^2`` (``colors`` and
    ``entries``, the distinct colours and the palette as integers), what
    :func:`label_counts` and :func:`pixel_squared_error` give. Each part counts its own
    rows as it goes (the sums are of integers, so exact in any order).
    """
    labels = np.empty((height, width), dtype=np.uint8)
    low = np.empty(3)
    size = np.empty(3)
    for feature in range(3):
        low[feature] = min(color_points[:, feature].min(), palette[:, feature].min())
        top = max(color_points[:, feature].max(), palette[:, feature].max())
        low[feature] -= max_error + 1.0
        size[feature] = (top + max_error + 1.0 - low[feature]) / _GRID_CELLS
    entry_counts = np.zeros((_DITHER_PARTS, palette.shape[0]), dtype=np.int64)
    squared_errors = np.zeros(_DITHER_PARTS)
    pixels = (color_points, inverse, strength, edge_gap)
    tally = (colors, entries, entry_counts, squared_errors)
    box = (low, size)
    _diffuse_sides_3(_dither_parts(height), *pixels, palette, labels, box, max_error, *tally)
    return labels, entry_counts.sum(axis=0), squared_errors.sum()


@njit(cache=True, nogil=True, parallel=True)
def _diffuse_sides_3(
    parts,
    color_points,
    inverse,
    strength,
    edge_gap,
    palette,
    labels,
    box,
    max_error,
    colors,
    entries,
    entry_counts,
    squared_errors,
):  # pragma: no cover - compiled
    """:func:`dither_floyd_steinberg_3`'s parts, ``_DITHER_CHAINS`` to a side and the sides
    side by side. A side gathers its parts' features and shares a band of rows at a time
    (:func:`_gather_dither_rows_3`), diffuses the band of each part in one loop
    (:func:`_diffuse_chains_3`) and tallies it (:func:`_tally_rows`). On one thread the
    sides run one after the other, with the same results.

    Each side makes its own scratch: with the two sides' scratch in shared arrays, the
    threads slowed each other (6.5 against 5.4 ms a photo at K = 16, exploratory).
    """
    width = labels.shape[1]
    for side in prange(_DITHER_PARTS // _DITHER_CHAINS):
        errors = np.zeros((_DITHER_CHAINS, 2, width + 2, 3))
        values = np.empty((_DITHER_CHAINS, _DITHER_BAND_ROWS, width, 3))
        weights = np.empty((_DITHER_CHAINS, _DITHER_BAND_ROWS, width))
        ahead = np.zeros((_DITHER_CHAINS, 9))
        outside = np.empty((2, width, 3))
        steps = np.empty((2, width))
        scratch = np.empty((4, palette.shape[0]), dtype=np.int64)
        counts, candidates = _grid_scratch(palette.shape[0])
        low, size = box
        grid = (counts, candidates, low, size, *_candidate_scratch(palette.shape[0]))
        firsts = parts[side * _DITHER_CHAINS : (side + 1) * _DITHER_CHAINS]
        n_rows = parts[side * _DITHER_CHAINS + 1 : (side + 1) * _DITHER_CHAINS + 1] - firsts
        for band_first in range(0, n_rows[0], _DITHER_BAND_ROWS):
            for chain in range(_DITHER_CHAINS):
                n_band = min(_DITHER_BAND_ROWS, n_rows[chain] - band_first)
                if n_band > 0:
                    _gather_dither_rows_3(
                        color_points,
                        inverse,
                        width,
                        firsts[chain] + band_first,
                        values[chain, :n_band],
                        weights[chain, :n_band],
                        strength,
                        edge_gap,
                        outside,
                        steps,
                    )
            _diffuse_chains_3(
                band_first,
                firsts,
                n_rows,
                palette,
                labels,
                errors,
                values,
                weights,
                ahead,
                grid,
                max_error,
            )
            for chain in range(_DITHER_CHAINS):
                first = firsts[chain] + band_first
                stop = firsts[chain] + min(band_first + _DITHER_BAND_ROWS, n_rows[chain])
                part = side * _DITHER_CHAINS + chain
                if stop > first:
                    _tally_rows(
                        first,
                        stop,
                        inverse,
                        labels,
                        colors,
                        entries,
                        entry_counts[part],
                        squared_errors[part:],
                        scratch,
                    )


@njit(cache=True, nogil=True)
def _tally_rows(
    first_row, stop_row, inverse, labels, colors, entries, entry_counts, squared_error, scratch
):  # pragma: no cover - compiled
    """Adds the pixels of rows ``first_row .. stop_row - 1`` to ``entry_counts`` and their
    squared error to ``squared_error[0]`` (see :func:`dither_floyd_steinberg_3`).

    The counts go to four rows of ``scratch`` (4, k) by column, so that neighbours with the
    same label do not wait on each other's count, and the error is summed in integers.
    Indexed unsigned, 0.44 against 1.0 ms a photo.
    """
    width = labels.shape[1]
    scratch[:, :] = 0
    total = 0
    for row in range(first_row, stop_row):
        row_labels = labels[row]
        row_colors = inverse[row * width : (row + 1) * width]
        for column in range(width):
            label = np.uint64(row_labels[column])
            scratch[np.uint64(column & 3), label] += 1
            color = np.uint64(row_colors[column])
            total += _integer_squared_distance(colors, color, entries, label)
    for k in range(entry_counts.shape[0]):
        entry_counts[k] += (scratch[0, k] + scratch[1, k]) + (scratch[2, k] + scratch[3, k])
    squared_error[0] += np.float64(total)


@njit(cache=True, nogil=True)
def _diffuse_chains_3(
    band_first, firsts, n_rows, palette, labels, errors, values, weights, ahead, grid, max_error
):  # pragma: no cover - compiled
    """:func:`dither_floyd_steinberg_3`'s diffusion of one band of rows of ``_DITHER_CHAINS``
    parts at once: the parts start at rows ``firsts``, with ``n_rows`` rows each, and the
    band at their row ``band_first``. Index ``chain`` of ``errors`` (carried into this row and
    the next), ``values``, ``weights`` (the band's features and shares) and ``ahead`` is a
    part's own. ``ahead`` (parts, 9) holds what the pixel before passes on (7/16), then the
    next row's error under the pixel before, still waiting for this pixel's 3/16, then what
    the pixel before passed on to the next row ahead of it (1/16): each next-row error is
    stored once, complete, in the order dither_floyd_steinberg sums it, and no row is
    zeroed (0.988 / 0.975 / 0.982x the time at K = 16 / 64 / 256, exploratory).

    Each pixel waits on the one before it (its error), about 75 cycles a pixel; the parts'
    pixels are taken in turn, so that the processor works on the next part's pixel while one
    waits. A part that has run out of rows (it is one shorter than the part before it)
    drops out. Two parts a thread take 0.61x the time of one at K = 16 and 0.70x at
    K = 64; three or four gain nothing more (exploratory).
    """
    # The pixel's step is dither_floyd_steinberg's, written out again on purpose, with one
    # variable per feature and the grid search inline: with the search in a helper called
    # per pixel the kernel ran 4 times slower (measured on a photo at K = 16), and with the
    # step in an inlined helper for each part 1.9 times slower (its arrays' reference
    # counts). Indices are unsigned: numba checks a signed index for wrap-around.
    counts, candidates, low, size, cell_low, cell_high, closest = grid
    low_0, low_1, low_2 = low[0], low[1], low[2]
    per_0, per_1, per_2 = 1.0 / size[0], 1.0 / size[1], 1.0 / size[2]
    width = labels.shape[1]
    limit_squared = max_error * max_error
    rows = np.empty(_DITHER_CHAINS, dtype=np.uint64)
    for band_row in range(min(_DITHER_BAND_ROWS, n_rows[0] - band_first)):
        local = band_first + band_row  # rows alternate direction from each part's first
        now = np.uint64(local % 2)
        then = np.uint64(1) - now
        forward = now == 0
        n_chains = 0
        for chain in range(_DITHER_CHAINS):
            rows[chain] = firsts[chain] + local
            if local < n_rows[chain]:
                n_chains = chain + 1
                ahead[chain, :] = 0.0
        for step in range(width):
            column = np.uint64(step if forward else width - 1 - step)
            below = column + np.uint64(1)
            behind = column if forward else below + np.uint64(1)  # the next row's, complete
            for chain_index in range(n_chains):
                chain = np.uint64(chain_index)
                carried_0 = errors[chain, now, below, 0] + ahead[chain, 0]
                carried_1 = errors[chain, now, below, 1] + ahead[chain, 1]
                carried_2 = errors[chain, now, below, 2] + ahead[chain, 2]
                carried = carried_0 * carried_0 + carried_1 * carried_1 + carried_2 * carried_2
                if carried > limit_squared:  # see dither_floyd_steinberg
                    scale = max_error / np.sqrt(carried)
                    carried_0 *= scale
                    carried_1 *= scale
                    carried_2 *= scale
                value_0 = values[chain, band_row, column, 0] + carried_0
                value_1 = values[chain, band_row, column, 1] + carried_1
                value_2 = values[chain, band_row, column, 2] + carried_2
                cell_0 = (value_0 - low_0) * per_0
                cell_1 = (value_1 - low_1) * per_1
                cell_2 = (value_2 - low_2) * per_2
                inside = 0.0 <= cell_0 < _GRID_CELLS and 0.0 <= cell_1 < _GRID_CELLS
                inside = inside and 0.0 <= cell_2 < _GRID_CELLS
                cell = np.uint64(0)
                n_tried = palette.shape[0]
                if inside:  # always, but for rounding at the box's far edges
                    cell = np.uint64(
                        (int(cell_0) * _GRID_CELLS + int(cell_1)) * _GRID_CELLS + int(cell_2)
                    )
                    n_tried = counts[cell]
                    if n_tried < 0:  # the first pixel in this cell lists its candidates
                        scratch = (cell_low, cell_high, closest)
                        n_tried = _list_cell(cell, counts, candidates, low, size, palette, *scratch)
                index = np.uint64(0)
                best = np.inf
                for position in range(n_tried):
                    k = np.uint64(candidates[cell, position] if inside else position)
                    difference_0 = value_0 - palette[k, 0]
                    difference_1 = value_1 - palette[k, 1]
                    difference_2 = value_2 - palette[k, 2]
                    distance = (
                        difference_0 * difference_0
                        + difference_1 * difference_1
                        + difference_2 * difference_2
                    )
                    if distance < best:
                        best = distance
                        index = k
                labels[rows[chain], column] = index
                weight = weights[chain, band_row, column]
                error_0 = weight * (value_0 - palette[index, 0])
                error_1 = weight * (value_1 - palette[index, 1])
                error_2 = weight * (value_2 - palette[index, 2])
                ahead[chain, 0] = error_0 * (7.0 / 16.0)
                ahead[chain, 1] = error_1 * (7.0 / 16.0)
                ahead[chain, 2] = error_2 * (7.0 / 16.0)
                errors[chain, then, behind, 0] = ahead[chain, 3] + error_0 * (3.0 / 16.0)
                errors[chain, then, behind, 1] = ahead[chain, 4] + error_1 * (3.0 / 16.0)
                errors[chain, then, behind, 2] = ahead[chain, 5] + error_2 * (3.0 / 16.0)
                ahead[chain, 3] = ahead[chain, 6] + error_0 * (5.0 / 16.0)
                ahead[chain, 4] = ahead[chain, 7] + error_1 * (5.0 / 16.0)
                ahead[chain, 5] = ahead[chain, 8] + error_2 * (5.0 / 16.0)
                ahead[chain, 6] = 0.0 + error_0 * (1.0 / 16.0)
                ahead[chain, 7] = 0.0 + error_1 * (1.0 / 16.0)
                ahead[chain, 8] = 0.0 + error_2 * (1.0 / 16.0)
        last = np.uint64(width if forward else 1)  # the row's last pixel, and past it
        past = last + np.uint64(1) if forward else np.uint64(0)
        for chain in range(n_chains):
            for feature in range(3):
                errors[chain, then, last, feature] = ahead[chain, 3 + feature]
                errors[chain, then, past, feature] = ahead[chain, 6 + feature]


_BAYER_8 = np.array(
    [
        [0, 32, 8, 40, 2, 34, 10, 42],
        [48, 16, 56, 24, 50, 18, 58, 26],
        [12, 44, 4, 36, 14, 46, 6, 38],
        [60, 28, 52, 20, 62, 30, 54, 22],
        [3, 35, 11, 43, 1, 33, 9, 41],
        [51, 19, 59, 27, 49, 17, 57, 25],
        [15, 47, 7, 39, 13, 45, 5, 37],
        [63, 31, 55, 23, 61, 29, 53, 21],
    ],
    dtype=np.float64,
)


@njit(cache=True, nogil=True, parallel=True)
def dither_ordered(
    color_points, inverse, height, width, palette, spread, n_diffused, bayer
):  # pragma: no cover - compiled
    """Ordered dithering with an 8x8 Bayer matrix.

    Reads the pixels as ``color_points[inverse[row * width + column]]`` and ``palette`` (k, d);
    returns indices (h, w). Each pixel's
    first ``n_diffused`` features are offset by ``spread * (bayer[r % 8, c % 8] + 0.5) / 64 -
    spread / 2`` before the nearest entry is taken. Rows are independent: parallel.
    """
    n_features = color_points.shape[1]
    labels = np.empty((height, width), dtype=np.uint8)
    for row in prange(height):
        value = np.empty(n_features)
        for column in range(width):
            offset = spread * ((bayer[row % 8, column % 8] + 0.5) / 64.0 - 0.5)
            color = inverse[row * width + column]
            for feature in range(n_features):
                value[feature] = color_points[color, feature]
                if feature < n_diffused:
                    value[feature] += offset
            labels[row, column] = _nearest_of_vector(value, palette)
    return labels


@njit(cache=True, nogil=True)
def png_unfilter(raw, out, previous, bpp):  # pragma: no cover - compiled
    """Undo PNG's row filters: ``raw`` (rows, 1 + stride) filtered rows, each led by its
    filter type, into ``out`` (rows, stride); ``previous`` (stride,) is the row above the
    first (zeros at the top of the image) and ``bpp`` the bytes per pixel. Returns False at
    a filter type other than 0 to 4 (a corrupt file)."""
    stride = out.shape[1]
    for row in range(raw.shape[0]):
        kind = raw[row, 0]
        line = raw[row, 1:]
        above = previous if row == 0 else out[row - 1]
        here = out[row]
        if kind == 0:
            for i in range(stride):
                here[i] = line[i]
        elif kind == 1:
            for i in range(bpp):
                here[i] = line[i]
            for i in range(bpp, stride):
                here[i] = line[i] + here[i - bpp]
        elif kind == 2:
            for i in range(stride):
                here[i] = line[i] + above[i]
        elif kind == 3:
            for i in range(bpp):
                here[i] = line[i] + (np.int32(above[i]) >> 1)
            for i in range(bpp, stride):
                here[i] = line[i] + ((np.int32(here[i - bpp]) + np.int32(above[i])) >> 1)
        elif kind == 4:
            for i in range(bpp):
                here[i] = line[i] + above[i]  # Paeth with no left neighbour: the one above
            for i in range(bpp, stride):
                left = np.int32(here[i - bpp])
                up = np.int32(above[i])
                corner = np.int32(above[i - bpp])
                estimate = left + up - corner
                to_left = abs(estimate - left)
                to_up = abs(estimate - up)
                to_corner = abs(estimate - corner)
                if to_left <= to_up and to_left <= to_corner:
                    nearest = left
                elif to_up <= to_corner:
                    nearest = up
                else:
                    nearest = corner
                here[i] = line[i] + nearest
        else:
            return False
    return True


@njit(cache=True, nogil=True)
def png_rows(labels, bit_depth):  # pragma: no cover - compiled
    """PNG scanlines of palette indices ``labels`` (h, w) uint8: each row a filter byte 0
    (none) and the indices packed ``8 // bit_depth`` to a byte, first pixel in the high bits,
    the last byte of a row padded with zeros. Returns (h, 1 + ceil(w * bit_depth / 8))."""
    height, width = labels.shape
    per_byte = 8 // bit_depth
    row_bytes = (width + per_byte - 1) // per_byte
    rows = np.zeros((height, 1 + row_bytes), dtype=np.uint8)
    full_bytes = width // per_byte
    for row in range(height):
        if bit_depth == 8:
            for column in range(width):
                rows[row, 1 + column] = labels[row, column]
            continue
        # Byte by byte, each from its per_byte indices: no division by pixel, and every
        # byte written once (a pixel at a time, or-ing into its byte, took 4x the time).
        for byte in range(full_bytes):
            value = 0
            first = byte * per_byte
            for offset in range(per_byte):
                value = (value << bit_depth) | labels[row, first + offset]
            rows[row, 1 + byte] = value
        if full_bytes < row_bytes:  # the last byte, padded with zeros
            value = 0
            for column in range(full_bytes * per_byte, width):
                value = (value << bit_depth) | labels[row, column]
            rows[row, 1 + full_bytes] = value << (bit_depth * (per_byte * row_bytes - width))
    return rows


# Pixels per block of the per-pixel sums below: fixed blocks, so the sums do not depend on
# the number of threads.
_PIXEL_BLOCK = 1 << 16


@njit(cache=True, nogil=True, parallel=True)
def label_counts(labels, n_entries):  # pragma: no cover - compiled
    """Pixels per palette entry: ``np.bincount(labels, minlength=n_entries)`` without the
    8-byte copy of every label that numpy's bincount makes, block by block in parallel."""
    n_blocks = (labels.shape[0] + _PIXEL_BLOCK - 1) // _PIXEL_BLOCK
    block_counts = np.empty((n_blocks, n_entries), dtype=np.int64)
    for block in prange(n_blocks):
        block_counts[block, :] = 0
        for i in range(block * _PIXEL_BLOCK, min(labels.shape[0], (block + 1) * _PIXEL_BLOCK)):
            block_counts[block, labels[i]] += 1
    counts = np.empty(n_entries, dtype=np.int64)
    for entry in range(n_entries):
        total = 0
        for block in range(n_blocks):
            total += block_counts[block, entry]
        counts[entry] = total
    return counts


@njit(cache=True, nogil=True, parallel=True)
def pixel_squared_error(colors, inverse, palette, labels):  # pragma: no cover - compiled
    """Sum over pixels and channels of ``(colors[inverse[i]] - palette[labels[i]])^2``, or of
    ``(colors[i] - palette[labels[i]])^2`` where ``inverse`` is None (``colors`` are then
    the pixels themselves): block by block in parallel, the blocks' sums added in order.
    For uint8 colours every sum is an integer, exact in float64 below 2^53 (over 10^10
    pixels), so the total does not depend on the blocks."""
    n_blocks = (labels.shape[0] + _PIXEL_BLOCK - 1) // _PIXEL_BLOCK
    block_sums = np.empty(n_blocks)
    for block in prange(n_blocks):
        total = 0.0
        for i in range(block * _PIXEL_BLOCK, min(labels.shape[0], (block + 1) * _PIXEL_BLOCK)):
            if inverse is None:
                total += _squared_distance(colors, i, palette, labels[i])
            else:
                total += _squared_distance(colors, inverse[i], palette, labels[i])
        block_sums[block] = total
    total = 0.0
    for block in range(n_blocks):
        total += block_sums[block]
    return total


@njit(cache=True, nogil=True, parallel=True)
def palette_rows(labels, palette, out):  # pragma: no cover - compiled
    """``out[i, j] = palette[labels[i, j]]`` for ``labels`` (h, w) and ``palette`` (k, c),
    into ``out`` (h, w, c), rows on every thread; returns ``out``. numpy's
    ``palette[labels]`` took 0.17 s on one thread for 24 megapixels (exploratory)."""
    for row in prange(labels.shape[0]):
        row_labels, row_out = labels[row], out[row]
        for column in range(row_labels.shape[0]):
            entry = np.uint64(row_labels[column])  # unsigned: see the module
            for channel in range(palette.shape[1]):
                row_out[column, channel] = palette[entry, channel]
    return out


@njit(cache=True, nogil=True)
def box_labels_to_points(box_labels, members, starts, stops):  # pragma: no cover - compiled
    """Every point's label from its box's: ``labels[members[starts[b]:stops[b]]] =
    box_labels[b]`` (see :func:`split_into_boxes`), in one serial pass (numpy's argsort,
    repeat and scatter took 0.2 ms a photo at K = 16, exploratory)."""
    labels = np.empty(members.shape[0], dtype=box_labels.dtype)
    for box in range(starts.shape[0]):
        label = box_labels[box]
        for i in members[starts[box] : stops[box]]:
            labels[np.uint64(i)] = label  # unsigned: no check for wrapping (see the module)
    return labels


@njit(cache=True, nogil=True)
def places_through_rows(places, center_labels, rows):  # pragma: no cover - compiled
    """``places[center_labels[rows]]`` as uint8 in one pass: each colour's guess of its palette
    entry, from its point's nearest centre (``rows[i]``, the colour's point) and the centres'
    places in the palette. 0.013 against 0.040 ms for numpy's two gathers on 35,000 colours
    (once a K in the elbow sweep; exploratory)."""
    guesses = np.empty(rows.shape[0], dtype=np.uint8)
    for i in range(rows.shape[0]):
        guesses[i] = places[np.uint64(center_labels[np.uint64(rows[i])])]
    return guesses


@njit(cache=True, nogil=True, parallel=True)
def pixel_labels(color_labels, inverse):  # pragma: no cover - compiled
    """Every pixel's label from its colour's, ``color_labels[inverse]``, on every thread.

    One flat parallel loop, which numba splits and vectorises: 0.16 ms for a photo's 393,216
    pixels on one thread and 0.12 on two, against 0.35 to 0.5 for numpy's fancy indexing
    and 0.5 / 0.27 for the loop cut into explicit blocks (exploratory).
    """
    labels = np.empty(inverse.shape[0], dtype=color_labels.dtype)
    for i in prange(inverse.shape[0]):
        labels[i] = color_labels[np.uint32(inverse[i])]  # unsigned: see the module
    return labels


@njit(cache=True, nogil=True)
def weighted_squared_error(X, weights, centers, labels):  # pragma: no cover - compiled
    """Sum over points of ``weights[i] * ||X[i] - centers[labels[i]]||^2``, the differences
    taken directly (not through the dot-product expansion), in order of the points: a
    histogram's squared error (distinct colours weighted by their counts, a palette as the
    centres) or k-means's J."""
    total = 0.0
    for i in range(labels.shape[0]):
        total += weights[i] * _squared_distance(X, i, centers, np.uint64(labels[i]))
    return total


@njit(cache=True, nogil=True, inline="always")
def _integer_squared_distance(colors, color, entries, label):  # pragma: no cover - compiled
    """``||colors[color] - entries[label]||^2`` of uint8 rows, in int64 (exact); ``color``
    and ``label`` unsigned (see the module). Three channels are written out: over a loop,
    the dithering tally took 0.76 instead of 0.44 ms a photo (exploratory)."""
    if colors.shape[1] == 3:
        difference_0 = np.int64(colors[color, 0]) - np.int64(entries[label, 0])
        difference_1 = np.int64(colors[color, 1]) - np.int64(entries[label, 1])
        difference_2 = np.int64(colors[color, 2]) - np.int64(entries[label, 2])
        return (
            difference_0 * difference_0 + difference_1 * difference_1 + difference_2 * difference_2
        )
    total = np.int64(0)
    for channel in range(colors.shape[1]):
        difference = np.int64(colors[color, channel]) - np.int64(entries[label, channel])
        total += difference * difference
    return total


@njit(cache=True, nogil=True)
def palette_tally(colors, counts, palette, labels):  # pragma: no cover - compiled
    """Distinct colours per palette entry, and the pixels' squared error: for ``colors``
    (n, c) uint8 with ``counts`` pixels each, taking entries ``labels`` of ``palette``
    (k, c) uint8, returns ``(colors_per_entry, squared_error)``, the error
    ``sum_i counts[i] * ||colors[i] - palette[labels[i]]||^2`` as an int64.

    What :func:`label_counts` and :func:`weighted_squared_error` give, in one pass and in
    integers, whose sums are exact in any order: the colours are counted in four rows by
    index, so that neighbours with the same label do not wait on each other, and four
    partial errors summed. 0.03 against 0.09 ms for a photo's 35,000 colours at K = 64
    (exploratory).
    """
    by_lane = np.zeros((4, palette.shape[0]), dtype=np.int64)
    errors = np.zeros(4, dtype=np.int64)
    for i in range(labels.shape[0]):
        lane = np.uint64(i & 3)
        label = np.uint64(labels[i])
        by_lane[lane, label] += 1
        color = np.uint64(i)
        error = _integer_squared_distance(colors, color, palette, label)
        errors[lane] += np.int64(counts[color]) * error
    colors_per_entry = np.empty(palette.shape[0], dtype=np.int64)
    for k in range(palette.shape[0]):
        colors_per_entry[k] = (by_lane[0, k] + by_lane[1, k]) + (by_lane[2, k] + by_lane[3, k])
    return colors_per_entry, (errors[0] + errors[1]) + (errors[2] + errors[3])


# ------------------------------------------------------------------ cells (``--speed fast``)


@njit(cache=True, nogil=True, inline="always")
def _cell_of(pixels, i, bits):  # pragma: no cover - compiled
    """Cell of RGB pixel i: its top ``bits`` bits per channel, packed as r, g, b."""
    shift = 8 - bits
    red = np.int64(pixels[i, 0]) >> shift
    green = np.int64(pixels[i, 1]) >> shift
    blue = np.int64(pixels[i, 2]) >> shift
    return (red << (2 * bits)) | (green << bits) | blue


@njit(cache=True, nogil=True, parallel=True)
def cell_sums(pixels, bits, n_parts):  # pragma: no cover - compiled
    """Pixel count and channel sums of every cell, and the sum of all squared channels.

    Reads RGB ``pixels`` (n, 3) uint8. Returns ``counts`` (2^(3 bits),), ``sums``
    (2^(3 bits), 3) and ``total_square``, all int64. Each of ``n_parts`` slices of the pixels
    counts into its own table, then the tables are added: integer sums, so the result is the
    same for any number of threads or parts.
    """
    n_pixels = pixels.shape[0]
    n_cells = 1 << (3 * bits)
    counts = np.zeros((n_parts, n_cells), dtype=np.int64)
    sums = np.zeros((n_parts, n_cells, 3), dtype=np.int64)
    squares = np.zeros(n_parts, dtype=np.int64)
    size = (n_pixels + n_parts - 1) // n_parts
    for part in prange(n_parts):
        square = np.int64(0)
        for i in range(part * size, min(n_pixels, (part + 1) * size)):
            cell = _cell_of(pixels, i, bits)
            counts[part, cell] += 1
            for channel in range(3):
                value = np.int64(pixels[i, channel])
                sums[part, cell, channel] += value
                square += value * value
        squares[part] = square
    for part in range(1, n_parts):
        for cell in range(n_cells):
            counts[0, cell] += counts[part, cell]
            for channel in range(3):
                sums[0, cell, channel] += sums[part, cell, channel]
    return counts[0], sums[0], squares.sum()


@njit(cache=True, nogil=True, parallel=True)
def labels_through_cells(pixels, bits, cell_labels, labels):  # pragma: no cover - compiled
    """``labels[i] = cell_labels[cell of pixel i]``: reads ``pixels`` (n, 3), writes ``labels``."""
    for i in prange(pixels.shape[0]):
        labels[i] = cell_labels[_cell_of(pixels, i, bits)]


@njit(cache=True, nogil=True, inline="always")
def _spread_of(weight, sums, squares, box, feature):  # pragma: no cover - compiled
    """Box's sum of w * (x - mean)^2 along one feature, from its weight, sums and squares."""
    return max(0.0, squares[box, feature] - sums[box, feature] ** 2 / weight[box])


@njit(cache=True, nogil=True, inline="always")
def _scatter_of(weight, sums, squares, box):  # pragma: no cover - compiled
    """Box's sum of w * ||x - mean||^2: its spreads along every feature."""
    total = 0.0
    for feature in range(sums.shape[1]):
        total += _spread_of(weight, sums, squares, box, feature)
    return total


@njit(cache=True, nogil=True, inline="always")
def _cut_first(heap, keys, starts, position, other):  # pragma: no cover - compiled
    """Whether the box at ``position`` of the heap is cut before the one at ``other``: the
    larger key (J_b) first, and of equal keys the box whose points come first (boxes never
    share a start). A total order, so the order of cutting does not depend on how the heap
    is laid out, and a heap over part of the boxes pops them in the order a heap over all
    would. The keys sit in the heap beside the boxes (``keys[i]`` is box ``heap[i]``'s).
    """
    if keys[position] != keys[other]:
        return keys[position] > keys[other]
    return starts[heap[position]] < starts[heap[other]]


@njit(cache=True, nogil=True)
def _heap_push(heap, keys, starts, size, box, key):  # pragma: no cover - compiled
    """Add ``box`` with ``key`` to the heap ``heap[:size]`` (``keys`` beside it) whose top
    is cut first (:func:`_cut_first`); returns the new size."""
    position = size
    heap[position], keys[position] = box, key
    while position > 0:
        parent = (position - 1) // 2
        if not _cut_first(heap, keys, starts, position, parent):
            break
        heap[parent], heap[position] = heap[position], heap[parent]
        keys[parent], keys[position] = keys[position], keys[parent]
        position = parent
    return size + 1


@njit(cache=True, nogil=True)
def _heap_pop(heap, keys, starts, size):  # pragma: no cover - compiled
    """Remove the top of the heap ``heap[:size]``; returns (top box, new size)."""
    top = heap[0]
    size -= 1
    heap[0], keys[0] = heap[size], keys[size]
    position = 0
    while True:
        child = 2 * position + 1
        if child >= size:
            break
        if child + 1 < size and _cut_first(heap, keys, starts, child + 1, child):
            child += 1
        if not _cut_first(heap, keys, starts, child, position):
            break
        heap[position], heap[child] = heap[child], heap[position]
        keys[position], keys[child] = keys[child], keys[position]
        position = child
    return top, size


@njit(cache=True, nogil=True)  # not inlined: the branch on rows.ndim is pruned only so
def _cut_rows(rows, members, start, stop, axis, cut, low_sums, low_squares):  # pragma: no cover
    """Partition ``rows[start:stop]`` (features, then the weight) and ``members`` alike:
    rows whose ``axis`` feature is at most ``cut`` first. Writes the low side's sums of
    w * x and w * x^2 into ``low_sums`` and ``low_squares`` and returns ``(low,
    low_weight)``, the first row of the high side and the low side's weight. One-dimensional
    ``rows`` are packed colours (:func:`split_colors_into_boxes`)."""
    if rows.ndim == 1:  # decided when compiling
        return _cut_packed(rows, members, start, stop, axis, cut, low_sums, low_squares)
    if rows.shape[1] == 4:
        return _cut_rows_3(rows, members, start, stop, axis, cut, low_sums, low_squares)
    n_features = rows.shape[1] - 1
    low_weight = 0.0
    low_sums[:] = 0.0
    low_squares[:] = 0.0
    low, high = start, stop - 1
    while low <= high:
        if rows[low, axis] <= cut:
            w = rows[low, n_features]
            low_weight += w
            for feature in range(n_features):
                value = rows[low, feature]
                low_sums[feature] += w * value
                low_squares[feature] += w * value * value
            low += 1
        else:
            for column in range(n_features + 1):
                rows[low, column], rows[high, column] = rows[high, column], rows[low, column]
            members[low], members[high] = members[high], members[low]
            high -= 1
    return low, low_weight


@njit(cache=True, nogil=True, inline="always")
def _cut_rows_3(rows, members, start, stop, axis, cut, low_sums, low_squares):  # pragma: no cover
    """:func:`_cut_rows` for three features, its sums in variables rather than arrays (the
    same sums in the same order, 0.9x the time: an array's sum went through memory)."""
    low_weight = 0.0
    sum_0 = sum_1 = sum_2 = 0.0
    square_0 = square_1 = square_2 = 0.0
    low, high = start, stop - 1
    while low <= high:
        value_0, value_1, value_2 = rows[low, 0], rows[low, 1], rows[low, 2]
        value = value_0 if axis == 0 else (value_1 if axis == 1 else value_2)
        if value <= cut:
            w = rows[low, 3]
            low_weight += w
            sum_0 += w * value_0
            sum_1 += w * value_1
            sum_2 += w * value_2
            square_0 += w * value_0 * value_0
            square_1 += w * value_1 * value_1
            square_2 += w * value_2 * value_2
            low += 1
        else:
            for column in range(4):
                rows[low, column], rows[high, column] = rows[high, column], rows[low, column]
            members[low], members[high] = members[high], members[low]
            high -= 1
    low_sums[0], low_sums[1], low_sums[2] = sum_0, sum_1, sum_2
    low_squares[0], low_squares[1], low_squares[2] = square_0, square_1, square_2
    return low, low_weight


# Bits of a packed colour below its count: three channels of eight bits.
_PACKED_COUNT_SHIFT = 24


@njit(cache=True, nogil=True, inline="always")
def _packed_terms(word, shift, cut):  # pragma: no cover - compiled
    """Whether the packed colour ``word`` lies on the low side (its channel at bit ``shift``
    at most ``cut``), then what it adds to the low side's integer sums: its count, count * x
    per channel and count * x^2 per channel (zeros on the high side, so no branch is
    needed)."""
    is_low = ((word >> shift) & 255) <= cut
    count = (word >> _PACKED_COUNT_SHIFT) if is_low else 0
    red, green, blue = word & 255, (word >> 8) & 255, (word >> 16) & 255
    r, g, b = count * red, count * green, count * blue
    return is_low, (count, r, g, b, r * red, g * green, b * blue)


@njit(cache=True, nogil=True, inline="always")
def _plus(sums, terms):  # pragma: no cover - compiled
    """The seven sums of :func:`_packed_terms`, kept in variables (in an array each one went
    through memory), with one colour's terms added."""
    return (
        sums[0] + terms[0],
        sums[1] + terms[1],
        sums[2] + terms[2],
        sums[3] + terms[3],
        sums[4] + terms[4],
        sums[5] + terms[5],
        sums[6] + terms[6],
    )


# The seven sums before any colour: count, count * x and count * x^2 per channel.
_NO_SUMS = (0, 0, 0, 0, 0, 0, 0)


@njit(cache=True, nogil=True, inline="always")
def _packed_result(low, sums, low_sums, low_squares):  # pragma: no cover - compiled
    """:func:`_cut_rows`' result from the seven sums of :func:`_plus`."""
    for channel in range(3):
        low_sums[channel] = sums[1 + channel]
        low_squares[channel] = sums[4 + channel]
    return low, float(sums[0])


@njit(cache=True, nogil=True, inline="always")
def _low_side_sums(rows, start, stop, shift, cut):  # pragma: no cover - compiled
    """The seven sums (:func:`_plus`) of the packed colours ``rows[start:stop]`` on the low
    side, in a pass of their own: with no swap in it the loop vectorises, and the
    partition that follows is lighter. Integer sums: the same in any order. The photos'
    boxes (benchmarks/kernels.py --only boxes, exploratory) took 0.85x the time of the
    sums summed while partitioning. The loop reads a slice from its index 0: indexed from
    ``start``, numba wraps negative indices, and that check on every colour made the
    photos' 768 boxes take 0.79 instead of 0.59 ms (exploratory)."""
    sums = _NO_SUMS
    part = rows[start:stop]
    for i in range(part.shape[0]):
        sums = _plus(sums, _packed_terms(part[i], shift, cut)[1])
    return sums


@njit(cache=True, nogil=True, inline="always")
def _cut_packed(rows, members, start, stop, axis, cut, low_sums, low_squares):  # pragma: no cover
    """:func:`_cut_rows` on packed colours: the low side's sums in a pass of their own
    (:func:`_low_side_sums`), then a partition without a branch on the side: every colour
    is swapped with the first one not known to be low, which only counts as moved when the
    colour is low (Lomuto's partition). The members come in another order within each side
    than on float rows. On slices, as :func:`_low_side_sums`: the photos' 768 boxes 0.59 ->
    0.43 ms, the same boxes (exploratory)."""
    shift = 8 * axis
    sums = _low_side_sums(rows, start, stop, shift, cut)
    part_rows, part_members = rows[start:stop], members[start:stop]
    low = 0
    for i in range(part_rows.shape[0]):
        word, member = part_rows[i], part_members[i]
        is_low = ((word >> shift) & 255) <= cut
        part_rows[i], part_members[i] = part_rows[low], part_members[low]
        part_rows[low], part_members[low] = word, member
        low += 1 if is_low else 0
    return _packed_result(start + low, sums, low_sums, low_squares)


@njit(cache=True, nogil=True)
def split_colors_into_boxes(colors, counts, n_boxes):  # pragma: no cover - compiled
    """:func:`split_into_boxes` for ``colors`` (n, 3) uint8 with integer ``counts`` (n,)
    whose sum is below 2^36: the same means, weights, starts, stops and scatter, and the
    same points in each box, in less time.

    Each colour is packed into one int64, its channels in bits 0 to 23 and its count above
    them, so that a cut moves 12 bytes a colour rather than 36; the sums are integers, the
    same in any order and the same as :func:`split_into_boxes`' float64 sums, which are
    integers below 2^53. Each cut sums the low side in one pass and partitions in
    another, without a branch on the side (:func:`_cut_packed`), so a box's members may
    come in another order. The photos' colours at K = 16 / 64 / 256 (768 / 1,536 / 3,072
    boxes, exploratory, in process against the last commit): 1.37 / 1.63 / 2.01 ms an
    image with the sums summed while partitioning, big boxes by Hoare's partition with a
    branch; 1.16 / 1.38 / 1.71 with the sums apart; 1.04 / 1.25 / 1.58 with every box
    partitioned without a branch (branchy partitions of big boxes had paid only while the
    sums shared their loop).
    """
    rows, tree = _packed_rows(colors, counts, n_boxes)
    return _split_rows(rows, tree, n_boxes)


@njit(cache=True, nogil=True, inline="always")
def _packed_rows(colors, counts, n_boxes):  # pragma: no cover - compiled
    """The packed colours (see :func:`split_colors_into_boxes`) and a :class:`BoxTree` for
    ``n_boxes`` boxes whose box 0 holds their weight, sums and squares."""
    n_points = colors.shape[0]
    rows = np.empty(n_points, dtype=np.int64)
    tree = _box_tree(n_boxes, 3)
    all_sums = _NO_SUMS
    for point in range(n_points):
        word = np.int64(counts[point]) << _PACKED_COUNT_SHIFT
        for channel in range(3):
            word |= np.int64(colors[point, channel]) << (8 * channel)
        rows[point] = word
        all_sums = _plus(all_sums, _packed_terms(word, 0, 255.0)[1])  # every colour is low
    _, tree.weight[0] = _packed_result(0, all_sums, tree.sums[0], tree.squares[0])
    return rows, tree


@njit(cache=True, nogil=True)
def variance_split(X, weights, n_boxes):  # pragma: no cover - compiled
    """:func:`split_into_boxes`' box means (m, d) and total weights (m,) alone."""
    means, box_weights, _, _, _, _ = split_into_boxes(X, weights, n_boxes)
    return means, box_weights


@njit(cache=True, nogil=True)
def split_into_boxes(X, weights, n_boxes):  # pragma: no cover - compiled
    """Cut weighted points into up to ``n_boxes`` boxes, largest sum of squares first.

    Starts from one box of all points; repeatedly takes the box with the largest
    within-box sum of squares J_b (a heap gives it) and cuts it, at its weighted mean, across
    the feature in which it spreads most (as Wu's and median-cut quantizers do). One pass
    over a copy of the box's rows both partitions them in place and sums the low side's
    weight, w * x and w * x^2 (the high side's are the box's minus those), from which the
    sides' means and J_b follow. Returns ``(means, weights, members, starts, stops,
    scatter)``: the boxes' weighted means (m, d) and total weights (m,), m < ``n_boxes``
    only when no box can be cut further; the points' indices grouped box by box (n,), box
    b's being ``members[starts[b]:stops[b]]``; and the first box's J_b, the points' own sum
    of w * ||x - mean||^2. Serial and without randomness: the same points always
    give the same boxes.
    """
    n_points, n_features = X.shape
    rows = np.empty((n_points, n_features + 1))  # features, then the weight
    for point in range(n_points):  # element by element: see _copy_rows
        for feature in range(n_features):
            rows[point, feature] = X[point, feature]
        rows[point, n_features] = weights[point]
    tree = _box_tree(n_boxes, n_features)
    weight, sums, squares = tree.weight, tree.sums, tree.squares
    for i in range(n_points):
        weight[0] += rows[i, n_features]
        for feature in range(n_features):
            sums[0, feature] += rows[i, n_features] * rows[i, feature]
            squares[0, feature] += rows[i, n_features] * rows[i, feature] ** 2
    return _split_rows(rows, tree, n_boxes)


# A tree of variance-split boxes as the cuts leave it: per box its weight, sums, squares,
# first and last row (``starts``, ``stops``) and sum of squares J_b (``scatter``); the heap of
# boxes still to cut; a log of the boxes taken off the heap, in order, with each one's J_b
# and the box its cut made (-1: not cut); and ``state``: the heap's size, the boxes made and
# the log's length.
BoxTree = namedtuple(
    "BoxTree",
    "weight sums squares starts stops scatter heap heap_keys log_box log_scatter log_child state",
)


@njit(cache=True, nogil=True, inline="always")
def _box_tree(n_boxes, n_features):  # pragma: no cover - compiled
    """An empty :class:`BoxTree` with room for ``n_boxes`` boxes (box 0 to be set)."""
    return BoxTree(
        np.zeros(n_boxes),
        np.zeros((n_boxes, n_features)),
        np.zeros((n_boxes, n_features)),
        np.zeros(n_boxes, dtype=np.int64),
        np.zeros(n_boxes, dtype=np.int64),
        np.zeros(n_boxes),
        np.empty(n_boxes, dtype=np.int64),
        np.empty(n_boxes),
        np.empty(2 * n_boxes, dtype=np.int64),  # every box is taken off at most once
        np.empty(2 * n_boxes),
        np.empty(2 * n_boxes, dtype=np.int64),
        np.zeros(3, dtype=np.int64),
    )


@njit(cache=True, nogil=True, inline="always")
def _plant(tree, start, stop):  # pragma: no cover - compiled
    """Make box 0 of ``tree`` (its weight, sums and squares already set) the rows
    ``start`` to ``stop``, the tree's only box, on the heap if it can be cut."""
    tree.starts[0], tree.stops[0] = start, stop
    tree.scatter[0] = _scatter_of(tree.weight, tree.sums, tree.squares, 0)
    heap_size = 0
    if stop - start >= 2 and tree.scatter[0] > 0.0:
        heap_size = _heap_push(tree.heap, tree.heap_keys, tree.starts, 0, 0, tree.scatter[0])
    tree.state[0], tree.state[1], tree.state[2] = heap_size, 1, 0


@njit(cache=True, nogil=True)
def _grow(rows, members, tree, n_boxes):  # pragma: no cover - compiled
    """Cut the boxes of ``tree``, the largest J_b first, until it has ``n_boxes`` boxes or
    none can be cut, logging each box taken off the heap.

    Each cut takes its box's widest feature at its weighted mean; the high side's sums are
    the box's minus the low side's. The cut box keeps its number for its low side, the high
    side gets the next one."""
    weight, sums, squares = tree.weight, tree.sums, tree.squares
    starts, stops, scatter = tree.starts, tree.stops, tree.scatter
    heap, heap_keys = tree.heap, tree.heap_keys
    log_box, log_scatter, log_child = tree.log_box, tree.log_scatter, tree.log_child
    n_features = sums.shape[1]
    low_sums = np.zeros(n_features)
    low_squares = np.zeros(n_features)
    heap_size, n_found, n_logged = tree.state[0], tree.state[1], tree.state[2]
    while n_found < n_boxes and heap_size > 0:
        box, heap_size = _heap_pop(heap, heap_keys, starts, heap_size)
        log_box[n_logged] = box
        log_scatter[n_logged] = scatter[box]
        log_child[n_logged] = -1
        n_logged += 1
        axis = 0
        widest = -1.0
        for feature in range(n_features):
            spread = _spread_of(weight, sums, squares, box, feature)
            if spread > widest:
                widest = spread
                axis = feature
        cut = sums[box, axis] / weight[box]
        low, low_weight = _cut_rows(
            rows, members, starts[box], stops[box], axis, cut, low_sums, low_squares
        )
        if low == starts[box] or low == stops[box]:  # rounding put every row on one side
            continue  # the box stays as it was, out of the heap
        upper = n_found
        starts[upper], stops[upper] = low, stops[box]
        stops[box] = low
        weight[upper] = weight[box] - low_weight
        weight[box] = low_weight
        for feature in range(n_features):
            sums[upper, feature] = sums[box, feature] - low_sums[feature]
            squares[upper, feature] = squares[box, feature] - low_squares[feature]
            sums[box, feature] = low_sums[feature]
            squares[box, feature] = low_squares[feature]
        for child in (box, upper):
            scatter[child] = _scatter_of(weight, sums, squares, child)
            if stops[child] - starts[child] >= 2 and scatter[child] > 0.0:
                heap_size = _heap_push(heap, heap_keys, starts, heap_size, child, scatter[child])
        log_child[n_logged - 1] = upper
        n_found += 1
    tree.state[0], tree.state[1], tree.state[2] = heap_size, n_found, n_logged


@njit(cache=True, nogil=True, inline="always")
def _boxes_of(tree, numbers, means, weights, starts, stops):  # pragma: no cover - compiled
    """Write each box of ``tree`` as box ``numbers[box]`` of the result (none if negative)."""
    for box in range(tree.state[1]):
        number = numbers[box]
        if number < 0:
            continue
        weights[number] = tree.weight[box]
        starts[number], stops[number] = tree.starts[box], tree.stops[box]
        for feature in range(means.shape[1]):
            means[number, feature] = tree.sums[box, feature] / tree.weight[box]


@njit(cache=True, nogil=True, inline="always")
def _split_rows(rows, tree, n_boxes):  # pragma: no cover
    """:func:`split_into_boxes`' cuts, on its ``rows`` or packed ones
    (:func:`split_colors_into_boxes`), from a ``tree`` whose box 0 holds every row's
    weight, sums and squares."""
    members = np.arange(rows.shape[0], dtype=np.int32)  # 4 bytes a point: 2^31 points at most
    _plant(tree, 0, rows.shape[0])
    total_scatter = tree.scatter[0]
    _grow(rows, members, tree, n_boxes)
    return _tree_result(tree, members, total_scatter)


@njit(cache=True, nogil=True, inline="always")
def _tree_result(tree, members, total_scatter):  # pragma: no cover - compiled
    """:func:`split_into_boxes`' result from a grown ``tree``, its boxes in their order."""
    n_found = tree.state[1]
    means = np.empty((n_found, tree.sums.shape[1]))
    weights = np.empty(n_found)
    starts = np.empty(n_found, dtype=np.int64)
    stops = np.empty(n_found, dtype=np.int64)
    _boxes_of(tree, np.arange(n_found), means, weights, starts, stops)
    return means, weights, members, starts, stops, total_scatter


@njit(cache=True, nogil=True, parallel=True)
def _grow_side_by_side(rows, members, low_tree, high_tree, n_boxes):  # pragma: no cover
    """:func:`_grow` both trees to ``n_boxes`` boxes, on two threads."""
    for side in prange(2):
        _grow(rows, members, low_tree if side == 0 else high_tree, n_boxes)


# The halves of split_colors_into_boxes_in_halves are first cut side by side up to this share
# of the boxes (plus one) each; a half that turns out to need more goes on cutting alone.
# On a first version of the kernel, the photos' boxes took (exploratory, ms an image at 768
# / 1,536 / 3,072 boxes, against 1.08 / 1.28 / 1.62 in one tree) 0.69 / 0.81 / 1.04 at a
# share of 0.5, 0.68 / 0.80 / 1.01 at 0.55, 0.68 / 0.80 / 1.03 at 0.6 and 0.77 / 0.96 / 1.33
# with each half cut as far as it could need (all boxes but one).
_HALF_SHARE = 0.55
# A half that needs more boxes than it has cut goes on by this many at a time.
_HALF_MORE = 16


@njit(cache=True, nogil=True)
def split_colors_into_boxes_in_halves(colors, counts, n_boxes):  # pragma: no cover - compiled
    """:func:`split_colors_into_boxes`' boxes, the two halves of the first cut cut side by
    side: the same boxes in the same order (the points within a box perhaps in another).

    Every box's cuts depend on its own points alone, so the boxes that one tree would cut,
    largest J_b first, are those each half's own tree cuts first, and in one tree's order
    they interleave: the next cut is always the half whose next box has the larger J_b
    (the order of :func:`_cut_first`, whose tie rule keeps the low half's boxes first, as
    their points come first). So each half is cut on its own thread to a share of the boxes
    (``_HALF_SHARE``), logging the box it takes at every step with its J_b; the logs are
    then merged in that order up to ``n_boxes``, which numbers the boxes as one tree would;
    a half whose log runs out first is cut further here; and the cuts a half made beyond
    what the merge took are undone, newest first, each giving its high side's rows and
    integer sums back to the box it cut.
    """
    rows, low_tree = _packed_rows(colors, counts, n_boxes)
    n_points = rows.shape[0]
    members = np.arange(n_points, dtype=np.int32)
    _plant(low_tree, 0, n_points)
    total_scatter = low_tree.scatter[0]
    _grow(rows, members, low_tree, 2)  # the first cut: box 0 the low half, box 1 the high
    if low_tree.state[1] < 2 or n_boxes <= 2:
        return _tree_result(low_tree, members, total_scatter)
    high_tree = _box_tree(n_boxes, 3)
    high_tree.weight[0] = low_tree.weight[1]
    for feature in range(3):
        high_tree.sums[0, feature] = low_tree.sums[1, feature]
        high_tree.squares[0, feature] = low_tree.squares[1, feature]
    _plant(high_tree, low_tree.starts[1], low_tree.stops[1])
    # The low half again as a tree of one box: its box 1 is the high half's.
    low_tree.state[1] = 1
    _plant(low_tree, 0, low_tree.stops[0])
    _grow_side_by_side(
        rows, members, low_tree, high_tree, min(n_boxes - 1, int(_HALF_SHARE * n_boxes) + 1)
    )
    # Merge the logs; numbers[side, box] is the box's number in one tree's order.
    numbers = np.full((2, n_boxes), -1, dtype=np.int64)
    numbers[0, 0], numbers[1, 0] = 0, 1
    low_state, high_state = low_tree.state, high_tree.state
    low_taken, high_taken = 0, 0
    n_found = 2
    while n_found < n_boxes:
        if low_taken == low_state[2] and low_state[0] > 0:
            _grow(rows, members, low_tree, min(n_boxes - 1, low_state[1] + _HALF_MORE))
        if high_taken == high_state[2] and high_state[0] > 0:
            _grow(rows, members, high_tree, min(n_boxes - 1, high_state[1] + _HALF_MORE))
        low_left, high_left = low_taken < low_state[2], high_taken < high_state[2]
        if low_left and (
            not high_left or low_tree.log_scatter[low_taken] >= high_tree.log_scatter[high_taken]
        ):
            side, made = 0, low_tree.log_child[low_taken]
            low_taken += 1
        elif high_left:
            side, made = 1, high_tree.log_child[high_taken]
            high_taken += 1
        else:
            break
        if made >= 0:  # a cut, not a box left whole
            numbers[side, made] = n_found
            n_found += 1
    means = np.empty((n_found, 3))
    weights = np.empty(n_found)
    starts = np.empty(n_found, dtype=np.int64)
    stops = np.empty(n_found, dtype=np.int64)
    for tree, taken, side_numbers in (
        (low_tree, low_taken, numbers[0]),
        (high_tree, high_taken, numbers[1]),
    ):
        _undo_past(tree, taken)
        _boxes_of(tree, side_numbers, means, weights, starts, stops)
    return means, weights, members, starts, stops, total_scatter


@njit(cache=True, nogil=True, inline="always")
def _undo_past(tree, taken):  # pragma: no cover - compiled
    """Undo the cuts of ``tree`` logged from entry ``taken`` on, newest first: each cut box
    takes back the rows and (integer) sums of the box its cut made."""
    for entry in range(tree.state[2] - 1, taken - 1, -1):
        made, box = tree.log_child[entry], tree.log_box[entry]
        if made >= 0:
            tree.stops[box] = tree.stops[made]
            tree.weight[box] += tree.weight[made]
            for feature in range(tree.sums.shape[1]):
                tree.sums[box, feature] += tree.sums[made, feature]
                tree.squares[box, feature] += tree.squares[made, feature]


# ------------------------------------------------------------------ SSIM of uint8 images

# Output rows per block of the SSIM sum: blocks are fixed, so the sum is thread-independent.
_SSIM_BLOCK_ROWS = 32


@njit(cache=True, nogil=True, parallel=True)
def ssim_sum(first, second, window, c1, c2):  # pragma: no cover - compiled
    """Sum of the SSIM map over every pixel whose window lies inside the image.

    Reads ``first`` and ``second`` (h, w, c) uint8; ``window`` is the side of the square
    uniform window. For each channel and window, with n = window^2 and the window sums S of
    x, y, x^2, y^2 and xy (exact integers, kept per column and slid along each row):
    mu = S/n, variances and covariance with the sample normalisation n/(n-1), and
    SSIM = (2 mu_x mu_y + c1)(2 cov + c2) / ((mu_x^2 + mu_y^2 + c1)(var_x + var_y + c2)),
    as :func:`skimage.metrics.structural_similarity` computes it. Blocks of output rows run
    in parallel, each summed in order, and the blocks are added in order.
    """
    height, width, n_channels = first.shape
    out_rows = height - window + 1
    out_cols = width - window + 1
    n_points = window * window
    norm = n_points / (n_points - 1.0)
    # Multiplied by, not divided: five divisions a window were 43% of the time (24 MP: 0.215
    # -> 0.123 s for 3,000 rows, exploratory), for values within an ulp or two.
    inverse_n = 1.0 / n_points
    n_blocks = (out_rows + _SSIM_BLOCK_ROWS - 1) // _SSIM_BLOCK_ROWS
    partial = np.zeros(n_blocks)
    for block in prange(n_blocks):
        top = block * _SSIM_BLOCK_ROWS
        bottom = min(out_rows, top + _SSIM_BLOCK_ROWS)
        sums = np.zeros((5, width), dtype=np.int64)
        total = 0.0
        for channel in range(n_channels):
            sums[:] = 0
            for row in range(top, top + window):
                for col in range(width):
                    x = np.int64(first[row, col, channel])
                    y = np.int64(second[row, col, channel])
                    sums[0, col] += x
                    sums[1, col] += y
                    sums[2, col] += x * x
                    sums[3, col] += y * y
                    sums[4, col] += x * y
            for row in range(top, bottom):
                if row > top:  # slide the column sums down one row
                    for col in range(width):
                        x_out = np.int64(first[row - 1, col, channel])
                        y_out = np.int64(second[row - 1, col, channel])
                        x_in = np.int64(first[row + window - 1, col, channel])
                        y_in = np.int64(second[row + window - 1, col, channel])
                        sums[0, col] += x_in - x_out
                        sums[1, col] += y_in - y_out
                        sums[2, col] += x_in * x_in - x_out * x_out
                        sums[3, col] += y_in * y_in - y_out * y_out
                        sums[4, col] += x_in * y_in - x_out * y_out
                sx = sy = sxx = syy = sxy = np.int64(0)
                for col in range(window):
                    sx += sums[0, col]
                    sy += sums[1, col]
                    sxx += sums[2, col]
                    syy += sums[3, col]
                    sxy += sums[4, col]
                for col in range(out_cols):
                    if col > 0:
                        sx += sums[0, col + window - 1] - sums[0, col - 1]
                        sy += sums[1, col + window - 1] - sums[1, col - 1]
                        sxx += sums[2, col + window - 1] - sums[2, col - 1]
                        syy += sums[3, col + window - 1] - sums[3, col - 1]
                        sxy += sums[4, col + window - 1] - sums[4, col - 1]
                    mean_x = sx * inverse_n
                    mean_y = sy * inverse_n
                    var_x = norm * (sxx * inverse_n - mean_x * mean_x)
                    var_y = norm * (syy * inverse_n - mean_y * mean_y)
                    cov = norm * (sxy * inverse_n - mean_x * mean_y)
                    total += ((2 * mean_x * mean_y + c1) * (2 * cov + c2)) / (
                        (mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)
                    )
        partial[block] = total
    result = 0.0
    for block in range(n_blocks):
        result += partial[block]
    return result
