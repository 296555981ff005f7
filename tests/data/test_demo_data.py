from pathlib import Path

import numpy as np
import pytest

from hagxai.config import DemoDataConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.check import check_dataset
from hagxai.data.demo import make_demo_dataset

SMALL = DemoDataConfig(num_train=12, num_val=6)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_same_seed_writes_identical_files(tmp_path: Path, task: str) -> None:
    a = make_demo_dataset(tmp_path / "a", task, SMALL, ObserverConfig(), seed=3, progress=False)
    b = make_demo_dataset(tmp_path / "b", task, SMALL, ObserverConfig(), seed=3, progress=False)
    c = make_demo_dataset(tmp_path / "c", task, SMALL, ObserverConfig(), seed=4, progress=False)
    assert _files(a) == _files(b)
    assert _files(a)["manifest.json"] != _files(c)["manifest.json"]


def test_classification_round_trip(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "d", "classification", SMALL, ObserverConfig(), 0, False)
    data = open_dataset(root, "hagxai")
    assert data.task == "classification"
    assert data.classes == ["circle", "square", "triangle", "cross"]
    assert len(data.split("train")) == 12 and len(data.split("val")) == 6
    sample = data[0]
    image, attention = sample.load_image(), sample.load_map()
    assert image.shape == (112, 112, 3) and image.dtype == np.uint8
    assert attention.shape == (112, 112) and attention.max() == pytest.approx(1.0)
    assert 0 <= sample.label < 4
    assert len(np.unique(sample.viewers)) == ObserverConfig().viewers
    assert (sample.fixations >= 0).all() and (sample.fixations < 112).all()
    assert data.format == "hagxai" and data.map_size is None
    assert data.metadata["provenance"]["seed"] == 0
    assert set(data.metadata["observer"]["consistency"]) == {"train", "val"}
    assert check_dataset(root).ok


def test_detection_writes_yolo_labels_and_data_yaml(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "d", "detection", SMALL, ObserverConfig(), 0, False)
    data = open_dataset(root, "hagxai")
    assert "val: images/val" in (root / "data.yaml").read_text()
    for sample in data.samples:
        assert 1 <= len(sample.boxes) <= 4
        rows = (root / "labels" / sample.split / f"{sample.id}.txt").read_text().split("\n")
        rows = [r for r in rows if r]
        assert len(rows) == len(sample.boxes)
        cls, cx, cy, w, h = rows[0].split()
        x1, y1, x2, y2 = sample.boxes[0]
        assert int(cls) == sample.box_labels[0]
        assert float(cx) * 160 == pytest.approx((x1 + x2) / 2, abs=0.02)
        assert float(w) * 160 == pytest.approx(x2 - x1, abs=0.02)
        assert float(cy) * 160 == pytest.approx((y1 + y2) / 2, abs=0.02)
        assert float(h) * 160 == pytest.approx(y2 - y1, abs=0.02)
