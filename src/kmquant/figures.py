"""Figures drawn with matplotlib (Agg, no screen needed)."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np

from .quantize import QuantizedImage

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["comparison_figure", "figure_png_bytes", "palette_swatch"]


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
