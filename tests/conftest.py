"""Test-wide settings: no network, no W&B, a private cache, deterministic torch."""

from __future__ import annotations

import os
import random
from pathlib import Path

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
