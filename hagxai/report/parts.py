"""The evaluation's completed parts on disk: a killed ``hagxai evaluate`` resumes where it stopped.

The images are scored in fixed batches (``evaluate.batch_size`` consecutive images of the sorted
list, whatever the number of processes). Each finished batch is one :class:`BatchRecord` — every
row's per-image values, faithfulness curves and overlay thumbnails — written atomically to
``<out>/parts/batch-<n>.safetensors`` (safetensors, no pickle; the header's metadata holds the
key, the batch number, its image ids and the row names). The model-randomisation check, once
complete, is ``randomisation.json``. ``key.json`` records what the parts were computed from
(``_part_fields`` in :mod:`hagxai.report.evaluate`): the model's weights digest and config, the
dataset's fingerprint and config, the images, the rows (a learned head by a digest of its
combiners), the layers, the target rule, the evaluation settings that change a value, the seed,
the device type and the hagxai version.

Running the same evaluation again reads the parts whose key matches and computes only the
missing batches, so a run killed at any point ends with the files of an uninterrupted run. Parts
of another evaluation (any key field differs) are deleted and recomputed, and the console says
which fields differ. Under torchrun the ranks compute batches and rank 0 writes them: the parts
do not depend on the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load

from hagxai.atomic import write_atomic
from hagxai.tensorfile import tensor_bytes

FORMAT = "hagxai-evaluation-parts"
VERSION = 1
KEY_FILE = "key.json"
RANDOMISATION_FILE = "randomisation.json"


@dataclass
class BatchRecord:
    """Everything one batch of images contributes to the evaluation.

    Attributes:
        number: the batch's number (its images are ``ids``, in order).
        ids: the batch's sample ids.
        values: row -> column -> one value per image.
        curves: row -> faithfulness column -> ``B×(steps+1)`` curves.
        thumbs: row -> sample id -> small float16 map (the overlay grid's).
    """

    number: int
    ids: list[str]
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    curves: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    thumbs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def module_digest(module: torch.nn.Module, extra: Any = None) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes, bytes) and ``extra`` (JSON)."""
    hasher = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        hasher.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()


def encode(record: BatchRecord, key: str, rows: Sequence[str], columns: Sequence[str]) -> bytes:
    """A batch record as reproducible safetensors bytes (:func:`hagxai.tensorfile.tensor_bytes`).

    Rows are stored by their index in ``rows``; values as float64 (exact for the float32 values
    they come from), curves as float32 and thumbnails as float16, as computed.
    """
    tensors: dict[str, torch.Tensor] = {}
    for r, row in enumerate(rows):
        values = record.values[row]
        tensors[f"values/{r}"] = torch.tensor(
            [[values[c][i] for c in columns] for i in range(len(record.ids))], dtype=torch.float64
        )
        for column, curves in record.curves[row].items():
            tensors[f"curves/{r}/{column}"] = torch.from_numpy(np.ascontiguousarray(curves))
        for i, sample_id in enumerate(record.ids):
            thumb = record.thumbs[row].get(sample_id)
            if thumb is not None:
                tensors[f"thumb/{r}/{i}"] = torch.from_numpy(np.ascontiguousarray(thumb))
    metadata = {
        "format": FORMAT,
        "version": str(VERSION),
        "key": key,
        "batch": str(record.number),
        "ids": json.dumps(record.ids),
        "rows": json.dumps(list(rows)),
        "columns": json.dumps(list(columns)),
    }
    return tensor_bytes(tensors, metadata)


def decode(data: bytes, key: str, rows: Sequence[str], columns: Sequence[str]) -> BatchRecord:
    """The record in ``data`` (from :func:`encode`).

    Raises:
        ValueError: not a batch record of this key, rows and columns.
    """
    try:
        tensors = load(data)
        length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + length]).get("__metadata__") or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"not a safetensors file ({err})") from None
    if metadata.get("format") != FORMAT or metadata.get("version") != str(VERSION):
        raise ValueError("not an evaluation part of this version")
    if metadata.get("key") != key:
        raise ValueError("computed for another evaluation")
    if json.loads(metadata["rows"]) != list(rows) or json.loads(metadata["columns"]) != list(
        columns
    ):
        raise ValueError("other rows or columns")
    record = BatchRecord(int(metadata["batch"]), json.loads(metadata["ids"]))
    for r, row in enumerate(rows):
        table = tensors[f"values/{r}"]
        record.values[row] = {c: table[:, k].tolist() for k, c in enumerate(columns)}
        prefix = f"curves/{r}/"
        record.curves[row] = {
            name[len(prefix) :]: tensor.numpy()
            for name, tensor in sorted(tensors.items())
            if name.startswith(prefix)
        }
        record.thumbs[row] = {
            sample_id: tensors[f"thumb/{r}/{i}"].numpy()
            for i, sample_id in enumerate(record.ids)
            if f"thumb/{r}/{i}" in tensors
        }
    return record


