"""Fixtures of the cache tests: a random-init classifier and a small demo set per test."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hagxai.config import DemoDataConfig, ModelConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.models import build_adapter

LAYERS = ["layer3", "layer4"]


@pytest.fixture(scope="module")
def classifier():
    return build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "cls"
    demo = DemoDataConfig(num_train=6, num_val=2, image_size=48)
    return make_demo_dataset(root, "classification", demo, ObserverConfig(), seed=0, progress=False)


@pytest.fixture
def samples(dataset_root, tmp_path):
    """A private copy per test, so a test may break files."""
    root = shutil.copytree(dataset_root, tmp_path / "data")
    return open_dataset(root, "hagxai").samples


@pytest.fixture(scope="session")
def images():
    """``samples -> list of 3×H×W uint8`` images."""
    return lambda samples: [
        torch.from_numpy(np.array(s.load_image())).permute(2, 0, 1) for s in samples
    ]


@pytest.fixture(scope="session")
def assert_same():
    """``(got, want, rtol, atol)``: two :class:`Evidence` agree (gradients relative to their
    largest value)."""

    def check(got, want, rtol=1e-5, atol=1e-6):
        assert got.layers == want.layers and got.input_size == want.input_size
        assert torch.equal(got.image_index, want.image_index.cpu())
        for name in want.layers:
            scale = float(want.grads[name].abs().max())
            torch.testing.assert_close(got.acts[name], want.acts[name], rtol=rtol, atol=atol)
            torch.testing.assert_close(
                got.grads[name], want.grads[name], rtol=rtol, atol=atol * scale
            )

    return check
