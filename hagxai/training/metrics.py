"""What the trainer measures, read from the metric registry (:data:`hagxai.metrics.METRICS`).

Every epoch the held-out fold is scored by the validation loss and by each plausibility metric
whose inputs the trainer holds (human maps and fixations, :class:`~hagxai.training.data.HumanData`);
the faithfulness metrics run on a fixed subset of held-out images. The order here is the order of
the metric columns in ``metrics.csv``, the summary tables and the W&B keys; best-epoch and
best-fold selection take each metric's direction from its registry record.
"""

from __future__ import annotations

import math

from hagxai.metrics import FAITHFULNESS, METRICS, PLAUSIBILITY, Metric

LOSS = "val_loss"
"""The validation loss (the training loss on held-out images): lower is better."""

HELD = frozenset({"human_maps", "fixations"})
"""The metric inputs the trainer holds for every held-out image."""

VALIDATION: tuple[Metric, ...] = tuple(m for m in PLAUSIBILITY.values() if set(m.inputs) <= HELD)
"""The plausibility metrics computed at every validation."""

FAITH: tuple[Metric, ...] = tuple(FAITHFULNESS.values())
"""The faithfulness metrics (through the model, on the faithfulness subset)."""

NAMES: tuple[str, ...] = (LOSS, *(m.name for m in VALIDATION), *(m.name for m in FAITH))
"""Every metric a training row can hold, in column order (``train.select_metric`` is one)."""


def higher_is_better(name: str) -> bool:
    """The direction of one of :data:`NAMES`."""
    return False if name == LOSS else METRICS[name].higher_is_better


def better(name: str, value: float, best: float | None) -> bool:
    """Whether ``value`` of metric ``name`` beats ``best`` (``None``: nothing yet). A non-finite
    value never does; a tie keeps the earlier."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if higher_is_better(name) else value < best
