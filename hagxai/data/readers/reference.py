"""The ``reference`` format: the HAG-XAI study's release.

``images/<id>.jpg``, ``maps/<id>_GSmo_30.mat`` (variable ``output_map_norm``, 576×1024, whatever
the image's size) and YOLO labels in ``labels/`` with classes ``person, rider, car, bus, truck``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from hagxai.data.dataset import AttentionDataset
from hagxai.data.readers.labels import read_labels
from hagxai.data.readers.scan import Scan, assemble, find_pairs, map_samples
from hagxai.errors import UserError

REFERENCE_CLASSES = ["person", "rider", "car", "bus", "truck"]
REFERENCE_MAP_SIZE = (576, 1024)
REFERENCE_MAP = re.compile(r"^(?P<id>.+)_GSmo_\d+$")
"""A reference map's file stem; group ``id`` is its image's stem."""


def read_reference(
    root: Path,
    format: str,
    *,
    task: str | None = None,
    images: str | Path | None = None,
    maps: str | Path | None = None,
    labels: str | Path | None = "labels",
    classes: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[AttentionDataset, list[str]]:
    """Read ``root`` in the ``reference`` format: the dataset and every problem found.

    Options as :func:`hagxai.data.open_dataset`; ``class_names`` defaults to the study's classes.

    Raises:
        UserError: a task other than detection.
    """
    if task not in (None, "detection"):
        raise UserError("the reference format is detection data (data.task: detection)")
    scan = Scan()
    found, found_maps = find_pairs(root, images, maps, scan, REFERENCE_MAP)
    names = list(class_names or REFERENCE_CLASSES)
    read = read_labels(root, labels, found, "detection", scan, names)
    options = {"images": images, "maps": maps, "labels": labels, "classes": classes}
    return assemble(
        root,
        format,
        found,
        read,
        scan,
        map_samples(found_maps),
        classes,
        options,
        map_size=REFERENCE_MAP_SIZE,
    )
