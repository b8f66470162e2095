"""The elbow sweep against one quantization, in the same process.

    python benchmarks/elbow.py                       # bundled sample, K = 2..64
    python benchmarks/elbow.py photo.png --k-range 2:64 --repeat 5

Times ``kmquant.elbow_curve`` over the K range (one histogram, warm starts, every K's palette
applied and its PNG size taken) and ``kmquant.quantize`` at the range's top K, medians of
``--repeat`` runs each, interleaved, after one warm-up run of each; prints both, their ratio
and the choosing-K issue's target (the sweep at most 10 x one run at K = 64).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

import kmquant
from kmquant._sample import sample_image_path

TARGET_RATIO = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("image", nargs="?", type=Path, help="default: the bundled sample")
    parser.add_argument("--k-range", default="2:64", help="LOW:HIGH, inclusive")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = args.image or sample_image_path()
    try:
        low, high = (int(part) for part in args.k_range.split(":"))
    except ValueError:
        parser.error(f"--k-range must be LOW:HIGH, got {args.k_range!r}")
    if not 1 <= low < high <= 256:
        parser.error(f"--k-range must satisfy 1 <= LOW < HIGH <= 256, got {args.k_range!r}")
    try:
        image = np.asarray(Image.open(path).convert("RGB"))
    except OSError as error:
        parser.error(f"cannot read {path}: {error}")
    k_values = range(low, high + 1)

    def sweep() -> object:
        return kmquant.elbow_curve(image, k_values, rng=0)

    def one_run() -> object:
        return kmquant.quantize(image, high, rng=0)

    sweep(), one_run()  # compile or load the kernels
    sweep_seconds, run_seconds = [], []
    for _ in range(args.repeat):
        for task, times in ((sweep, sweep_seconds), (one_run, run_seconds)):
            started = time.perf_counter()
            task()
            times.append(time.perf_counter() - started)
    sweep_median = statistics.median(sweep_seconds)
    run_median = statistics.median(run_seconds)
    ratio = sweep_median / run_median
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"{Path(path).name}: elbow sweep K = {low}..{high}: {sweep_median:.3f} s")
    print(f"{Path(path).name}: quantize K = {high}: {run_median:.3f} s")
    print(f"sweep / one run = {ratio:.1f}x ({verdict}: <= {TARGET_RATIO:g}x)", end="")
    print(f", medians of {args.repeat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
