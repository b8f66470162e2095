"""Shared fixtures: real image data from the bundled Kodak sample, never from ../shared."""

from __future__ import annotations

import numpy as np
import pytest

import kmquant


@pytest.fixture(scope="session")
def sample_image() -> np.ndarray:
    """The bundled 768x512 photo (kodim03), read once; tests must not modify it."""
    image = kmquant.read_image(kmquant.sample_image_path())
    image.setflags(write=False)
    return image


@pytest.fixture(scope="session")
def small_photo(sample_image: np.ndarray) -> np.ndarray:
    """A 48x64 crop of the sample with caps, wall and shadow: thousands of real colours."""
    crop = np.ascontiguousarray(sample_image[150:198, 300:364])
    crop.setflags(write=False)
    return crop
