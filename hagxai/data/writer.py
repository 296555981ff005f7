"""Writes a dataset folder in the project's own format (:mod:`hagxai.data.readers.manifest`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hagxai.data.readers.manifest import FIXATIONS, FORMAT_NAME, FORMAT_VERSION, MANIFEST


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
