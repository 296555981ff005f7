"""Every dataset format: round trips on files written here, malformed files named clearly."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from hagxai.config import load_config
from hagxai.data import open_dataset, open_from_config
from hagxai.data.fixations import fixation_map, pixels_per_degree, sigma_pixels
from hagxai.data.formats import REFERENCE_CLASSES, detect_format
from hagxai.errors import DataError

RNG = np.random.default_rng(0)


def _image(path: Path, height: int = 12, width: int = 16) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def _folders(root: Path) -> dict[str, np.ndarray]:
    """Three images with maps as .npy, 8-bit .png and .mat, and a classification label table."""
    maps = {}
    for stem in ("a", "b", "c"):
        _image(root / "images" / f"{stem}.png")
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


def test_folders_round_trip(tmp_path: Path) -> None:
    maps = _folders(tmp_path)
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


def test_folders_malformed_files_are_named(tmp_path: Path) -> None:
    _folders(tmp_path)
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


def test_pixels_per_degree_by_hand() -> None:
    # 1920 px over 53 cm seen from 60 cm: 2·60·tan(0.5°) = 1.04722 cm per degree.
    assert pixels_per_degree(1920, 53, 60) == pytest.approx(1.0472244 * 1920 / 53, rel=1e-6)
    assert sigma_pixels(sigma_deg=0.5, screen_px=1920, screen_cm=53, distance_cm=60) == (
        pytest.approx(0.5 * 37.93719, rel=1e-5)
    )


def _hand_map(points: list[tuple[float, float]], height: int, width: int, sigma: float):
    out = np.zeros((height, width))
    for i in range(height):
        for j in range(width):
            out[i, j] = sum(
                math.exp(-((j - x) ** 2 + (i - y) ** 2) / (2 * sigma**2)) for x, y in points
            )
    return out / out.max()


def test_fixation_map_matches_hand_computation() -> None:
    points = [(2.0, 1.0), (5.5, 3.0)]
    got = fixation_map(np.array(points), 5, 7, sigma=1.5)
    np.testing.assert_allclose(got, _hand_map(points, 5, 7, 1.5), rtol=1e-6, atol=1e-7)
    assert got[1, 2] == pytest.approx(1.0)


@pytest.mark.parametrize("table", ["fixations.csv", "fixations.jsonl"])
def test_fixation_table_round_trip(tmp_path: Path, table: str) -> None:
    _image(tmp_path / "images" / "train" / "p.png", 5, 7)
    _image(tmp_path / "images" / "val" / "q.png", 5, 7)
    rows = [("p.png", 2, 1, 1, 200), ("p.png", 5.5, 3, 2, 300), ("q", 3, 2, 1, 250)]
    if table.endswith(".csv"):
        text = "image,x,y,viewer,duration\n" + "".join(f"{','.join(map(str, r))}\n" for r in rows)
    else:
        keys = ("image", "x", "y", "viewer", "duration")
        text = "".join(json.dumps(dict(zip(keys, r))) + "\n" for r in rows)
    (tmp_path / table).write_text(text)
    data = open_dataset(tmp_path, sigma_px=1.5)
    assert data.format == "fixations" and len(data.split("train")) == len(data.split("val")) == 1
    p = data.split("train")[0]
    np.testing.assert_allclose(p.fixations, [[2, 1], [5.5, 3]])
    assert p.viewers.tolist() == [1, 2] and p.durations.tolist() == [200, 300]
    expected = _hand_map([(2, 1), (5.5, 3)], 5, 7, 1.5)
    np.testing.assert_allclose(p.load_map(), expected, rtol=1e-6, atol=1e-7)
    # σ in degrees: 0.5° on a 1920 px, 53 cm screen at 60 cm.
    in_deg = open_dataset(tmp_path, sigma_deg=0.05, screen_px=1920, screen_cm=53, distance_cm=60)
    sigma = 0.05 * 37.93719
    np.testing.assert_allclose(
        in_deg.split("train")[0].load_map(), _hand_map([(2, 1), (5.5, 3)], 5, 7, sigma), rtol=1e-4
    )


def test_fixation_table_malformed_is_named(tmp_path: Path) -> None:
    _image(tmp_path / "images" / "p.png", 5, 7)
    (tmp_path / "fixations.csv").write_text("image,x,viewer\np.png,1,2\n")
    with pytest.raises(DataError, match=r"fixations\.csv: header lacks column\(s\) y"):
        open_dataset(tmp_path, sigma_px=2)
    (tmp_path / "fixations.csv").write_text("image,x,y\np.png,1,oops\n")
    with pytest.raises(DataError, match=r"fixations\.csv:2: x, y.* must be numbers"):
        open_dataset(tmp_path, sigma_px=2)


def _reference(root: Path, map_shape: tuple[int, int] = (576, 1024)) -> None:
    """Two images of the study's release: .jpg, ``<id>_GSmo_30.mat`` and YOLO labels."""
    (root / "maps").mkdir()
    for stem in ("0001", "0002"):
        _image(root / "images" / f"{stem}.jpg", 72, 128)
        savemat(
            root / "maps" / f"{stem}_GSmo_30.mat",
            {"output_map_norm": np.full(map_shape, 0.5), "meta": np.ones((1, 3))},
        )
    (root / "labels").mkdir()
    # person, car and truck on one image; a bus on the other.
    (root / "labels" / "0001.txt").write_text(
        "0 0.5 0.5 0.1 0.2\n2 0.25 0.5 0.5 0.5\n4 0.75 0.25 0.25 0.25\n"
    )
    (root / "labels" / "0002.txt").write_text("3 0.5 0.5 1.0 1.0\n")


