"""Every dataset format read into one dataset type: :func:`open_dataset`.

Formats (``format=``):

* ``hagxai``: the project's own folder (``manifest.json``, :mod:`hagxai.data.format`).
* ``folders``: a folder of images and a folder of attention maps (``.npy``, greyscale
  ``.png``/``.jpg``, ``.mat``) matched by file stem.
* ``fixations``: a folder of images and a fixation table (CSV or JSON lines,
  :mod:`hagxai.data.fixations`); maps are Gaussians of σ pixels or degrees at each fixation.
* ``reference``: the HAG-XAI study's release: ``<id>.jpg`` images, ``<id>_GSmo_30.mat`` maps
  (variable ``output_map_norm``, 576×1024) and YOLO labels with classes
  ``person, rider, car, bus, truck``.
* ``coco``: a folder of images, a folder of maps and a COCO JSON file of boxes and labels.

Boxes and labels come, for any format but ``hagxai``, from ``labels``: a folder of YOLO ``.txt``
files (class names from a ``data.yaml`` beside it, or ``class_names``), a COCO ``.json`` file, or
a ``.csv`` of ``image,label`` rows (classification; a label is a class index or name). Images in
sub-folders of the image folder take the sub-folder's name as their split (else ``train``).

Everything that can be checked without decoding pixels (pairs, tables, labels) is checked when the
dataset is opened; the first problem raises :class:`~hagxai.errors.DataError` naming the file.
:func:`scan_dataset` instead returns every problem found (``hagxai data check``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import UnidentifiedImageError

from hagxai.data.fixations import FixationSample, read_fixation_table, sigma_pixels
from hagxai.data.format import (
    MANIFEST,
    MAP_SUFFIXES,
    HumanAttentionDataset,
    Sample,
    SampleList,
)
from hagxai.errors import DataError, UserError
from hagxai.pil import open_image

FORMATS = ("auto", "hagxai", "folders", "fixations", "reference", "coco")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
REFERENCE_CLASSES = ["person", "rider", "car", "bus", "truck"]
REFERENCE_MAP_SIZE = (576, 1024)
_REFERENCE_MAP = re.compile(r"^(?P<id>.+)_GSmo_\d+$")
_FIXATION_TABLES = ("fixations.csv", "fixations.jsonl")


class AttentionDataset(SampleList):
    """Images with human attention, read from any format (same interface as
    :class:`~hagxai.data.format.HumanAttentionDataset`).

    Attributes:
        root: the dataset folder.
        format: the format it was read from.
        task: ``classification`` or ``detection``.
        classes: class names, indexed by label (all of the labels' classes, even when
            ``class_subset`` keeps only some, so labels keep the model's class indices).
        class_subset: indices of the classes kept (boxes of other classes are dropped).
        samples: the :class:`~hagxai.data.format.Sample` list.
        map_size: ``(H, W)`` every map must have, or ``None`` for "its image's size".
    """

    def __init__(
        self,
        root: Path,
        format: str,
        task: str,
        classes: list[str],
        samples: list[Sample],
        files: list[Path],
        *,
        class_subset: list[int] | None = None,
        map_size: tuple[int, int] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.root, self.format, self.task = Path(root), format, task
        self.classes = list(classes)
        self.class_subset = list(range(len(classes))) if class_subset is None else class_subset
        self.samples = samples
        self.map_size = map_size
        self._files = sorted(files)
        self._options = options or {}

    @property
    def fingerprint(self) -> str:
        """A short digest of the format, options and every file's path, size and mtime."""
        digest = hashlib.sha256(json.dumps([self.format, self._options], default=str).encode())
        for path in self._files:
            stat = path.stat()
            rel = path.relative_to(self.root) if path.is_relative_to(self.root) else path
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]


@dataclass
class _Scan:
    """What a format reader found: problems (all of them) and the files it read."""

    problems: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


@dataclass
class _Labels:
    task: str
    classes: list[str]
    label: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def open_dataset(root: str | Path, format: str = "auto", **options: Any) -> AttentionDataset:
    """Open a dataset in any supported format (module docstring), validated up front.

    Args:
        root: the dataset folder.
        format: one of :data:`FORMATS`; ``auto`` tells it from the folder's contents.
        **options: ``task``, ``images``, ``maps``, ``labels``, ``fixations`` (paths relative to
            ``root`` or absolute), ``sigma_px`` or ``sigma_deg`` with ``screen_px``,
            ``screen_cm``, ``distance_cm``, ``duration_weighted``, ``classes`` (names to keep),
            ``class_names`` (names of YOLO label indices).

    Raises:
        DataError: the first problem found, naming the file.
        UserError: an unknown format or option.
    """
    dataset, problems = scan_dataset(root, format, **options)
    if problems:
        more = (
            f" (and {len(problems) - 1} more; see hagxai data check)" if len(problems) > 1 else ""
        )
        raise DataError(problems[0] + more)
    assert dataset is not None
    return dataset


