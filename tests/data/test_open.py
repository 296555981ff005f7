"""Opening by config keys, and the errors of an unknown format or option."""

from pathlib import Path

import pytest

from hagxai.config import load_config
from hagxai.data import open_dataset, open_from_config
from hagxai.errors import UserError


def test_config_keys_open_the_dataset(tmp_path: Path, write_reference) -> None:
    write_reference(tmp_path)
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


def test_unknown_format_and_options_are_user_errors(tmp_path: Path, write_reference) -> None:
    write_reference(tmp_path)
    with pytest.raises(UserError, match=r"unknown dataset format 'yolo' \(known: auto, hagxai"):
        open_dataset(tmp_path, "yolo")
    with pytest.raises(UserError, match=r"format reference: .*unexpected keyword.*'sigma_px'"):
        open_dataset(tmp_path, "reference", sigma_px=2)
    with pytest.raises(UserError, match=r"format hagxai takes no options \(images\)"):
        open_dataset(tmp_path, "hagxai", images="images")
