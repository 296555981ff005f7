"""The ``hagxai`` format: the project's own dataset folder (version 1), read here.

A dataset is a folder::

    manifest.json            format, version, task, classes, provenance, observer, samples
    images/<split>/<id>.png  RGB images
    maps/<split>/<id>.npy    human attention maps, float32 H×W in [0, 1]
    fixations.csv            raw fixations: image_id, viewer, x, y, duration_ms (pixels)
    labels/<split>/<id>.txt  YOLO labels, detection only ("class cx cy w h", normalised)
    data.yaml                ultralytics dataset file, detection only

Each entry of ``samples`` in the manifest holds ``id``, ``split``, ``image``, ``map`` (paths
relative to the folder), and ``label`` (classification) or ``boxes`` (xyxy pixels) with
``box_labels`` (detection). Every field is checked when the dataset is opened; a problem raises
:class:`~hagxai.errors.DataError` naming the file. :mod:`hagxai.data.writer` writes the format.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from hagxai.data.dataset import AttentionDataset
from hagxai.data.sample import Sample
from hagxai.errors import DataError

FORMAT_NAME = "hagxai-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FIXATIONS = "fixations.csv"


def read_manifest(
    root: Path, format: str = "hagxai", *, task: str | None = None
) -> tuple[AttentionDataset, list[str]]:
    """Read the dataset folder ``root`` in the project's format.

    Args:
        root: the folder holding ``manifest.json``.
        format: ``hagxai`` (the name the dataset records).
        task: ignored: the manifest names the task.

    Returns:
        The dataset and no problems: the first problem raises.

    Raises:
        DataError: a missing or malformed manifest, fixation table or sample entry, naming the
            file (and the sample).
    """
    root = Path(root)
    manifest_path = root / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise DataError(f"{manifest_path}: no manifest; is {root} a hagxai dataset?") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{manifest_path}: not valid JSON ({err})") from None
    if manifest.get("format") != FORMAT_NAME:
        raise DataError(f"{manifest_path}: 'format' must be {FORMAT_NAME!r}")
    if manifest.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{manifest_path}: format version {manifest.get('version')!r} is not "
            f"supported (this hagxai reads version {FORMAT_VERSION})"
        )
    task = manifest.get("task", "")
    if task not in ("classification", "detection"):
        raise DataError(f"{manifest_path}: 'task' must be classification or detection")
    files = [manifest_path]
    fixations_path = root / FIXATIONS
    fixations = _read_fixations(fixations_path)
    if fixations_path.exists():
        files.append(fixations_path)
    samples = [_sample(root, task, entry, fixations) for entry in manifest.get("samples", [])]
    if not samples:
        raise DataError(f"{manifest_path}: lists no samples")
    for sample in samples:
        files.append(sample.image_path)
        if sample.map_path is not None:
            files.append(sample.map_path)
    dataset = AttentionDataset(
        root,
        format,
        task,
        list(manifest.get("classes", [])),
        samples,
        list(dict.fromkeys(files)),
        metadata={k: v for k, v in manifest.items() if k != "samples"},
    )
    return dataset, []


def _read_fixations(path: Path) -> dict[str, list[list[float]]]:
    """Rows ``[x, y, viewer, duration_ms]`` by image id (none when the table is absent)."""
    rows: dict[str, list[list[float]]] = defaultdict(list)
    if not path.exists():
        return rows
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                rows[row["image_id"]].append(
                    [
                        float(row["x"]),
                        float(row["y"]),
                        int(row["viewer"]),
                        float(row["duration_ms"]),
                    ]
                )
            except (KeyError, ValueError, TypeError):
                raise DataError(
                    f"{path}:{line}: expected columns image_id, viewer, x, y, duration_ms"
                ) from None
    return rows


def _sample(
    root: Path, task: str, entry: dict[str, Any], fixations: dict[str, list[list[float]]]
) -> Sample:
    where = f"{root / MANIFEST} sample {entry.get('id', '?')!r}"
    try:
        sample_id, split, image = str(entry["id"]), str(entry["split"]), entry["image"]
    except KeyError as err:
        raise DataError(f"{where}: missing field {err}") from None
    rows = np.asarray(fixations.get(sample_id, []), dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(entry.get("boxes", []), dtype=np.float32).reshape(-1, 4)
    box_labels = np.asarray(entry.get("box_labels", []), dtype=np.int64)
    if len(boxes) != len(box_labels):
        raise DataError(f"{where}: {len(boxes)} boxes but {len(box_labels)} box_labels")
    label = entry.get("label")
    if task == "classification" and not isinstance(label, int):
        raise DataError(f"{where}: a classification sample needs an integer 'label'")
    return Sample(
        id=sample_id,
        split=split,
        image_path=root / image,
        map_path=root / entry["map"] if entry.get("map") else None,
        label=label,
        boxes=boxes,
        box_labels=box_labels,
        fixations=rows[:, :2].astype(np.float32),
        viewers=rows[:, 2].astype(np.int32),
        durations=rows[:, 3].astype(np.float32),
    )
