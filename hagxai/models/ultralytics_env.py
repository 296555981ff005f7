"""Import ultralytics without network attempts and without touching the user's global settings.

ultralytics reads ``YOLO_OFFLINE`` and ``YOLO_CONFIG_DIR`` once, at import time, so every module of
hagxai imports it through :func:`import_ultralytics`. Its plotting wants ``Arial.ttf`` and downloads
it when missing; a local TTF (matplotlib's DejaVuSans) is copied under that name instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from hagxai.config import cache_dir
from hagxai.pil import restore_image_open

_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


def configure_ultralytics(config_dir: Path | None = None) -> Path:
    """Set the environment ultralytics reads at import; return its settings folder.

    A ``YOLO_CONFIG_DIR`` the user already set is kept; otherwise hagxai's cache holds it.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if "YOLO_CONFIG_DIR" not in os.environ:
        os.environ["YOLO_CONFIG_DIR"] = str(config_dir or cache_dir() / "ultralytics")
    settings = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics"
    settings.mkdir(parents=True, exist_ok=True)
    # The yolov5 package keeps its own settings folder (and fonts) under this variable.
    os.environ.setdefault("YOLOV5_CONFIG_DIR", str(settings))
    from matplotlib import font_manager

    local_font = Path(font_manager.findfont("DejaVu Sans"))
    for name in _FONTS:
        if not (settings / name).exists():
            shutil.copyfile(local_font, settings / name)
    return settings


@contextlib.contextmanager
def keep_thread_settings() -> Iterator[None]:
    """Undo what importing ultralytics or yolov5 does to ``OMP_NUM_THREADS`` (they set it to 1,
    or to the cores less one, for every process started afterwards): a process this one starts
    then used another thread count, and CPU results differ in their last bits between thread
    counts (measured on an evidence cache built half in a child process)."""
    before = os.environ.get("OMP_NUM_THREADS")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def import_ultralytics() -> ModuleType:
    """``import ultralytics``, configured for offline use first (see module docstring)."""
    if "ultralytics" not in sys.modules:
        configure_ultralytics()
    with keep_thread_settings():
        import ultralytics

    # ultralytics patches PIL's Image.open for the whole process, and the patch tries to pip
    # install a HEIF decoder when a file is not an image (hagxai.pil).
    restore_image_open()
    return ultralytics