def open_from_config(data: Any) -> AttentionDataset | HumanAttentionDataset:
    """:func:`open_dataset` of a :class:`hagxai.config.DataConfig` (``data.root`` must be set)."""
    if data.root is None:
        raise UserError("data.root is not set")
    options = {
        key: getattr(data, key)
        for key in (
            "images",
            "maps",
            "labels",
            "fixations",
            "sigma_px",
            "sigma_deg",
            "screen_px",
            "screen_cm",
            "distance_cm",
            "classes",
        )
        if getattr(data, key, None) is not None
    }
    return open_dataset(data.root, data.format, task=data.task, **options)


def scan_dataset(
    root: str | Path, format: str = "auto", **options: Any
) -> tuple[AttentionDataset | HumanAttentionDataset | None, list[str]]:
    """Read a dataset leniently: the dataset of the usable samples and every problem found.

    A sample with a problem (no map, no fixations, unreadable labels) is left out of the dataset
    and named in the problems. Arguments as :func:`open_dataset`.
    """
    root = Path(root)
    if format not in FORMATS:
        raise UserError(f"unknown dataset format {format!r} (known: {', '.join(FORMATS)})")
    if not root.is_dir():
        return None, [f"{root}: dataset folder does not exist"]
    if format == "auto":
        format = detect_format(root, options)
    if format == "hagxai":
        if options.keys() - {"task"}:
            raise UserError(f"format hagxai takes no options ({', '.join(sorted(options))})")
        try:
            return HumanAttentionDataset(root), []
        except DataError as err:
            return None, [str(err)]
    readers = {
        "folders": _read_folders,
        "coco": _read_folders,
        "fixations": _read_fixations,
        "reference": _read_reference,
    }
    try:
        return readers[format](root, format, **options)
    except TypeError as err:
        if "unexpected keyword" not in str(err):
            raise
        raise UserError(f"format {format}: {err}".replace("_read_", "")) from None
    except DataError as err:
        return None, [str(err)]


def detect_format(root: Path, options: dict[str, Any] | None = None) -> str:
    """The format of ``root`` from its contents (see :func:`open_dataset`)."""
    options = options or {}
    if (root / MANIFEST).is_file():
        return "hagxai"
    if options.get("fixations") or any((root / name).is_file() for name in _FIXATION_TABLES):
        return "fixations"
    maps = _resolve(root, options.get("maps"), "maps")
    if maps.is_dir() and any(_REFERENCE_MAP.match(p.stem) for p in maps.rglob("*.mat")):
        return "reference"
    labels = options.get("labels")
    if (labels and str(labels).endswith(".json")) or (root / "annotations.json").is_file():
        return "coco"
    if _resolve(root, options.get("images"), "images").is_dir() and maps.is_dir():
        return "folders"
    raise DataError(
        f"{root}: cannot tell the dataset format (no manifest.json, fixation table, *_GSmo_*.mat "
        "maps, annotations.json, or images/ and maps/ folders); pass format="
    )


def _resolve(root: Path, value: str | Path | None, default: str) -> Path:
    path = Path(value) if value is not None else Path(default)
    return path if path.is_absolute() else root / path


