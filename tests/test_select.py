"""Choosing K: knee detection, quality targets, size budget, and their CLI."""

from __future__ import annotations

import json

import numba
import numpy as np
import pytest
from PIL import Image

from kmquant import QualityTooLowError, metrics, quantize
from kmquant.__main__ import main
from kmquant.select import (
    _search_smallest,
    _Tries,
    best_within_bytes,
    elbow_curve,
    fewest_colors,
    find_knee,
)


@pytest.mark.parametrize("knee", [3, 8, 20])
def test_knee_of_a_piecewise_linear_elbow(knee):
    # Steep straight drop to the knee, then nearly flat: the corner is the knee.
    x = np.arange(1, 41)
    y = np.where(x <= knee, 1000 - (1000 - 100) * (x - 1) / (knee - 1), 100 - (x - knee))
    assert x[find_knee(x, y)] == knee


def test_knee_of_a_hyperbola_is_where_the_slope_is_minus_one_when_scaled():
    # y = 1/x on [1, 10]: Kneedle's knee maximises (1 - y_n) - x_n; worked out numerically.
    x = np.linspace(1, 10, 901)
    y = 1 / x
    y_n = (y - y.min()) / (y.max() - y.min())
    x_n = (x - 1) / 9
    # d/dx [(1 - y_n) - x_n] = 0  <=>  1/x^2 / (1 - 0.1) = 1/9  <=>  x = sqrt(10)
    assert x[find_knee(x, y)] == pytest.approx(np.sqrt(10), abs=0.011)
    assert np.argmax((1 - y_n) - x_n) == find_knee(x, y)


def test_search_smallest_matches_a_linear_scan():
    for threshold in range(1, 40):
        assert _search_smallest(lambda k, t=threshold: k >= t, 40) == threshold
    assert _search_smallest(lambda k: False, 40) is None


def test_a_search_keeps_only_the_images_that_can_be_its_answer(small_photo):
    # Each try's figures stay; its image only while it is the best that passes (or the
    # fallback), and any other is quantized again, the same.
    made = []

    def result_for(k):
        made.append(k)
        return quantize(small_photo, k, rng=0)

    tries = _Tries(
        result_for, lambda r: r.n_colors, lambda n: n >= 10, prefer_smaller=True, fallback=40
    )
    tried = []
    for k in (40, 1, 2, 4, 8, 16, 12, 10, 9):
        tries.figures(k)
        tried.append(k)
        smallest_passing = min(j for j in tried if j >= 10)
        assert set(tries.kept) == {40, smallest_passing}
    assert set(tries.kept) == {40, 10}
    assert tries.passes(10) and not tries.passes(9)
    np.testing.assert_array_equal(tries.result(10).labels, quantize(small_photo, 10, rng=0).labels)
    assert made.count(10) == 1  # kept, not made again
    np.testing.assert_array_equal(tries.result(9).labels, quantize(small_photo, 9, rng=0).labels)
    assert made.count(9) == 2  # dropped, so made again


def test_fewest_colors_equals_an_exhaustive_sweep(small_photo):
    psnrs = {
        k: metrics.psnr(small_photo, quantize(small_photo, k, rng=0).to_image())
        for k in range(1, 41)
    }
    for target in (22.0, 26.0, 30.0, 33.0):
        expected = min(k for k, value in psnrs.items() if value >= target)
        choice = fewest_colors(small_photo, min_psnr=target, max_colors=40, rng=0)
        assert choice.met and choice.n_colors == expected
        assert choice.values["psnr"] >= target
        assert f"K={expected}" in choice.reason


def test_several_targets_must_all_hold(small_photo):
    choice = fewest_colors(small_photo, min_psnr=25, min_ssim=0.9, max_delta_e=3.0, rng=0)
    assert choice.values["psnr"] >= 25
    assert choice.values["ssim"] >= 0.9
    assert choice.values["delta_e"] <= 3.0
    smaller = quantize(small_photo, choice.n_colors - 1, rng=0).to_image()
    assert (
        metrics.psnr(small_photo, smaller) < 25
        or metrics.ssim(small_photo, smaller) < 0.9
        or metrics.delta_e(small_photo, smaller).mean > 3.0
    )


def test_unreachable_target_raises_or_gives_best_effort(small_photo):
    with pytest.raises(QualityTooLowError, match="8 colours cannot reach PSNR >= 60 dB"):
        fewest_colors(small_photo, min_psnr=60, max_colors=8, rng=0)
    choice = fewest_colors(small_photo, min_psnr=60, max_colors=8, best_effort=True, rng=0)
    assert not choice.met and choice.n_colors == 8
    with pytest.raises(ValueError, match="at least one of"):
        fewest_colors(small_photo)


