"""PIL's own ``Image.open``, whatever else was imported.

Importing ultralytics (directly, or through the ``yolov5`` package) replaces ``PIL.Image.open``
for the whole process with a version that, on a file PIL cannot identify, tries to pip install a
HEIF decoder and then fails with ``ModuleNotFoundError`` instead of PIL's error. hagxai reads
images through :func:`open_image`, so a bad file gives a clear message and nothing is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

_PATCHES = "ultralytics.utils.patches"


def original_open():
    """PIL's ``Image.open`` as PIL defines it (undoing ultralytics' replacement if present)."""
    opener = Image.open
    if getattr(opener, "__module__", "") == _PATCHES:
        opener = getattr(sys.modules[_PATCHES], "_image_open", opener)
    return opener


def restore_image_open() -> None:
    """Put PIL's own ``Image.open`` back process-wide."""
    Image.open = original_open()


def open_image(path: str | Path) -> Image.Image:
    """``PIL.Image.open(path)`` with PIL's own opener."""
    return original_open()(path)
