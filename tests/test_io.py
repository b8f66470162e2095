import io
import os
import struct
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from kmquant import (
    ImageReadError,
    ImageWriteError,
    KmquantWarning,
    OutputExistsError,
    encode_png,
    quantize,
    read_image,
    remap_image,
    write_png,
)
from kmquant.io import atomic_write_bytes, decode_first_frame


def png_chunks(data: bytes) -> dict[bytes, bytes]:
    """Chunk type -> data of a PNG, checking the signature and every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks.setdefault(kind, body)
        offset += 12 + length
    return chunks


def save_with_pillow(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# ---------------------------------------------------------------- writing


@pytest.mark.parametrize(
    ("n_colors", "bit_depth"), [(2, 1), (3, 2), (4, 2), (5, 4), (16, 4), (17, 8), (256, 8)]
)
def test_png_is_indexed_with_the_smallest_bit_depth(sample_image, n_colors, bit_depth):
    result = quantize(sample_image[:64, :64], n_colors, rng=0, n_init=1)
    data = encode_png(result)
    chunks = png_chunks(data)
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (64, 64, bit_depth, 3)
    assert len(chunks[b"PLTE"]) == 3 * result.n_colors
    decoded = Image.open(io.BytesIO(data))
    assert decoded.mode == "P"
    np.testing.assert_array_equal(np.asarray(decoded.convert("RGB")), result.to_image())


def test_png_of_16_colours_is_much_smaller_than_the_photo(sample_image, tmp_path):
    result = quantize(sample_image, 16, rng=0)
    size = write_png(tmp_path / "out.png", result)
    assert size == (tmp_path / "out.png").stat().st_size
    # 4 bits per pixel before deflate: under a sixth of the raw 24-bit pixels.
    assert size < sample_image.size / 6


images = arrays(np.uint8, st.tuples(st.integers(1, 24), st.integers(1, 24), st.just(3)))


@settings(max_examples=40, deadline=None)
@given(image=images, n_colors=st.integers(1, 20), seed=st.integers(0, 1000))
def test_written_png_decodes_to_exactly_to_image(image, n_colors, seed):
    import warnings

    from kmquant import KmquantWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KmquantWarning)
        result = quantize(image, n_colors, rng=seed, n_init=1)
    decoded = read_image(encode_png(result))
    np.testing.assert_array_equal(decoded, result.to_image())
    assert result.n_colors <= n_colors


def test_greyscale_result_is_written_as_a_grey_palette(small_photo):
    grey = small_photo[:, :, 0]
    result = quantize(grey, 4, rng=0)
    decoded = read_image(encode_png(result))
    np.testing.assert_array_equal(decoded[:, :, 0], result.to_image())
    np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])


def test_same_seed_same_bytes(sample_image):
    first = encode_png(quantize(sample_image, 16, rng=5))
    second = encode_png(quantize(sample_image.copy(), 16, rng=5))
    assert first == second


def test_write_refuses_to_overwrite_unless_asked(tmp_path, small_photo):
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    result = quantize(small_photo, 4, rng=0)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_png(target, result)
    assert target.read_bytes() == b"precious"
    write_png(target, result, overwrite=True)
    assert read_image(target).shape == small_photo.shape
    assert sorted(os.listdir(tmp_path)) == ["out.png"]


def test_write_into_a_missing_folder_fails_clearly(tmp_path, small_photo):
    with pytest.raises(ImageWriteError, match="does not exist"):
        write_png(tmp_path / "nope" / "out.png", quantize(small_photo, 4, rng=0))
    assert not (tmp_path / "nope").exists()


def test_atomic_write_leaves_nothing_when_writing_fails(tmp_path, monkeypatch):
    def failing_fsync(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ImageWriteError, match="No space left on device"):
        atomic_write_bytes(tmp_path / "out.png", b"data")
    assert os.listdir(tmp_path) == []


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    atomic_write_bytes(tmp_path / "f.bin", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o666 & ~umask


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "PPM"])
def test_lossless_formats_read_exactly(small_photo, fmt):
    data = save_with_pillow(Image.fromarray(small_photo), fmt)
    np.testing.assert_array_equal(read_image(data), small_photo)


@pytest.mark.parametrize(("fmt", "options"), [("JPEG", {"quality": 95}), ("WEBP", {"quality": 95})])
def test_lossy_formats_read_close(small_photo, fmt, options):
    decoded = read_image(save_with_pillow(Image.fromarray(small_photo), fmt, **options))
    assert decoded.shape == small_photo.shape
    assert np.abs(decoded.astype(int) - small_photo).mean() < 4


def test_gif_gives_its_first_frame(small_photo):
    first = Image.fromarray(small_photo).quantize(16)
    second = Image.fromarray(255 - small_photo).quantize(16)
    data = save_with_pillow(first, "GIF", save_all=True, append_images=[second])
    with pytest.warns(KmquantWarning, match="has 2 frames; only the first is read"):
        decoded = read_image(data)
    np.testing.assert_array_equal(decoded, np.asarray(first.convert("RGB")))
    # The same array and the frame count, for callers that report it themselves: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pixels, n_frames = decode_first_frame(data)
    assert n_frames == 2
    np.testing.assert_array_equal(pixels, decoded)


def test_still_images_read_without_warnings(small_photo):
    data = save_with_pillow(Image.fromarray(small_photo), "GIF")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(data)


def test_greyscale_pgm_becomes_three_equal_channels(small_photo):
    grey = small_photo[:, :, 1]
    decoded = read_image(save_with_pillow(Image.fromarray(grey), "PPM"))
    assert decoded.shape == (*grey.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], grey)


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits():
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)
    data = save_with_pillow(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    np.testing.assert_array_equal(read_image(data)[:, :, 0], np.arange(256).reshape(16, 16))


def test_palette_and_cmyk_inputs_are_converted(small_photo):
    paletted = Image.fromarray(small_photo).quantize(32)
    decoded = read_image(save_with_pillow(paletted, "PNG"))
    np.testing.assert_array_equal(decoded, np.asarray(paletted.convert("RGB")))

    cmyk = Image.fromarray(small_photo).convert("CMYK")
    decoded = read_image(save_with_pillow(cmyk, "TIFF"))
    np.testing.assert_array_equal(decoded, np.asarray(cmyk.convert("RGB")))


def test_alpha_is_kept_when_reading(small_photo):
    rgba = np.dstack([small_photo, np.full(small_photo.shape[:2], 128, np.uint8)])
    np.testing.assert_array_equal(read_image(save_with_pillow(Image.fromarray(rgba), "PNG")), rgba)
    grey_alpha = Image.fromarray(rgba).convert("LA")
    assert read_image(save_with_pillow(grey_alpha, "PNG")).shape == (*small_photo.shape[:2], 4)


def test_exif_orientation_is_applied(small_photo):
    image = Image.fromarray(small_photo)  # 64 wide, 48 high
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = read_image(save_with_pillow(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (64, 48, 3)


def test_unreadable_inputs_raise_one_clear_error(tmp_path, sample_image):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError, match="empty"):
        read_image(b"")
    with pytest.raises(ImageReadError, match="not an image"):
        read_image(b"this is plain text, not pixels")
    data = save_with_pillow(Image.fromarray(sample_image), "PNG")
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(data[: len(data) // 2])


def test_every_optimize_level_decodes_to_the_same_pixels(sample_image):
    result = quantize(sample_image, 16, rng=0)
    sizes = {}
    for level in (0, 1, 2, 3):
        data = encode_png(result, optimize=level)
        np.testing.assert_array_equal(read_image(data), result.to_image())
        depth, colour_type = png_chunks(data)[b"IHDR"][8:10]
        assert (depth, colour_type) == (4, 3)
        sizes[level] = len(data)
    # oxipng's filters and libdeflate are worth their time: clearly smaller than zlib 9.
    assert sizes[2] < 0.95 * sizes[1] <= sizes[0]
    assert sizes[3] <= sizes[2]
    with pytest.raises(ValueError, match="optimize must be one of"):
        encode_png(result, optimize=7)


def pillow_png(result, **options) -> bytes:
    indexed = Image.frombytes("P", result.labels.shape[::-1], result.labels.tobytes())
    indexed.putpalette(result.palette.tobytes(), "RGB")
    buffer = io.BytesIO()
    indexed.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def test_level_one_writes_what_pillow_writes_at_eight_bits(sample_image):
    result = quantize(sample_image, 64, rng=0)
    assert encode_png(result, optimize=1) == pillow_png(result, optimize=True)


def test_level_zero_is_smaller_than_zlib_at_its_fastest(sample_image):
    # libdeflate at level 1: the same pixels as Pillow's zlib-1 file, in fewer bytes.
    result = quantize(sample_image, 64, rng=0)
    data = encode_png(result, optimize=0)
    np.testing.assert_array_equal(read_image(data), result.to_image())
    assert len(data) < 0.95 * len(pillow_png(result, compress_level=1))


@pytest.mark.parametrize("n_colors", [2, 3, 4, 9, 16])
@pytest.mark.parametrize("level", [0, 1])
def test_packed_rows_are_exact_and_unfiltered(sample_image, n_colors, level):
    # An odd width leaves a partly filled last byte on every row; an alpha channel adds tRNS.
    image = np.dstack([sample_image[:37, :45], np.full((37, 45), 255, np.uint8)])
    image[:5, :, 3] = 0
    result = quantize(image, n_colors, rng=0)
    data = encode_png(result, optimize=level)
    np.testing.assert_array_equal(read_image(data), result.to_image())
    chunks = png_chunks(data)
    depth = chunks[b"IHDR"][8]
    entries = len(result.palette)
    assert depth == (1 if entries <= 2 else 2 if entries <= 4 else 4)
    rows = zlib.decompress(chunks[b"IDAT"])
    stride = 1 + (45 * depth + 7) // 8
    assert len(rows) == 37 * stride
    assert {rows[row * stride] for row in range(37)} == {0}


@pytest.mark.parametrize("n_colors", [4, 16])
def test_unfiltered_packed_rows_cost_the_sample_photo_nothing(sample_image, n_colors):
    import oxipng

    result = quantize(sample_image, n_colors, rng=0)
    height, width = result.labels.shape
    entries = [(int(r), int(g), int(b), 255) for r, g, b in result.palette]
    every_filter = oxipng.RawImage(
        result.labels.tobytes(), width, height, color_type=oxipng.ColorType.indexed(entries)
    ).create_optimized_png(
        level=2, color_type_reduction=False, grayscale_reduction=False, palette_reduction=False
    )
    assert len(encode_png(result, optimize=2)) <= len(every_filter) * 1.001


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_the_png_stores_the_palette_as_given(sample_image, level):
    palette = np.array(
        [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [90, 90, 90]], np.uint8
    )
    result = remap_image(sample_image[:40, :40], palette)  # not every entry is used
    with Image.open(io.BytesIO(encode_png(result, optimize=level))) as png:
        assert png.getpalette() == palette.reshape(-1).tolist()


def test_grey_palette_stays_indexed_after_oxipng(small_photo):
    result = quantize(small_photo[:, :, 0], 4, rng=0)
    data = encode_png(result, optimize=2)
    assert png_chunks(data)[b"IHDR"][9] == 3


def _filtered_rows(pixels: np.ndarray, kinds: list[int]) -> bytes:
    """PNG image data before deflate: each row led by its filter type (0 to 4), filtered."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, width * channels).astype(np.int64)
    out = []
    for r in range(height):
        kind = kinds[r % len(kinds)]
        here = rows[r]
        above = rows[r - 1] if r else np.zeros_like(here)
        left = np.concatenate([np.zeros(channels, np.int64), here[:-channels]])
        corner = np.concatenate([np.zeros(channels, np.int64), above[:-channels]])
        if kind == 0:
            predicted = np.zeros_like(here)
        elif kind == 1:
            predicted = left
        elif kind == 2:
            predicted = above
        elif kind == 3:
            predicted = (left + above) // 2
        else:
            estimate = left + above - corner
            to_left, to_up, to_corner = (abs(estimate - v) for v in (left, above, corner))
            predicted = np.where(
                (to_left <= to_up) & (to_left <= to_corner),
                left,
                np.where(to_up <= to_corner, above, corner),
            )
        out.append(bytes([kind]) + ((here - predicted) % 256).astype(np.uint8).tobytes())
    return b"".join(out)


