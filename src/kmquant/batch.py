"""Many images: a folder tree in, the same tree of indexed PNGs out.

Work runs in separate processes (the GIL would serialise threads): a local process pool, or
the workers of a Dask distributed cluster (``LocalCluster`` or an existing scheduler). Each
image is one task; one bad file never stops the others, outputs are written atomically and
inputs are never overwritten. The same seed gives the same bytes whichever runs the tasks.

Paths may be local (or on a share every worker mounts) or fsspec URLs (``s3://...``) where
fsspec and the matching backend are installed on every worker.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _kernels
from ._exceptions import KmquantError
from .histogram import ColorHistogram, color_histogram
from .io import atomic_write_bytes, decode_first_frame, encode_png, frames_left_out, read_bytes
from .metrics import indexed_quality_report
from .quantize import QuantizedImage, prepare_pixels, quantize, quantize_histogram, remap_image

__all__ = [
    "BatchJob",
    "BatchOptions",
    "BatchOutcome",
    "collect_jobs",
    "compress_job",
    "remove_stale_temporaries",
    "run_batch",
    "shared_palette",
]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm"}
)


@dataclass(frozen=True)
class BatchJob:
    """One image to compress: where it is, where its PNG goes, and its name in the tree."""

    source: str
    target: str
    relative: str


@dataclass(frozen=True)
class BatchOptions:
    """What every job does (picklable, so it travels to process and Dask workers)."""

    n_colors: int = 16
    seed: int = 0
    speed: str = "default"
    space: str = "rgb"
    dither: str = "none"
    dither_strength: float = 1.0
    optimize: int = 2
    skip_existing: bool = False
    skip_if_larger: bool = False
    palette: np.ndarray | None = field(default=None, compare=False)
    numba_threads: int | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """How one job ended: ``status`` is "done", "skipped" or "failed"; ``reason`` says why.

    A "done" job's ``reason`` is empty, or notes what was left out of its input (an
    animation's frames after the first).
    """

    job: BatchJob
    status: str
    reason: str = ""
    input_bytes: int = 0
    output_bytes: int = 0
    psnr: float | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------------- collecting


def _is_url(path: str) -> bool:
    return "://" in path


def _expand(item: str) -> list[tuple[str, str]]:
    """(file, relative name) pairs for a file, a folder (recursive) or a glob pattern."""
    if _is_url(item):
        import fsspec

        filesystem, _, (root,) = fsspec.get_fs_token_paths(item)
        protocol = item.split("://", 1)[0]
        if filesystem.isdir(root):
            found = [p for p in filesystem.find(root) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
            return [(f"{protocol}://{p}", os.path.relpath(p, root)) for p in sorted(found)]
        return [(item, Path(root).name)]
    path = Path(item)
    if path.is_dir():
        found = [
            p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir()
        ]
        return [(str(p), str(p.relative_to(path))) for p in sorted(found)]
    if glob.has_magic(item):
        base = Path(item.split("*")[0].split("?")[0].split("[")[0])
        base = base if item.endswith(os.sep) or base.is_dir() else base.parent
        matches = sorted(glob.glob(item, recursive=True))
        return [(m, os.path.relpath(m, base)) for m in matches if not Path(m).is_dir()]
    return [(item, path.name)]


def collect_jobs(inputs: Iterable[str], output_dir: str) -> list[BatchJob]:
    """Every image named by ``inputs`` (files, folders searched recursively, globs, URLs),
    each with its output path: the same relative tree under ``output_dir``, suffix ``.png``.

    Files named explicitly are taken whatever their suffix (a bad one fails as a job);
    folders contribute only files with an image suffix.

    Raises
    ------
    KmquantError
        If two inputs would write the same output, or an output would overwrite its input.
    """
    jobs: list[BatchJob] = []
    seen: dict[str, str] = {}
    for item in inputs:
        for source, relative in _expand(item):
            relative_png = str(Path(relative).with_suffix(".png"))
            target = (
                f"{output_dir.rstrip('/')}/{relative_png}"
                if _is_url(output_dir)
                else str(Path(output_dir) / relative_png)
            )
            if target in seen and seen[target] != source:
                raise KmquantError(
                    f"'{seen[target]}' and '{source}' would both be written to '{target}'"
                )
            if not _is_url(source) and Path(target).resolve() == Path(source).resolve():
                raise KmquantError(f"output '{target}' would overwrite its input; choose -o")
            seen[target] = source
            jobs.append(BatchJob(source=source, target=target, relative=relative_png))
    return jobs


def remove_stale_temporaries(output_dir: str) -> int:
    """Delete temporary files an interrupted run left in ``output_dir``; return the count.

    Atomic writes go through ``.NAME.XXXXXXXX.tmp`` beside the target and only then get the
    final name, so a killed run can leave these, never a half-written output.
    """
    if _is_url(output_dir) or not Path(output_dir).is_dir():
        return 0
    removed = 0
    for path in Path(output_dir).rglob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# ------------------------------------------------------------------------------- one job


def _read(path: str) -> bytes:
    if _is_url(path):
        import fsspec

        with fsspec.open(path, "rb") as stream:
            return stream.read()
    return read_bytes(path)


def _exists(path: str) -> bool:
    if _is_url(path):
        import fsspec

        filesystem, _, (target,) = fsspec.get_fs_token_paths(path)
        return bool(filesystem.exists(target))
    return Path(path).exists()


def _write(path: str, data: bytes) -> None:
    if _is_url(path):
        import fsspec

        with fsspec.open(path, "wb", auto_mkdir=True) as stream:
            stream.write(data)
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Never clobber: a target that appeared meanwhile was written by someone else.
    atomic_write_bytes(path, data, overwrite=False)


def _compress_pixels(image: np.ndarray, options: BatchOptions) -> QuantizedImage:
    if options.palette is not None:
        return remap_image(
            image,
            _palette_for(image, options.palette),
            space=options.space,
            dither=options.dither,
            dither_strength=options.dither_strength,
        )
    return quantize(
        image,
        options.n_colors,
        speed=options.speed,
        space=options.space,
        dither=options.dither,
        dither_strength=options.dither_strength,
        rng=options.seed,
    )


def _palette_for(image: np.ndarray, palette: np.ndarray) -> np.ndarray:
    if image.shape[2] == 3 and palette.shape[1] == 4:
        return palette[:, :3]  # an opaque image of a mixed set: its colours are all opaque
    return palette


def compress_job(job: BatchJob, options: BatchOptions) -> BatchOutcome:
    """Compress one image; never raises for a bad input (the outcome says what failed)."""
    started = time.perf_counter()
    if options.numba_threads is not None:
        _limit_numba_threads(options.numba_threads)
    if options.skip_existing and _exists(job.target):
        return BatchOutcome(job, "skipped", "output exists")
    try:
        data = _read(job.source)
        image, n_frames = decode_first_frame(data, job.source)
        note = frames_left_out(f"'{job.source}'", n_frames) if n_frames > 1 else ""
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = _compress_pixels(image, options)
        png = encode_png(result, optimize=options.optimize)
        if options.skip_if_larger and len(png) >= len(data):
            return BatchOutcome(
                job,
                "skipped",
                f"not smaller ({len(png):,} >= {len(data):,} bytes)",
                len(data),
                len(data),
                None,
                time.perf_counter() - started,
            )
        _write(job.target, png)
        peak = indexed_quality_report(
            image, result.labels, result.palette, with_ssim=False, with_delta_e=False
        )["psnr"]
    except KmquantError as error:
        return BatchOutcome(job, "failed", str(error), seconds=time.perf_counter() - started)
    except Exception as error:
        return BatchOutcome(
            job, "failed", f"{type(error).__name__}: {error}", seconds=time.perf_counter() - started
        )
    return BatchOutcome(job, "done", note, len(data), len(png), peak, time.perf_counter() - started)


# ------------------------------------------------------------------------------- shared palette


def _merge(histograms: list[ColorHistogram]) -> ColorHistogram:
    n_channels = max(h.colors.shape[1] for h in histograms)
    colors, counts = [], []
    for histogram in histograms:
        block = histogram.colors
        if block.shape[1] < n_channels:
            block = np.column_stack([block, np.full(len(block), 255, np.uint8)])
        colors.append(block)
        counts.append(histogram.counts)
    merged = color_histogram(np.concatenate(colors))
    summed = np.bincount(merged.inverse, weights=np.concatenate(counts)).astype(np.int64)
    # One "pixel" per distinct colour: the counts carry the weights.
    return ColorHistogram(
        colors=merged.colors, counts=summed, inverse=np.arange(merged.n_colors, dtype=np.int32)
    )


def shared_palette(jobs: list[BatchJob], options: BatchOptions) -> np.ndarray:
    """One palette for every image: k-means on the sum of their colour histograms.

    Unreadable images are left out here (their jobs fail later with the reason).
    """
    histograms = []
    for job in jobs:
        try:
            first_frame, _ = decode_first_frame(_read(job.source), job.source)
            pixels, _ = prepare_pixels(first_frame)
        except KmquantError:
            continue
        histograms.append(color_histogram(pixels))
    if not histograms:
        raise KmquantError("no readable image to build a shared palette from")
    merged = _merge(histograms)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = quantize_histogram(
            merged,
            (1, merged.n_colors),
            options.n_colors,
            speed=options.speed,
            space=options.space,
            rng=options.seed,
        )
    return result.palette


# ------------------------------------------------------------------------------- running


def _limit_numba_threads(threads: int) -> None:
    """Numba threads for kernels launched from this thread (numba's setting is per thread)."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]


def _worker_setup(threads: int, compiling_said: Any = None) -> None:
    """In each worker process: share the cores, clean up on SIGTERM, and let the first
    worker that compiles kernels say so (``compiling_said``: a shared flag, or None)."""
    _limit_numba_threads(threads)
    if compiling_said is not None:

        def say_compiling_once() -> None:
            with compiling_said.get_lock():
                if compiling_said.value:
                    return
                compiling_said.value = 1
            _kernels.say_compiling()

        _kernels.when_compiling(say_compiling_once)
    # oxipng's thread pool (rayon) is sized once, on first use, from this variable. It gets
    # every core, whatever the number of workers: its threads sleep when idle, and a worker
    # encoding while another runs serial code fills the idle core (measured: 2 workers ran
    # 7.3 images/s with 2 oxipng threads each, 6.5 with 1). A value the user set is kept.
    os.environ.setdefault("RAYON_NUM_THREADS", str(os.cpu_count() or 1))

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _run_local(jobs: list[BatchJob], options: BatchOptions, workers: int) -> Iterator[BatchOutcome]:
    if workers <= 1:
        _worker_setup(_threads_per_worker(1))
        for job in jobs:
            yield compress_job(job, options)
        return
    import multiprocessing

    # spawn, not fork: forking a process whose OpenMP threads have run can deadlock.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_worker_setup,
        initargs=(_threads_per_worker(workers), context.Value("b", 0)),
    ) as pool:
        pending = set()
        queue = iter(jobs)
        try:
            for job in queue:
                pending.add(pool.submit(compress_job, job, options))
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    yield from (future.result() for future in done)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        except BaseException:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def _local_cluster_settings() -> dict[str, Any]:
    """Dask settings for the workers of our own LocalCluster.

    - glibc's own malloc thresholds. Dask's nanny starts workers with
      ``MALLOC_TRIM_THRESHOLD_=65536``, so that long-lived workers hand freed memory back to
      the system. Setting it turns off glibc's sliding mmap threshold: every array over
      128 KiB is then a fresh mapping, page-faulted and zeroed on each image. The
      LocalCluster lives for one batch, so its workers keep glibc's default. A value the user
      set, in the environment or in Dask's configuration, is kept.
    - No statistical profiler: it samples every worker's stack 100 times a second for a
      dashboard this cluster does not start.

    Together they took Dask's overhead against the local pool from +24% / +15% to -0.7% /
    +9.3% at 1 / 2 workers (benchmarks/batch.py, README).
    """
    import dask

    settings: dict[str, Any] = {"distributed.worker.profile.enabled": False}
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ and dask.config.get(_MALLOC_TRIM, None) == 65536:
        settings[_MALLOC_TRIM] = None
    return settings


