"""Palettes: from float centres to exact uint8 colours, in a useful order."""

from __future__ import annotations

import numpy as np

from ._kernels import label_counts, palette_rows

__all__ = ["centers_to_palette", "luminance_order"]

# Rec. 709 luma weights: sorting by luma puts similar colours next to each other, which keeps
# neighbouring pixels' indices close and helps the PNG's deflate stage a little.
_LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722])


def check_labels(labels: np.ndarray, n_entries: int) -> None:
    """A ValueError unless every label indexes one of ``n_entries`` palette entries: the
    compiled gathers would read whatever lies past the palette's end."""
    if labels.size and (int(labels.max()) >= n_entries or int(labels.min()) < 0):
        raise ValueError(
            f"labels run from {int(labels.min())} to {int(labels.max())}, outside a palette "
            f"of {n_entries} entries"
        )


def palette_image(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``palette[labels]``: the image (h, w, c) that labels (h, w) into a uint8 palette (k, c)
    stand for, gathered on every thread (numpy's indexing runs on one: 3.1 against 0.29 ms
    for a photo, exploratory). A label outside the palette is a ValueError."""
    labels, palette = np.ascontiguousarray(labels), np.ascontiguousarray(palette, dtype=np.uint8)
    check_labels(labels, len(palette))
    out = np.empty((*labels.shape, palette.shape[1]), dtype=np.uint8)
    return palette_rows(labels, palette, out)


def centers_to_palette(centers: np.ndarray) -> np.ndarray:
    """Round k-means centres (0..255 scale) to the nearest uint8 colours.

    Parameters
    ----------
    centers : ndarray, shape (n_colors, n_channels)

    Returns
    -------
    palette : ndarray of uint8, shape (n_colors, n_channels)

    Examples
    --------
    >>> centers_to_palette(np.array([[0.4, 127.5, 300.0]])).tolist()
    [[0, 128, 255]]
    """
    # np.rint rounds half to even; add a tiny bias so 127.5 -> 128 like a person expects.
    return np.clip(np.floor(np.asarray(centers, dtype=np.float64) + 0.5), 0, 255).astype(np.uint8)


def luminance_order(palette: np.ndarray) -> np.ndarray:
    """Permutation that sorts palette entries by luma, darkest first (ties: by channels).

    Parameters
    ----------
    palette : ndarray of uint8, shape (n_colors, n_channels)

    Returns
    -------
    order : ndarray of intp, shape (n_colors,)
        ``palette[order]`` is sorted.
    """
    palette = np.asarray(palette, dtype=np.float64)
    if palette.shape[1] >= 3:
        luma = palette[:, :3] @ _LUMA_WEIGHTS
    else:
        luma = palette[:, 0]
    keys = [palette[:, channel] for channel in range(palette.shape[1] - 1, -1, -1)]
    return np.lexsort((*keys, luma))


# ------------------------------------------------------------------------- palette files

PALETTE_FORMATS = ("json", "gpl", "css", "png")


def palette_shares(labels: np.ndarray, n_entries: int) -> np.ndarray:
    """Fraction of pixels that use each palette entry (sums to 1)."""
    flat = np.ascontiguousarray(labels).reshape(-1)
    if flat.size and flat.min() < 0:
        raise ValueError("labels must be non-negative")
    # The compiled count, not np.bincount, which copies every label to 8 bytes first.
    top = int(flat.max()) + 1 if flat.size else 0
    counts = label_counts(flat, max(n_entries, top)).astype(np.float64)
    return counts / counts.sum()


def share_order(shares: np.ndarray) -> np.ndarray:
    """Entries by decreasing share (ties: palette order)."""
    return np.argsort(-np.asarray(shares), kind="stable")


def hex_code(color: np.ndarray) -> str:
    """``#rrggbb`` of an RGB (or grey) uint8 colour.

    >>> hex_code(np.array([255, 128, 0], dtype=np.uint8))
    '#ff8000'
    """
    values = [int(v) for v in np.asarray(color).reshape(-1)]
    rgb = values * 3 if len(values) == 1 else values[:3]
    return "#" + "".join(f"{v:02x}" for v in rgb)


def palette_text(
    palette: np.ndarray, shares: np.ndarray, fmt: str, *, name: str = "kmquant"
) -> str:
    """The palette as JSON, a GIMP ``.gpl`` file or CSS custom properties, by share.

    Parameters
    ----------
    palette : ndarray of uint8, shape (n, 3)
    shares : ndarray, shape (n,)
        Fraction of pixels of each entry.
    fmt : {"json", "gpl", "css"}
    name : str, optional
        Palette name (GPL ``Name:``, JSON ``name``).

    Examples
    --------
    >>> print(palette_text(np.array([[255, 0, 0], [0, 0, 0]], np.uint8), np.array([0.25, 0.75]),
    ...                    "css"))
    :root {
      --kmquant-1: #000000; /* 75.0% */
      --kmquant-2: #ff0000; /* 25.0% */
    }
    """
    import json

    order = share_order(shares)
    entries = [
        (hex_code(palette[i]), [int(v) for v in palette[i][:3]], float(shares[i])) for i in order
    ]
    if fmt == "json":
        return json.dumps(
            {
                "name": name,
                "colors": [
                    {"hex": h, "rgb": rgb, "share": round(share, 6)} for h, rgb, share in entries
                ],
            },
            indent=2,
        )
    if fmt == "gpl":
        lines = ["GIMP Palette", f"Name: {name}", f"Columns: {min(len(entries), 16)}", "#"]
        lines += [
            f"{r:3d} {g:3d} {b:3d}\t{h} {100 * share:.1f}%" for h, (r, g, b), share in entries
        ]
        return "\n".join(lines) + "\n"
    if fmt == "css":
        lines = [":root {"]
        lines += [
            f"  --kmquant-{n}: {h}; /* {100 * share:.1f}% */"
            for n, (h, _, share) in enumerate(entries, start=1)
        ]
        return "\n".join([*lines, "}"])
    raise ValueError(f"fmt must be one of json, gpl, css, got {fmt!r}")


def parse_palette(data: bytes, *, name: str = "<palette>") -> np.ndarray:
    """Read a palette from JSON, GIMP ``.gpl``, CSS or an image (indexed PNG or swatch).

    JSON: ``{"colors": [{"hex": ...} or {"rgb": [...]}, ...]}`` or a list of hex strings;
    GPL: ``R G B`` lines; CSS: every ``#rrggbb`` (or ``#rgb``) in order; an image: the palette
    of an indexed image, else its distinct colours in order of first appearance.

    Returns
    -------
    palette : ndarray of uint8, shape (n, 3), 1 <= n <= 256

    Raises
    ------
    ValueError
        If no colour can be found, or more than 256.
    """
    import json
    import re

    colors: list[list[int]] = []
    text = None
    if not data.startswith(b"\x89PNG") and b"\x00" not in data[:512]:
        text = data.decode("utf-8", errors="replace")
    if text is not None and text.lstrip().startswith(("{", "[")):
        document = json.loads(text)
        items = document.get("colors", []) if isinstance(document, dict) else document
        for item in items:
            if isinstance(item, str):
                colors.append(_parse_hex(item))
            elif isinstance(item, dict) and "rgb" in item:
                colors.append([int(v) for v in item["rgb"][:3]])
            elif isinstance(item, dict) and "hex" in item:
                colors.append(_parse_hex(item["hex"]))
    elif text is not None and text.startswith("GIMP Palette"):
        for line in text.splitlines()[1:]:
            match = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)", line)
            if match:
                colors.append([int(v) for v in match.groups()])
    elif text is not None and "#" in text and ("{" in text or ":" in text):
        colors = [
            _parse_hex(code) for code in re.findall(r"#[0-9a-fA-F]{6}\b|#[0-9a-fA-F]{3}\b", text)
        ]
    else:
        colors = _image_palette(data, name)
    if not colors:
        raise ValueError(f"no colours found in palette '{name}'")
    if len(colors) > 256:
        raise ValueError(f"palette '{name}' has {len(colors)} colours, more than 256")
    array = np.array(colors, dtype=np.int64)
    if array.min() < 0 or array.max() > 255:
        raise ValueError(f"palette '{name}' has channel values outside 0..255")
    return array.astype(np.uint8)


def _parse_hex(code: str) -> list[int]:
    digits = code.strip().lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    if len(digits) != 6:
        raise ValueError(f"not a #rrggbb colour: {code!r}")
    return [int(digits[i : i + 2], 16) for i in (0, 2, 4)]


def _image_palette(data: bytes, name: str) -> list[list[int]]:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode == "P":
                used = np.unique(np.asarray(image))
                entries = np.array(image.getpalette("RGB"), dtype=np.uint8).reshape(-1, 3)
                return entries[used].tolist()
            pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read palette '{name}': {error}") from None
    _, first = np.unique(pixels, axis=0, return_index=True)
    return pixels[np.sort(first)].tolist()
