"""Files the dataset tests write: images, a reference-study folder, fixation maps by hand."""

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

RNG = np.random.default_rng(0)


def _image(path: Path, height: int = 12, width: int = 16) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _reference(root: Path, map_shape: tuple[int, int] = (576, 1024)) -> None:
    """Two images of the study's release: .jpg, ``<id>_GSmo_30.mat`` and YOLO labels."""
    (root / "maps").mkdir()
    for stem in ("0001", "0002"):
        _image(root / "images" / f"{stem}.jpg", 72, 128)
        savemat(
            root / "maps" / f"{stem}_GSmo_30.mat",
            {"output_map_norm": np.full(map_shape, 0.5), "meta": np.ones((1, 3))},
        )
    (root / "labels").mkdir()
    # person, car and truck on one image; a bus on the other.
    (root / "labels" / "0001.txt").write_text(
        "0 0.5 0.5 0.1 0.2\n2 0.25 0.5 0.5 0.5\n4 0.75 0.25 0.25 0.25\n"
    )
    (root / "labels" / "0002.txt").write_text("3 0.5 0.5 1.0 1.0\n")


def _hand_map(points: list[tuple[float, float]], height: int, width: int, sigma: float):
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            out[i, j] = sum(
                math.exp(-((j - x) ** 2 + (i - y) ** 2) / (2 * sigma**2)) for x, y in points
            )
    return out / out.max()


@pytest.fixture
def write_image() -> Callable[..., np.ndarray]:
    """``write_image(path, height=12, width=16)``: save random RGB pixels, return them."""
    return _image


@pytest.fixture
def write_reference() -> Callable[..., None]:
    """``write_reference(root, map_shape=(576, 1024))``: two images of the study's release."""
    return _reference


@pytest.fixture
def hand_map() -> Callable[..., np.ndarray]:
    """``hand_map(points, height, width, sigma)``: a fixation map summed pixel by pixel."""
    return _hand_map
