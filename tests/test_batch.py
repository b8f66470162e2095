"""Batch compression: trees, failures, Dask parity, interruption and resume."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kmquant import read_image
from kmquant.__main__ import main
from kmquant.batch import BatchOptions, collect_jobs, run_batch


@pytest.fixture
def mixed_folder(tmp_path, sample_image):
    """Good images in a tree, plus corrupt, empty and unreadable (dangling link) files."""
    folder = tmp_path / "in"
    (folder / "sub" / "deeper").mkdir(parents=True)
    crops = {
        "a.png": sample_image[:96, :128],
        "sub/b.png": sample_image[100:196, 300:428],
        "sub/deeper/c.jpg": sample_image[300:396, 500:628],
    }
    for name, pixels in crops.items():
        Image.fromarray(pixels).save(folder / name, quality=95)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "sub" / "empty.png").write_bytes(b"")
    os.symlink(tmp_path / "nowhere.png", folder / "sub" / "unreadable.png")
    (folder / "notes.txt").write_text("not an image, and not an image suffix: ignored")
    return folder


def visible_files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


def test_batch_keeps_the_tree_and_reports_every_failure(mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(mixed_folder), "-o", str(out), "-k", "8", "--workers", "2"]) == 1
    written = visible_files(out)
    assert sorted(written) == ["a.png", "sub/b.png", "sub/deeper/c.png"]
    for data in written.values():
        image = read_image(data)
        assert len(np.unique(image.reshape(-1, 3), axis=0)) <= 8
    captured = capsys.readouterr()
    summary = captured.out
    assert "6 files: 3 done, 0 skipped, 3 failed" in summary
    for name in ("corrupt.png", "empty.png", "unreadable.png"):
        assert any(name in line and line.startswith("failed:") for line in summary.splitlines())
    assert "[6/6]" in captured.err  # plain progress lines when not a terminal
    # Inputs untouched.
    assert (mixed_folder / "notes.txt").read_text().startswith("not an image")


def test_globs_and_files_and_the_relative_tree(mixed_folder, tmp_path):
    jobs = collect_jobs(
        [str(mixed_folder / "sub" / "**" / "*.jpg"), str(mixed_folder / "a.png")],
        str(tmp_path / "out"),
    )
    assert [job.relative for job in jobs] == ["deeper/c.png", "a.png"]
    with pytest.raises(Exception, match="would overwrite its input"):
        collect_jobs([str(mixed_folder / "a.png")], str(mixed_folder))


def test_dask_local_cluster_matches_the_local_pool_byte_for_byte(mixed_folder, tmp_path):
    from distributed import Client, LocalCluster

    jobs_local = collect_jobs([str(mixed_folder)], str(tmp_path / "local"))
    options = BatchOptions(n_colors=12, seed=4)
    local = run_batch(jobs_local, options, workers=1)

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster),
    ):
        jobs_dask = collect_jobs([str(mixed_folder)], str(tmp_path / "dask"))
        remote = run_batch(jobs_dask, options, workers=2, dask=cluster.scheduler_address)
    assert [o.status for o in local] == [o.status for o in remote]
    assert sum(o.status == "failed" for o in remote) == 3
    assert visible_files(tmp_path / "local") == visible_files(tmp_path / "dask")


def test_an_animation_is_compressed_from_its_first_frame_with_a_note(tmp_path, capsys, small_photo):
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = Image.fromarray(small_photo), Image.fromarray(255 - small_photo)
    first.save(folder / "moving.gif", save_all=True, append_images=[second])
    out = tmp_path / "out"
    assert main(["batch", str(folder), "-o", str(out), "-k", "8", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "1 files: 1 done" in captured.out
    assert (
        "done moving.png:" in captured.err
        and "has 2 frames; only the first is read" in captured.err
    )
    with Image.open(folder / "moving.gif") as animation:
        first_frame = np.asarray(animation.convert("RGB"))
    written = read_image(out / "moving.png")
    # Eight colours of the first frame, not of the second (its negative).
    assert np.abs(written.astype(int) - first_frame).mean() < 20


def test_skip_if_larger_writes_nothing_when_it_does_not_pay(tmp_path, capsys, small_photo):
    from kmquant import encode_png, quantize

    folder = tmp_path / "in"
    folder.mkdir()
    # Already a 4-colour kmquant PNG: compressing it again cannot make it smaller.
    (folder / "done.png").write_bytes(encode_png(quantize(small_photo, 4, rng=0)))
    out = tmp_path / "out"
    assert main(["batch", str(folder), "-o", str(out), "--skip-if-larger", "--workers", "1"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert visible_files(out) == {}


def test_shared_palette_gives_every_image_the_same_colours(mixed_folder, tmp_path, capsys):
    out = tmp_path / "out"
    main(
        [
            "batch",
            str(mixed_folder),
            "-o",
            str(out),
            "-k",
            "6",
            "--shared-palette",
            "--workers",
            "1",
        ]
    )
    palettes = set()
    stored = set()
    for data in visible_files(out).values():
        image = read_image(data)
        palettes |= {tuple(c) for c in np.unique(image.reshape(-1, 3), axis=0)}
        with Image.open(io.BytesIO(data)) as png:
            stored.add(tuple(png.getpalette()))
    assert len(palettes) <= 6
    # Every file stores the whole shared palette, in the same order, used entries or not.
    assert len(stored) == 1 and len(stored.pop()) == 6 * 3


@pytest.mark.slow
def test_an_interrupted_run_leaves_no_partial_output_and_resumes(tmp_path, sample_image):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(24):
        top = (index * 13) % 300
        Image.fromarray(sample_image[top : top + 200, :300]).save(folder / f"img{index:02d}.png")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "kmquant",
        "batch",
        str(folder),
        "-o",
        str(out),
        "--workers",
        "2",
        "--optimize",
        "3",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(visible_files(out) if out.exists() else {}) < 3:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, workers included, mid-way
    process.wait(timeout=30)
    first = visible_files(out)
    assert 3 <= len(first) < 24
    for data in first.values():  # whatever has its final name is complete
        assert read_image(data).shape == (200, 300, 3)

    assert (
        main(
            [
                "batch",
                str(folder),
                "-o",
                str(out),
                "--workers",
                "2",
                "--optimize",
                "3",
                "--skip-existing",
            ]
        )
        == 0
    )
    final = visible_files(out)
    assert len(final) == 24
    assert {name: final[name] for name in first} == first  # kept, not redone
    assert not list(out.rglob("*.tmp"))


def test_fsspec_urls_in_and_out_match_a_local_run(mixed_folder, tmp_path):
    # Workers read and write through fsspec URLs (here its in-memory filesystem, so one
    # process): same files, same bytes as with plain paths, and the bad ones still fail.
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    root = f"/kmquant-test-{os.getpid()}"
    for path in sorted(mixed_folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            memory.pipe(f"{root}/in/{path.relative_to(mixed_folder)}", path.read_bytes())
    try:
        options = BatchOptions(n_colors=8)
        local = run_batch(collect_jobs([str(mixed_folder)], str(tmp_path / "out")), options)
        remote_jobs = collect_jobs([f"memory://{root}/in"], f"memory://{root}/out")
        remote = run_batch(remote_jobs, options)
        done = {o.job.relative for o in remote if o.status == "done"}
        assert (
            done
            == {o.job.relative for o in local if o.status == "done"}
            == {
                "a.png",
                "sub/b.png",
                "sub/deeper/c.png",
            }
        )
        assert {o.job.relative for o in remote if o.status == "failed"} == {
            "corrupt.png",
            "sub/empty.png",
        }
        for relative in done:
            assert (
                memory.cat(f"{root}/out/{relative}") == (tmp_path / "out" / relative).read_bytes()
            )
        # --skip-existing sees the outputs already there.
        again = run_batch(remote_jobs, dataclasses.replace(options, skip_existing=True))
        assert {o.job.relative for o in again if o.status == "skipped"} == done
    finally:
        memory.rm(root, recursive=True)


def test_local_cluster_workers_keep_glibc_malloc_thresholds(monkeypatch):
    """Dask's MALLOC_TRIM_THRESHOLD_ would make every large array a fresh mmap in our workers."""
    from distributed import Client

    from kmquant.batch import _local_cluster_settings, start_local_cluster

    # Starting any Dask nanny copies its worker variables into this process's environment.
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with start_local_cluster(1) as cluster, Client(cluster) as client:
        # A lambda travels by value and reads the worker's environment (os.environ.get, a bound
        # method, would carry this process's environment with it).
        seen = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
    assert list(seen.values()) == [None]
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert "MALLOC_TRIM_THRESHOLD_" not in str(_local_cluster_settings())  # the user's is kept


def test_of_the_workers_that_compile_kernels_only_the_first_says_so(monkeypatch, capsys):
    import multiprocessing
    import signal
    import sys

    import numba

    from kmquant import batch

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the worker's SIGTERM handler
    monkeypatch.setattr(batch, "_limit_numba_threads", lambda threads: None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    said = multiprocessing.get_context("spawn").Value("b", 0)
    for _worker in range(2):  # two workers' setups sharing the flag, each then compiling
        batch._worker_setup(1, said)
        numba.njit(lambda value: value + 1)(41)
    assert said.value == 1
    assert capsys.readouterr().err.count("compiling its kernels") == 1
