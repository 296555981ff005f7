"""The project's one on-disk dataset format (version 1), read and written here.

A dataset is a folder::

    manifest.json            format, version, task, classes, provenance, observer, samples
    images/<split>/<id>.png  RGB images
    maps/<split>/<id>.npy    human attention maps, float32 H×W in [0, 1]
    fixations.csv            raw fixations: image_id, viewer, x, y, duration_ms (pixels)
    labels/<split>/<id>.txt  YOLO labels, detection only ("class cx cy w h", normalised)
    data.yaml                ultralytics dataset file, detection only

Each entry of ``samples`` in the manifest holds ``id``, ``split``, ``image``, ``map`` (paths
relative to the folder), and ``label`` (classification) or ``boxes`` (xyxy pixels) with
``box_labels`` (detection). Every path and field is checked when the dataset is opened; a problem
raises :class:`~hagxai.errors.DataError` naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from hagxai.errors import DataError
from hagxai.pil import open_image

FORMAT_NAME = "hagxai-dataset"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FIXATIONS = "fixations.csv"


@dataclass
class Sample:
    """One image with its human attention and annotations.

    Attributes:
        id: unique sample id.
        split: ``train``, ``val`` or ``test``.
        image_path, map_path: absolute paths of the image and its attention map.
        label: class index (classification), else ``None``.
        boxes: ``N×4`` float32 xyxy pixel boxes (detection; empty for classification).
        box_labels: ``N`` int64 class indices of ``boxes``.
        fixations: ``M×2`` float32 (x, y) pixels; ``viewers`` ``M`` int32; ``durations`` ``M`` ms.
    """

    id: str
    split: str
    image_path: Path
    map_path: Path | None
    label: int | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    box_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fixations: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    viewers: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    durations: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def load_image(self) -> np.ndarray:
        """The image as ``H×W×3`` uint8 RGB; ``DataError`` names the file if it can't be read."""
        return read_image(self.image_path)

    def load_map(self) -> np.ndarray:
        """The human attention map as ``H×W`` float32; ``DataError`` names a bad file."""
        if self.map_path is None:
            raise DataError(f"sample {self.id} has no attention map")
        return read_map(self.map_path)