def test_reference_round_trip_keeps_a_class_subset(tmp_path: Path) -> None:
    _reference(tmp_path)
    assert detect_format(tmp_path) == "reference"
    data = open_dataset(tmp_path, classes=["car", "bus", "truck"])
    assert data.task == "detection" and data.classes == REFERENCE_CLASSES
    assert data.class_subset == [2, 3, 4] and data.map_size == (576, 1024)
    first, second = data.samples
    assert first.box_labels.tolist() == [2, 4]
    np.testing.assert_allclose(first.boxes[0], [0, 18, 64, 54])
    np.testing.assert_allclose(second.boxes, [[0, 0, 128, 72]])
    attention = first.load_map()
    assert attention.shape == (576, 1024) and attention.dtype == np.float32
    assert len(open_dataset(tmp_path, "reference").samples[0].boxes) == 3


def test_reference_malformed_is_named(tmp_path: Path) -> None:
    _reference(tmp_path)
    (tmp_path / "labels" / "0002.txt").write_text("3 0.5 0.5\n")
    with pytest.raises(DataError, match=r"0002\.txt: each line must be 'class cx cy w h'"):
        open_dataset(tmp_path)
    (tmp_path / "labels" / "0002.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"0002\.txt: class index outside the 5 classes"):
        open_dataset(tmp_path)
    with pytest.raises(Exception, match=r"classes \['van'\] are not among"):
        open_dataset(tmp_path, classes=["van"])


def _coco(root: Path) -> dict:
    (root / "maps").mkdir()
    for stem in ("x", "y"):
        _image(root / "images" / f"{stem}.jpg", 20, 30)
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


def test_coco_round_trip(tmp_path: Path) -> None:
    _coco(tmp_path)
    data = open_dataset(tmp_path)
    assert data.format == "coco" and data.task == "detection"
    assert data.classes == ["person", "car"]
    x, y = data.samples
    np.testing.assert_allclose(x.boxes, [[1, 2, 11, 7], [0, 0, 4, 4]])
    assert x.box_labels.tolist() == [1, 0] and len(y.boxes) == 0


def test_coco_malformed_is_named(tmp_path: Path) -> None:
    coco = _coco(tmp_path)
    del coco["categories"]
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"annotations\.json: not COCO.*missing 'categories'"):
        open_dataset(tmp_path, "coco")
    (tmp_path / "annotations.json").write_text("{")
    with pytest.raises(DataError, match=r"annotations\.json: not valid JSON"):
        open_dataset(tmp_path, "coco")


def test_config_keys_open_the_dataset(tmp_path: Path) -> None:
    _reference(tmp_path)
    cfg = load_config(
        None,
        [
            f"data.root={tmp_path}",
            "data.format=reference",
            "data.task=detection",
            "data.classes=[car, bus, truck]",
        ],
    )
    data = open_from_config(cfg.data)
    assert data.class_subset == [2, 3, 4] and len(data) == 2
