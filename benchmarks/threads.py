"""quantize at each number of numba threads, in one process: time, and the same results.

    python benchmarks/threads.py                                  # bundled sample
    python benchmarks/threads.py ../shared/corpus/photos -k 16 64 256 --threads 1 2 4 16

For each thread count (default: 1, 2, 4, ... up to the machine's cores, and the cores
themselves), quantizes every image at every K with seed 0 and prints the mean of the median
seconds an image, then checks that every palette and every label is the same as with the
first thread count (kmquant's results must not depend on the threads). Also times the
histogram of the first image tiled to about 25 megapixels, where more slices of the bitmap
pay. Times are medians of ``--repeat`` runs, after one warm-up run.
"""

from __future__ import annotations

import argparse
import os
import sys

import numba
import numpy as np

import kmquant
from compare import list_images
from kernels import median_seconds
from kmquant import color_histogram


def checked_thread_counts(counts: list[int]) -> list[int] | None:
    """``counts`` if each is a possible numba thread count here; else None, after saying so."""
    most = numba.config.NUMBA_NUM_THREADS
    if not all(1 <= count <= most for count in counts):
        print(f"thread counts must be 1 to {most} on this machine", file=sys.stderr)
        return None
    return counts


def rgb_images(inputs: list[str]) -> list[np.ndarray]:
    """The RGB pixels of the images or folders ``inputs`` (default: the bundled sample)."""
    return [
        kmquant.read_image(path)[:, :, :3]
        for path in (list_images(inputs) or [kmquant.sample_image_path()])
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="images or folders (default: bundled sample)")
    parser.add_argument("-k", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--threads", nargs="+", type=int, help="numba thread counts")
    parser.add_argument("--repeat", type=int, default=5, help="runs per timing (median)")
    args = parser.parse_args(argv)
    most = numba.config.NUMBA_NUM_THREADS
    counts = checked_thread_counts(
        args.threads or sorted({*(2**i for i in range(8) if 2**i <= most), most})
    )
    if counts is None:
        return 1
    images = rgb_images(args.inputs)
    side = int(np.ceil(np.sqrt(25e6 / images[0][:, :, 0].size)))
    large = np.ascontiguousarray(np.tile(images[0], (side, side, 1)))
    print(f"{len(images)} images, K = {args.k}, numba threads {counts}, {os.cpu_count()} cores")
    reference: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for count in counts:
        numba.set_num_threads(count)
        cells = []
        for k in args.k:
            seconds = 0.0
            for index, image in enumerate(images):
                seconds += median_seconds(
                    lambda image=image, k=k: kmquant.quantize(image, k, rng=0), args.repeat
                )
                result = kmquant.quantize(image, k, rng=0)
                expected = reference.setdefault((index, k), (result.palette, result.labels))
                if not (
                    np.array_equal(expected[0], result.palette)
                    and np.array_equal(expected[1], result.labels)
                ):
                    print(f"DIFFERENT results at {count} threads, image {index}, K = {k}")
                    return 1
            cells.append(f"K = {k} {1000 * seconds / len(images):.1f} ms")
        histogram = median_seconds(lambda: color_histogram(large), 3)
        print(
            f"{count:3d} threads: "
            + ", ".join(cells)
            + f" an image; {large.shape[0] * large.shape[1] / 1e6:.0f} MP histogram"
            f" {1000 * histogram:.0f} ms"
        )
    print(f"same palettes and labels at every thread count as at {counts[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
