"""Reading images of any common format, and writing indexed PNGs safely.

Reading goes through Pillow and always yields uint8 RGB (H, W, 3) or RGBA (H, W, 4): EXIF
orientation is applied, greyscale is expanded to three equal channels, 16-bit samples are scaled
to 8 bits, palette and CMYK images are converted, and animations give their first frame (with a
:class:`~kmquant.KmquantWarning` saying how many frames were left out).

Writing is atomic: the bytes go to a temporary file in the destination folder, which is then
renamed (or hard-linked) into place, so a reader never sees half a file and an interrupted run
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tempfile
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import deflate
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import _kernels
from ._exceptions import ImageReadError, ImageWriteError, KmquantWarning, OutputExistsError
from .quantize import QuantizedImage

__all__ = [
    "atomic_write_bytes",
    "check_output_path",
    "decode_first_frame",
    "decode_image",
    "encode_pixels_png",
    "encode_png",
    "frames_left_out",
    "read_bytes",
    "read_image",
    "write_png",
]

ImageSource = str | os.PathLike[str] | bytes | BinaryIO


def read_bytes(source: ImageSource) -> bytes:
    """All the bytes of a file path, a binary file object, or bytes as they are.

    Raises
    ------
    ImageReadError
        If the path does not exist, is a folder, or cannot be read.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        return source.read()  # type: ignore[union-attr]
    path = Path(source)  # type: ignore[arg-type]
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"cannot read '{path}': no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"cannot read '{path}': it is a folder, not an image") from None
    except PermissionError:
        raise ImageReadError(f"cannot read '{path}': permission denied") from None
    except OSError as error:
        raise ImageReadError(f"cannot read '{path}': {error.strerror or error}") from None


