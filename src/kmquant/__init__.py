"""kmquant: image compression by k-means colour quantization.

An image is reduced to K colours found by k-means (on its colour histogram); every pixel
keeps only the index of its colour, stored as a real indexed PNG.

>>> import kmquant
>>> image = kmquant.read_image(kmquant.sample_image_path())
>>> result = kmquant.quantize(image, 16, rng=0)
>>> result.palette.shape, result.labels.shape
((16, 3), (512, 768))
"""

from . import metrics
from ._exceptions import (
    ImageReadError,
    ImageWriteError,
    KmquantError,
    KmquantWarning,
    OutputExistsError,
    QualityTooLowError,
)
from ._sample import sample_image_path
from .histogram import ColorHistogram, color_histogram
from .io import encode_png, read_image, write_png
from .kmeans import (
    KMeansResult,
    compute_centroids,
    find_closest_centroids,
    kmeans_init_centroids,
    run_kmeans,
)
from .quantize import QuantizedImage, quantize, remap_image
from .select import best_within_bytes, elbow_curve, fewest_colors, find_knee

__version__ = "0.1.0"

__all__ = [
    "ColorHistogram",
    "ImageReadError",
    "ImageWriteError",
    "KMeansResult",
    "KmquantError",
    "KmquantWarning",
    "OutputExistsError",
    "QualityTooLowError",
    "QuantizedImage",
    "__version__",
    "best_within_bytes",
    "color_histogram",
    "compute_centroids",
    "elbow_curve",
    "encode_png",
    "fewest_colors",
    "find_closest_centroids",
    "find_knee",
    "kmeans_init_centroids",
    "metrics",
    "quantize",
    "read_image",
    "remap_image",
    "run_kmeans",
    "sample_image_path",
    "write_png",
]


def __dir__() -> list[str]:
    # Submodules become attributes once imported; the public surface is __all__ alone.
    return list(__all__)
