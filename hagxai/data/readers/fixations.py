"""The ``fixations`` format: a folder of images and a fixation table; maps made on loading.

A fixation table is a CSV file (with a header) or JSON lines (one object per line) with the fields
``image`` (a file name or its stem), ``x`` and ``y`` (image pixels) and, optionally, ``viewer``,
``duration`` (ms) and ``time`` (ms). Each image's map is made from its fixations at the image's
size by :func:`hagxai.data.fixations.fixation_map`, with σ from ``sigma_px`` or ``sigma_deg`` and
the screen geometry (:func:`hagxai.data.fixations.sigma_pixels`).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hagxai.data.dataset import AttentionDataset
from hagxai.data.fixations import fixation_map, sigma_pixels
from hagxai.data.readers.labels import read_labels
from hagxai.data.readers.scan import Scan, assemble, find_images, resolve
from hagxai.data.sample import Sample, read_image_size
from hagxai.errors import DataError

REQUIRED = ("image", "x", "y")
OPTIONAL = ("viewer", "duration", "time")
FIXATION_TABLES = ("fixations.csv", "fixations.jsonl")
"""The table names looked for in the dataset folder when ``fixations`` is not given."""


@dataclass
class FixationTable:
    """The fixations of one image: ``xy`` ``M×2`` float32 pixels, ``viewers`` ``M`` int32,
    ``durations`` ``M`` float32 ms (0 when not recorded), ``times`` ``M`` float32 ms."""

    xy: np.ndarray
    viewers: np.ndarray
    durations: np.ndarray
    times: np.ndarray


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
        height, width = read_image_size(self.image_path)
        weights = self.durations if self.duration_weighted else None
        return fixation_map(self.fixations, height, width, self.sigma_px, weights)


def read_fixations(
    root: Path,
    format: str,
    *,
    task: str | None = None,
    images: str | Path | None = None,
    fixations: str | Path | None = None,
    labels: str | Path | None = None,
    classes: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    sigma_px: float | None = None,
    sigma_deg: float | None = None,
    screen_px: float | None = None,
    screen_cm: float | None = None,
    distance_cm: float | None = None,
    duration_weighted: bool = False,
) -> tuple[AttentionDataset, list[str]]:
    """Read ``root`` in the ``fixations`` format: the dataset and every problem found.

    Options as :func:`hagxai.data.open_dataset`; ``fixations`` defaults to the first of
    :data:`FIXATION_TABLES` in ``root``.

    Raises:
        UserError: σ not given exactly once, or in degrees without the screen geometry.
    """
    sigma = sigma_pixels(sigma_px, sigma_deg, screen_px, screen_cm, distance_cm)
    scan = Scan()
    found = find_images(resolve(root, images, "images"), scan)
    if fixations is None:
        present = [name for name in FIXATION_TABLES if (root / name).is_file()]
        fixations = present[0] if present else FIXATION_TABLES[0]
    table_path = resolve(root, fixations, "")
    tables = read_fixation_table(table_path)
    scan.files.append(table_path)
    for stem, (image, _split) in found.items():
        if stem not in tables:
            scan.problems.append(f"{image}: no fixations in {table_path}")
    for stem in tables:
        if stem not in found:
            scan.problems.append(f"{table_path}: fixations of image {stem!r}, which has no file")
    read = read_labels(root, labels, found, task, scan, class_names)

    def make(stem: str, image: Path, split: str) -> Sample | None:
        table = tables.get(stem)
        if table is None:
            return None
        return FixationSample(
            id=stem,
            split=split,
            image_path=image,
            map_path=table_path,
            fixations=table.xy,
            viewers=table.viewers,
            durations=table.durations,
            sigma_px=sigma,
            duration_weighted=duration_weighted,
        )

    options = {"fixations": fixations, "sigma_px": sigma, "weighted": duration_weighted}
    options |= {"images": images, "labels": labels, "classes": classes}
    return assemble(root, format, found, read, scan, make, classes, options)
