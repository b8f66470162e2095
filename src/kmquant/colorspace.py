r"""Colour spaces k-means can work in: sRGB, CIELAB, OKLab and HSV (as a cone).

Every conversion is vectorised, takes colours as an (n, 3) array, and has an inverse, so the
palette found in any space comes back as exact sRGB uint8.

* ``rgb``: the sRGB values themselves (0..255). k-means then minimises exactly the MSE, so
  this space gives the highest PSNR.
* ``lab``: CIELAB (D65 white). Euclidean distance approximates perceived difference (CIE76);
  L in 0..100, a and b about -128..127.
* ``oklab``: Björn Ottosson's OKLab (2020), a more uniform perceptual space than CIELAB,
  especially for blues; L in 0..1, a and b about -0.4..0.4.
* ``hsv``: hue, saturation, value as a *cone*: ``(S V cos H, S V sin H, V)``, 0..255. Hue is
  an angle, so red at 0 and at 359 degrees are neighbours, and dark colours, whose hue is
  invisible, sit close together at the tip.

sRGB is decoded properly: the transfer curve is undone (``srgb_to_linear``) before the linear
matrices of XYZ and OKLab, and applied again on the way back.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "OPAQUE",
    "PARTIAL",
    "SPACES",
    "TRANSPARENT",
    "alpha_classes",
    "color_features",
    "features_to_palette",
    "from_space",
    "lab_to_srgb",
    "linear_to_srgb",
    "oklab_to_srgb",
    "space_scale",
    "srgb_to_lab",
    "srgb_to_linear",
    "srgb_to_oklab",
    "to_space",
]

SPACES = ("rgb", "lab", "oklab", "hsv")

# sRGB (linear) to CIE XYZ, D65, IEC 61966-2-1.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_WHITE_D65 = _RGB_TO_XYZ @ np.ones(3)

# OKLab, from linear sRGB (Ottosson 2020).
_RGB_TO_LMS = np.array(
    [
        [0.4122214708, 0.5363325363, 0.0514459929],
        [0.2119034982, 0.6806995451, 0.1073969566],
        [0.0883024619, 0.2817188376, 0.6299787005],
    ]
)
_LMS_TO_OKLAB = np.array(
    [
        [0.2104542553, 0.7936177850, -0.0040720468],
        [1.9779984951, -2.4285922050, 0.4505937099],
        [0.0259040371, 0.7827717662, -0.8086757660],
    ]
)
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS)
_OKLAB_TO_LMS = np.linalg.inv(_LMS_TO_OKLAB)


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``points @ matrix.T`` for (..., 3) points, by einsum: BLAS would take millions of
    colours on several threads that then spin idle and slow what follows."""
    return np.einsum("...j,kj->...k", points, matrix)


_EPSILON = 216 / 24389  # CIE: (6/29)^3
_KAPPA = 24389 / 27


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB values in 0..255 to linear light in 0..1 (the IEC 61966-2-1 curve)."""
    value = np.asarray(srgb, dtype=np.float64) / 255.0
    return np.where(value <= 0.04045, value / 12.92, ((value + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light in 0..1 to sRGB in 0..255 (floats, clipped to the gamut)."""
    value = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    encoded = np.where(value <= 0.0031308, 12.92 * value, 1.055 * value ** (1 / 2.4) - 0.055)
    return 255.0 * encoded


def srgb_to_lab(srgb: np.ndarray) -> np.ndarray:
    """sRGB (n, 3) in 0..255 to CIELAB under D65.

    Examples
    --------
    >>> np.round(srgb_to_lab(np.array([[255, 0, 0]])), 2).tolist()
    [[53.24, 80.09, 67.2]]
    """
    xyz = _transform(srgb_to_linear(srgb), _RGB_TO_XYZ) / _WHITE_D65
    f = np.where(xyz > _EPSILON, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1
    )


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (n, 3) to sRGB floats in 0..255."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[:, 0] + 16) / 116
    fx = fy + lab[:, 1] / 500
    fz = fy - lab[:, 2] / 200
    f = np.stack([fx, fy, fz], axis=1)
    xyz = np.where(f**3 > _EPSILON, f**3, (116 * f - 16) / _KAPPA)
    xyz[:, 1] = np.where(lab[:, 0] > _KAPPA * _EPSILON, fy**3, lab[:, 0] / _KAPPA)
    return linear_to_srgb(_transform(xyz * _WHITE_D65, _XYZ_TO_RGB))


