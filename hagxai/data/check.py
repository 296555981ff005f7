"""``hagxai data check``: every problem of a dataset folder, listed, not only the first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagxai.console import progress_bar
from hagxai.data.open import scan_dataset
from hagxai.data.readers.fixations import FixationSample
from hagxai.data.sample import read_image
from hagxai.errors import DataError


@dataclass
class CheckReport:
    """What ``check_dataset`` found: counts per split, image sizes and one line per problem."""

    root: Path
    format: str = ""
    task: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)
    fixations: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(
    root: str | Path, format: str = "auto", *, progress: bool = False, **options: Any
) -> CheckReport:
    """Open the dataset at ``root`` and read every image and map, collecting all problems.

    A problem is a file that is missing or unreadable, an image without a map (or fixations), a
    map without an image, a map whose size differs from its image's (or from the format's map
    size), a box outside the image, or a label outside the class list.

    Args:
        root: the dataset folder.
        format, options: as :func:`hagxai.data.open.open_dataset`.
        progress: a progress bar over the samples.
    """
    report = CheckReport(Path(root))
    data, problems = scan_dataset(root, format, **options)
    report.problems.extend(problems)
    if data is None:
        return report
    report.format = data.format
    report.task = data.task
    report.counts = dict(Counter(s.split for s in data.samples))
    map_size = data.map_size
    num_classes = len(data.classes)
    with progress_bar("checking", len(data.samples), progress) as advance:
        for sample in data.samples:
            _check_sample(report, sample, map_size, num_classes)
            advance(1)
    return report


def _check_sample(
    report: CheckReport, sample: Any, map_size: tuple[int, int] | None, num_classes: int
) -> None:
    """Append every problem of one sample to ``report`` (and count its fixations and size)."""
    report.fixations += len(sample.fixations)
    try:
        image = read_image(sample.image_path)
    except DataError as err:
        report.problems.append(str(err))
        image = None
    if image is not None:
        report.sizes[f"{image.shape[1]}×{image.shape[0]}"] += 1
    # A fixation map is made at its image's size: an unreadable image is its one problem.
    map_from_image = image is None and isinstance(sample, FixationSample)
    if sample.map_path is None:
        report.problems.append(f"sample {sample.id}: no attention map")
    elif not map_from_image:
        try:
            attention = sample.load_map()
        except DataError as err:
            report.problems.append(str(err))
        else:
            expected = map_size or (image.shape[:2] if image is not None else None)
            if expected is not None and attention.shape != tuple(expected):
                whose = (
                    f"this format's maps are {expected[1]}×{expected[0]}"
                    if map_size
                    else f"its image {sample.image_path.name} is {expected[1]}×{expected[0]}"
                )
                report.problems.append(
                    f"{sample.map_path}: map is {attention.shape[1]}×{attention.shape[0]}, " + whose
                )
    labels = [sample.label] if sample.label is not None else []
    for label in [*labels, *sample.box_labels.tolist()]:
        if not 0 <= label < num_classes:
            report.problems.append(
                f"sample {sample.id}: label {label} outside the {num_classes} classes"
            )
    if image is not None and len(sample.fixations):
        h, w = image.shape[:2]
        xy = sample.fixations
        outside = int(((xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)).sum())
        if outside:
            report.problems.append(
                f"sample {sample.id}: {outside} fixation(s) outside the {w}×{h} image"
            )
    if image is not None and len(sample.boxes):
        h, w = image.shape[:2]
        # Half a pixel of slack: normalised YOLO boxes at the border round past it.
        b = sample.boxes
        if (
            (b[:, 0] < -0.5).any()
            or (b[:, 1] < -0.5).any()
            or (b[:, 2] > w + 0.5).any()
            or (b[:, 3] > h + 0.5).any()
        ):
            report.problems.append(f"sample {sample.id}: a box lies outside the {w}×{h} image")
