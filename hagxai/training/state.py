"""Where a training run stands, typed: what its checkpoint holds and what resume restores.

The checkpoint file (:mod:`hagxai.training.checkpoint`) stores flat safetensors entries and a
JSON state; this module is their typed view. :class:`RunState` is the JSON half (the fold and
epoch reached, the best epoch so far, the early-stop counter, the metric history, the finished
folds' results); :class:`FoldTensors` the tensor half (the combiner now, the best combiner so
far, Adam's state and the torch RNG). The flat names (``model/…``, ``best/…``, ``optim/…``,
``rng/torch``) are the file format and are read and written only here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import Tensor

_MODEL, _BEST, _OPTIM, _RNG = "model/", "best/", "optim/", "rng/torch"


@dataclass
class Best:
    """The best epoch of the current fold so far."""

    epoch: int
    score: float
    metrics: dict[str, float]


@dataclass
class RunState:
    """The JSON half of a checkpoint.

    Attributes:
        fold: the fold in progress (``len(folds)`` when all are done).
        epoch: the last finished epoch of that fold (``-1``: none yet; 0 is the untrained one).
        history: every metric row logged so far, all folds.
        results: the finished folds' :class:`~hagxai.training.trainer.FoldResult` fields.
        best: the fold's best epoch so far.
        bad_epochs: validations since the last improvement (early stopping).
        initial: the fold's epoch-0 metrics.
        stopped: the fold finished (early stop or last epoch) before the checkpoint.
        optimizer: the optimiser's hyper-parameters (its tensors are in :class:`FoldTensors`).
    """

    fold: int = 0
    epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    best: Best | None = None
    bad_epochs: int = 0
    initial: dict[str, float] | None = None
    stopped: bool = False
    optimizer: dict[str, Any] | None = None

    def start_fold(self, fold: int) -> None:
        """Reset the per-fold fields for ``fold`` (nothing trained yet)."""
        self.fold, self.epoch, self.best = fold, -1, None
        self.bad_epochs, self.initial, self.stopped = 0, None, False

    @property
    def in_progress(self) -> bool:
        """Whether the checkpoint holds a fold's combiner mid-way (some epoch finished)."""
        return self.epoch >= 0

    def to_json(self) -> dict[str, Any]:
        """The state as the checkpoint's JSON."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunState:
        """The state of a checkpoint's JSON."""
        data = dict(data)
        best = data.pop("best", None)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known, best=Best(**best) if best is not None else None)


@dataclass
class FoldTensors:
    """The tensor half of a checkpoint.

    Attributes:
        model: the combiner's state dict now.
        best: the state dict of the fold's best epoch so far.
        optimizer: the optimiser's flattened tensors
            (:func:`~hagxai.training.checkpoint.optimizer_tensors`).
        rng: the torch CPU RNG state.
    """

    model: dict[str, Tensor] = field(default_factory=dict)
    best: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Tensor] = field(default_factory=dict)
    rng: Tensor | None = None

    def flat(self) -> dict[str, Tensor]:
        """The entries of the checkpoint file."""
        out = {f"{_MODEL}{k}": v for k, v in self.model.items()}
        out.update({f"{_BEST}{k}": v for k, v in self.best.items()})
        out.update(self.optimizer)
        if self.rng is not None:
            out[_RNG] = self.rng
        return out

    @classmethod
    def from_flat(cls, tensors: dict[str, Tensor]) -> FoldTensors:
        """The typed view of a checkpoint file's entries."""
        out = cls(rng=tensors.get(_RNG))
        for name, value in tensors.items():
            if name.startswith(_MODEL):
                out.model[name.removeprefix(_MODEL)] = value
            elif name.startswith(_BEST):
                out.best[name.removeprefix(_BEST)] = value
            elif name.startswith(_OPTIM):
                out.optimizer[name] = value
        return out