def _png_file(pixels, kinds, *, extra=(), idat_pieces=1, header=None, rows=None) -> bytes:
    """A PNG of ``pixels`` (RGB or RGBA) written by hand, with the given row filters."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    height, width, channels = pixels.shape
    ihdr = header or struct.pack(">IIBBBBB", width, height, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
    data = zlib.compress(_filtered_rows(pixels, kinds) if rows is None else rows)
    step = -(-len(data) // idat_pieces)
    idats = [chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step)]
    extras = [chunk(kind, body) for kind, body in extra]
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + b"".join(extras) + b"".join(idats)
    ) + chunk(b"IEND", b"")


def _plain_payload(data: bytes) -> bytes:
    """The IDAT payload of a PNG made by :func:`_png_file` with one IDAT chunk."""
    start = data.index(b"IDAT") + 4
    (length,) = struct.unpack(">I", data[start - 8 : start - 4])
    return data[start : start + length]


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("kinds", [[0], [1], [2], [3], [4], [4, 3, 2, 1, 0]])
def test_png_rows_are_unfiltered_exactly(monkeypatch, small_photo, channels, kinds):
    from kmquant import io as kmquant_io

    pixels = small_photo
    if channels == 4:
        alpha = (np.arange(pixels.size // 3) % 256).reshape(pixels.shape[:2]).astype(np.uint8)
        pixels = np.dstack([pixels, alpha])
    data = _png_file(pixels, kinds, idat_pieces=5)
    # Strips of one row (fewer bytes than a row) and of five rows, so rows and IDAT chunks
    # end in the middle of a strip.
    for strip_bytes in (1, 5 * pixels.shape[1] * channels):
        monkeypatch.setattr(kmquant_io, "_PNG_STRIP_BYTES", strip_bytes)
        decoded = kmquant_io._decode_plain_png(data)
        assert decoded is not None  # read without Pillow
        np.testing.assert_array_equal(decoded, pixels)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


def test_pillow_reads_the_pngs_that_change_pixels_or_layout(small_photo):
    from kmquant.io import _decode_plain_png, _plain_png_layout

    height, width = small_photo.shape[:2]
    plain = _png_file(small_photo, [4])
    assert _plain_png_layout(plain) is not None
    # Transparency, APNG, EXIF (its own chunk, or a text chunk), 16 bits, interlaced.
    for kind, body in [
        (b"tRNS", b"\x00\x00\x00\x00\x00\x00"),
        (b"acTL", struct.pack(">II", 1, 0)),
        (b"eXIf", b"MM\x00*"),
        (b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(b"exif")),
    ]:
        assert _plain_png_layout(_png_file(small_photo, [4], extra=[(kind, body)])) is None
    for depth, interlace in [(16, 0), (8, 1)]:
        header = struct.pack(">IIBBBBB", width, height, depth, 2, 0, 0, interlace)
        assert _plain_png_layout(_png_file(small_photo, [4], header=header)) is None
    # A text chunk of another kind changes nothing: still read here.
    with_text = _png_file(small_photo, [4], extra=[(b"tEXt", b"Comment\x00made by hand")])
    np.testing.assert_array_equal(_decode_plain_png(with_text), small_photo)
    # Transparency still comes out as alpha, through Pillow.
    key = small_photo[0, 0]
    transparent = _png_file(small_photo, [0], extra=[(b"tRNS", struct.pack(">HHH", *key))])
    assert read_image(transparent).shape == (height, width, 4)


@pytest.mark.parametrize("strip_bytes", [None, 1])
def test_corrupt_plain_pngs_fail_as_before(monkeypatch, small_photo, strip_bytes):
    # In one strip, or in strips of a row that a second thread inflates ahead.
    from kmquant import io as kmquant_io

    if strip_bytes is not None:
        monkeypatch.setattr(kmquant_io, "_PNG_STRIP_BYTES", strip_bytes)
    data = _png_file(small_photo, [1, 4])
    stream = _plain_payload(data)
    assert kmquant_io._decode_plain_png(data[: len(data) // 2]) is None  # ends early
    scrambled = data.replace(stream[40:60], bytes(20))  # a broken deflate stream
    assert kmquant_io._decode_plain_png(scrambled) is None
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(data[: len(data) // 2])
    bad_filter = bytearray(_filtered_rows(small_photo, [2]))
    bad_filter[0] = 7  # the first row's filter type: there are five, 0 to 4
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        read_image(_png_file(small_photo, [2], rows=bytes(bad_filter)))


def test_plain_pngs_keep_pillows_pixel_limit(monkeypatch, small_photo):
    from kmquant.io import _plain_png_layout, decode_image

    data = _png_file(small_photo, [1])
    n_pixels = small_photo.shape[0] * small_photo.shape[1]
    # Over the limit: Pillow's warning, and the pixels, read without Pillow.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", n_pixels - 1)
    assert _plain_png_layout(data) is not None
    with pytest.warns(Image.DecompressionBombWarning, match="exceeds limit"):
        np.testing.assert_array_equal(decode_image(data), small_photo)
    # Over twice the limit: refused, as Pillow refuses it.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", n_pixels // 2 - 1)
    with pytest.raises(ImageReadError, match="exceeds limit"):
        decode_image(data)


@settings(max_examples=60, deadline=None)
@given(
    image=arrays(
        np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([3, 4]))
    ),
    level=st.integers(0, 9),
)
def test_pillows_pngs_decode_to_pillows_pixels(image, level):
    # Pillow picks each row's filter itself (all five kinds appear at higher levels).
    from kmquant.io import _decode_plain_png

    data = save_with_pillow(Image.fromarray(image), "PNG", compress_level=level)
    decoded = _decode_plain_png(data)
    assert decoded is not None
    np.testing.assert_array_equal(decoded, image)
