import io
import json

import numpy as np
import pytest
from PIL import Image

from kmquant import quantize, remap_image
from kmquant.__main__ import main
from kmquant.palette import (
    centers_to_palette,
    luminance_order,
    palette_shares,
    palette_text,
    parse_palette,
    share_order,
)


def test_centres_round_half_up_and_clip():
    palette = centers_to_palette(np.array([[-3.0, 0.49, 0.5], [254.5, 255.2, 1000.0]]))
    assert palette.dtype == np.uint8
    assert palette.tolist() == [[0, 0, 1], [255, 255, 255]]


def test_luminance_order_puts_dark_first():
    palette = np.array([[255, 255, 255], [0, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    ordered = palette[luminance_order(palette)]
    assert ordered.tolist() == [[0, 0, 0], [0, 0, 255], [0, 255, 0], [255, 255, 255]]


@pytest.fixture
def extracted(small_photo):
    result = quantize(small_photo, 6, rng=0)
    return result.palette, palette_shares(result.labels, result.n_colors)


@pytest.mark.parametrize("fmt", ["json", "gpl", "css"])
def test_text_formats_round_trip_in_share_order(extracted, fmt):
    palette, shares = extracted
    text = palette_text(palette, shares, fmt, name="photo")
    parsed = parse_palette(text.encode())
    np.testing.assert_array_equal(parsed, palette[share_order(shares)])


def test_json_lists_hex_rgb_and_shares_by_share(extracted):
    palette, shares = extracted
    document = json.loads(palette_text(palette, shares, "json"))
    listed = [entry["share"] for entry in document["colors"]]
    assert listed == sorted(listed, reverse=True)
    assert sum(listed) == pytest.approx(1.0, abs=1e-5)
    first = document["colors"][0]
    assert first["hex"] == "#{:02x}{:02x}{:02x}".format(*first["rgb"])


def test_gpl_is_a_gimp_palette(extracted):
    palette, shares = extracted
    lines = palette_text(palette, shares, "gpl", name="photo").splitlines()
    assert lines[:2] == ["GIMP Palette", "Name: photo"]
    assert len([line for line in lines if line[:1].isdigit() or line[:1] == " "]) == 6


def test_image_palettes_round_trip(extracted):
    palette = extracted[0]
    indexed = Image.new("P", (6, 1))
    indexed.putpalette(palette.tobytes())
    indexed.putdata(list(range(6)))
    buffer = io.BytesIO()
    indexed.save(buffer, "PNG")
    np.testing.assert_array_equal(parse_palette(buffer.getvalue()), palette)
    swatch = io.BytesIO()
    Image.fromarray(np.repeat(palette[None], 4, axis=0)).save(swatch, "PNG")
    np.testing.assert_array_equal(parse_palette(swatch.getvalue()), palette)


def test_bad_palettes_are_rejected():
    with pytest.raises(ValueError, match="no colours found"):
        parse_palette(b'{"colors": []}')
    with pytest.raises(ValueError, match="not a #rrggbb colour"):
        parse_palette(b'["#12345"]')


def test_remap_keeps_every_entry_and_picks_the_nearest(small_photo):
    palette = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [1, 2, 3]], np.uint8)
    result = remap_image(small_photo, palette)
    np.testing.assert_array_equal(result.palette, palette)
    pixels = small_photo.reshape(-1, 3).astype(float)
    distances = ((pixels[:, None] - palette[None].astype(float)) ** 2).sum(2)
    np.testing.assert_array_equal(result.labels.reshape(-1), distances.argmin(1))


def test_cli_palette_formats_and_shared_palette_compress(tmp_path, small_photo, capsys):
    source = tmp_path / "in.png"
    Image.fromarray(small_photo).save(source)
    assert main(["palette", str(source), "-k", "5"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["colors"]) == 5
    gpl = tmp_path / "p.gpl"
    assert main(["palette", str(source), "-k", "5", "--format", "gpl", "-o", str(gpl)]) == 0
    swatch = tmp_path / "p.png"
    assert main(["palette", str(source), "-k", "5", "--format", "png", "-o", str(swatch)]) == 0
    assert main(["palette", str(source), "--format", "png"]) == 1
    capsys.readouterr()
    for palette_file in (gpl, swatch):
        out = tmp_path / f"shared-{palette_file.suffix[1:]}.png"
        assert main(["compress", str(source), "--palette", str(palette_file), "-o", str(out)]) == 0
        colours = {tuple(c) for c in np.asarray(Image.open(out).convert("RGB")).reshape(-1, 3)}
        expected = {tuple(entry["rgb"]) for entry in document["colors"]}
        assert colours <= expected
    assert "palette of 5 colours" in capsys.readouterr().out
