"""The project's own format: malformed manifests named, the fingerprint follows every file."""

import json
from pathlib import Path

import numpy as np
import pytest

from hagxai.config import DemoDataConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.errors import DataError

SMALL = DemoDataConfig(num_train=4, num_val=2)


def test_malformed_manifest_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{ not json")
    with pytest.raises(DataError, match=r"manifest\.json: not valid JSON"):
        open_dataset(tmp_path, "hagxai")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "hagxai-dataset", "version": 9}))
    with pytest.raises(DataError, match="version 9 is not supported"):
        open_dataset(tmp_path, "hagxai")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(DataError, match=r"elsewhere/manifest\.json: no manifest"):
        open_dataset(tmp_path / "elsewhere", "hagxai")


def test_fingerprint_follows_the_manifest_fixations_and_every_sample_file(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "d", "classification", SMALL, ObserverConfig(), 0, False)
    data = open_dataset(root)
    assert data.format == "hagxai" and data.fingerprint == open_dataset(root).fingerprint
    seen = {data.fingerprint}
    sample = data[1]
    for path in (root / "manifest.json", root / "fixations.csv", sample.image_path):
        path.write_bytes(path.read_bytes() + b"\n")
        seen.add(open_dataset(root).fingerprint)
    np.save(sample.map_path, np.zeros((112, 112), np.float32))
    seen.add(open_dataset(root).fingerprint)
    sample.map_path.unlink()
    seen.add(open_dataset(root).fingerprint)
    assert len(seen) == 6
