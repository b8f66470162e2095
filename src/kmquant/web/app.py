"""The HTTP layer: a small JSON + PNG API and the page that drives it.

Only ``kmquant serve`` imports this module. Uploaded images are decoded once, their colour
histogram counted once, and kept in memory in a bounded least-recently-used store, so moving
the K slider only re-runs k-means on the histogram. Requests name images by random tokens:
nothing a client sends ever becomes a file system path.
"""

from __future__ import annotations

import base64
import math
import secrets
import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from .._exceptions import ImageReadError, KmquantError
from .._sample import sample_image_path
from ..colorspace import SPACES
from ..histogram import ColorHistogram, color_histogram
from ..io import decode_first_frame, encode_pixels_png, encode_png, frames_left_out, read_bytes
from ..metrics import composite, mse, ssim
from ..palette import hex_code, palette_shares, palette_text, share_order
from ..quantize import (
    MAX_COLORS,
    QuantizedImage,
    prepare_pixels,
    quantize_by_cells,
    quantize_histogram,
    takes_cells,
)
from ..remap import DITHERS

__all__ = ["ImageStore", "create_app"]

DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PIXELS = 100_000_000
DEFAULT_MAX_IMAGES = 16
DEFAULT_MAX_STORED_BYTES = 1024 * 1024 * 1024


@dataclass
class StoredImage:
    """An uploaded image, decoded, with its histogram (computed once)."""

    pixels: np.ndarray
    histogram: ColorHistogram
    input_bytes: int
    name: str

    @property
    def n_bytes(self) -> int:
        return int(
            self.pixels.nbytes
            + self.histogram.inverse.nbytes
            + self.histogram.colors.nbytes
            + self.histogram.counts.nbytes
        )


