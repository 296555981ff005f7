"""The model-randomisation sanity check: a map that ignores the model is flagged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hagxai import explainers
from hagxai.data import open_dataset
from hagxai.evidence import extract_evidence
from hagxai.models import TargetSpec, model_digest
from hagxai.models.demo import demo_adapter, load_images
from hagxai.report.randomisation import (
    cascade,
    model_blocks,
    randomisation_check,
    spearman,
    ssim,
)


def test_blocks_descend_through_single_containers_and_cascade_top_down():
    inner = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Linear(4, 2))
    model = nn.Sequential()
    model.add_module("model", inner)
    names = [name for name, _ in model_blocks(model)]
    assert names == ["model.0", "model.2", "model.3"]  # the ReLU has no parameters
    groups = cascade(model_blocks(model), 2)
    assert [[n for n, _ in g] for g in groups] == [["model.3", "model.2"], ["model.0"]]


def test_similarities_of_equal_and_unrelated_maps():
    maps = torch.rand(2, 16, 16)
    torch.testing.assert_close(spearman(maps, maps), torch.ones(2))
    torch.testing.assert_close(ssim(maps, maps), torch.ones(2))
    assert spearman(maps, torch.rand(2, 16, 16)).abs().max() < 0.3
    # a map that became constant changed completely
    assert spearman(maps[:1], torch.zeros(1, 16, 16)).item() == 0.0


@pytest.mark.slow
def test_centre_bias_is_flagged_and_gradcam_is_not(demo_classifier):
    cfg, root, model = demo_classifier
    adapter = demo_adapter(cfg, root, progress=False, trained=model)
    samples = open_dataset(root, "hagxai").split("val")[:3]
    spec = TargetSpec(labels=[[s.label] for s in samples])
    extraction = extract_evidence(adapter, list(load_images(samples)), spec)
    digest = model_digest(adapter.model)

    def maps_of(variant, evidence, x, targets):
        size = evidence.input_size
        return {
            "gradcam": explainers.get("gradcam")(evidence, size),
            "centre_bias": explainers.get("centre_bias")(evidence, size),
        }

    result = randomisation_check(
        adapter,
        extraction.prepared.x,
        extraction.targets,
        adapter.resolve_layers(None),
        maps_of,
        steps=3,
    )
    assert result.flagged == ["centre_bias"]
    assert result.spearman["centre_bias"] == [1.0, 1.0, 1.0]
    assert result.spearman["gradcam"][-1] < 0.5
    assert len(result.steps) == 3 and result.steps[0][0] == "fc"  # the top first
    assert model_digest(adapter.model) == digest, "the original model must stay untouched"
