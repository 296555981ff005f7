"""The trainer's metrics come from the registry: names, columns and directions."""

from __future__ import annotations

import math

from hagxai.metrics import METRICS
from hagxai.training.logging import COLUMNS
from hagxai.training.metrics import FAITH, LOSS, NAMES, VALIDATION, better, higher_is_better


def test_validation_takes_every_metric_the_trainer_has_inputs_for():
    # shuffled AUC needs other images' fixations and information gain a baseline map
    assert [m.name for m in VALIDATION] == ["cc", "nss", "auc_judd", "kld", "sim"]
    assert [m.name for m in FAITH] == ["deletion", "insertion"]
    assert NAMES == (LOSS, "cc", "nss", "auc_judd", "kld", "sim", "deletion", "insertion")
    assert ["fold", "epoch", "lr", "train_loss", *NAMES] == COLUMNS


def test_directions_are_the_registrys():
    assert not higher_is_better(LOSS)
    for name in NAMES[1:]:
        assert higher_is_better(name) == METRICS[name].higher_is_better
    assert better("cc", 0.2, None) and better("cc", 0.3, 0.2) and not better("cc", 0.2, 0.2)
    assert better("kld", 0.1, 0.2) and not better("val_loss", 0.3, 0.2)
    assert not better("cc", math.nan, None) and not better("cc", math.inf, 0.2)
