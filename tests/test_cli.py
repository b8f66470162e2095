"""The command line through main(argv), plus one real subprocess for stdin/stdout."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kmquant import metrics, read_image
from kmquant.__main__ import main

JSON_KEYS = {
    "n_colors",
    "psnr",
    "ssim",
    "mse",
    "input_bytes",
    "output_bytes",
    "raw_bytes",
    "ratio",
    "seconds",
    "n_iter",
    "inertia",
}


@pytest.fixture
def photo_png(tmp_path, small_photo):
    path = tmp_path / "photo.png"
    Image.fromarray(small_photo).save(path)
    return path


def image_mode(path) -> str:
    with Image.open(path) as opened:
        return opened.mode


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_compress_writes_an_indexed_png_and_prints_a_summary(
    photo_png, tmp_path, capsys, small_photo
):
    out = tmp_path / "out.png"
    assert main(["compress", str(photo_png), "-k", "8", "-o", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{photo_png} -> {out}: K=8  PSNR ")
    for part in ("SSIM", "bytes", "x)", " s"):
        assert part in line
    compressed = read_image(out)
    assert np.unique(compressed.reshape(-1, 3), axis=0).shape[0] <= 8
    assert image_mode(out) == "P"
    reported = float(line.split("PSNR ")[1].split(" dB")[0])
    assert reported == pytest.approx(metrics.psnr(small_photo, compressed), abs=0.01)


def test_default_output_name_is_beside_the_input(photo_png, capsys):
    assert main(["compress", str(photo_png), "-k", "4"]) == 0
    assert (photo_png.parent / "photo-k4.png").is_file()
    assert "photo-k4.png" in capsys.readouterr().out


def test_json_summary_has_every_key(photo_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert main(["compress", str(photo_png), "-k", "6", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= summary.keys()
    assert summary["n_colors"] == 6
    assert summary["output_bytes"] == out.stat().st_size
    assert summary["input_bytes"] == photo_png.stat().st_size
    assert summary["raw_bytes"] == 48 * 64 * 3
    assert summary["ratio"] == pytest.approx(
        summary["input_bytes"] / summary["output_bytes"], rel=1e-3
    )
    assert summary["mse"] * summary["raw_bytes"] == pytest.approx(summary["inertia"], rel=1e-5)


def test_same_seed_gives_byte_identical_files(photo_png, tmp_path, capsys):
    outputs = []
    for name in ("a.png", "b.png"):
        out = tmp_path / name
        assert main(["compress", str(photo_png), "-k", "12", "--seed", "9", "-o", str(out)]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_kmeans_options_reach_the_engine(photo_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    argv = [
        "compress",
        str(photo_png),
        "-k",
        "8",
        "-o",
        str(out),
        "--json",
        "--init",
        "random",
        "--n-init",
        "1",
        "--max-iter",
        "1",
        "--tol",
        "0",
    ]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["n_iter"] == 1


def test_stdin_to_stdout_through_the_installed_command(photo_png):
    completed = subprocess.run(
        [sys.executable, "-m", "kmquant", "compress", "-", "-k", "4", "-o", "-"],
        input=photo_png.read_bytes(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    decoded = Image.open(io.BytesIO(completed.stdout))
    assert decoded.mode == "P" and decoded.size == (64, 48)
    assert b"<stdin> -> <stdout>: K=4" in completed.stderr


def test_force_overwrites(photo_png, tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    assert main(["compress", str(photo_png), "-k", "4", "-o", str(out), "--force"]) == 0
    assert image_mode(out) == "P"


def test_output_equal_to_input_needs_force(photo_png, capsys):
    original = photo_png.read_bytes()
    assert main(["compress", str(photo_png), "-o", str(photo_png)]) == 1
    assert "already exists" in one_line_error(capsys)
    assert photo_png.read_bytes() == original


def test_demo_writes_png_and_figure(tmp_path, capsys):
    folder = tmp_path / "demo"
    assert main(["demo", "-o", str(folder), "-k", "8"]) == 0
    assert image_mode(folder / "kodim03-k8.png") == "P"
    with Image.open(folder / "comparison.png") as figure:
        assert figure.size[0] > 1000
    out = capsys.readouterr().out
    assert "kodim03.png ->" in out and "comparison figure" in out


def test_few_colours_warn_but_succeed(tmp_path, capsys):
    source = tmp_path / "flat.png"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(source)
    assert main(["compress", str(source), "-k", "16", "-o", str(tmp_path / "o.png")]) == 0
    captured = capsys.readouterr()
    assert "warning: the image has only 1 distinct colours" in captured.err
    assert "PSNR inf dB" in captured.out


# ---------------------------------------------------------------- every error: one line, exit != 0


def assert_nothing_written(folder, expected):
    leftovers = sorted(name for name in os.listdir(folder))
    assert leftovers == sorted(expected)


def test_missing_input(tmp_path, capsys):
    assert main(["compress", str(tmp_path / "none.png"), "-o", str(tmp_path / "o.png")]) == 1
    assert "no such file" in one_line_error(capsys)
    assert_nothing_written(tmp_path, [])


def test_not_an_image(tmp_path, capsys):
    source = tmp_path / "notes.png"
    source.write_text("hello")
    assert main(["compress", str(source), "-o", str(tmp_path / "o.png")]) == 1
    assert "not an image" in one_line_error(capsys)
    assert_nothing_written(tmp_path, ["notes.png"])


def test_truncated_image(tmp_path, capsys, sample_image):
    source = tmp_path / "cut.png"
    buffer = io.BytesIO()
    Image.fromarray(sample_image).save(buffer, "PNG")
    source.write_bytes(buffer.getvalue()[:40_000])
    assert main(["compress", str(source), "-o", str(tmp_path / "o.png")]) == 1
    assert "truncated or corrupt" in one_line_error(capsys)
    assert_nothing_written(tmp_path, ["cut.png"])


@pytest.mark.parametrize("value", ["0", "257", "-3", "many"])
def test_k_outside_range(photo_png, capsys, value):
    assert main(["compress", str(photo_png), "-k", value]) == 2
    assert "K must be" in one_line_error(capsys)
    assert_nothing_written(photo_png.parent, ["photo.png"])


def test_output_in_a_missing_folder(photo_png, tmp_path, capsys):
    assert main(["compress", str(photo_png), "-o", str(tmp_path / "no" / "o.png")]) == 1
    assert "does not exist" in one_line_error(capsys)
    assert_nothing_written(tmp_path, ["photo.png"])


def test_output_exists(photo_png, tmp_path, capsys):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    assert main(["compress", str(photo_png), "-o", str(out)]) == 1
    message = one_line_error(capsys)
    assert "already exists" in message and "--force" in message
    assert out.read_bytes() == b"keep me"
    assert_nothing_written(tmp_path, ["o.png", "photo.png"])


def test_unknown_command_and_option(capsys):
    assert main(["squash"]) == 2
    one_line_error(capsys)
    assert main(["compress", "x.png", "--bogus"]) == 2
    one_line_error(capsys)


def _compile_something_new() -> None:
    """Make numba compile a function no cache holds."""
    import numba

    numba.njit(lambda value: value + 1)(41)


def test_a_run_that_compiles_kernels_says_so_once_on_a_terminal(monkeypatch, capsys):
    assert main(["--version"]) == 0  # arms the notice, as every run does
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    _compile_something_new()
    _compile_something_new()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "compiling its kernels" in lines[0]
    assert main(["--version"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a pipe or a file: silent
    _compile_something_new()
    assert capsys.readouterr().err == ""
