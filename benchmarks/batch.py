"""Batch throughput: images per second at 1 and 2 workers, local process pool and Dask.

    python benchmarks/batch.py ../shared/corpus/photos --files 200

The folder's images are repeated (hard links) to ``--files`` inputs; each configuration
compresses them all (K = 16, default options) into a fresh output folder, and prints images/s,
the 2-worker speed-up and Dask's overhead against the local pool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from kmquant.batch import BatchOptions, collect_jobs, run_batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("-k", type=int, default=16)
    args = parser.parse_args()
    sources = sorted(Path(args.folder).glob("*.png"))
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
        rates = {}
        for name, workers, dask in (
            ("local pool", 1, None),
            ("local pool", 2, None),
            ("Dask LocalCluster", 1, "local"),
            ("Dask LocalCluster", 2, "local"),
        ):
            output = Path(scratch) / f"out-{name.replace(' ', '')}-{workers}"
            jobs = collect_jobs([str(inputs)], str(output))
            started = time.perf_counter()
            outcomes = run_batch(jobs, options, workers=workers, dask=dask)
            seconds = time.perf_counter() - started
            assert all(o.status == "done" for o in outcomes)
            rates[(name, workers)] = len(jobs) / seconds
            print(
                f"{name:18s} workers={workers}: {len(jobs)} images in {seconds:6.1f} s = "
                f"{rates[(name, workers)]:.2f} images/s",
                flush=True,
            )
    for name in ("local pool", "Dask LocalCluster"):
        print(f"{name}: 2 workers / 1 worker = {rates[(name, 2)] / rates[(name, 1)]:.2f}x")
    for workers in (1, 2):
        overhead = rates[("local pool", workers)] / rates[("Dask LocalCluster", workers)] - 1
        print(f"Dask overhead at {workers} worker(s): {100 * overhead:+.1f}% time vs local pool")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
