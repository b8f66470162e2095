"""What comes just before a quantize, and how it changes the quantize's time, in one process.

    python benchmarks/idle.py                                   # bundled sample, K = 16
    python benchmarks/idle.py ../shared/corpus/photos -k 16 --threads 2 1

``compare.py`` times each run right after the PNG encoding of the run before (about 50 ms
of oxipng on one thread), for every method alike. For a run of a few milliseconds that
matters: this script times the same quantize after each of these, in turn for every image
and repetition so that the hour's drift falls on all of them alike:

- ``back to back``: right after another quantize of the same image;
- ``after encode``: after ``to_image`` and ``encode_png`` of that result, as in ``compare.py``;
- ``busy N ms``: after a loop in Python that keeps the calling thread busy for N ms and
  leaves numba's other threads idle;
- ``sleep N ms``: after ``time.sleep``, every thread idle.

It prints the median milliseconds an image (the sum over images of each image's median)
and the ratio to back to back, per numba thread count. Nothing is checked: the results are
those of the same call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numba

import kmquant
from threads import checked_thread_counts, rgb_images


def _busy(seconds: float) -> None:
    """Keep the calling thread busy in Python for ``seconds``."""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pass


def _encode(result: kmquant.QuantizedImage) -> None:
    result.to_image()
    kmquant.encode_png(result)


BEFORE: dict[str, Callable[[kmquant.QuantizedImage], None]] = {
    "back to back": lambda result: None,
    "after encode": _encode,
    "busy 5 ms": lambda result: _busy(0.005),
    "busy 20 ms": lambda result: _busy(0.020),
    "busy 50 ms": lambda result: _busy(0.050),
    "sleep 20 ms": lambda result: time.sleep(0.020),
    "sleep 50 ms": lambda result: time.sleep(0.050),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="*", help="images or folders (default: bundled sample)")
    parser.add_argument("-k", type=int, default=16)
    parser.add_argument("--threads", nargs="+", type=int, help="numba thread counts")
    parser.add_argument("--repeat", type=int, default=7, help="runs per timing (median)")
    args = parser.parse_args(argv)
    counts = checked_thread_counts(args.threads or [numba.config.NUMBA_NUM_THREADS])
    if counts is None:
        return 1
    images = rgb_images(args.inputs)
    print(f"{len(images)} images, K = {args.k}, medians of {args.repeat} runs")
    for count in counts:
        numba.set_num_threads(count)
        for image in images:  # warm-up: compiled kernels loaded, caches filled
            _encode(kmquant.quantize(image, args.k, rng=0))
        seconds = {name: [[] for _ in images] for name in BEFORE}
        for _ in range(args.repeat):
            for index, image in enumerate(images):
                for name, before in BEFORE.items():
                    before(kmquant.quantize(image, args.k, rng=0))
                    started = time.perf_counter()
                    kmquant.quantize(image, args.k, rng=0)
                    seconds[name][index].append(time.perf_counter() - started)
        totals = {
            name: sum(statistics.median(runs) for runs in per_image) / len(images)
            for name, per_image in seconds.items()
        }
        base = totals["back to back"]
        print(f"\n{count} numba thread{'s' if count > 1 else ''}:")
        for name, total in totals.items():
            print(f"  {name:13s} {1000 * total:6.2f} ms an image  {total / base:5.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
