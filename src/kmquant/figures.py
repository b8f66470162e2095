"""Figures drawn with matplotlib (Agg, no screen needed)."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from .palette import hex_code
from .quantize import QuantizedImage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .select import ElbowCurve

__all__ = [
    "comparison_figure",
    "elbow_figure",
    "figure_png_bytes",
    "palette_swatch",
    "report_figure",
]


def palette_swatch(palette: np.ndarray, *, columns: int | None = None, cell: int = 1) -> np.ndarray:
    """Palette entries laid out as a grid of square cells, as an RGB image.

    Parameters
    ----------
    palette : ndarray of uint8, shape (n_colors, n_channels)
    columns : int, optional
        Cells per row; by default the smallest that makes the grid about square.
    cell : int, optional
        Side of a cell in pixels.

    Returns
    -------
    swatch : ndarray of uint8, shape (rows * cell, columns * cell, 3)
        Unused cells at the end of the last row are white.
    """
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.shape[1] == 1:
        palette = np.repeat(palette, 3, axis=1)
    n_colors = palette.shape[0]
    columns = columns or max(1, math.ceil(math.sqrt(n_colors)))
    rows = math.ceil(n_colors / columns)
    grid = np.full((rows * columns, 3), 255, dtype=np.uint8)
    grid[:n_colors] = palette[:, :3]
    grid = grid.reshape(rows, columns, 3)
    return np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)


def comparison_figure(
    original: np.ndarray,
    result: QuantizedImage,
    *,
    metrics: dict[str, float] | None = None,
) -> Figure:
    """Original | compressed | palette swatch, side by side, metrics in the title.

    Parameters
    ----------
    original : ndarray of uint8, shape (H, W) or (H, W, C)
    result : QuantizedImage
    metrics : dict, optional
        Any of ``psnr``, ``ssim``, ``input_bytes``, ``output_bytes``: shown in the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    metrics = metrics or {}
    height, width = result.labels.shape
    figure = Figure(figsize=(15, 15 * height / (2.6 * width) + 1.2), layout="constrained")
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 1, 0.6])
    panels = [
        (np.asarray(original), "original"),
        (result.to_image(), f"compressed: {result.n_colors} colours"),
        (palette_swatch(result.palette), "palette"),
    ]
    for column, (picture, label) in enumerate(panels):
        axes = figure.add_subplot(grid[0, column])
        greyscale = picture.ndim == 2
        axes.imshow(
            picture, cmap="gray" if greyscale else None, vmin=0, vmax=255, interpolation="nearest"
        )
        axes.set_title(label)
        axes.set_axis_off()
    parts = []
    if "psnr" in metrics:
        parts.append(f"PSNR {metrics['psnr']:.2f} dB")
    if "ssim" in metrics:
        parts.append(f"SSIM {metrics['ssim']:.4f}")
    if "input_bytes" in metrics and "output_bytes" in metrics:
        parts.append(
            f"{int(metrics['input_bytes']):,} -> {int(metrics['output_bytes']):,} bytes"
            f" ({metrics['input_bytes'] / metrics['output_bytes']:.1f}x smaller)"
        )
    figure.suptitle(f"K-means colour quantization, K = {result.n_colors}\n" + "   |   ".join(parts))
    return figure


