"""Target rules: which targets a rule asks for, what enters the key, which samples qualify."""

from __future__ import annotations

import numpy as np
import pytest

from hagxai.cache.rules import TargetRule, sample_problem
from hagxai.errors import UserError


def test_rule_checks_the_adapter_task(classifier):
    TargetRule("label").check(classifier)
    TargetRule("predicted").check(classifier)
    with pytest.raises(UserError, match="target_rule 'detections' does not apply"):
        TargetRule("detections").check(classifier)


def test_specs_and_key_fields(samples):
    assert TargetRule().spec(samples[:2]).labels == [[samples[0].label], [samples[1].label]]
    assert TargetRule("predicted").spec(samples[:2]).predicted
    rule = TargetRule("detections", conf_threshold=0.1, max_per_image=3, classes=[2, 0])
    assert rule.classes == (2, 0) and rule == TargetRule("detections", 0.5, 0.1, 3, (2, 0))
    spec = rule.spec(samples[:2])
    assert (spec.conf_threshold, spec.max_per_image, spec.classes) == (0.1, 3, (2, 0))
    assert rule.fields() == {
        "rule": "detections",
        "conf_threshold": 0.1,
        "max_per_image": 3,
        "classes": [2, 0],
    }
    assert TargetRule("boxes", iou_threshold=0.7).fields() == {
        "rule": "boxes",
        "conf_threshold": 0.25,
        "iou_threshold": 0.7,
    }
    # Thresholds a rule does not use leave its key alone.
    assert TargetRule("label", conf_threshold=0.9).fields() == TargetRule().fields()


def test_sample_problems_are_named(samples):
    assert sample_problem(samples[0], TargetRule(), require_maps=True) is None
    samples[0].label = None
    assert "no label" in sample_problem(samples[0], TargetRule(), True)
    assert sample_problem(samples[0], TargetRule("predicted"), True) is None
    samples[1].image_path.unlink()
    assert "does not exist" in sample_problem(samples[1], TargetRule(), True)
    broken = np.load(samples[2].map_path)
    broken[0, 0] = np.inf
    np.save(samples[2].map_path, broken)
    assert "bad attention map" in sample_problem(samples[2], TargetRule(), True)
    assert sample_problem(samples[2], TargetRule(), require_maps=False) is None
    samples[3].map_path = None
    assert sample_problem(samples[3], TargetRule(), True) == "no attention map"
