"""Plausibility and faithfulness metrics: pure tensor code, batched, on the maps' device.

:mod:`hagxai.metrics.plausibility` compares saliency maps with human attention (the MIT /
Tübingen saliency-benchmark definitions); :mod:`hagxai.metrics.faithfulness` perturbs images in
the maps' order and re-scores them through a scorer callable (deletion / insertion). Each module
declares its metrics in a registry of :class:`Metric` records, so callers can iterate over them and
know which way is better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class MetricWarning(RuntimeWarning):
    """A metric value is NaN or computed on fewer inputs than given; the message says how many."""


@dataclass(frozen=True)
class Metric:
    """What a metric is and how to call it.

    Attributes:
        name: short name used in tables and logs (``"cc"``, ``"deletion"``).
        fn: the function; call it with keyword arguments: ``maps`` (``B×H×W``) and those named
            in ``inputs``.
        higher_is_better: whether a larger value means a better explanation.
        inputs: names of the keyword arguments ``fn`` needs besides the maps
            (``("human_maps",)``, ``("fixations", "other_fixations")``, ``("images", "scorer")``).
    """

    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    inputs: tuple[str, ...]
