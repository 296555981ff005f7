"""``hagxai data check`` on every format lists exactly the problems a folder has."""

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

from hagxai.cli import main
from hagxai.config import DemoDataConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.check import check_dataset
from hagxai.data.demo import make_demo_dataset

RNG = np.random.default_rng(1)


def _bad_folder(root: Path) -> None:
    """Five images: one unreadable, one without a map, one with a mis-sized map."""
    (root / "images").mkdir(parents=True)
    (root / "maps").mkdir()
    for stem in ("ok1", "ok2", "broken", "nomap", "small"):
        pixels = RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{stem}.png")
        if stem != "nomap":
            shape = (6, 8) if stem == "small" else (12, 16)
            np.save(root / "maps" / f"{stem}.npy", RNG.random(shape).astype(np.float32))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG but truncated")


def test_check_lists_exactly_the_three_problems(tmp_path: Path) -> None:
    _bad_folder(tmp_path)
    report = check_dataset(tmp_path, "folders")
    assert report.format == "folders" and report.counts == {"train": 4}
    assert len(report.problems) == 3, report.problems
    broken, nomap, small = sorted(
        report.problems, key=lambda p: ("broken" not in p, "nomap" not in p)
    )
    assert "broken.png: cannot be read as an image" in broken
    assert "nomap.png: no attention map nomap.* in" in nomap
    assert "small.npy: map is 8×6, its image small.png is 16×12" in small


def test_cli_check_prints_each_problem(tmp_path: Path, capsys) -> None:
    _bad_folder(tmp_path)
    assert main(["data", "check", str(tmp_path), "--format", "folders"]) == 1
    out = capsys.readouterr().out
    assert out.count("problem:") == 3 and "folders" in out
    assert main(["data", "check", str(tmp_path), "--format", "folders", "-o", "sigma=3"]) == 1
    assert "unexpected keyword argument 'sigma'" in capsys.readouterr().err


def test_check_fixations_and_reference(tmp_path: Path) -> None:
    images = tmp_path / "fix" / "images"
    images.mkdir(parents=True)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(images / "p.png")
    (tmp_path / "fix" / "fixations.csv").write_text("image,x,y\np,3,4\np,30,4\n")
    report = check_dataset(tmp_path / "fix", sigma_px=2)
    assert report.fixations == 2
    assert report.problems == ["sample p: 1 fixation(s) outside the 10×10 image"]
    (images / "q.png").write_bytes(b"broken")
    (tmp_path / "fix" / "fixations.csv").write_text("image,x,y\np,3,4\nq,1,1\n")
    report = check_dataset(tmp_path / "fix", sigma_px=2)
    assert len(report.problems) == 1 and "q.png: cannot be read as an image" in report.problems[0]
    ref = tmp_path / "ref"
    (ref / "images").mkdir(parents=True)
    (ref / "maps").mkdir()
    (ref / "labels").mkdir()
    Image.fromarray(np.zeros((9, 16, 3), np.uint8)).save(ref / "images" / "1.jpg")
    savemat(ref / "maps" / "1_GSmo_30.mat", {"output_map_norm": np.ones((9, 16))})
    report = check_dataset(ref)
    assert report.format == "reference"
    assert (
        len(report.problems) == 1
        and "map is 16×9, this format's maps are 1024×576" in (report.problems[0])
    )


def test_check_lists_every_problem_of_a_hagxai_folder(tmp_path: Path) -> None:
    small = DemoDataConfig(num_train=12, num_val=6)
    root = make_demo_dataset(tmp_path / "d", "classification", small, ObserverConfig(), 0, False)
    data = open_dataset(root, "hagxai")
    bad_image, missing_map, small_map = data[0], data[1], data[2]
    bad_image.image_path.write_bytes(b"not a png")
    missing_map.map_path.unlink()
    np.save(small_map.map_path, np.zeros((10, 10), np.float32))
    report = check_dataset(root)
    assert report.format == "hagxai"
    assert len(report.problems) == 3
    text = "\n".join(report.problems)
    assert str(bad_image.image_path) in text and "cannot be read" in text
    assert str(missing_map.map_path) in text and "does not exist" in text
    assert str(small_map.map_path) in text and "10×10" in text
