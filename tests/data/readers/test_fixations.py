"""The fixation-table format: CSV and JSON lines read, maps made by hand agree, bad rows named."""

import json
from pathlib import Path

import numpy as np
import pytest

from hagxai.data import open_dataset
from hagxai.errors import DataError


@pytest.mark.parametrize("table", ["fixations.csv", "fixations.jsonl"])
def test_fixation_table_round_trip(tmp_path: Path, table: str, write_image, hand_map) -> None:
    write_image(tmp_path / "images" / "train" / "p.png", 5, 7)
    write_image(tmp_path / "images" / "val" / "q.png", 5, 7)
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
    expected = hand_map([(2, 1), (5.5, 3)], 5, 7, 1.5)
    np.testing.assert_allclose(p.load_map(), expected, rtol=1e-6, atol=1e-7)
    # σ in degrees: 0.5° on a 1920 px, 53 cm screen at 60 cm.
    in_deg = open_dataset(tmp_path, sigma_deg=0.05, screen_px=1920, screen_cm=53, distance_cm=60)
    sigma = 0.05 * 37.93719
    np.testing.assert_allclose(
        in_deg.split("train")[0].load_map(), hand_map([(2, 1), (5.5, 3)], 5, 7, sigma), rtol=1e-4
    )


def test_fixation_table_malformed_is_named(tmp_path: Path, write_image) -> None:
    write_image(tmp_path / "images" / "p.png", 5, 7)
    (tmp_path / "fixations.csv").write_text("image,x,viewer\np.png,1,2\n")
    with pytest.raises(DataError, match=r"fixations\.csv: header lacks column\(s\) y"):
        open_dataset(tmp_path, sigma_px=2)
    (tmp_path / "fixations.csv").write_text("image,x,y\np.png,1,oops\n")
    with pytest.raises(DataError, match=r"fixations\.csv:2: x, y.* must be numbers"):
        open_dataset(tmp_path, sigma_px=2)
