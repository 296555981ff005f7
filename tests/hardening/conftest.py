"""Fixtures of the hardening tests: a tiny demo set and a small random-init classifier."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hagxai.config import DemoDataConfig, ModelConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.models import build_adapter


class Evil:
    """A pickle that, when loaded, creates the file ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mknod, (str(self.marker),))


@dataclass
class Planted:
    """A pickle (``torch.save`` format) that creates ``marker`` when unpickled."""

    data: bytes
    marker: Path

    def ran(self) -> bool:
        return self.marker.exists()


@pytest.fixture
def planted(tmp_path) -> Planted:
    marker = tmp_path / "pickle-ran"
    buffer = io.BytesIO()
    torch.save({"model": Evil(marker)}, buffer)
    return Planted(buffer.getvalue(), marker)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A tiny classification set (6 train + 2 val images of 48 px), made once."""
    root = tmp_path_factory.mktemp("hardening") / "cls"
    demo = DemoDataConfig(num_train=6, num_val=2, image_size=48)
    observer = ObserverConfig(viewers=2)
    return make_demo_dataset(root, "classification", demo, observer, seed=0, progress=False)


@pytest.fixture
def tiny_copy(tiny_root, tmp_path) -> Path:
    """A private copy of the tiny set, so a test may break its files."""
    return Path(shutil.copytree(tiny_root, tmp_path / "data"))


@pytest.fixture
def tiny_samples(tiny_copy):
    return open_dataset(tiny_copy, "hagxai").samples


@pytest.fixture(scope="session")
def small_classifier():
    """resnet18 with random weights at 32×32 input (fast on a CPU)."""
    return build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(32, 32)))
