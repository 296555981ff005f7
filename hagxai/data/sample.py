"""One sample of a dataset, and reading its image and attention map files.

A :class:`Sample` names its files and carries its annotations; its image and map are read on
demand by :func:`read_image` and :func:`read_map`, which raise :class:`~hagxai.errors.DataError`
naming a file that is missing or cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from hagxai.errors import DataError
from hagxai.pil import open_image


@dataclass
class Sample:
    """One image with its human attention and annotations.

    Attributes:
        id: unique sample id.
        split: ``train``, ``val`` or ``test``.
        image_path, map_path: absolute paths of the image and its attention map.
        label: class index (classification), else ``None``.
        boxes: ``N×4`` float32 xyxy pixel boxes (detection; empty for classification).
        box_labels: ``N`` int64 class indices of ``boxes``.
        fixations: ``M×2`` float32 (x, y) pixels; ``viewers`` ``M`` int32; ``durations`` ``M`` ms.
    """

    id: str
    split: str
    image_path: Path
    map_path: Path | None
    label: int | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fixations: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    viewers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    durations: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def load_image(self) -> np.ndarray:
        """The image as ``H×W×3`` uint8 RGB; ``DataError`` names the file if it can't be read."""
        return read_image(self.image_path)

    def load_map(self) -> np.ndarray:
        """The human attention map as ``H×W`` float32; ``DataError`` names a bad file."""
        if self.map_path is None:
            raise DataError(f"sample {self.id} has no attention map")
        return read_map(self.map_path)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as ``H×W×3`` uint8 RGB, or raise ``DataError`` naming the file."""
    try:
        with open_image(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None


def read_image_size(path: Path) -> tuple[int, int]:
    """An image file's ``(H, W)`` from its header (no decoding), or ``DataError`` naming it."""
    try:
        with open_image(path) as img:
            return img.size[1], img.size[0]
    except FileNotFoundError:
        raise DataError(f"{path}: image file does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None


MAT_VARIABLE = "output_map_norm"
"""The variable holding the map in the reference study's ``.mat`` files."""
MAP_SUFFIXES = (".npy", ".png", ".jpg", ".jpeg", ".mat")


def read_map(path: Path) -> np.ndarray:
    """Read an attention map as ``H×W`` float32, checked for shape and finite values.

    The reader follows the suffix: ``.npy`` (values as stored), ``.png`` / ``.jpg`` / ``.jpeg``
    (greyscale; 8- or 16-bit values divided by their range, so in [0, 1]) or MATLAB ``.mat``
    (the variable ``output_map_norm`` of the reference study when present, else the file's only
    2-D numeric variable).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: attention map file does not exist")
    if suffix == ".npy":
        data = _read_npy(path)
    elif suffix in (".png", ".jpg", ".jpeg"):
        data = _read_grey_image(path)
    elif suffix == ".mat":
        data = _read_mat(path)
    else:
        raise DataError(
            f"{path}: unknown attention map type {suffix!r} (expected one of "
            f"{', '.join(MAP_SUFFIXES)})"
        )
    if data.ndim != 2:
        raise DataError(f"{path}: attention map must be 2-D (H×W), has shape {data.shape}")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: attention map holds NaN or inf")
    return data.astype(np.float32, copy=False)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: cannot be read as a .npy attention map ({err})") from None


def _read_grey_image(path: Path) -> np.ndarray:
    try:
        with open_image(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.float64) / 65535.0
            if img.mode != "L":
                img = img.convert("L")
            return np.asarray(img, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot be read as a greyscale attention map ({err})") from None


def _read_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        contents = loadmat(path)
    except (ValueError, OSError, NotImplementedError) as err:
        raise DataError(f"{path}: cannot be read as a MATLAB .mat file ({err})") from None
    arrays = {
        k: v
        for k, v in contents.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "fiub"
    }
    if MAT_VARIABLE in arrays:
        return np.asarray(arrays[MAT_VARIABLE], dtype=np.float64)
    two_d = [k for k, v in arrays.items() if v.ndim == 2]
    if len(two_d) != 1:
        found = ", ".join(sorted(arrays)) or "none"
        raise DataError(
            f"{path}: no variable {MAT_VARIABLE!r} and not exactly one 2-D numeric variable "
            f"(numeric variables: {found})"
        )
    return np.asarray(arrays[two_d[0]], dtype=np.float64)
