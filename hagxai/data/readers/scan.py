"""What the folder readers share: finding images and maps, pairing them, assembling the dataset.

A reader collects every problem it finds in a :class:`Scan` (with every file it read, for the
dataset's fingerprint) and leaves a sample with a problem out of the dataset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagxai.data.dataset import AttentionDataset
from hagxai.data.sample import MAP_SUFFIXES, Sample
from hagxai.errors import DataError

if TYPE_CHECKING:
    from hagxai.data.readers.labels import Labels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

Images = dict[str, tuple[Path, str]]
"""Image stem -> (path, split)."""


@dataclass
class Scan:
    """What a format reader found: problems (all of them) and the files it read."""

    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def resolve(root: Path, value: str | Path | None, default: str) -> Path:
    """``value`` (or ``default``) as a path: absolute as given, else relative to ``root``."""
    path = Path(value) if value is not None else Path(default)
    return path if path.is_absolute() else root / path


def find_images(folder: Path, scan: Scan) -> Images:
    """Image stem -> (path, split); a split is the sub-folder an image sits in."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder does not exist")
    found: Images = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        parts = path.relative_to(folder).parts
        split = parts[0] if len(parts) > 1 else "train"
        if path.stem in found:
            scan.problems.append(f"{path}: image id {path.stem!r} also at {found[path.stem][0]}")
            continue
        found[path.stem] = (path, split)
        scan.files.append(path)
    if not found:
        raise DataError(f"{folder}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def find_maps(folder: Path, scan: Scan, pattern: re.Pattern | None = None) -> dict[str, Path]:
    """Map id -> path; ``pattern`` takes the id (group ``id``) out of the stem."""
    if not folder.is_dir():
        raise DataError(f"{folder}: attention map folder does not exist")
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in MAP_SUFFIXES:
            continue
        key = path.stem
        if pattern is not None:
            match = pattern.match(key)
            if match is None:
                continue
            key = match["id"]
        if key in found:
            scan.problems.append(f"{path}: map id {key!r} also at {found[key]}")
            continue
        found[key] = path
        scan.files.append(path)
    return found


def find_pairs(
    root: Path,
    images: str | Path | None,
    maps: str | Path | None,
    scan: Scan,
    pattern: re.Pattern | None = None,
) -> tuple[Images, dict[str, Path]]:
    """The images and the maps (by id) in their folders (default ``images/`` and ``maps/``).

    Every image without a map and every map without an image is a problem in ``scan``;
    ``pattern`` takes a map's id out of its file stem (as :func:`find_maps`).
    """
    found = find_images(resolve(root, images, "images"), scan)
    maps_dir = resolve(root, maps, "maps")
    found_maps = find_maps(maps_dir, scan, pattern)
    for stem, (image, _split) in found.items():
        if stem not in found_maps:
            scan.problems.append(f"{image}: no attention map {stem}.* in {maps_dir}")
    for stem, path in found_maps.items():
        if stem not in found:
            scan.problems.append(f"{path}: attention map has no image {stem}.*")
    return found, found_maps


def map_samples(maps: dict[str, Path]) -> Callable[[str, Path, str], Sample | None]:
    """A sample maker for formats with one map file per image (``None`` where it has none)."""

    def make(stem: str, image: Path, split: str) -> Sample | None:
        if stem not in maps:
            return None
        return Sample(id=stem, split=split, image_path=image, map_path=maps[stem])

    return make


def assemble(
    root: Path,
    format: str,
    images: Images,
    labels: Labels,
    scan: Scan,
    make: Callable[[str, Path, str], Sample | None],
    classes: Sequence[str] | None,
    options: dict[str, Any],
    map_size: tuple[int, int] | None = None,
) -> tuple[AttentionDataset, list[str]]:
    """The dataset of every image ``make`` turns into a sample, with its labels, and the problems.

    Args:
        make: ``(stem, image path, split) -> Sample`` or ``None`` to leave the image out.
        classes: names of the classes to keep (``None``: all).
        options: the reader's options, part of the fingerprint.
    """
    subset, boxes = labels.keep(classes)
    samples = []
    for stem, (image, split) in images.items():
        sample = make(stem, image, split)
        if sample is None:
            continue
        if labels.task == "detection":
            if stem not in boxes:
                continue
            sample.boxes, sample.box_labels = boxes[stem]
        else:
            sample.label = labels.label.get(stem)
        samples.append(sample)
    dataset = AttentionDataset(
        root,
        format,
        labels.task,
        labels.classes,
        samples,
        scan.files,
        class_subset=subset,
        map_size=map_size,
        options=options,
    )
    return dataset, scan.problems
