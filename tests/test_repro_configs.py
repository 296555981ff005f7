"""The reproduction configs load, and their data sections open the data they describe."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from hagxai.config import load_config
from hagxai.data import open_from_config

CONFIGS = Path(__file__).parents[1] / "configs"


@pytest.mark.parametrize(
    ("name", "task", "model"),
    [
        ("repro_yolov5s_bdd100k", "detection", "yolov5:weights/yolov5s_bdd100k.pt"),
        ("repro_fasterrcnn_bdd100k", "detection", "fasterrcnn_resnet50_fpn"),
        ("repro_resnet50_imagenet", "classification", "resnet50"),
    ],
)
def test_repro_config_loads(name: str, task: str, model: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.data.task == task and cfg.model.name == model
    assert (cfg.train.folds, cfg.train.epochs, cfg.train.batch_size) == (5, 120, 40)
    assert not cfg.model.trust_checkpoint


def test_bdd100k_configs_open_the_study_layout(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "maps").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((9, 16, 3), np.uint8)).save(tmp_path / "images" / "b1.jpg")
    savemat(tmp_path / "maps" / "b1_GSmo_30.mat", {"output_map_norm": np.ones((9, 16))})
    (tmp_path / "labels" / "b1.txt").write_text("0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.4 0.4\n")
    for name in ("repro_yolov5s_bdd100k", "repro_fasterrcnn_bdd100k"):
        cfg = load_config(CONFIGS / f"{name}.yaml", [f"data.root={tmp_path}"])
        data = open_from_config(cfg.data)
        assert data.class_subset == [2, 3, 4] and data.samples[0].box_labels.tolist() == [3]