def _images(root: Path, folder: Path, scan: _Scan) -> dict[str, tuple[Path, str]]:
    """Image stem -> (path, split); a split is the sub-folder an image sits in."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder does not exist")
    found: dict[str, tuple[Path, str]] = {}
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


def _maps(folder: Path, scan: _Scan, pattern: re.Pattern | None = None) -> dict[str, Path]:
    """Map id -> path; ``pattern`` takes the id out of the stem (reference names)."""
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


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with open_image(path) as img:
            return img.size[1], img.size[0]
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None


def _read_labels(
    root: Path,
    labels: str | Path | None,
    images: dict[str, tuple[Path, str]],
    task: str | None,
    scan: _Scan,
    class_names: Sequence[str] | None = None,
) -> _Labels:
    """Labels from a YOLO folder, a COCO ``.json`` or a classification ``.csv``."""
    if labels is None:
        if task == "detection":
            raise UserError("detection data needs labels (a YOLO folder or a COCO .json)")
        return _Labels("classification", list(class_names or []))
    path = _resolve(root, labels, "labels")
    if path.is_dir():
        return _yolo_labels(path, images, scan, class_names)
    if not path.is_file():
        raise DataError(f"{path}: labels file or folder does not exist")
    scan.files.append(path)
    if path.suffix.lower() == ".json":
        return _coco_labels(path, images, scan)
    if path.suffix.lower() == ".csv":
        return _csv_labels(path, images, scan, class_names)
    raise DataError(f"{path}: labels must be a YOLO folder, a COCO .json or an image,label .csv")


def _yolo_labels(
    folder: Path,
    images: dict[str, tuple[Path, str]],
    scan: _Scan,
    class_names: Sequence[str] | None,
) -> _Labels:
    names = list(class_names) if class_names else _yaml_names(folder)
    out = _Labels("detection", names)
    files = {p.stem: p for p in folder.rglob("*.txt")}
    for stem, (image, _split) in images.items():
        path = files.get(stem)
        if path is None:
            # YOLO convention: an image without a label file has no objects.
            out.boxes[stem] = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
            continue
        scan.files.append(path)
        try:
            rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
            values = np.asarray(rows, np.float64).reshape(-1, 5)
        except ValueError:
            scan.problems.append(f"{path}: each line must be 'class cx cy w h' (numbers)")
            continue
        classes = values[:, 0].astype(np.int64)
        if names and ((classes < 0) | (classes >= len(names))).any():
            scan.problems.append(f"{path}: class index outside the {len(names)} classes {names}")
            continue
        try:
            height, width = _image_size(image)
        except DataError as err:
            scan.problems.append(str(err))
            continue
        cx, cy, bw, bh = values[:, 1] * width, values[:, 2] * height, values[:, 3], values[:, 4]
        bw, bh = bw * width, bh * height
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        out.boxes[stem] = (boxes.astype(np.float32), classes)
    if not out.classes:
        top = max((int(b[1].max()) for b in out.boxes.values() if len(b[1])), default=-1)
        out.classes = [f"class{i}" for i in range(top + 1)]
    return out


def _yaml_names(folder: Path) -> list[str]:
    for candidate in (folder / "data.yaml", folder.parent / "data.yaml"):
        if candidate.is_file():
            try:
                names = (yaml.safe_load(candidate.read_text()) or {}).get("names", [])
            except yaml.YAMLError as err:
                raise DataError(f"{candidate}: not valid YAML ({err})".splitlines()[0]) from None
            return [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    return []


def _coco_labels(path: Path, images: dict[str, tuple[Path, str]], scan: _Scan) -> _Labels:
    try:
        coco = json.loads(path.read_text())
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        index = {c["id"]: i for i, c in enumerate(categories)}
        names = [str(c["name"]) for c in categories]
        stems = {im["id"]: Path(im["file_name"]).stem for im in coco["images"]}
        annotations = coco["annotations"]
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    except (KeyError, TypeError) as err:
        raise DataError(
            f"{path}: not COCO: needs images (id, file_name), annotations and categories "
            f"(id, name); missing {err}"
        ) from None
    out = _Labels("detection", names)
    boxes: dict[str, list[list[float]]] = {s: [] for s in stems.values()}
    labels: dict[str, list[int]] = {s: [] for s in stems.values()}
    for n, ann in enumerate(annotations):
        try:
            stem = stems[ann["image_id"]]
            x, y, w, h = (float(v) for v in ann["bbox"])
            label = index[ann["category_id"]]
        except (KeyError, TypeError, ValueError):
            scan.problems.append(
                f"{path}: annotation {n} needs a known image_id, a known category_id and "
                "bbox [x, y, w, h]"
            )
            continue
        boxes[stem].append([x, y, x + w, y + h])
        labels[stem].append(label)
    for stem, (image, _split) in images.items():
        if stem not in boxes:
            scan.problems.append(f"{image}: not among the images of {path}")
    for stem in stems.values():
        if stem not in images:
            scan.problems.append(f"{path}: image {stem!r} has no image file")
            continue
        out.boxes[stem] = (
            np.asarray(boxes[stem], np.float32).reshape(-1, 4),
            np.asarray(labels[stem], np.int64),
        )
    return out


def _csv_labels(
    path: Path,
    images: dict[str, tuple[Path, str]],
    scan: _Scan,
    class_names: Sequence[str] | None,
) -> _Labels:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "label"} <= set(reader.fieldnames or []):
            raise DataError(f"{path}: header must have columns image,label")
        rows = [(line, r["image"], r["label"]) for line, r in enumerate(reader, start=2)]
    names = list(class_names or [])
    if not names:
        names = sorted({v for _, _, v in rows if not v.lstrip("-").isdigit()})
    out = _Labels("classification", names)
    for line, image, value in rows:
        stem = Path(image).stem
        label = (
            int(value)
            if value.lstrip("-").isdigit()
            else (names.index(value) if value in names else -1)
        )
        if names and not 0 <= label < len(names):
            scan.problems.append(f"{path}:{line}: label {value!r} is not one of {names}")
        elif stem not in images:
            scan.problems.append(f"{path}:{line}: image {image!r} has no image file")
        else:
            out.label[stem] = label
    if not out.classes:
        out.classes = [f"class{i}" for i in range(max(out.label.values(), default=-1) + 1)]
    return out


def _subset(
    labels: _Labels, keep: Sequence[str] | None
) -> tuple[list[int] | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    if not keep:
        return None, labels.boxes
    unknown = [name for name in keep if name not in labels.classes]
    if unknown:
        raise UserError(f"classes {unknown} are not among the labels' classes {labels.classes}")
    subset = [labels.classes.index(name) for name in keep]
    boxes = {
        stem: (b[np.isin(c, subset)], c[np.isin(c, subset)])
        for stem, (b, c) in labels.boxes.items()
    }
    return subset, boxes


def _assemble(
    root: Path,
    format: str,
    images: dict[str, tuple[Path, str]],
    labels: _Labels,
    scan: _Scan,
    make: Any,
    classes: Sequence[str] | None,
    options: dict[str, Any],
    map_size: tuple[int, int] | None = None,
) -> tuple[AttentionDataset, list[str]]:
    subset, boxes = _subset(labels, classes)
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


def _paired_maps(
    images: dict[str, tuple[Path, str]], maps: dict[str, Path], maps_dir: Path, scan: _Scan
) -> None:
    for stem, (image, _split) in images.items():
        if stem not in maps:
            scan.problems.append(f"{image}: no attention map {stem}.* in {maps_dir}")
    for stem, path in maps.items():
        if stem not in images:
            scan.problems.append(f"{path}: attention map has no image {stem}.*")


def _read_folders(
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
    scan = _Scan()
    if format == "coco" and labels is None:
        labels = "annotations.json"
    found = _images(root, _resolve(root, images, "images"), scan)
    maps_dir = _resolve(root, maps, "maps")
    found_maps = _maps(maps_dir, scan)
    _paired_maps(found, found_maps, maps_dir, scan)
    read = _read_labels(root, labels, found, task, scan, class_names)

    def make(stem: str, image: Path, split: str) -> Sample | None:
        if stem not in found_maps:
            return None
        return Sample(id=stem, split=split, image_path=image, map_path=found_maps[stem])

    options = {"images": images, "maps": maps, "labels": labels, "classes": classes}
    return _assemble(root, format, found, read, scan, make, classes, options)


def _read_reference(
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
    if task not in (None, "detection"):
        raise UserError("the reference format is detection data (data.task: detection)")
    scan = _Scan()
    found = _images(root, _resolve(root, images, "images"), scan)
    maps_dir = _resolve(root, maps, "maps")
    found_maps = _maps(maps_dir, scan, _REFERENCE_MAP)
    _paired_maps(found, found_maps, maps_dir, scan)
    names = list(class_names or REFERENCE_CLASSES)
    read = _read_labels(root, labels, found, "detection", scan, names)

    def make(stem: str, image: Path, split: str) -> Sample | None:
        if stem not in found_maps:
            return None
        return Sample(id=stem, split=split, image_path=image, map_path=found_maps[stem])

    options = {"images": images, "maps": maps, "labels": labels, "classes": classes}
    return _assemble(
        root, format, found, read, scan, make, classes, options, map_size=REFERENCE_MAP_SIZE
    )


def _read_fixations(
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
    sigma = sigma_pixels(sigma_px, sigma_deg, screen_px, screen_cm, distance_cm)
    scan = _Scan()
    found = _images(root, _resolve(root, images, "images"), scan)
    if fixations is None:
        present = [name for name in _FIXATION_TABLES if (root / name).is_file()]
        fixations = present[0] if present else _FIXATION_TABLES[0]
    table_path = _resolve(root, fixations, "")
    tables = read_fixation_table(table_path)
    scan.files.append(table_path)
    for stem, (image, _split) in found.items():
        if stem not in tables:
            scan.problems.append(f"{image}: no fixations in {table_path}")
    for stem in tables:
        if stem not in found:
            scan.problems.append(f"{table_path}: fixations of image {stem!r}, which has no file")
    read = _read_labels(root, labels, found, task, scan, class_names)

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
    return _assemble(root, format, found, read, scan, make, classes, options)
