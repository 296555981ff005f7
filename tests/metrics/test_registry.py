"""One registry of metrics: every plausibility and faithfulness metric, with its direction."""

from __future__ import annotations

import pytest

from hagxai import metrics
from hagxai.metrics import FAITHFULNESS, METRICS, PLAUSIBILITY


def test_registry_holds_every_metric_in_table_order():
    assert list(METRICS) == [*PLAUSIBILITY, *FAITHFULNESS]
    assert list(METRICS)[:3] == ["cc", "nss", "auc_judd"]
    assert all(metrics.get(name) is metric for name, metric in METRICS.items())
    assert all(metric.name == name for name, metric in METRICS.items())


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown metric 'ccc'.*cc, nss"):
        metrics.get("ccc")


def test_better_follows_the_direction():
    assert metrics.get("cc").better(0.5, 0.4) and not metrics.get("cc").better(0.4, 0.5)
    assert metrics.get("kld").better(0.4, 0.5) and not metrics.get("kld").better(0.5, 0.4)
    assert not metrics.get("deletion").better(0.3, 0.3)
