"""Fixation tables and the attention maps made from them, as saliency benchmarks make them.

A fixation table is a CSV file (with a header) or JSON lines (one object per line) with the fields
``image`` (a file name or its stem), ``x`` and ``y`` (image pixels; pixel ``(row i, column j)``
sits at ``x = j, y = i``) and, optionally, ``viewer``, ``duration`` (ms) and ``time`` (ms).

A map is the sum of one isotropic Gaussian per fixation, evaluated at every pixel and divided by
its maximum (so in [0, 1])::

    map[i, j] = Σ_f w_f · exp(-((j - x_f)² + (i - y_f)²) / (2σ²)),   w_f = 1 (or the duration)

σ is given in pixels, or in degrees of visual angle with the screen geometry. One degree at the
centre of the screen spans ``2·d·tan(0.5°)`` cm at viewing distance ``d`` cm, so::

    px_per_deg = 2 · d · tan(0.5°) · screen_px / screen_cm,    σ_px = σ_deg · px_per_deg

(the exact form; ``d · tan(1°)`` differs from it by under 0.01 %). Fixation coordinates are taken
to be in the pixels the image was shown at, one image pixel per screen pixel.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import UnidentifiedImageError

from hagxai.data.format import Sample
from hagxai.errors import DataError, UserError
from hagxai.pil import open_image

REQUIRED = ("image", "x", "y")
OPTIONAL = ("viewer", "duration", "time")


@dataclass
class FixationTable:
    """The fixations of one image: ``xy`` ``M×2`` float32 pixels, ``viewers`` ``M`` int32,
    ``durations`` ``M`` float32 ms (0 when not recorded), ``times`` ``M`` float32 ms."""

    xy: np.ndarray
    viewers: np.ndarray
    durations: np.ndarray
    times: np.ndarray


def pixels_per_degree(screen_px: float, screen_cm: float, distance_cm: float) -> float:
    """Screen pixels per degree of visual angle: ``2·d·tan(0.5°)·screen_px/screen_cm``.

    Args:
        screen_px: the screen's width in pixels.
        screen_cm: the screen's width in cm.
        distance_cm: the viewing distance in cm.
    """
    if min(screen_px, screen_cm, distance_cm) <= 0:
        raise UserError("screen_px, screen_cm and distance_cm must be positive")
    return 2.0 * distance_cm * math.tan(math.radians(0.5)) * screen_px / screen_cm


def sigma_pixels(
    sigma_px: float | None = None,
    sigma_deg: float | None = None,
    screen_px: float | None = None,
    screen_cm: float | None = None,
    distance_cm: float | None = None,
) -> float:
    """σ in pixels from exactly one of ``sigma_px`` or ``sigma_deg`` (with the screen geometry).

    Raises:
        UserError: neither or both given, or ``sigma_deg`` without the geometry.
    """
    if (sigma_px is None) == (sigma_deg is None):
        raise UserError("fixation maps need exactly one of sigma_px or sigma_deg")
    if sigma_px is not None:
        if sigma_px <= 0:
            raise UserError(f"sigma_px must be positive, got {sigma_px}")
        return float(sigma_px)
    if None in (screen_px, screen_cm, distance_cm):
        raise UserError("sigma_deg needs screen_px, screen_cm and distance_cm")
    if sigma_deg <= 0:
        raise UserError(f"sigma_deg must be positive, got {sigma_deg}")
    return float(sigma_deg) * pixels_per_degree(screen_px, screen_cm, distance_cm)


def fixation_map(
    xy: np.ndarray,
    height: int,
    width: int,
    sigma: float,
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """The ``H×W`` float32 map of fixations ``xy`` (``M×2`` pixels), max-normalised.

    The Gaussian is evaluated exactly at every pixel (no truncation). It is separable, so the sum
    over fixations is one ``H×M`` by ``M×W`` matrix product. No fixation gives an all-zero map.
    """
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros((height, width), np.float32)
    w = np.ones(len(xy)) if weights is None else np.asarray(weights, np.float64)
    cols = np.arange(width, dtype=np.float64)
    rows = np.arange(height, dtype=np.float64)
    gx = np.exp(-((cols[None, :] - xy[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((rows[None, :] - xy[:, 1:]) ** 2) / (2 * sigma**2))
    out = (gy * w[:, None]).T @ gx
    peak = out.max()
    return (out / peak if peak > 0 else out).astype(np.float32)


def read_fixation_table(path: Path) -> dict[str, FixationTable]:
    """Read a CSV or JSON-lines fixation table, grouped by image stem.

    Raises:
        DataError: a missing column or a bad value, naming the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: fixation table does not exist")
    rows: dict[str, list[list[float]]] = defaultdict(list)
    for line, record in _records(path):
        missing = [k for k in REQUIRED if record.get(k) in (None, "")]
        if missing:
            raise DataError(
                f"{path}:{line}: missing {', '.join(missing)} (a fixation needs "
                f"{', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})"
            )
        try:
            values = [float(record["x"]), float(record["y"])]
            values += [float(record.get(k) or 0) for k in OPTIONAL]
        except (TypeError, ValueError):
            raise DataError(
                f"{path}:{line}: x, y, viewer, duration and time must be numbers"
            ) from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"{path}:{line}: a fixation value is NaN or inf")
        rows[Path(str(record["image"])).stem].append(values)
    tables = {}
    for stem, values in rows.items():
        array = np.asarray(values, np.float64)
        tables[stem] = FixationTable(
            xy=array[:, :2].astype(np.float32),
            viewers=array[:, 2].astype(np.int32),
            durations=array[:, 3].astype(np.float32),
            times=array[:, 4].astype(np.float32),
        )
    return tables


def _records(path: Path):
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        with path.open() as handle:
            for line, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{line}: not valid JSON ({err.msg})") from None
                if not isinstance(record, dict):
                    raise DataError(f"{path}:{line}: expected a JSON object per line")
                yield line, record
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        absent = [k for k in REQUIRED if k not in (reader.fieldnames or [])]
        if absent:
            raise DataError(
                f"{path}: header lacks column(s) {', '.join(absent)} "
                f"(has {', '.join(reader.fieldnames or []) or 'none'})"
            )
        for line, record in enumerate(reader, start=2):
            yield line, record


@dataclass
class FixationSample(Sample):
    """A sample whose attention map is made from its fixations when loaded.

    Attributes:
        sigma_px: the Gaussian's σ in pixels.
        duration_weighted: weight each fixation by its duration instead of 1.
    """

    sigma_px: float = 1.0
    duration_weighted: bool = False

    def load_map(self) -> np.ndarray:
        """The ``H×W`` map (the image's size) of this sample's fixations, in [0, 1]."""
        try:
            with open_image(self.image_path) as img:
                width, height = img.size
        except FileNotFoundError:
            raise DataError(f"{self.image_path}: image file does not exist") from None
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(f"{self.image_path}: cannot be read as an image ({err})") from None
        weights = self.durations if self.duration_weighted else None
        return fixation_map(self.fixations, height, width, self.sigma_px, weights)
