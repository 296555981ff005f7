"""``hagxai data check``: every problem of a dataset folder, listed, not only the first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hagxai.data.format import HumanAttentionDataset, read_image, read_map
from hagxai.errors import DataError


@dataclass
class CheckReport:
    """What ``check_dataset`` found: counts per split, image sizes and one line per problem."""

    root: Path
    task: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    sizes: Counter = field(default_factory=Counter)
    fixations: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(root: str | Path) -> CheckReport:
    """Open the dataset at ``root`` and read every image and map, collecting all problems.

    A problem is a file that is missing or unreadable, a map whose size differs from its image's,
    a box outside the image, or a label outside the class list.
    """
    report = CheckReport(Path(root))
    try:
        data = HumanAttentionDataset(root)
    except DataError as err:
        report.problems.append(str(err))
        return report
    report.task = data.task
    report.counts = dict(Counter(s.split for s in data.samples))
    num_classes = len(data.classes)
    for sample in data.samples:
        report.fixations += len(sample.fixations)
        try:
            image = read_image(sample.image_path)
        except DataError as err:
            report.problems.append(str(err))
            image = None
        if image is not None:
            report.sizes[f"{image.shape[1]}×{image.shape[0]}"] += 1
        if sample.map_path is None:
            report.problems.append(f"sample {sample.id}: no attention map")
        else:
            try:
                attention = read_map(sample.map_path)
            except DataError as err:
                report.problems.append(str(err))
            else:
                if image is not None and attention.shape != image.shape[:2]:
                    report.problems.append(
                        f"{sample.map_path}: map is {attention.shape[1]}×{attention.shape[0]}, "
                        f"its image {sample.image_path.name} is {image.shape[1]}×{image.shape[0]}"
                    )
        labels = [sample.label] if sample.label is not None else []
        for label in [*labels, *sample.box_labels.tolist()]:
            if not 0 <= label < num_classes:
                report.problems.append(
                    f"sample {sample.id}: label {label} outside the {num_classes} classes"
                )
        if image is not None and len(sample.boxes):
            h, w = image.shape[:2]
            b = sample.boxes
            if (
                (b[:, 0] < 0).any()
                or (b[:, 1] < 0).any()
                or (b[:, 2] > w).any()
                or (b[:, 3] > h).any()
            ):
                report.problems.append(f"sample {sample.id}: a box lies outside the {w}×{h} image")
    return report
