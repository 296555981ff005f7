"""What every metric is: a :class:`Metric` record (name, function, direction, inputs) and the
warning a metric raises when it leaves images out."""

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
        name: short name used in tables, files and logs (``"cc"``, ``"deletion"``).
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
