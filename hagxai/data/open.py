"""Opening a dataset of any format: :func:`open_dataset`, :func:`scan_dataset` and the rest.

Formats (``format=``), one reader each in :mod:`hagxai.data.readers`:

* ``hagxai``: the project's own folder (``manifest.json``, :mod:`~hagxai.data.readers.manifest`).
* ``folders``: a folder of images and a folder of attention maps (``.npy``, greyscale
  ``.png``/``.jpg``, ``.mat``) matched by file stem (:mod:`~hagxai.data.readers.folders`).
* ``fixations``: a folder of images and a fixation table (CSV or JSON lines); maps are Gaussians
  of σ pixels or degrees at each fixation (:mod:`~hagxai.data.readers.fixations`).
* ``reference``: the HAG-XAI study's release (:mod:`~hagxai.data.readers.reference`).
* ``coco``: a folder of images, a folder of maps and a COCO JSON file of boxes and labels.

Boxes and labels come, for any format but ``hagxai``, from ``labels``
(:mod:`~hagxai.data.readers.labels`). Images in sub-folders of the image folder take the
sub-folder's name as their split (else ``train``).

Everything that can be checked without decoding pixels (pairs, tables, labels) is checked when the
dataset is opened; the first problem raises :class:`~hagxai.errors.DataError` naming the file.
:func:`scan_dataset` instead returns every problem found (``hagxai data check``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hagxai.data.dataset import AttentionDataset
from hagxai.data.readers.fixations import FIXATION_TABLES, read_fixations
from hagxai.data.readers.folders import COCO_ANNOTATIONS, read_folders
from hagxai.data.readers.manifest import MANIFEST, read_manifest
from hagxai.data.readers.reference import REFERENCE_MAP, read_reference
from hagxai.data.readers.scan import resolve
from hagxai.errors import DataError, UserError

Reader = Callable[..., tuple[AttentionDataset, list[str]]]
"""``(root, format, **options) -> (dataset, problems)``; raises ``DataError`` when nothing is
usable and ``TypeError`` for an option it does not take."""

READERS: dict[str, Reader] = {
    "hagxai": read_manifest,
    "folders": read_folders,
    "fixations": read_fixations,
    "reference": read_reference,
    "coco": read_folders,
}
FORMATS = ("auto", *READERS)


def open_dataset(root: str | Path, format: str = "auto", **options: Any) -> AttentionDataset:
    """Open a dataset in any supported format (module docstring), validated up front.

    Args:
        root: the dataset folder.
        format: one of :data:`FORMATS`; ``auto`` tells it from the folder's contents.
        **options: ``task``, ``images``, ``maps``, ``labels``, ``fixations`` (paths relative to
            ``root`` or absolute), ``sigma_px`` or ``sigma_deg`` with ``screen_px``,
            ``screen_cm``, ``distance_cm``, ``duration_weighted``, ``classes`` (names to keep),
            ``class_names`` (names of YOLO label indices). ``hagxai`` takes only ``task``.

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


def open_from_config(data: Any) -> AttentionDataset:
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
) -> tuple[AttentionDataset | None, list[str]]:
    """Read a dataset leniently: the dataset of the usable samples and every problem found.

    A sample with a problem (no map, no fixations, unreadable labels) is left out of the dataset
    and named in the problems; a problem that leaves nothing usable gives no dataset. Arguments
    as :func:`open_dataset`.
    """
    root = Path(root)
    if format not in FORMATS:
        raise UserError(f"unknown dataset format {format!r} (known: {', '.join(FORMATS)})")
    if not root.is_dir():
        return None, [f"{root}: dataset folder does not exist"]
    if format == "auto":
        format = detect_format(root, options)
    if format == "hagxai" and options.keys() - {"task"}:
        raise UserError(f"format hagxai takes no options ({', '.join(sorted(options))})")
    try:
        return READERS[format](root, format, **options)
    except TypeError as err:
        if "unexpected keyword" not in str(err):
            raise
        raise UserError(f"format {format}: {err}".replace("read_", "")) from None
    except DataError as err:
        return None, [str(err)]


def detect_format(root: Path, options: dict[str, Any] | None = None) -> str:
    """The format of ``root`` from its contents (see :func:`open_dataset`)."""
    options = options or {}
    if (root / MANIFEST).is_file():
        return "hagxai"
    if options.get("fixations") or any((root / name).is_file() for name in FIXATION_TABLES):
        return "fixations"
    maps = resolve(root, options.get("maps"), "maps")
    if maps.is_dir() and any(REFERENCE_MAP.match(p.stem) for p in maps.rglob("*.mat")):
        return "reference"
    labels = options.get("labels")
    if (labels and str(labels).endswith(".json")) or (root / COCO_ANNOTATIONS).is_file():
        return "coco"
    if resolve(root, options.get("images"), "images").is_dir() and maps.is_dir():
        return "folders"
    raise DataError(
        f"{root}: cannot tell the dataset format (no manifest.json, fixation table, *_GSmo_*.mat "
        "maps, annotations.json, or images/ and maps/ folders); pass format="
    )
