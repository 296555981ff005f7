"""The one dataset type every format is read into: :class:`AttentionDataset`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hagxai.data.sample import Sample


class AttentionDataset:
    """Images with human attention, read from any format (:func:`hagxai.data.open_dataset`).

    Attributes:
        root: the dataset folder.
        format: the format it was read from (``hagxai``, ``folders``, ``fixations``,
            ``reference``, ``coco``).
        task: ``classification`` or ``detection``.
        classes: class names, indexed by label (all of the labels' classes, even when
            ``class_subset`` keeps only some, so labels keep the model's class indices).
        class_subset: indices of the classes kept (boxes of other classes are dropped); all
            classes when none were chosen.
        samples: the :class:`~hagxai.data.sample.Sample` list.
        map_size: ``(H, W)`` every map must have, or ``None`` for "its image's size".
        metadata: what the format records beside the samples (for ``hagxai``, the manifest's
            fields other than ``samples``: provenance, observer, image size, …); else empty.
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
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.root, self.format, self.task = Path(root), format, task
        self.classes = list(classes)
        self.class_subset = list(range(len(classes))) if class_subset is None else class_subset
        self.samples = samples
        self.map_size = map_size
        self.metadata = metadata or {}
        self._files = sorted(files)
        self._options = options or {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def split(self, name: str) -> list[Sample]:
        """The samples of one split (``train``, ``val``, ``test``)."""
        return [s for s in self.samples if s.split == name]

    @property
    def fingerprint(self) -> str:
        """A short digest that changes whenever the data does, by one rule for every format.

        SHA-256 over the format, the reader's options and, for every file the reader read or
        the samples name, its path (relative to ``root`` when inside it), size and ``mtime_ns``
        (a file gone since opening counts as ``missing``); the first 16 hex digits.
        """
        digest = hashlib.sha256(json.dumps([self.format, self._options], default=str).encode())
        for path in self._files:
            rel = path.relative_to(self.root) if path.is_relative_to(self.root) else path
            try:
                stat = path.stat()
            except FileNotFoundError:
                digest.update(f"{rel}\0missing\n".encode())
                continue
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]
