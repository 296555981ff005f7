"""Class labels and boxes for the folder formats: YOLO ``.txt`` folders, COCO ``.json``, CSV.

``labels`` names a folder of YOLO files (class names from a ``data.yaml`` beside it, or
``class_names``), a COCO ``.json`` file, or a ``.csv`` of ``image,label`` rows (classification; a
label is a class index or name). Problems of one image's labels are collected, not raised.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hagxai.data.readers.scan import Images, Scan, resolve
from hagxai.data.sample import read_image_size
from hagxai.errors import DataError, UserError, cut_list


@dataclass
class Labels:
    """The labels read for a set of images.

    Attributes:
        task: ``classification`` or ``detection``.
        classes: class names, indexed by label.
        source: the labels file or folder (the dataset folder when there are none).
        label: image stem -> class index (classification).
        boxes: image stem -> (``N×4`` float32 xyxy pixel boxes, ``N`` int64 labels) (detection).
    """

    task: str
    classes: list[str]
    source: Path
    label: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def keep(
        self, names: Sequence[str] | None
    ) -> tuple[list[int] | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """The indices of the classes ``names`` and the boxes of only those classes.

        ``None`` or empty keeps every class (indices ``None``). Labels keep their indices in the
        full class list.

        Raises:
            UserError: a name that is not one of the labels' classes.
        """
        if not names:
            return None, self.boxes
        unknown = [name for name in names if name not in self.classes]
        if unknown:
            shown = cut_list(map(repr, unknown))
            raise UserError(
                f"{self.source}: classes [{shown}] are not among the labels' "
                f"{len(self.classes)} classes ({cut_list(self.classes)})"
            )
        subset = [self.classes.index(name) for name in names]
        boxes = {
            stem: (b[np.isin(c, subset)], c[np.isin(c, subset)])
            for stem, (b, c) in self.boxes.items()
        }
        return subset, boxes


def read_labels(
    root: Path,
    labels: str | Path | None,
    images: Images,
    task: str | None,
    scan: Scan,
    class_names: Sequence[str] | None = None,
) -> Labels:
    """Labels from a YOLO folder, a COCO ``.json`` or a classification ``.csv`` (module doc).

    Args:
        root: the dataset folder (``labels`` is relative to it unless absolute).
        labels: the labels path, or ``None`` for unlabelled classification data.
        images: the images found, by stem.
        task: the task asked for, or ``None`` to take the labels' own.
        class_names: names of the class indices (YOLO, CSV), overriding any found.

    Raises:
        DataError: a labels file that is missing or cannot be read as a whole.
        UserError: detection data without labels.
    """
    if labels is None:
        if task == "detection":
            raise UserError("detection data needs labels (a YOLO folder or a COCO .json)")
        return Labels("classification", list(class_names or []), root)
    path = resolve(root, labels, "labels")
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
    folder: Path, images: Images, scan: Scan, class_names: Sequence[str] | None
) -> Labels:
    names = list(class_names) if class_names else _yaml_names(folder)
    out = Labels("detection", names, folder)
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
            scan.problems.append(
                f"{path}: class index outside the {len(names)} classes ({cut_list(names)})"
            )
            continue
        try:
            height, width = read_image_size(image)
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


def _coco_labels(path: Path, images: Images, scan: Scan) -> Labels:
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
    out = Labels("detection", names, path)
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
    path: Path, images: Images, scan: Scan, class_names: Sequence[str] | None
) -> Labels:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "label"} <= set(reader.fieldnames or []):
            raise DataError(f"{path}: header must have columns image,label")
        rows = [(line, r["image"], r["label"]) for line, r in enumerate(reader, start=2)]
    names = list(class_names or [])
    if not names:
        names = sorted({v for _, _, v in rows if not v.lstrip("-").isdigit()})
    out = Labels("classification", names, path)
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
