"""One sample of a dataset, and reading its image and attention map files.

A :class:`Sample` names its files and carries its annotations; its image and map are read on
demand by :func:`read_image` and :func:`read_map`, which raise :class:`~hagxai.errors.DataError`
naming a file that is missing or cannot be read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
    """Read an image file as ``H×W×3`` uint8 RGB, or raise ``DataError`` naming the file.

    The image is returned as a viewer shows it, the frame human attention is recorded in: EXIF
    orientation applied; greyscale, palette, RGBA (alpha dropped) and CMYK converted to RGB;
    16-bit and 32-bit images scaled to 8 bits (not clipped).
    """
    try:
        with open_image(path) as img:
            _check_size(path, img.size)
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I") or img.mode == "F":
                return _wide_to_rgb(img)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None


def _wide_to_rgb(img: Image.Image) -> np.ndarray:
    """A 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) image as 8-bit RGB: integer
    images divided by their type's range, float ones taken as [0, 1]."""
    array = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        array = array / 65535.0
    elif img.mode == "I":
        array = array / (65535.0 if array.max(initial=0) <= 65535 else 2**32 - 1)
    grey = np.clip(np.rint(np.nan_to_num(array) * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _check_size(path: Path, size: tuple[int, int]) -> None:
    if size[0] < 1 or size[1] < 1:
        raise DataError(f"{path}: image has no pixels ({size[0]}×{size[1]})")


# EXIF orientations 5-8 turn the stored image by 90°: a viewer shows it with sides swapped.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


def read_image_size(path: Path) -> tuple[int, int]:
    """An image file's ``(H, W)`` as shown (EXIF orientation applied) from its header (no
    decoding), or ``DataError`` naming it."""
    try:
        with open_image(path) as img:
            _check_size(path, img.size)
            width, height = img.size
            if img.getexif().get(_ORIENTATION_TAG) in _SWAPPING_ORIENTATIONS:
                width, height = height, width
            return height, width
    except FileNotFoundError:
        raise DataError(f"{path}: image file does not exist") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
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
    if data.dtype.kind not in "fiub":
        raise DataError(f"{path}: attention map must hold real numbers, holds {data.dtype}")
    if data.ndim != 2:
        raise DataError(f"{path}: attention map must be 2-D (H×W), has shape {data.shape}")
    if data.size == 0:
        raise DataError(f"{path}: attention map is empty (shape {data.shape})")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: attention map holds NaN or inf")
    if data.min() < 0:
        raise DataError(
            f"{path}: attention map holds negative values (min {float(data.min()):.3g}); "
            "attention is never negative"
        )
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
    from scipy.io.matlab import MatReadError

    try:
        contents = loadmat(path)
    except (ValueError, OSError, NotImplementedError, MatReadError) as err:
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
