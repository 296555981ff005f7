"""The ``folders`` and ``coco`` formats: a folder of images and a folder of maps, by file stem.

Maps are ``.npy``, greyscale ``.png``/``.jpg`` or ``.mat`` (:func:`hagxai.data.sample.read_map`).
``folders`` takes its labels from ``labels`` (:mod:`hagxai.data.readers.labels`), if any;
``coco`` from ``annotations.json`` unless ``labels`` names another COCO file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hagxai.data.dataset import AttentionDataset
from hagxai.data.readers.labels import read_labels
from hagxai.data.readers.scan import Scan, assemble, find_pairs, map_samples

COCO_ANNOTATIONS = "annotations.json"


def read_folders(
    root: Path,
    format: str,
    *,
    task: str | None = None,
    images: str | Path | None = None,
    maps: str | Path | None = None,
    labels: str | Path | None = None,
    classes: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[AttentionDataset, list[str]]:
    """Read ``root`` in the ``folders`` or ``coco`` format (``format``): dataset and problems.

    Options as :func:`hagxai.data.open_dataset`; ``images`` and ``maps`` default to the folders
    of those names.
    """
    scan = Scan()
    if format == "coco" and labels is None:
        labels = COCO_ANNOTATIONS
    found, found_maps = find_pairs(root, images, maps, scan)
    read = read_labels(root, labels, found, task, scan, class_names)
    options = {"images": images, "maps": maps, "labels": labels, "classes": classes}
    return assemble(root, format, found, read, scan, map_samples(found_maps), classes, options)
