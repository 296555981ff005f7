"""The reference study's format: a round trip with a class subset, malformed labels named."""

from pathlib import Path

import numpy as np
import pytest

from hagxai.data import open_dataset
from hagxai.data.open import detect_format
from hagxai.data.readers.reference import REFERENCE_CLASSES
from hagxai.errors import DataError, UserError


def test_reference_round_trip_keeps_a_class_subset(tmp_path: Path, write_reference) -> None:
    write_reference(tmp_path)
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


def test_reference_malformed_is_named(tmp_path: Path, write_reference) -> None:
    write_reference(tmp_path)
    (tmp_path / "labels" / "0002.txt").write_text("3 0.5 0.5\n")
    with pytest.raises(DataError, match=r"0002\.txt: each line must be 'class cx cy w h'"):
        open_dataset(tmp_path)
    (tmp_path / "labels" / "0002.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"0002\.txt: class index outside the 5 classes"):
        open_dataset(tmp_path)
    with pytest.raises(UserError, match=r"labels: classes \['van'\] are not among the labels'"):
        open_dataset(tmp_path, classes=["van"])
