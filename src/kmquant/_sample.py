"""The sample photo shipped with the package (Kodak kodim03, released for unrestricted use)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["SAMPLE_IMAGE_NAME", "sample_image_path"]

SAMPLE_IMAGE_NAME = "kodim03.png"


def sample_image_path() -> Path:
    """Path of the bundled sample photo, 768x512 RGB."""
    return Path(str(resources.files("kmquant") / "data" / SAMPLE_IMAGE_NAME))
