"""Plausibility and faithfulness metrics: pure tensor code, batched, on the maps' device.

:mod:`hagxai.metrics.plausibility` compares saliency maps with human attention (the MIT /
Tübingen saliency-benchmark definitions); :mod:`hagxai.metrics.faithfulness` perturbs images in
the maps' order and re-scores them through a scorer callable (deletion / insertion). Each module
declares its metrics as :class:`Metric` records; :data:`METRICS` holds them all, in the order
tables and files show them, and :func:`get` finds one by name. Everything that lists metrics
(validation, best-epoch selection, CSV columns, tables, logging) reads this registry.
"""

from __future__ import annotations

from hagxai.metrics.base import Metric, MetricWarning
from hagxai.metrics.faithfulness import FAITHFULNESS
from hagxai.metrics.plausibility import PLAUSIBILITY

METRICS: dict[str, Metric] = {**PLAUSIBILITY, **FAITHFULNESS}
"""Every metric by name: plausibility first, then faithfulness."""


def get(name: str) -> Metric:
    """The metric called ``name``.

    Raises:
        KeyError: an unknown name, listing the known ones.
    """
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r} (known: {', '.join(METRICS)})") from None


__all__ = ["FAITHFULNESS", "METRICS", "PLAUSIBILITY", "Metric", "MetricWarning", "get"]
