"""Figures render on Agg without warnings (pytest turns warnings into errors)."""

import matplotlib

matplotlib.use("Agg")

import io

import numpy as np
from PIL import Image

from kmquant import elbow_curve, metrics, quantize
from kmquant.__main__ import main
from kmquant.figures import (
    comparison_figure,
    elbow_figure,
    figure_png_bytes,
    palette_swatch,
    report_figure,
)


def test_swatch_lays_out_cells():
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    swatch = palette_swatch(palette, cell=2)
    assert swatch.shape == (4, 4, 3)
    assert swatch[0, 0].tolist() == [255, 0, 0]
    assert swatch[3, 3].tolist() == [255, 255, 255]  # filler cell


def test_comparison_figure_has_three_titled_panels(small_photo):
    result = quantize(small_photo, 8, rng=0)
    figure = comparison_figure(small_photo, result, metrics={"psnr": 30.0, "ssim": 0.9})
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["original", "compressed: 8 colours", "palette"]
    assert "PSNR 30.00 dB" in figure._suptitle.get_text()
    with Image.open(io.BytesIO(figure_png_bytes(figure))) as rendered:
        assert rendered.size[0] > 1000


def test_report_figure_has_a_row_per_k(small_photo):
    rows = []
    for k in (4, 16):
        result = quantize(small_photo, k, rng=0)
        rows.append((result, {"psnr": metrics.psnr(small_photo, result.to_image())}))
    figure = report_figure(small_photo, rows)
    titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
    assert titles.count("original") == 2
    assert "per-pixel error (RGB distance)" in titles
    assert any(axes.get_xlabel() == "share of pixels (%)" for axes in figure.axes)
    assert len(figure_png_bytes(figure, dpi=40)) > 1000


def test_elbow_figure_marks_the_knee(small_photo):
    curve = elbow_curve(small_photo, range(2, 10), rng=0)
    figure = elbow_figure(curve)
    axes = figure.axes[0]
    assert axes.get_xlabel() == "number of colours K"
    labels = axes.get_legend_handles_labels()[1]
    assert f"knee: K = {curve.knee}" in labels


def test_cli_compare_writes_the_report(tmp_path, small_photo, capsys):
    source = tmp_path / "in.png"
    Image.fromarray(small_photo).save(source)
    report = tmp_path / "report.png"
    assert main(["compare", str(source), "-k", "4,16", "-o", str(report)]) == 0
    out = capsys.readouterr().out
    assert "K=4" in out and "K=16" in out and "mean dE00" in out
    with Image.open(report) as figure:
        assert figure.size[1] > figure.size[0] / 4