class PartStore:
    """The ``parts`` folder of one evaluation (written by rank 0 only).

    Args:
        folder: ``<out>/parts``.
        fields: what the parts are computed from (JSON); their :func:`digest` is the key.
        rows: the scored rows' names, in table order.
        columns: the per-image columns.
        fresh: delete any parts and start afresh.
    """

    def __init__(
        self,
        folder: Path,
        fields: dict[str, Any],
        rows: Sequence[str],
        columns: Sequence[str],
        *,
        fresh: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.fields = fields
        self.key = digest(fields)
        self.rows, self.columns = list(rows), list(columns)
        self.message = ""
        """What happened to parts found in the folder (empty when there were none)."""
        old = self._read_key()
        if fresh or old is None or old.get("key") != self.key:
            ours = self._files()
            if not ours:
                pass  # nothing saved yet
            elif fresh:
                self.message = f"{self.folder}: starting afresh (--force)"
            elif old is None:
                self.message = f"{self.folder}: no readable {KEY_FILE}; recomputing every part"
            else:
                differ = sorted(
                    k
                    for k in {*fields, *old.get("fields", {})}
                    if fields.get(k) != old.get("fields", {}).get(k)
                )
                self.message = (
                    f"{self.folder}: the saved parts are of another evaluation "
                    f"({', '.join(differ) or 'key'} differ); recomputing them"
                )
            for path in ours:
                path.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._read_key() is None:
            body = {"format": FORMAT, "version": VERSION, "key": self.key, "fields": fields}
            write_atomic(self.folder / KEY_FILE, (json.dumps(body, indent=1) + "\n").encode())

    def _files(self) -> list[Path]:
        """The files this store writes (and their temporaries), nothing else in the folder."""
        if not self.folder.is_dir():
            return []
        names = ("batch-*.safetensors", RANDOMISATION_FILE, KEY_FILE)
        return sorted(
            {p for n in names for pattern in (n, f".{n}.*") for p in self.folder.glob(pattern)}
        )

    def _read_key(self) -> dict[str, Any] | None:
        body = _read_json(self.folder / KEY_FILE)
        if body is None or body.get("format") != FORMAT:
            return None
        return body if body.get("version") == VERSION else None

    def path(self, number: int) -> Path:
        return self.folder / f"batch-{number:05d}.safetensors"

    def read(self, number: int, ids: Sequence[str]) -> BatchRecord | None:
        """Batch ``number`` if its file holds exactly these ``ids`` of this key, else ``None``."""
        try:
            record = decode(self.path(number).read_bytes(), self.key, self.rows, self.columns)
        except (OSError, ValueError, KeyError):
            return None
        if record.number != number or record.ids != list(ids):
            return None
        return record

    def done(self, batches: Sequence[Sequence[str]]) -> dict[int, BatchRecord]:
        """The batches (each given by its ids) already on disk and readable, by number."""
        found = {n: self.read(n, ids) for n, ids in enumerate(batches) if self.path(n).exists()}
        return {n: record for n, record in found.items() if record is not None}

    def write(self, number: int, data: bytes) -> None:
        """Write batch ``number``'s encoded record (atomically)."""
        write_atomic(self.path(number), data)

    def read_randomisation(self, key: str) -> dict[str, Any] | None:
        """The saved randomisation result of ``key`` (see :meth:`write_randomisation`)."""
        body = _read_json(self.folder / RANDOMISATION_FILE)
        if body is None or body.get("key") != key:
            return None
        return _nan(body.get("result"))

    def write_randomisation(self, key: str, result: dict[str, Any]) -> None:
        body = {"key": key, "result": _null(result)}
        write_atomic(self.folder / RANDOMISATION_FILE, (json.dumps(body) + "\n").encode())


def _null(value: Any) -> Any:
    """JSON without NaN: non-finite floats become ``{"float": "nan"}`` and so on."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": str(value)}
    if isinstance(value, dict):
        return {k: _null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_null(v) for v in value]
    return value


def _nan(value: Any) -> Any:
    """The inverse of :func:`_null`."""
    if isinstance(value, dict):
        if set(value) == {"float"}:
            return float(value["float"])
        return {k: _nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan(v) for v in value]
    return value


def _read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` when it is missing, unreadable or not an object."""
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