class ImageStore:
    """Images by token, least recently used evicted beyond a count and a byte budget."""

    def __init__(self, max_images: int, max_bytes: int) -> None:
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, StoredImage] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image: StoredImage) -> str:
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._items[token] = image
            while len(self._items) > self.max_images or (
                len(self._items) > 1
                and sum(i.n_bytes for i in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)
        return token

    def get(self, token: str) -> StoredImage:
        with self._lock:
            image = self._items.get(token)
            if image is None:
                raise HTTPException(404, "unknown or expired image; upload it again")
            self._items.move_to_end(token)
            return image

    def __len__(self) -> int:
        return len(self._items)


# Query parameters shared by the endpoints that quantize: validated once, here.
KParam = Annotated[int, Query(ge=1, le=MAX_COLORS)]
SpaceParam = Annotated[str, Query(pattern="^(" + "|".join(SPACES) + ")$")]
DitherParam = Annotated[str, Query(pattern="^(" + "|".join(DITHERS) + ")$")]
StrengthParam = Annotated[float, Query(ge=0, le=1)]
SeedParam = Annotated[int, Query(ge=0, le=2**32 - 1)]


def _store_image(store: ImageStore, data: bytes, name: str, max_pixels: int) -> dict[str, Any]:
    import io

    try:
        # The header alone gives the size: refuse huge images before decoding a pixel.
        with Image.open(io.BytesIO(data)) as peek:
            width, height = peek.size
    except Exception:
        width = height = 0
    if width * height > max_pixels:
        raise HTTPException(
            400, f"image has {width * height:,} pixels, more than the limit of {max_pixels:,}"
        )
    try:
        with warnings.catch_warnings():
            # Within our own pixel limit, Pillow's generic bomb warning says nothing new.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image, n_frames = decode_first_frame(data, name)
    except ImageReadError as error:
        raise HTTPException(400, str(error).replace(f"'{name}'", "the upload")) from None
    # An animation's left-out frames go back to the page.
    notes = [frames_left_out("the upload", n_frames)] if n_frames > 1 else []
    pixels, _ = prepare_pixels(image)
    stored = StoredImage(
        pixels=pixels, histogram=color_histogram(pixels), input_bytes=len(data), name=name
    )
    token = store.add(stored)
    height, width = pixels.shape[:2]
    return {
        "id": token,
        "name": name,
        "width": width,
        "height": height,
        "distinct_colors": stored.histogram.n_colors,
        "has_alpha": pixels.shape[2] == 4,
        "input_bytes": len(data),
        "notes": notes,
    }


def _visible(pixels: np.ndarray) -> np.ndarray:
    return composite(pixels, (255, 255, 255)) if pixels.shape[2] == 4 else pixels


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def _quantize(
    stored: StoredImage,
    k: int,
    space: str,
    dither: str,
    strength: float,
    seed: int,
    speed: str = "default",
) -> QuantizedImage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if takes_cells(stored.pixels, speed, dither, strength):
            by_cells = quantize_by_cells(stored.pixels, k, space=space)
            if by_cells is not None:
                return by_cells
        return quantize_histogram(
            stored.histogram,
            stored.pixels.shape[:2],
            k,
            space=space,
            dither=dither,
            dither_strength=strength,
            rng=seed,
            speed=speed,
        )


def create_app(
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_images: int = DEFAULT_MAX_IMAGES,
    max_stored_bytes: int = DEFAULT_MAX_STORED_BYTES,
) -> FastAPI:
    """The FastAPI application (``kmquant serve`` runs it with uvicorn).

    Parameters
    ----------
    max_upload_bytes : int
        Larger uploads get 413.
    max_pixels : int
        Images with more pixels get 400 (Pillow's decompression-bomb guard is set to match).
    max_images, max_stored_bytes : int
        Bounds of the in-memory store; the least recently used images are evicted.
    """
    app = FastAPI(
        title="kmquant",
        description="K-means colour quantization: upload an image once, then re-quantize it "
        "live. Images are kept in memory (bounded) and named by random tokens.",
        version="1",
    )
    store = ImageStore(max_images, max_stored_bytes)
    app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def bad_parameters(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "request"
        return JSONResponse(
            {"detail": f"bad parameter {where}: {first.get('msg', 'invalid')}"}, status_code=400
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        html = (resources.files("kmquant") / "web" / "static" / "index.html").read_text()
        return HTMLResponse(html)

    @app.post("/api/images", summary="Upload an image (the raw file as the request body)")
    async def upload(
        request: Request, name: Annotated[str, Query(max_length=200)] = "upload"
    ) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than the limit of {max_upload_bytes:,} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_upload_bytes:
                raise HTTPException(
                    413, f"upload larger than the limit of {max_upload_bytes:,} bytes"
                )
            chunks.append(chunk)
        return _store_image(store, b"".join(chunks), name, max_pixels)

    @app.post("/api/images/sample", summary="Use the bundled sample photo")
    def sample() -> dict[str, Any]:
        path = sample_image_path()
        return _store_image(store, read_bytes(path), path.name, max_pixels)

    @app.get(
        "/api/images/{image_id}/original.png",
        summary="The uploaded image as PNG",
        response_class=Response,
    )
    def original(image_id: str) -> Response:
        stored = store.get(image_id)
        return Response(encode_pixels_png(stored.pixels, compress_level=1), media_type="image/png")

    @app.get("/api/images/{image_id}/quantize", summary="Re-quantize: preview and metrics")
    def requantize(
        image_id: str,
        k: KParam = 16,
        space: SpaceParam = "rgb",
        dither: DitherParam = "none",
        strength: StrengthParam = 1.0,
        seed: SeedParam = 0,
        speed: Annotated[str, Query(pattern="^(fast|default|best)$")] = "default",
    ) -> dict[str, Any]:
        stored = store.get(image_id)
        started = time.perf_counter()
        result = _quantize(stored, k, space, dither, strength, seed, speed)
        quantize_seconds = time.perf_counter() - started
        png = encode_png(result, optimize=0)
        reference, output = (
            _visible(stored.pixels),
            _visible(result.to_image().reshape(stored.pixels.shape)),
        )
        error = mse(reference, output)
        shares = palette_shares(result.labels, result.n_colors)
        order = share_order(shares)
        return {
            "k": k,
            "n_colors": result.n_colors,
            "png": base64.b64encode(png).decode("ascii"),
            "psnr": None if error == 0 else round(10 * math.log10(255**2 / error), 3),
            "ssim": round(ssim(_luma(reference), _luma(output)), 4),
            "preview_bytes": len(png),
            "input_bytes": stored.input_bytes,
            "ratio": round(stored.input_bytes / len(png), 3),
            "palette": [
                {
                    "hex": hex_code(result.palette[i]),
                    "share": round(float(shares[i]), 5),
                    "alpha": int(result.palette[i][3]) if result.palette.shape[1] == 4 else 255,
                }
                for i in order
            ],
            "quantize_seconds": round(quantize_seconds, 4),
            "seconds": round(time.perf_counter() - started, 4),
        }

    @app.get(
        "/api/images/{image_id}/result.png",
        summary="Download the optimised PNG",
        response_class=Response,
    )
    def download(
        image_id: str,
        k: KParam = 16,
        space: SpaceParam = "rgb",
        dither: DitherParam = "none",
        strength: StrengthParam = 1.0,
        seed: SeedParam = 0,
    ) -> Response:
        stored = store.get(image_id)
        result = _quantize(stored, k, space, dither, strength, seed)
        filename = f"kmquant-k{result.n_colors}.png"
        return Response(
            encode_png(result),
            media_type="image/png",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    @app.get(
        "/api/images/{image_id}/palette", summary="Download the palette", response_class=Response
    )
    def palette(
        image_id: str,
        k: KParam = 16,
        space: SpaceParam = "rgb",
        format: Annotated[str, Query(pattern="^(json|gpl|css)$")] = "json",
        seed: SeedParam = 0,
    ) -> Response:
        stored = store.get(image_id)
        result = _quantize(stored, k, space, "none", 1.0, seed)
        shares = palette_shares(result.labels, result.n_colors)
        text = palette_text(result.palette[:, :3], shares, format, name="kmquant")
        media = {"json": "application/json", "gpl": "text/plain", "css": "text/css"}[format]
        return Response(
            text,
            media_type=media,
            headers={
                "Content-Disposition": f'attachment; filename="palette-k{result.n_colors}.{format}"'
            },
        )

    @app.exception_handler(KmquantError)
    async def library_error(request: Request, error: KmquantError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    return app
