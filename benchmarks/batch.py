"""Batch throughput: images per second at 1 and 2 workers, local process pool and Dask.

    python benchmarks/batch.py ../shared/corpus/photos --files 200 --repeat 3

The folder's images are repeated (hard links) to ``--files`` inputs; each configuration
compresses them all (K = 16, default options) into a fresh output folder, and prints images/s,
the 2-worker speed-up and Dask's overhead against the local pool. With ``--repeat N`` the four
configurations run N times in turn (so drift on the machine touches them alike) and the figures
are medians; start-up (pool or cluster) is inside every timed run. ``--stages`` first prints
where one worker's time goes: wall and CPU milliseconds per photo for each step of a job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kmquant.batch import BatchOptions, collect_jobs, run_batch


def print_stage_times(sources: list[Path], k: int) -> None:
    """Wall and CPU (all threads) milliseconds per image for each step of a batch job."""
    import warnings

    from kmquant import _kernels
    from kmquant.batch import _compress_pixels
    from kmquant.io import decode_image, encode_png
    from kmquant.metrics import quality_report

    _kernels.let_idle_threads_sleep()
    options = BatchOptions(n_colors=k)
    totals: dict[str, list[float]] = {}

    def timed(stage: str, step: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        value = step(*args, **kwargs)
        total = totals.setdefault(stage, [0.0, 0.0])
        total[0] += time.perf_counter() - wall
        total[1] += time.process_time() - cpu
        return value

    warnings.simplefilter("ignore")
    for warm_up in (True, False):
        totals.clear()
        for source in sources[:2] if warm_up else sources:
            data = timed("read", source.read_bytes)
            image = timed("decode", decode_image, data, str(source))
            result = timed("quantize", _compress_pixels, image, options)
            timed("encode", encode_png, result, optimize=options.optimize)
            quantized = result.to_image()
            timed("PSNR", quality_report, image, quantized, with_ssim=False, with_delta_e=False)
    n = len(sources)
    wall = sum(value[0] for value in totals.values()) / n * 1e3
    cpu = sum(value[1] for value in totals.values()) / n * 1e3
    parts = ", ".join(
        f"{key} {w / n * 1e3:.0f}/{c / n * 1e3:.0f}" for key, (w, c) in totals.items()
    )
    print(f"one job, ms per image (wall/CPU): {parts}; all {wall:.0f}/{cpu:.0f}")
    print(
        f"2 workers can reach at most 2 x {wall:.0f} / {cpu:.0f} = {2 * wall / cpu:.2f}x 1 worker"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("-k", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=1, help="rounds; medians are reported")
    parser.add_argument("--stages", action="store_true", help="first time each step of a job")
    args = parser.parse_args()
    sources = sorted(Path(args.folder).glob("*.png"))
    if args.stages:
        print_stage_times(sources, args.k)
    with tempfile.TemporaryDirectory() as scratch:
        inputs = Path(scratch) / "in"
        inputs.mkdir()
        for index in range(args.files):
            source = sources[index % len(sources)]
            target = inputs / f"{index:04d}-{source.name}"
            try:
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        options = BatchOptions(n_colors=args.k)
        runs: dict[tuple[str, int], list[float]] = {}
        for round_ in range(args.repeat):
            for name, workers, dask in (
                ("local pool", 1, None),
                ("local pool", 2, None),
                ("Dask LocalCluster", 1, "local"),
                ("Dask LocalCluster", 2, "local"),
            ):
                output = Path(scratch) / f"out-{name.replace(' ', '')}-{workers}-{round_}"
                jobs = collect_jobs([str(inputs)], str(output))
                started = time.perf_counter()
                outcomes = run_batch(jobs, options, workers=workers, dask=dask)
                seconds = time.perf_counter() - started
                assert all(o.status == "done" for o in outcomes)
                runs.setdefault((name, workers), []).append(len(jobs) / seconds)
                print(
                    f"{name:18s} workers={workers}: {len(jobs)} images in {seconds:6.1f} s = "
                    f"{len(jobs) / seconds:.2f} images/s",
                    flush=True,
                )
                shutil.rmtree(output)
    rates = {key: statistics.median(values) for key, values in runs.items()}
    if args.repeat > 1:
        for (name, workers), rate in rates.items():
            print(f"median of {args.repeat}: {name:18s} workers={workers}: {rate:.2f} images/s")
    for name in ("local pool", "Dask LocalCluster"):
        print(f"{name}: 2 workers / 1 worker = {rates[(name, 2)] / rates[(name, 1)]:.2f}x")
    for workers in (1, 2):
        overhead = rates[("local pool", workers)] / rates[("Dask LocalCluster", workers)] - 1
        print(f"Dask overhead at {workers} worker(s): {100 * overhead:+.1f}% time vs local pool")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