def figure_png_bytes(figure: Figure, *, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes (write them with :func:`kmquant.io.atomic_write_bytes`)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def elbow_figure(curve: ElbowCurve) -> Figure:
    """Inertia against K with the knee marked, PSNR on a second axis.

    Parameters
    ----------
    curve : ElbowCurve
        From :func:`kmquant.select.elbow_curve`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), layout="constrained")
    axes = figure.add_subplot()
    ks = curve.n_colors
    axes.plot(ks, curve.inertia, "o-", color="tab:blue", markersize=3, label="inertia (WCSS)")
    knee_index = ks.index(curve.knee)
    axes.plot(
        [curve.knee],
        [curve.inertia[knee_index]],
        "o",
        color="tab:red",
        markersize=10,
        fillstyle="none",
        markeredgewidth=2,
        label=f"knee: K = {curve.knee}",
    )
    axes.set_xlabel("number of colours K")
    axes.set_ylabel("inertia: sum of squared errors")
    axes.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    psnr_axes = axes.twinx()
    psnr_axes.plot(
        ks, [p.psnr for p in curve.points], "s--", color="tab:green", markersize=2, label="PSNR"
    )
    psnr_axes.set_ylabel("PSNR (dB)")
    handles = axes.get_legend_handles_labels()
    other = psnr_axes.get_legend_handles_labels()
    axes.legend(handles[0] + other[0], handles[1] + other[1], loc="center right")
    axes.set_title("Elbow method: inertia against K (knee by Kneedle)")
    return figure


def report_figure(
    original: np.ndarray,
    rows: list[tuple[QuantizedImage, dict[str, float]]],
) -> Figure:
    """One row per K: original | compressed | error heat map | palette shares, with metrics.

    Parameters
    ----------
    original : ndarray of uint8, shape (H, W, 3)
    rows : list of (QuantizedImage, metrics)
        ``metrics`` may hold ``psnr``, ``ssim``, ``delta_e``, ``output_bytes``,
        ``input_bytes``: shown above the row.
    """
    from matplotlib.figure import Figure

    from .palette import palette_shares, share_order

    height, width = original.shape[:2]
    row_height = 4.2 * height / width + 0.9
    figure = Figure(figsize=(18, row_height * len(rows)), layout="constrained")
    subfigures = figure.subfigures(len(rows), 1, squeeze=False)[:, 0]
    reference = original.astype(np.float64).reshape(height, width, -1)
    for subfigure, (result, metrics) in zip(subfigures, rows, strict=True):
        grid = subfigure.subplots(1, 4, width_ratios=[1, 1, 1.1, 0.7])
        compressed = result.to_image().reshape(height, width, -1)
        error = np.sqrt(((reference - compressed) ** 2).sum(axis=2))
        grid[0].imshow(original, interpolation="nearest")
        grid[0].set_title("original")
        grid[1].imshow(compressed.squeeze(), interpolation="nearest")
        grid[1].set_title(f"compressed, K = {result.n_colors}")
        heat = grid[2].imshow(error, cmap="magma", interpolation="nearest")
        grid[2].set_title("per-pixel error (RGB distance)")
        subfigure.colorbar(heat, ax=grid[2], fraction=0.046, pad=0.02, label="RGB distance")
        for axes in grid[:3]:
            axes.set_axis_off()
        shares = palette_shares(result.labels, result.n_colors)
        order = share_order(shares)[:16]
        colours = (
            np.repeat(result.palette, 3, axis=1) if result.palette.shape[1] == 1 else result.palette
        )
        positions = np.arange(len(order))
        grid[3].barh(
            positions,
            100 * shares[order],
            color=colours[order, :3] / 255.0,
            edgecolor="0.3",
            linewidth=0.5,
        )
        grid[3].set_yticks(
            positions,
            [hex_code(result.palette[i]) for i in order],
            fontsize=8,
            family="monospace",
        )
        grid[3].invert_yaxis()
        grid[3].set_xlabel("share of pixels (%)")
        grid[3].set_title("palette" + (f" (top {len(order)})" if result.n_colors > 16 else ""))
        parts = [f"K = {result.n_colors}"]
        if "psnr" in metrics:
            parts.append(f"PSNR {metrics['psnr']:.2f} dB")
        if "ssim" in metrics:
            parts.append(f"SSIM {metrics['ssim']:.4f}")
        if "delta_e" in metrics:
            parts.append(f"mean ΔE00 {metrics['delta_e']:.2f}")
        if "output_bytes" in metrics:
            parts.append(f"{int(metrics['output_bytes']):,} bytes")
            if "input_bytes" in metrics:
                parts[-1] += f" (from {int(metrics['input_bytes']):,})"
        subfigure.suptitle("   |   ".join(parts), fontsize=13)
    return figure