def _to_array(image: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> uint8 RGB or RGBA array."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        # 16-bit (or 32-bit) greyscale: Pillow keeps the wide samples; scale them to 8 bits.
        samples = np.asarray(image, dtype=np.float64)
        if mode == "F":
            full_scale = 1.0 if samples.max(initial=0.0) <= 1.0 else 255.0
        else:
            full_scale = 65535.0
        grey = np.floor(np.clip(samples / full_scale, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    target = "RGBA" if has_alpha else "RGB"
    if image.mode != target:
        image = image.convert(target)
    # Copy in strips of rows: np.array(image) would hold a bytes copy of the whole image on
    # top of Pillow's and the array (3 copies at once; a 96-megapixel photo is 288 MB each).
    width, height = image.size
    pixels = np.empty((height, width, len(target)), dtype=np.uint8)
    rows = max(1, (1 << 22) // max(1, width))
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        strip = image.crop((0, top, width, bottom)).tobytes()
        pixels[top:bottom] = np.frombuffer(strip, dtype=np.uint8).reshape(bottom - top, width, -1)
    return pixels


def decode_image(data: bytes, name: str = "<image>") -> np.ndarray:
    """Decode image file bytes to a uint8 RGB (H, W, 3) or RGBA (H, W, 4) array.

    Parameters
    ----------
    data : bytes
        The whole file: PNG, JPEG, PPM/PGM, BMP, TIFF, WebP, GIF (first frame), or anything
        else Pillow reads.
    name : str, optional
        Used in error and warning messages.

    Raises
    ------
    ImageReadError
        If the bytes are empty, not an image, truncated, or have too many pixels.

    Warns
    -----
    KmquantWarning
        If the file is an animation: only its first frame is read (see
        :func:`decode_first_frame`, which says so without a warning).
    """
    pixels, n_frames = decode_first_frame(data, name)
    if n_frames > 1:
        warnings.warn(frames_left_out(f"'{name}'", n_frames), KmquantWarning, stacklevel=2)
    return pixels


_PNG_CHANNELS = {2: 3, 6: 4}  # colour types read without Pillow: RGB, RGBA (8 bits each)
# Chunks that leave a PNG's pixels as the image data gives them (Pillow reads them as
# information only); any other chunk (tRNS, eXIf, APNG's acTL, ...) sends the file to Pillow.
_PLAIN_PNG_CHUNKS = frozenset(
    b"IHDR IDAT IEND gAMA cHRM sRGB iCCP pHYs sBIT bKGD tIME tEXt zTXt iTXt".split()
)
# Filtered bytes inflated and unfiltered at a time.
_PNG_STRIP_BYTES = 1 << 22


def _plain_png_layout(data: bytes) -> tuple[int, int, int, list[memoryview]] | None:
    """Width, height, channels and IDAT payloads of an 8-bit RGB or RGBA PNG, not
    interlaced, with no chunk that changes its pixels or orientation; None for anything
    else (any other PNG, or not a PNG)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    view = memoryview(data)
    position = len(_PNG_SIGNATURE)
    header = None
    payloads = []
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        start, end = position + 8, position + 8 + length
        if end + 4 > len(data) or kind not in _PLAIN_PNG_CHUNKS:
            return None
        if kind in (b"tEXt", b"zTXt", b"iTXt") and data.startswith(b"Raw profile type exif", start):
            return None  # EXIF in a text chunk, which Pillow reads for the orientation
        if kind == b"IHDR":
            if length != 13 or header is not None:
                return None
            header = struct.unpack_from(">IIBBBBB", data, start)
        elif kind == b"IDAT":
            payloads.append(view[start:end])
        elif kind == b"IEND":
            break
        position = end + 4
    else:
        return None  # no IEND: truncated
    if header is None or not payloads:
        return None
    width, height, bit_depth, color_type, compression, filtering, interlace = header
    if (
        bit_depth != 8
        or color_type not in _PNG_CHANNELS
        or (compression, filtering, interlace) != (0, 0, 0)
        or width == 0
        or height == 0
    ):
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > 2 * limit:
        return None  # Pillow refuses it, with its own message
    return width, height, _PNG_CHANNELS[color_type], payloads


class _StripInflater:
    """The image data of a PNG, inflated a strip of filtered rows at a time."""

    def __init__(self, payloads: list[memoryview]) -> None:
        self._inflater = zlib.decompressobj()
        self._pieces = iter(payloads)

    def take(self, wanted: int) -> bytes | None:
        """The next ``wanted`` bytes (None where the image data ends first), inflated no
        further: nothing is left over for the next strip. A corrupt stream raises
        ``zlib.error``."""
        parts = []
        have = 0
        while have < wanted:
            source = self._inflater.unconsumed_tail or next(self._pieces, None)
            if source is None or self._inflater.eof:
                return None
            part = self._inflater.decompress(source, wanted - have)
            parts.append(part)
            have += len(part)
        return b"".join(parts)


def _decode_plain_png(data: bytes) -> np.ndarray | None:
    """An 8-bit RGB or RGBA PNG straight into its uint8 array; None where Pillow must read it.

    Pillow holds 4 bytes a pixel of its own beside the array it is copied to: at 96
    megapixels, 366 MiB more at the peak of decoding. Here the image data is inflated a strip
    of rows at a time and unfiltered in a compiled loop into the array. From two strips on,
    a second thread inflates the next strip while this one is unfiltered (zlib and the
    compiled loop both let go of the GIL): at 24 megapixels each takes about 0.18 s. Files
    this does not read (see :func:`_plain_png_layout`), and any that fails here (a corrupt
    or truncated stream), go to Pillow, which reads or rejects them as before.
    """
    layout = _plain_png_layout(data) if isinstance(data, bytes) else None
    if layout is None:
        return None
    width, height, channels, payloads = layout
    stride = width * channels
    pixels = np.empty((height, width, channels), dtype=np.uint8)
    rows_out = pixels.reshape(height, stride)
    above = np.zeros(stride, dtype=np.uint8)
    strip_rows = max(1, _PNG_STRIP_BYTES // (stride + 1))
    inflater = _StripInflater(payloads)
    tops = range(0, height, strip_rows)

    def wanted(top: int) -> int:
        return min(strip_rows, height - top) * (stride + 1)

    with contextlib.ExitStack() as stack:
        ahead = None
        if len(tops) > 1:
            ahead = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="kmquant-png"))
        try:
            pending = ahead.submit(inflater.take, wanted(0)) if ahead else None
            for top in tops:
                filtered = pending.result() if pending else inflater.take(wanted(top))
                if filtered is None:
                    return None  # the image data ends early
                following = top + strip_rows
                if ahead and following < height:
                    pending = ahead.submit(inflater.take, wanted(following))
                rows = min(strip_rows, height - top)
                raw = np.frombuffer(filtered, dtype=np.uint8).reshape(rows, stride + 1)
                if not _kernels.png_unfilter(raw, rows_out[top : top + rows], above, channels):
                    return None
                above = rows_out[top + rows - 1]
        except zlib.error:
            return None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        # Pillow's warning, in its words, for a size it still reads.
        warnings.warn(
            f"Image size ({width * height} pixels) exceeds limit of {limit} pixels, "
            "could be decompression bomb DOS attack.",
            Image.DecompressionBombWarning,
            stacklevel=3,
        )
    return pixels


def decode_first_frame(data: bytes, name: str = "<image>") -> tuple[np.ndarray, int]:
    """:func:`decode_image`'s array, and how many frames the file holds (1 for a still image).

    For callers that report an animation's left-out frames themselves: a server or a worker
    thread, where catching warnings would touch process-wide state.
    """
    if not data:
        raise ImageReadError(f"cannot read '{name}': the file is empty")
    pixels = _decode_plain_png(data)
    if pixels is not None:
        return pixels, 1
    try:
        with Image.open(io.BytesIO(data)) as opened:
            n_frames = int(getattr(opened, "n_frames", 1))
            opened.seek(0)
            opened.load()
            # In place: without it Pillow returns a copy even when nothing needs turning.
            ImageOps.exif_transpose(opened, in_place=True)
            return _to_array(opened), n_frames
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read '{name}': not an image Pillow recognises") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(f"cannot read '{name}': {error}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError(
            f"cannot read '{name}': truncated or corrupt image ({error})"
        ) from None


def frames_left_out(what: str, n_frames: int) -> str:
    """What reading only the first of ``what``'s ``n_frames`` frames leaves out, as a note."""
    return f"{what} has {n_frames} frames; only the first is read"


def read_image(source: ImageSource) -> np.ndarray:
    """Read an image file into a uint8 array.

    Parameters
    ----------
    source : str, path, bytes or binary file object

    Returns
    -------
    image : ndarray of uint8, shape (height, width, 3) or (height, width, 4)
        RGB, or RGBA when the file has transparency.

    Raises
    ------
    ImageReadError
        Missing file, folder, not an image, truncated or corrupt data.

    Examples
    --------
    >>> from kmquant.io import read_image
    >>> from kmquant._sample import sample_image_path
    >>> read_image(sample_image_path()).shape
    (512, 768, 3)
    """
    name = (
        "<bytes>"
        if isinstance(source, (bytes, bytearray, memoryview))
        else str(getattr(source, "name", source))
    )
    return decode_image(read_bytes(source), name)


OPTIMIZE_LEVELS = (0, 1, 2, 3)
DEFAULT_OPTIMIZE = 2
# oxipng presets used by --optimize 2 and 3 (its own levels run from 0 to 6).
_OXIPNG_LEVEL = {2: 2, 3: 4}


def _check_optimize(optimize: int) -> int:
    if isinstance(optimize, bool) or optimize not in OPTIMIZE_LEVELS:
        raise ValueError(f"optimize must be one of {OPTIMIZE_LEVELS}, got {optimize!r}")
    return int(optimize)


def encode_png(result: QuantizedImage, *, optimize: int = DEFAULT_OPTIMIZE) -> bytes:
    """Encode a quantized image as an indexed PNG.

    The PNG has colour type 3 (palette) with exactly ``result.n_colors`` palette entries and
    the smallest bit depth that holds them: 1 bit for 2 colours, 2 for 4, 4 for 16, else 8.
    An RGBA palette adds a tRNS chunk with the alphas of the translucent entries (which
    :func:`kmquant.quantize` puts first, so the chunk is as short as it can be).
    Every level decodes to the same pixels; higher levels only spend more time on deflate.

    Parameters
    ----------
    result : QuantizedImage
    optimize : {0, 1, 2, 3}, optional
        0: unfiltered rows through libdeflate at level 1 (fastest); 1: the same through zlib
        at level 9, byte for byte Pillow's file at 8 bits;
        2 (default): oxipng preset 2, which tries PNG row filters (for 8-bit indices; 1, 2
        and 4-bit rows go unfiltered, which halves the time and rarely costs bytes) and
        compresses with libdeflate (19 to 30% smaller than level 0 and 7 to 8% smaller than
        level 1 on the sample photo at K = 16 to 256, about 0.1 s per megapixel);
        3: oxipng preset 4 (a few % smaller again, about 3x slower).

    Returns
    -------
    bytes
    """
    level = _check_optimize(optimize)
    height, width = result.labels.shape
    palette = result.palette
    if palette.shape[1] == 1:
        palette = np.repeat(palette, 3, axis=1)
    alpha = palette[:, 3] if palette.shape[1] == 4 else np.full(len(palette), 255, np.uint8)
    rgb = np.ascontiguousarray(palette[:, :3])
    labels = np.ascontiguousarray(result.labels, dtype=np.uint8)
    if level >= 2:
        import oxipng

        entries = [
            (int(r), int(g), int(b), int(a)) for (r, g, b), a in zip(rgb, alpha, strict=True)
        ]
        raw = oxipng.RawImage(
            labels.tobytes(), width, height, color_type=oxipng.ColorType.indexed(entries)
        )
        # Keep the PNG indexed (colour type 3) even where greyscale would be smaller, and
        # keep the palette as given: oxipng's palette reduction would drop unused entries and
        # reorder the rest, so images sharing one palette (batch --shared-palette) would not
        # share it in their files. Our palettes come sorted, with used entries only unless
        # shared on purpose.
        if level == 2 and len(palette) <= 16:
            # 1, 2 and 4-bit rows pack several pixels per byte, where row filters rarely pay
            # (never at K = 16 on the photos: the same bytes in benchmarks/compare.py), and
            # trying them doubled the encode (benchmarks/batch.py --stages). ``optimize=3``
            # still tries every filter.
            png = raw.create_optimized_png(
                level=2,
                filter=[oxipng.RowFilter.NoOp],
                color_type_reduction=False,
                grayscale_reduction=False,
                palette_reduction=False,
            )
        else:
            png = raw.create_optimized_png(
                level=_OXIPNG_LEVEL[level],
                color_type_reduction=False,
                grayscale_reduction=False,
                palette_reduction=False,
            )
        return bytes(png)
    return _unfiltered_png(labels, rgb, alpha, level)


# Bytes per IDAT chunk, as Pillow writes them.
_IDAT_BYTES = 65536


def _unfiltered_png(labels: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, level: int) -> bytes:
    """``encode_png`` at levels 0 and 1: unfiltered rows, through libdeflate at level 1
    (``level`` 0) or zlib at level 9 (``level`` 1).

    At level 1 and 8 bits the file is byte for byte what Pillow writes at ``optimize=True``
    (zlib with memLevel 9, IDAT chunks of 64 KiB). libdeflate at its level 1 took half the
    time of zlib at its level 1 for files 8 to 13% smaller (the sample photo at K = 16, 64
    and 256: 0.63 / 1.27 / 1.75 ms against 1.35 / 2.56 / 3.63 ms, exploratory), so level 0,
    the fastest, uses it. Packed rows (1, 2 and 4 bits) go unfiltered too, where Pillow
    tries every filter on every row (``python benchmarks/kernels.py --only png -k 2 4 16``
    compares both).
    """
    height, width = labels.shape
    n_entries = len(rgb)
    bit_depth = 1 if n_entries <= 2 else 2 if n_entries <= 4 else 4 if n_entries <= 16 else 8
    rows = _kernels.png_rows(labels, bit_depth)
    if level == 0:
        data = bytes(deflate.zlib_compress(rows, 1))
    else:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9)
        data = compressor.compress(rows) + compressor.flush()
    chunks = [
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, 3, 0, 0, 0)),
        _png_chunk(b"PLTE", rgb.tobytes()),
    ]
    translucent = np.flatnonzero(alpha < 255)
    if translucent.size:
        # tRNS lists alphas up to the last translucent entry; later entries are opaque.
        chunks.append(_png_chunk(b"tRNS", alpha[: translucent[-1] + 1].tobytes()))
    for start in range(0, len(data), _IDAT_BYTES):  # a zlib stream is never empty
        chunks.append(_png_chunk(b"IDAT", data[start : start + _IDAT_BYTES]))
    chunks.append(_png_chunk(b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(chunks)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_pixels_png(pixels: np.ndarray, *, compress_level: int = 6) -> bytes:
    """A plain (not indexed) PNG of a uint8 grey, RGB or RGBA array: swatches, previews."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Raise unless a file could be written at ``path``: call it before slow work.

    Raises
    ------
    OutputExistsError
        If the file exists and ``overwrite`` is False.
    ImageWriteError
        If its folder does not exist, or the path is a folder.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise ImageWriteError(f"cannot write '{target}': folder '{target.parent}' does not exist")
    if target.is_dir():
        raise ImageWriteError(f"cannot write '{target}': it is a folder")
    if target.exists() and not overwrite:
        raise OutputExistsError(f"'{target}' already exists; refusing to overwrite it")


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False
) -> None:
    """Write bytes to a file atomically: all of them or nothing.

    Parameters
    ----------
    path : str or path
    data : bytes
    overwrite : bool, optional
        Replace an existing file (default False: refuse).

    Raises
    ------
    OutputExistsError
        If the file exists and ``overwrite`` is False.
    ImageWriteError
        If the folder does not exist or the file cannot be written.
    """
    check_output_path(path, overwrite=overwrite)
    target = Path(path)
    folder = target.parent
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise ImageWriteError(f"cannot write '{target}': {error.strerror or error}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _file_mode())
        if overwrite:
            os.replace(temporary, target)
        else:
            # link() fails if the target appeared meanwhile, so nothing is ever clobbered.
            try:
                os.link(temporary, target)
            except FileExistsError:
                raise OutputExistsError(
                    f"'{target}' already exists; refusing to overwrite it"
                ) from None
            except OSError:
                os.replace(temporary, target)
    except OSError as error:
        raise ImageWriteError(f"cannot write '{target}': {error.strerror or error}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_png(
    path: str | os.PathLike[str],
    result: QuantizedImage,
    *,
    overwrite: bool = False,
    optimize: int = DEFAULT_OPTIMIZE,
) -> int:
    """Write a quantized image as an indexed PNG, atomically.

    Parameters
    ----------
    path : str or path
    result : QuantizedImage
    overwrite : bool, optional
        Replace an existing file (default False: refuse, so nothing is lost by accident).
    optimize : {0, 1, 2, 3}, optional
        See :func:`encode_png` (default 2).

    Returns
    -------
    n_bytes : int
        Size of the written file.

    Raises
    ------
    OutputExistsError, ImageWriteError
        See :func:`atomic_write_bytes`.
    """
    data = encode_png(result, optimize=optimize)
    atomic_write_bytes(path, data, overwrite=overwrite)
    return len(data)
