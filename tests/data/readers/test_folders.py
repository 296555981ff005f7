"""The folders and COCO formats: round trips on files written here, malformed files named."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from hagxai.data import open_dataset
from hagxai.errors import DataError

RNG = np.random.default_rng(0)


def _folders(root: Path, write_image) -> dict[str, np.ndarray]:
    """Three images with maps as .npy, 8-bit .png and .mat, and a classification label table."""
    maps = {}
    for stem in ("a", "b", "c"):
        write_image(root / "images" / f"{stem}.png")
    (root / "maps").mkdir()
    maps["a"] = RNG.random((12, 16)).astype(np.float32)
    np.save(root / "maps" / "a.npy", maps["a"])
    grey = RNG.integers(0, 256, (12, 16), dtype=np.uint8)
    Image.fromarray(grey).save(root / "maps" / "b.png")
    maps["b"] = grey / np.float32(255)
    maps["c"] = RNG.random((12, 16))
    savemat(root / "maps" / "c.mat", {"saliency": maps["c"]})
    (root / "labels.csv").write_text("image,label\na.png,cat\nb.png,dog\nc.png,cat\n")
    return maps


def test_folders_round_trip(tmp_path: Path, write_image) -> None:
    maps = _folders(tmp_path, write_image)
    data = open_dataset(tmp_path, labels="labels.csv")
    assert data.format == "folders" and data.task == "classification"
    assert data.classes == ["cat", "dog"] and len(data) == 3
    by_id = {s.id: s for s in data.samples}
    assert [by_id[k].label for k in "abc"] == [0, 1, 0]
    for stem, expected in maps.items():
        np.testing.assert_allclose(by_id[stem].load_map(), expected, rtol=1e-6, atol=1e-7)
        assert by_id[stem].load_image().shape == (12, 16, 3)
    before = data.fingerprint
    np.save(tmp_path / "maps" / "a.npy", maps["a"][::-1].copy())
    assert open_dataset(tmp_path, labels="labels.csv").fingerprint != before


def test_folders_malformed_files_are_named(tmp_path: Path, write_image) -> None:
    _folders(tmp_path, write_image)
    (tmp_path / "maps" / "a.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DataError, match=r"a\.npy: cannot be read as a \.npy"):
        open_dataset(tmp_path, "folders")[0].load_map()
    savemat(tmp_path / "maps" / "c.mat", {"u": np.ones((2, 2)), "v": np.ones((2, 2))})
    sample = next(s for s in open_dataset(tmp_path, "folders").samples if s.id == "c")
    with pytest.raises(DataError, match=r"c\.mat: no variable 'output_map_norm'.*u, v"):
        sample.load_map()
    (tmp_path / "maps" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png: no attention map b\.\* in"):
        open_dataset(tmp_path, "folders")
    np.save(tmp_path / "maps" / "b.npy", np.zeros((12, 16), np.float32))
    (tmp_path / "labels.csv").write_text("image,label\na.png,cat\nzzz.png,dog\n")
    with pytest.raises(DataError, match=r"labels\.csv:3: image 'zzz\.png' has no image file"):
        open_dataset(tmp_path, "folders", labels="labels.csv", maps="maps")


def _coco(root: Path, write_image) -> dict:
    (root / "maps").mkdir()
    for stem in ("x", "y"):
        write_image(root / "images" / f"{stem}.jpg", 20, 30)
        np.save(root / "maps" / f"{stem}.npy", np.ones((20, 30), np.float32))
    coco = {
        "images": [{"id": 7, "file_name": "x.jpg"}, {"id": 9, "file_name": "y.jpg"}],
        "annotations": [
            {"image_id": 7, "bbox": [1, 2, 10, 5], "category_id": 3},
            {"image_id": 7, "bbox": [0, 0, 4, 4], "category_id": 1},
        ],
        "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
    }
    (root / "annotations.json").write_text(json.dumps(coco))
    return coco


def test_coco_round_trip(tmp_path: Path, write_image) -> None:
    _coco(tmp_path, write_image)
    data = open_dataset(tmp_path)
    assert data.format == "coco" and data.task == "detection"
    assert data.classes == ["person", "car"]
    x, y = data.samples
    np.testing.assert_allclose(x.boxes, [[1, 2, 11, 7], [0, 0, 4, 4]])
    assert x.box_labels.tolist() == [1, 0] and len(y.boxes) == 0


def test_coco_malformed_is_named(tmp_path: Path, write_image) -> None:
    coco = _coco(tmp_path, write_image)
    del coco["categories"]
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"annotations\.json: not COCO.*missing 'categories'"):
        open_dataset(tmp_path, "coco")
    (tmp_path / "annotations.json").write_text("{")
    with pytest.raises(DataError, match=r"annotations\.json: not valid JSON"):
        open_dataset(tmp_path, "coco")
