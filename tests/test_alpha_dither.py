"""Transparency kept exactly, and dithering that preserves local means."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kmquant import encode_png, metrics, quantize, read_image, remap_image
from kmquant.__main__ import main
from kmquant._kernels import (
    _CANDIDATE_STEP,
    _GRID_CELLS,
    _candidate_scratch,
    _grid_scratch,
    _list_cell,
    _nearest_of_vector,
    dither_floyd_steinberg,
    dither_floyd_steinberg_3,
    label_counts,
    pixel_squared_error,
)
from kmquant.colorspace import alpha_classes, color_features
from kmquant.histogram import color_histogram
from kmquant.select import elbow_curve


def soft_disc(sample_image: np.ndarray, size: int = 96) -> np.ndarray:
    """A photo-textured disc with a soft, anti-aliased edge over full transparency."""
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    alpha = np.clip((size * 0.42 - radius) / 4.0, 0.0, 1.0)
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[:, :, :3] = sample_image[200 : 200 + size, 300 : 300 + size]
    rgba[:, :, 3] = np.floor(alpha * 255 + 0.5).astype(np.uint8)
    # Transparent pixels carry junk colour, as real files do: it must not matter.
    rgba[rgba[:, :, 3] == 0, :3] = np.random.default_rng(0).integers(0, 256, 3)
    return rgba


def trns_length(data: bytes) -> int | None:
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        assert struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])[0] == (
            zlib.crc32(data[offset + 4 : offset + 8 + length])
        )
        if kind == b"tRNS":
            return length
        offset += 12 + length
    return None


@pytest.fixture(scope="module")
def disc(sample_image):
    return soft_disc(sample_image)


@pytest.mark.parametrize("n_colors", [4, 16, 64])
@pytest.mark.parametrize("space", ["rgb", "oklab"])
def test_alpha_classes_never_change(disc, n_colors, space):
    result = quantize(disc, n_colors, space=space, rng=0)
    output = result.to_image()
    assert output.shape == disc.shape
    np.testing.assert_array_equal(alpha_classes(output[..., 3]), alpha_classes(disc[..., 3]))
    # Every fully transparent pixel uses one and the same entry, (0, 0, 0, 0).
    transparent_labels = np.unique(result.labels[disc[..., 3] == 0])
    assert len(transparent_labels) == 1
    assert result.palette[transparent_labels[0]].tolist() == [0, 0, 0, 0]


def test_trns_is_trimmed_to_the_translucent_entries(disc):
    result = quantize(disc, 16, rng=0)
    n_translucent = int((result.palette[:, 3] < 255).sum())
    assert 2 <= n_translucent < 16
    assert result.palette[:n_translucent, 3].max() < 255  # translucent entries come first
    for level in (1, 2):
        data = encode_png(result, optimize=level)
        assert trns_length(data) == n_translucent
        np.testing.assert_array_equal(read_image(data), result.to_image())


def test_composited_error_is_small(disc):
    output = quantize(disc, 16, rng=0).to_image()
    report = metrics.quality_report(disc, output)
    assert report["psnr"] > 30
    # The worst background is reported: never better than either one alone.
    for background in (metrics.BLACK, metrics.WHITE):
        alone = metrics.psnr(
            metrics.composite(disc, background), metrics.composite(output, background)
        )
        assert report["psnr"] <= alone + 1e-9


def test_premultiplied_clustering_ignores_invisible_colour(disc):
    # Changing the colour under alpha = 0 changes nothing in the result.
    other = disc.copy()
    other[other[..., 3] == 0, :3] = [255, 0, 255]
    first = quantize(disc, 8, rng=3)
    second = quantize(other, 8, rng=3)
    np.testing.assert_array_equal(first.to_image(), second.to_image())


def test_grey_alpha_and_palette_trns_inputs(disc, tmp_path):
    grey_alpha = Image.fromarray(disc).convert("LA")
    buffer = io.BytesIO()
    grey_alpha.save(buffer, "PNG")
    image = read_image(buffer.getvalue())
    assert image.shape[2] == 4
    result = quantize(image, 8, rng=0)
    np.testing.assert_array_equal(
        alpha_classes(result.to_image()[..., 3]), alpha_classes(image[..., 3])
    )
    # A palette PNG with tRNS (our own output) reads back as RGBA and survives re-quantizing.
    paletted = encode_png(quantize(disc, 32, rng=0))
    again = read_image(paletted)
    assert again.shape[2] == 4
    np.testing.assert_array_equal(alpha_classes(again[..., 3]), alpha_classes(disc[..., 3]))


@pytest.mark.parametrize("method", ["floyd-steinberg", "ordered"])
def test_dithering_keeps_the_mean_of_a_flat_patch(method):
    patch = np.full((64, 64, 3), 100, np.uint8)
    result = remap_image(patch, np.array([[0, 0, 0], [255, 255, 255]], np.uint8), dither=method)
    assert set(np.unique(result.labels)) == {0, 1}  # really mixed, not all one colour
    tolerance = 1.0 if method == "floyd-steinberg" else 255 / 64 / 2 + 0.5
    assert abs(result.to_image().mean() - 100) <= tolerance


def test_grid_cells_list_the_nearest_entry_of_every_point_in_them():
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (40, 3)).astype(np.float64)
    palette[20:23] = palette[5]  # repeated entries: exact ties
    low, high = np.full(3, -30.0), np.full(3, 290.0)
    size = (high - low) / _GRID_CELLS
    counts, candidates = _grid_scratch(len(palette))
    scratch = _candidate_scratch(len(palette))
    points = np.concatenate([rng.uniform(-30, 290, (4000, 3)), palette + 0.5])
    for point in points:
        position = ((point - low) // size).astype(int)
        cell = (position[0] * _GRID_CELLS + position[1]) * _GRID_CELLS + position[2]
        if counts[cell] < 0:  # listed when a point first reaches it, as dithering does
            _list_cell(cell, counts, candidates, low, size, palette, *scratch)
        listed = candidates[cell, : counts[cell]].tolist()
        assert listed == sorted(listed)
        assert _nearest_of_vector(point, palette) in listed
        # Padded with the last candidate to a whole number of steps, and no further.
        assert len(listed) % _CANDIDATE_STEP == 0
        assert listed.count(listed[-1]) <= _CANDIDATE_STEP
    assert (counts >= 0).sum() < len(counts)  # only the cells reached


@pytest.mark.parametrize(
    ("n_colors", "space"), [(8, "rgb"), (64, "rgb"), (256, "rgb"), (32, "lab")]
)
def test_three_feature_floyd_steinberg_equals_the_general_kernel(sample_image, n_colors, space):
    # 131 rows: parts of 33, 33, 33 and 32 rows, each a band of 32 and a short one (the last
    # part runs out of rows one row before the part diffused beside it); the two sides of two
    # parts diffused side by side on two threads, one after the other on one.
    import numba

    histogram = color_histogram(sample_image[:131, :160])
    points = color_features(histogram.colors, space)
    result = quantize(sample_image[:131, :160], n_colors, space=space, rng=0)
    palette = color_features(result.palette, space)
    threads = numba.get_num_threads()
    try:
        for max_error, edge_gap in ((12.0, 6.0), (1e9, 0.0)):
            general = dither_floyd_steinberg(
                points, histogram.inverse, 131, 160, palette, 0.9, 3, max_error, edge_gap
            )
            # Its tally, counted band by band beside the diffusion, is the one of the labels.
            flat = general.reshape(-1)
            counts = label_counts(flat, len(palette))
            squared_error = pixel_squared_error(
                histogram.colors, histogram.inverse, result.palette, flat
            )
            for n_threads in {1, threads}:
                numba.set_num_threads(n_threads)
                three, three_counts, three_error = dither_floyd_steinberg_3(
                    points,
                    histogram.inverse,
                    131,
                    160,
                    palette,
                    0.9,
                    max_error,
                    edge_gap,
                    histogram.colors,
                    result.palette,
                )
                np.testing.assert_array_equal(three, general)
                np.testing.assert_array_equal(three_counts, counts)
                assert three_error == squared_error
    finally:
        numba.set_num_threads(threads)


@pytest.mark.parametrize("height", [1, 2, 3, 5, 6, 7, 9])
def test_three_feature_floyd_steinberg_equals_the_general_kernel_on_short_images(
    sample_image, height
):
    # Parts of 0 or 1 rows, and pairs whose second part runs out of rows first.
    image = sample_image[:height, :23]
    histogram = color_histogram(image)
    points = color_features(histogram.colors, "rgb")
    palette = quantize(sample_image[:64, :64], 6, rng=0).palette
    palette_points = color_features(palette, "rgb")
    common = (points, histogram.inverse, height, 23, palette_points, 1.0)
    general = dither_floyd_steinberg(*common, 3, 40.0, 20.0)
    three, counts, squared_error = dither_floyd_steinberg_3(
        *common, 40.0, 20.0, histogram.colors, palette
    )
    np.testing.assert_array_equal(three, general)
    np.testing.assert_array_equal(counts, label_counts(general.reshape(-1), len(palette)))
    flat = general.reshape(-1)
    assert squared_error == pixel_squared_error(histogram.colors, histogram.inverse, palette, flat)


def test_floyd_steinberg_diffuses_the_four_parts_of_an_image_apart(sample_image):
    # What lets the parts run side by side: 101 rows make parts of rows 0-25, 26-50, 51-75
    # and 76-100. Changing the second part's rows, all but its first and last (against
    # which its neighbours' rows weigh their edges), changes no label in the other parts.
    image = sample_image[:101, :120]
    first, stop = 26, 51
    changed = image.copy()
    changed[first + 1 : stop - 1] = 255 - changed[first + 1 : stop - 1]
    palette = quantize(image, 16, rng=0).palette
    points = color_features(palette, "rgb")
    labels = {"three": [], "general": []}
    for pixels in (image, changed):
        histogram = color_histogram(pixels)
        colors = color_features(histogram.colors, "rgb")
        common = (colors, histogram.inverse, 101, 120, points, 1.0)
        labels["general"].append(dither_floyd_steinberg(*common, 3, 40.0, 20.0))
        integers = (histogram.colors, palette)
        labels["three"].append(dither_floyd_steinberg_3(*common, 40.0, 20.0, *integers)[0])
    for kernel, (before, after) in labels.items():
        np.testing.assert_array_equal(before[:first], after[:first], err_msg=kernel)
        np.testing.assert_array_equal(before[stop:], after[stop:], err_msg=kernel)
        assert (before[first + 1 : stop - 1] != after[first + 1 : stop - 1]).mean() > 0.5, kernel


def test_dithering_strength_zero_is_nearest_and_strength_moves_toward_dithered(sample_image):
    image = sample_image[::4, ::4]
    palette = quantize(image, 8, rng=0).palette
    nearest = remap_image(image, palette)
    off = remap_image(image, palette, dither="floyd-steinberg", dither_strength=0)
    np.testing.assert_array_equal(off.labels, nearest.labels)
    full = remap_image(image, palette, dither="floyd-steinberg")
    assert (full.labels != nearest.labels).mean() > 0.03


def test_floyd_steinberg_dithers_smooth_areas_not_edges():
    # Left: a smooth ramp, which a 4-grey palette can only show by dithering. Right: a coarse
    # checkerboard of steps larger than the palette's gaps, which it shows as it is; error
    # diffused there would only add noise.
    ramp = np.tile(np.linspace(30, 225, 128), (64, 1))
    checks = np.where(np.indices((64, 128)).sum(0) % 2 == 0, 40.0, 215.0)
    grey = np.concatenate([ramp, checks], axis=1).round().astype(np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)
    palette = np.repeat(np.array([[0], [85], [170], [255]], np.uint8), 3, axis=1)
    nearest = remap_image(image, palette).labels
    dithered = remap_image(image, palette, dither="floyd-steinberg").labels
    changed = dithered != nearest
    assert changed[:, :128].mean() > 0.2
    assert changed[:, 128:].mean() < 0.02


def test_dithering_lowers_local_mean_error(sample_image):
    # Dithering trades per-pixel error for a better average over small areas.
    image = sample_image[:256, :256]
    plain = quantize(image, 8, rng=0).to_image().astype(float)
    dithered = quantize(image, 8, rng=0, dither="floyd-steinberg").to_image().astype(float)

    def box_mean(channel, size=4):
        # Mean over size x size blocks: what the eye averages at a distance.
        height, width = (channel.shape[0] // size) * size, (channel.shape[1] // size) * size
        blocks = channel[:height, :width].reshape(height // size, size, width // size, size)
        return blocks.mean(axis=(1, 3))

    def blurred_error(output):
        return np.mean(
            [
                (box_mean(output[..., c]) - box_mean(image[..., c].astype(float))) ** 2
                for c in range(3)
            ]
        )

    assert blurred_error(dithered) < blurred_error(plain)


def test_dithering_keeps_alpha_classes(disc):
    for method in ("floyd-steinberg", "ordered"):
        output = quantize(disc, 8, rng=0, dither=method).to_image()
        np.testing.assert_array_equal(alpha_classes(output[..., 3]), alpha_classes(disc[..., 3]))


def test_cli_space_dither_and_alpha_metrics(disc, tmp_path, capsys):
    import json

    source = tmp_path / "disc.png"
    Image.fromarray(disc).save(source)
    out = tmp_path / "out.png"
    argv = [
        "compress",
        str(source),
        "-k",
        "12",
        "--space",
        "oklab",
        "--dither",
        "floyd-steinberg",
        "--dither-strength",
        "0.8",
        "-o",
        str(out),
        "--json",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"delta_e", "delta_e_p95", "psnr", "ssim"} <= summary.keys()
    written = read_image(out)
    np.testing.assert_array_equal(alpha_classes(written[..., 3]), alpha_classes(disc[..., 3]))
    assert main(["compress", str(source), "--dither", "sideways"]) == 2
    assert main(["compress", str(source), "--dither-strength", "2"]) == 2


def test_elbow_sweep_on_rgba_clusters_like_quantize(disc):
    # The sweep must solve quantize()'s problem: transparent pixels in one reserved entry
    # (their junk colours cost nothing) and premultiplied colour apart by alpha class.
    curve = elbow_curve(disc, range(3, 17), rng=0)
    inertia = np.array(curve.inertia)
    assert np.all(np.diff(inertia) < 0)
    direct = quantize(disc, 16, rng=0).inertia
    assert inertia[-1] <= 1.1 * direct