def srgb_to_oklab(srgb: np.ndarray) -> np.ndarray:
    """sRGB (n, 3) in 0..255 to OKLab.

    Examples
    --------
    >>> np.round(srgb_to_oklab(np.array([[255, 255, 255]])), 4).tolist()
    [[1.0, 0.0, 0.0]]
    """
    lms = _transform(srgb_to_linear(srgb), _RGB_TO_LMS)
    return _transform(np.cbrt(lms), _LMS_TO_OKLAB)


def oklab_to_srgb(oklab: np.ndarray) -> np.ndarray:
    """OKLab (n, 3) to sRGB floats in 0..255."""
    lms = _transform(np.asarray(oklab, dtype=np.float64), _OKLAB_TO_LMS) ** 3
    return linear_to_srgb(_transform(lms, _LMS_TO_RGB))


def _srgb_to_hsv_cone(srgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(srgb, dtype=np.float64)
    value = rgb.max(axis=1)
    chroma = value - rgb.min(axis=1)  # = S * V on the 0..255 scale
    safe = np.where(chroma > 0, chroma, 1.0)
    red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    sector = np.where(
        value == red,
        ((green - blue) / safe) % 6,
        np.where(value == green, (blue - red) / safe + 2, (red - green) / safe + 4),
    )
    hue = np.where(chroma > 0, sector * (np.pi / 3), 0.0)
    return np.stack([chroma * np.cos(hue), chroma * np.sin(hue), value], axis=1)


def _hsv_cone_to_srgb(cone: np.ndarray) -> np.ndarray:
    cone = np.asarray(cone, dtype=np.float64)
    value = np.clip(cone[:, 2], 0.0, 255.0)
    chroma = np.minimum(np.hypot(cone[:, 0], cone[:, 1]), value)
    hue = np.arctan2(cone[:, 1], cone[:, 0]) % (2 * np.pi)
    sector = hue / (np.pi / 3)
    x = chroma * (1 - np.abs(sector % 2 - 1))
    zeros = np.zeros_like(chroma)
    index = np.minimum(sector.astype(np.int64), 5)
    choices = [
        (chroma, x, zeros),
        (x, chroma, zeros),
        (zeros, chroma, x),
        (zeros, x, chroma),
        (x, zeros, chroma),
        (chroma, zeros, x),
    ]
    rgb = np.zeros((len(value), 3))
    for sector_index, (r, g, b) in enumerate(choices):
        chosen = index == sector_index
        rgb[chosen] = np.stack([r[chosen], g[chosen], b[chosen]], axis=1)
    return rgb + (value - chroma)[:, None]


def to_space(srgb: np.ndarray, space: str) -> np.ndarray:
    """sRGB (n, 3) in 0..255 to the named space (float64)."""
    if space == "rgb":
        return np.asarray(srgb, dtype=np.float64)
    if space == "lab":
        return srgb_to_lab(srgb)
    if space == "oklab":
        return srgb_to_oklab(srgb)
    if space == "hsv":
        return _srgb_to_hsv_cone(srgb)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def from_space(points: np.ndarray, space: str) -> np.ndarray:
    """The named space back to sRGB floats in 0..255 (round to get uint8)."""
    if space == "rgb":
        return np.clip(np.asarray(points, dtype=np.float64), 0.0, 255.0)
    if space == "lab":
        return lab_to_srgb(points)
    if space == "oklab":
        return oklab_to_srgb(points)
    if space == "hsv":
        return _hsv_cone_to_srgb(points)
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")


def space_scale(space: str) -> float:
    """Size of a unit step of the space's lightness axis: white minus black."""
    return {"rgb": 255.0, "lab": 100.0, "oklab": 1.0, "hsv": 255.0}[space]


# ---------------------------------------------------------------- k-means features

OPAQUE, PARTIAL, TRANSPARENT = 0, 1, 2
# Distance between alpha classes, in units of the space's scale: far beyond any colour
# difference, so no cluster ever mixes classes and no pixel maps to another class.
_CLASS_SEPARATION = 1000.0


def alpha_classes(alpha: np.ndarray) -> np.ndarray:
    """0 for opaque (255), 1 for partial, 2 for fully transparent (0) alpha values."""
    alpha = np.asarray(alpha)
    return np.where(alpha == 255, OPAQUE, np.where(alpha == 0, TRANSPARENT, PARTIAL))


def _white(space: str) -> np.ndarray:
    """Coordinates of sRGB white in ``space`` (black is the origin of every space here)."""
    return to_space(np.full((1, 3), 255, dtype=np.uint8), space)[0]


def color_features(colors: np.ndarray, space: str) -> np.ndarray:
    r"""The points k-means sees for uint8 colours of 1, 3 or 4 channels.

    Grey (1 channel) in ``rgb`` stays its value; otherwise grey is taken as RGB. RGB colours
    are converted to ``space``.

    An RGBA colour is judged as it is seen: composited over black and over white. With
    :math:`c` the colour in the space, :math:`a` its alpha in 0..1 and :math:`W` white (black
    is the origin), it becomes :math:`(a c,\; a c - a W,\; 1000\,s\,\text{class})`: the
    colour over black, the colour over white less the constant :math:`W`, and the alpha
    class far away (:math:`s` is the space's scale). The squared distance between two such
    points is the squared error over black plus the squared error over white, so k-means
    minimises exactly what the composited metrics measure; differences of nearly invisible
    colours cost little, and no cluster mixes alpha classes.

    Returns
    -------
    ndarray of float64, shape (n, d) with d = 1, 3 or 7
    """
    colors = np.asarray(colors)
    n_channels = colors.shape[1]
    if n_channels == 1:
        if space == "rgb":
            return colors.astype(np.float64)
        return to_space(np.repeat(colors, 3, axis=1), space)
    if n_channels == 3:
        return to_space(colors, space)
    if n_channels != 4:
        raise ValueError(f"colors must have 1, 3 or 4 channels, got {n_channels}")
    alpha = colors[:, 3:4].astype(np.float64) / 255.0
    over_black = to_space(colors[:, :3], space) * alpha
    over_white = over_black - alpha * _white(space)
    classes = alpha_classes(colors[:, 3]).astype(np.float64)
    return np.column_stack(
        [over_black, over_white, classes * _CLASS_SEPARATION * space_scale(space)]
    )


def features_to_palette(centers: np.ndarray, space: str, n_channels: int) -> np.ndarray:
    """Invert :func:`color_features` for k-means centres: exact uint8 palette entries.

    For RGBA, an opaque class centre gets alpha 255 and a partial one an alpha in 1..254,
    so alpha classes survive the rounding.
    """
    centers = np.asarray(centers, dtype=np.float64)
    if n_channels == 1:
        srgb = centers if space == "rgb" else from_space(centers, space).mean(axis=1, keepdims=True)
        return np.clip(np.floor(srgb + 0.5), 0, 255).astype(np.uint8)
    if n_channels == 3:
        return np.clip(np.floor(from_space(centers, space) + 0.5), 0, 255).astype(np.uint8)
    white = _white(space)
    over_black, over_white = centers[:, :3], centers[:, 3:6]
    # Over black minus over white is a W: project it on W for the alpha.
    alpha = np.clip((over_black - over_white) @ white / (white @ white), 0.0, 1.0)
    classes = np.rint(centers[:, 6] / (_CLASS_SEPARATION * space_scale(space))).astype(np.int64)
    safe_alpha = np.where(alpha > 0, alpha, 1.0)
    srgb = from_space(over_black / safe_alpha[:, None], space)
    alpha_byte = np.where(
        classes == OPAQUE,
        255,
        np.where(classes == TRANSPARENT, 0, np.clip(np.floor(255 * alpha + 0.5), 1, 254)),
    )
    rgb = np.clip(np.floor(srgb + 0.5), 0, 255)
    rgb[classes == TRANSPARENT] = 0
    return np.column_stack([rgb, alpha_byte]).astype(np.uint8)