def test_best_within_bytes_is_the_largest_k_that_fits(small_photo):
    from kmquant import encode_png

    sizes = {k: len(encode_png(quantize(small_photo, k, rng=0))) for k in range(1, 33)}
    budget = sizes[12] + 1
    expected = max(k for k, size in sizes.items() if size <= budget)
    choice = best_within_bytes(small_photo, budget, max_colors=32, rng=0)
    assert choice.n_colors == expected
    assert choice.values["bytes"] <= budget
    with pytest.raises(QualityTooLowError, match="no palette fits"):
        best_within_bytes(small_photo, 10)


def test_elbow_curve_is_exact_and_decreasing(sample_image):
    image = sample_image[::2, ::2]
    threads = numba.get_num_threads()
    curve = elbow_curve(image, range(2, 21), rng=0)
    # It fits with one numba thread fewer while PNGs encode on another; it gives it back.
    assert numba.get_num_threads() == threads
    assert curve.n_colors == list(range(2, 21))
    inertia = np.array(curve.inertia)
    assert np.all(np.diff(inertia) < 0)
    assert 3 <= curve.knee <= 12
    point = curve.points[5]
    assert point.mse == pytest.approx(point.inertia / image.size)
    assert all(p.n_bytes > 0 for p in curve.points)


def test_elbow_sweep_encodes_on_both_threads_and_keeps_the_order(sample_image, monkeypatch):
    # With the encoding thread behind (a slow encoder), the fitting thread encodes images
    # too; every K still gets its own PNG's size, in order.
    import threading
    import time

    from kmquant import select

    image = sample_image[::2, ::2]
    alone = elbow_curve(image, range(2, 21), rng=0)
    threads = set()
    encode_png = select.encode_png

    def slow_encode_png(result, *, optimize):
        time.sleep(0.01)
        threads.add(threading.get_ident())
        return encode_png(result, optimize=optimize)

    monkeypatch.setattr(select, "encode_png", slow_encode_png)
    curve = elbow_curve(image, range(2, 21), rng=0)
    assert curve == alone
    assert len(threads) == 2 and threading.get_ident() in threads


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def photo_png(tmp_path, small_photo):
    path = tmp_path / "photo.png"
    Image.fromarray(small_photo).save(path)
    return path


def test_cli_min_psnr_reports_the_choice(photo_png, tmp_path, capsys):
    out = tmp_path / "q.png"
    assert main(["compress", str(photo_png), "--min-psnr", "30", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["psnr"] >= 30
    assert summary["chosen_by"].startswith("fewest colours for PSNR >= 30 dB")
    assert f"K={summary['n_colors']}" in summary["chosen_by"]


def test_cli_unreachable_quality_exits_99_and_writes_nothing(photo_png, tmp_path, capsys):
    out = tmp_path / "q.png"
    assert main(["compress", str(photo_png), "--min-psnr", "70", "-k", "8", "-o", str(out)]) == 99
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cannot reach PSNR >= 70 dB" in error
    assert not out.exists()
    assert (
        main(
            [
                "compress",
                str(photo_png),
                "--min-psnr",
                "70",
                "-k",
                "8",
                "-o",
                str(out),
                "--best-effort",
            ]
        )
        == 0
    )
    assert out.exists()
    assert "warning: best effort" in capsys.readouterr().err


def test_cli_max_bytes(photo_png, tmp_path, capsys):
    out = tmp_path / "b.png"
    assert main(["compress", str(photo_png), "--max-bytes", "1500", "-o", str(out)]) == 0
    assert out.stat().st_size <= 1500
    assert "most colours within 1,500 bytes" in capsys.readouterr().out


def test_cli_elbow_prints_table_and_plot(photo_png, tmp_path, capsys):
    plot = tmp_path / "elbow.png"
    assert main(["elbow", str(photo_png), "--k-range", "2:12", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "<- knee" in out and "suggested K:" in out
    with Image.open(plot) as figure:
        assert figure.size[0] > 500
    assert main(["elbow", str(photo_png), "--k-range", "2:6", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [p["n_colors"] for p in document["points"]] == [2, 3, 4, 5, 6]
    assert main(["elbow", str(photo_png), "--k-range", "9:3"]) == 2