def read_image(path: Path) -> np.ndarray:
    """Read an image file as ``H×W×3`` uint8 RGB, or raise ``DataError`` naming the file."""
    try:
        with open_image(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file does not exist") from None
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot be read as an image ({err})") from None


MAT_VARIABLE = "output_map_norm"
"""The variable holding the map in the reference study's ``.mat`` files."""
MAP_SUFFIXES = (".npy", ".png", ".jpg", ".jpeg", ".mat")


def read_map(path: Path) -> np.ndarray:
    """Read an attention map as ``H×W`` float32, checked for shape and finite values.

    The reader follows the suffix: ``.npy`` (values as stored), ``.png`` / ``.jpg`` / ``.jpeg``
    (greyscale; 8- or 16-bit values divided by their range, so in [0, 1]) or MATLAB ``.mat``
    (the variable ``output_map_norm`` of the reference study when present, else the file's only
    2-D numeric variable).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(f"{path}: attention map file does not exist")
    if suffix == ".npy":
        data = _read_npy(path)
    elif suffix in (".png", ".jpg", ".jpeg"):
        data = _read_grey_image(path)
    elif suffix == ".mat":
        data = _read_mat(path)
    else:
        raise DataError(
            f"{path}: unknown attention map type {suffix!r} (expected one of "
            f"{', '.join(MAP_SUFFIXES)})"
        )
    if data.ndim != 2:
        raise DataError(f"{path}: attention map must be 2-D (H×W), has shape {data.shape}")
    if not np.isfinite(data).all():
        raise DataError(f"{path}: attention map holds NaN or inf")
    return data.astype(np.float32, copy=False)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataError(f"{path}: cannot be read as a .npy attention map ({err})") from None


def _read_grey_image(path: Path) -> np.ndarray:
    try:
        with open_image(path) as img:
            if img.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(img, dtype=np.float64) / 65535.0
            if img.mode != "L":
                img = img.convert("L")
            return np.asarray(img, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{path}: cannot be read as a greyscale attention map ({err})") from None


def _read_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat

    try:
        contents = loadmat(path)
    except (ValueError, OSError, NotImplementedError) as err:
        raise DataError(f"{path}: cannot be read as a MATLAB .mat file ({err})") from None
    arrays = {
        k: v
        for k, v in contents.items()
        if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "fiub"
    }
    if MAT_VARIABLE in arrays:
        return np.asarray(arrays[MAT_VARIABLE], dtype=np.float64)
    two_d = [k for k, v in arrays.items() if v.ndim == 2]
    if len(two_d) != 1:
        found = ", ".join(sorted(arrays)) or "none"
        raise DataError(
            f"{path}: no variable {MAT_VARIABLE!r} and not exactly one 2-D numeric variable "
            f"(numeric variables: {found})"
        )
    return np.asarray(arrays[two_d[0]], dtype=np.float64)


class SampleList:
    """What every dataset offers over its ``samples``: length, indexing and splits."""

    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def split(self, name: str) -> list[Sample]:
        """The samples of one split (``train``, ``val``, ``test``)."""
        return [s for s in self.samples if s.split == name]


class HumanAttentionDataset(SampleList):
    """A dataset folder in the format above, validated when opened.

    Args:
        root: the folder holding ``manifest.json``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            raise DataError(
                f"{manifest_path}: no manifest; is {self.root} a hagxai dataset?"
            ) from None
        except json.JSONDecodeError as err:
            raise DataError(f"{manifest_path}: not valid JSON ({err})") from None
        if self.manifest.get("format") != FORMAT_NAME:
            raise DataError(f"{manifest_path}: 'format' must be {FORMAT_NAME!r}")
        if self.manifest.get("version") != FORMAT_VERSION:
            raise DataError(
                f"{manifest_path}: format version {self.manifest.get('version')!r} is not "
                f"supported (this hagxai reads version {FORMAT_VERSION})"
            )
        self.task: str = self.manifest.get("task", "")
        if self.task not in ("classification", "detection"):
            raise DataError(f"{manifest_path}: 'task' must be classification or detection")
        self.classes: list[str] = list(self.manifest.get("classes", []))
        fixations = self._read_fixations()
        self.samples = [
            self._sample(entry, fixations) for entry in self.manifest.get("samples", [])
        ]
        if not self.samples:
            raise DataError(f"{manifest_path}: lists no samples")

    def _read_fixations(self) -> dict[str, list[list[float]]]:
        path = self.root / FIXATIONS
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

    def _sample(self, entry: dict[str, Any], fixations: dict[str, list[list[float]]]) -> Sample:
        where = f"{self.root / MANIFEST} sample {entry.get('id', '?')!r}"
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
        if self.task == "classification" and not isinstance(label, int):
            raise DataError(f"{where}: a classification sample needs an integer 'label'")
        return Sample(
            id=sample_id,
            split=split,
            image_path=self.root / image,
            map_path=self.root / entry["map"] if entry.get("map") else None,
            label=label,
            boxes=boxes,
            box_labels=box_labels,
            fixations=rows[:, :2].astype(np.float32),
            viewers=rows[:, 2].astype(np.int32),
            durations=rows[:, 3].astype(np.float32),
        )

    @property
    def fingerprint(self) -> str:
        """A short digest of the manifest and fixation table: changes whenever the data does."""
        digest = hashlib.sha256((self.root / MANIFEST).read_bytes())
        if (self.root / FIXATIONS).exists():
            digest.update((self.root / FIXATIONS).read_bytes())
        return digest.hexdigest()[:16]


class DatasetWriter:
    """Writes a dataset folder sample by sample, then the manifest and fixation table.

    Args:
        root: the folder to write (created).
        task: ``classification`` or ``detection``.
        classes: class names, indexed by label.
    """

    def __init__(self, root: Path, task: str, classes: list[str]) -> None:
        self.root, self.task, self.classes = Path(root), task, list(classes)
        self.entries: list[dict[str, Any]] = []
        self.fixation_rows: list[tuple] = []

    def add(
        self,
        sample_id: str,
        split: str,
        image: np.ndarray,
        attention: np.ndarray,
        *,
        label: int | None = None,
        boxes: np.ndarray | None = None,
        box_labels: np.ndarray | None = None,
        fixations: np.ndarray | None = None,
        viewers: np.ndarray | None = None,
        durations: np.ndarray | None = None,
    ) -> None:
        """Write one sample's files (image ``H×W×3`` uint8, attention ``H×W`` float)."""
        image_rel = Path("images") / split / f"{sample_id}.png"
        map_rel = Path("maps") / split / f"{sample_id}.npy"
        for rel in (image_rel, map_rel):
            (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(self.root / image_rel)
        np.save(self.root / map_rel, attention.astype(np.float32))
        entry: dict[str, Any] = {
            "id": sample_id,
            "split": split,
            "image": image_rel.as_posix(),
            "map": map_rel.as_posix(),
        }
        if label is not None:
            entry["label"] = int(label)
        if boxes is not None:
            entry["boxes"] = [[round(float(v), 2) for v in box] for box in boxes]
            entry["box_labels"] = [int(v) for v in (box_labels if box_labels is not None else [])]
            if self.task == "detection":
                self._write_yolo_labels(sample_id, split, image.shape[:2], entry)
        self.entries.append(entry)
        if fixations is not None:
            viewers = viewers if viewers is not None else np.zeros(len(fixations), np.int32)
            durations = durations if durations is not None else np.zeros(len(fixations), np.float32)
            for (x, y), v, d in zip(fixations, viewers, durations):
                self.fixation_rows.append((sample_id, int(v), f"{x:.2f}", f"{y:.2f}", f"{d:.1f}"))

    def _write_yolo_labels(self, sample_id: str, split: str, shape, entry: dict[str, Any]) -> None:
        h, w = shape
        path = self.root / "labels" / split / f"{sample_id}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for (x1, y1, x2, y2), cls in zip(entry["boxes"], entry["box_labels"]):
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        path.write_text("\n".join(lines) + ("\n" if lines else ""))

    def finish(self, **manifest_fields: Any) -> Path:
        """Write ``fixations.csv``, ``manifest.json`` (and ``data.yaml`` for detection)."""
        with (self.root / FIXATIONS).open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["image_id", "viewer", "x", "y", "duration_ms"])
            writer.writerows(self.fixation_rows)
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "task": self.task,
            "classes": self.classes,
            **manifest_fields,
            "samples": self.entries,
        }
        (self.root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        if self.task == "detection":
            splits = sorted({e["split"] for e in self.entries})
            # No "path" key: ultralytics then takes the folder of this file as the root.
            lines = ["# ultralytics dataset file written by hagxai"]
            lines += [f"{s}: images/{s}" for s in splits]
            lines.append("names:")
            lines += [f"  {i}: {name}" for i, name in enumerate(self.classes)]
            (self.root / "data.yaml").write_text("\n".join(lines) + "\n")
        return self.root