def start_local_cluster(workers: int) -> Any:
    """A Dask ``LocalCluster`` of ``workers`` one-thread worker processes, without a dashboard."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(_local_cluster_settings()):
        return LocalCluster(
            n_workers=max(1, workers), threads_per_worker=1, processes=True, dashboard_address=None
        )


def _run_dask(
    jobs: list[BatchJob], options: BatchOptions, workers: int, address: str
) -> Iterator[BatchOutcome]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise KmquantError("--dask needs Dask distributed: pip install 'kmquant[dask]'") from None
    cluster = None
    if address == "local":
        cluster = start_local_cluster(workers)
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout=30)
        except OSError as error:
            raise KmquantError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    try:
        client.run(_worker_setup, _threads_per_worker(max(1, workers)))
        futures = client.map(compress_job, jobs, options=options, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_batch(
    jobs: list[BatchJob],
    options: BatchOptions,
    *,
    workers: int = 1,
    dask: str | None = None,
    on_outcome: Callable[[BatchOutcome], None] | None = None,
) -> list[BatchOutcome]:
    """Run every job, on a local process pool or a Dask cluster; outcomes in job order.

    Parameters
    ----------
    jobs : list of BatchJob
    options : BatchOptions
    workers : int, optional
        Processes (local pool or LocalCluster workers). Numba threads per process are set to
        cores // workers, so the machine is never oversubscribed.
    dask : str, optional
        "local" for a LocalCluster, or a scheduler address such as ``tcp://host:8786``.
    on_outcome : callable, optional
        Called with each outcome as it arrives (progress display).
    """
    if options.palette is None and options.n_colors < 1:
        raise ValueError(f"n_colors must be >= 1, got {options.n_colors}")
    # Each task sets its own numba threads: numba's setting is per thread, and Dask runs tasks
    # on executor threads, where a worker-wide setting does not reach. cores // workers here;
    # one per task on a remote cluster, whose workers run one task per process (README).
    _kernels.let_idle_threads_sleep()
    threads = 1 if dask and dask != "local" else _threads_per_worker(workers)
    options = dataclasses.replace(options, numba_threads=threads)
    stream = _run_dask(jobs, options, workers, dask) if dask else _run_local(jobs, options, workers)
    finished: dict[BatchJob, BatchOutcome] = {}
    for outcome in stream:
        finished[outcome.job] = outcome
        if on_outcome is not None:
            on_outcome(outcome)
    return [finished[job] for job in jobs]
