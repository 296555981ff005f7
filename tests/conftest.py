"""Test-wide settings: no network, no W&B, a private cache, deterministic torch."""

from __future__ import annotations

import os
import random
from pathlib import Path

# Before torch's first MKL call, as importing hagxai does (see hagxai/__init__.py).
os.environ.setdefault("MKL_CBWR", "AUTO")

import numpy as np
import pytest
import torch

# The demo data and models are cached across test sessions (CI trains them once per run).
_CACHE = Path(
    os.environ.get("HAGXAI_TEST_CACHE", Path(__file__).resolve().parent.parent / ".cache")
)
os.environ.setdefault("HAGXAI_CACHE", str(_CACHE))
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(_CACHE / "ultralytics"))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - seeds code that still uses the legacy global RNG
    torch.manual_seed(0)


CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _demo(config: str):
    """The full demo set and model of a shipped demo config, trained once into the test cache."""
    from hagxai.config import load_config
    from hagxai.data.demo import demo_dataset
    from hagxai.models.demo import demo_model

    cfg = load_config(CONFIGS / config, ["device=cpu", f"cache_dir={_CACHE}"])
    root = demo_dataset(cfg, progress=False)
    return cfg, root, demo_model(cfg, root, progress=False)


@pytest.fixture
def small_demo_samples():
    """``make(folder, task, image_size=None)``: the samples of a tiny demo set (3 train + 1 val
    images) written to ``folder``."""
    from hagxai.config import DemoDataConfig, ObserverConfig
    from hagxai.data import open_dataset
    from hagxai.data.demo import make_demo_dataset

    def make(folder: Path, task: str, image_size: int | None = None) -> list:
        sizes = {} if image_size is None else {"image_size": image_size}
        demo = DemoDataConfig(num_train=3, num_val=1, **sizes)
        root = make_demo_dataset(folder, task, demo, ObserverConfig(), 0, False)
        return open_dataset(root, "hagxai").samples

    return make


@pytest.fixture(scope="session")
def demo_classifier():
    """``(cfg, data_root, DemoModel)`` of configs/demo_classifier.yaml (trained on first use)."""
    return _demo("demo_classifier.yaml")


@pytest.fixture(scope="session")
def demo_detector():
    """``(cfg, data_root, DemoModel)`` of configs/demo_detector.yaml (trained on first use)."""
    return _demo("demo_detector.yaml")
