"""One registry of metrics: every plausibility and faithfulness metric, by name."""

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
