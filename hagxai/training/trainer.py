"""The k-fold trainer of HAG-XAI combiners on an evidence cache.

Protocol (the reference's by default, every number from :class:`~hagxai.config.TrainConfig`):
k folds over images (:mod:`hagxai.training.folds`); per fold a fresh
:class:`~hagxai.combiner.HAGCombiner` at its initial values (FullGrad-CAM++ with smoothing),
Adam without weight decay, batches of ``batch_size`` images in a seeded order, and the loss
:func:`~hagxai.combiner.hag_loss` against the human maps (frames: :mod:`hagxai.training.data`).

Learning rate, piecewise constant: with ``n = ceil(epochs / lr_step_epochs) - 1`` steps and
``k = floor((epoch - 1) / lr_step_epochs)`` for epochs numbered from 1,

    lr(epoch) = lr · (lr_final / lr) ** (k / n)        (lr when n = 0)

so it falls geometrically from ``lr`` in the first block to exactly ``lr_final`` in the last; the
reference's 120 epochs in blocks of 20 run 5e-2, 3.62e-2, 2.63e-2, 1.90e-2, 1.38e-2, 1e-2.

Epoch 0 evaluates the untrained combiner, so every fold records where training started; then each
epoch trains, then validates on the held-out fold (loss, CC, NSS, AUC-Judd, KLD, SIM) and, every
``faithfulness_every`` epochs, measures deletion / insertion AUC on a fixed subset of held-out
images through the real model. The best epoch by ``select_metric`` (ties keep the earlier) is
exported; its faithfulness is measured at the end of the fold if it was not at that epoch.
Training stops early after ``early_stop`` validations without improvement.

Every epoch ends with an atomic checkpoint (:mod:`hagxai.training.checkpoint`); a resumed run
replays nothing and ends with exactly the parameters of an uninterrupted one, because nothing
random depends on the process: batch order comes from a generator seeded by (seed, fold, epoch)
and faithfulness noise from a fixed seed.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hagxai import explainers
from hagxai.combiner import HAGCombiner, hag_loss
from hagxai.config import RunConfig
from hagxai.errors import ConfigError
from hagxai.evaluation import faithfulness
from hagxai.metrics import MetricWarning
from hagxai.metrics.plausibility import auc_judd, cc, kld, nss, sim
from hagxai.models import ModelAdapter
from hagxai.training.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)
from hagxai.training.data import HumanData, batch_loss, grouped, render

#: Validation metrics and whether higher is better (``select_metric`` must be one of them).
METRICS = {
    "val_loss": False,
    "cc": True,
    "nss": True,
    "auc_judd": True,
    "kld": False,
    "sim": True,
    "deletion": False,
    "insertion": True,
}
# Seconds to sleep after every optimiser step: a test hook that makes "killed mid-epoch" timing
# deterministic in the resume test. Unset in normal use.
STEP_DELAY_ENV = "HAGXAI_TRAIN_STEP_DELAY"


def learning_rate(epoch: int, lr: float, lr_final: float, step_epochs: int, epochs: int) -> float:
    """The piecewise-constant rate of ``epoch`` (numbered from 1; see the module docstring)."""
    steps = math.ceil(epochs / step_epochs) - 1
    if steps <= 0:
        return lr
    block = min((epoch - 1) // step_epochs, steps)
    return lr * (lr_final / lr) ** (block / steps)


def check_select_metric(cfg: RunConfig) -> None:
    """Refuse an unknown ``train.select_metric`` before any work is done."""
    if cfg.train.select_metric not in METRICS:
        raise ConfigError(
            f"key 'train.select_metric' = {cfg.train.select_metric!r}: expected one of "
            f"{', '.join(METRICS)}"
        )
    if cfg.train.select_metric in ("deletion", "insertion") and not (
        cfg.train.faithfulness_images and cfg.train.faithfulness_every
    ):
        raise ConfigError(
            f"key 'train.select_metric' = {cfg.train.select_metric!r} needs faithfulness every "
            "epoch-check: set train.faithfulness_images and train.faithfulness_every above 0"
        )


def _better(metric: str, value: float, best: float | None) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if METRICS[metric] else value < best


def _nanmean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else float("nan")


@dataclass
class FoldResult:
    """One fold's outcome (also the rows of the summary)."""

    fold: int
    best_epoch: int
    epochs_run: int
    best: dict[str, float]
    initial: dict[str, float]
    baselines: dict[str, dict[str, float]]


class Trainer:
    """Trains one combiner per fold on an evidence cache.

    Args:
        cfg: the run's config (``train``, ``seed``).
        adapter: the frozen model (faithfulness re-scores through it).
        cache: an evidence cache (:func:`hagxai.cache.open_evidence`).
        human: the human data of the cache's images (:func:`load_human_data`).
        folds: per fold, held-out cache positions.
        images: ``position -> 3×H×W`` float image loader (faithfulness subset only).
        run_dir: where the checkpoint goes.
        device: where the combiner trains.
        on_epoch: called with each metrics row after its checkpoint is written.
        on_fold_end: called with the fold index, the best combiner and its result.
        progress: a rich progress bar.
    """

    def __init__(
        self,
        cfg: RunConfig,
        adapter: ModelAdapter,
        cache: Any,
        human: HumanData,
        folds: Sequence[Sequence[int]],
        images: Callable[[int], torch.Tensor],
        run_dir: Path,
        device: torch.device,
        *,
        on_epoch: Callable[[dict], None] | None = None,
        on_fold_end: Callable[[int, HAGCombiner, FoldResult], None] | None = None,
        progress: bool = True,
    ) -> None:
        check_select_metric(cfg)
        self.cfg, self.train = cfg, cfg.train
        self.adapter, self.cache, self.human = adapter, cache, human
        self.folds = [list(f) for f in folds]
        self.images = images
        self.run_dir = Path(run_dir)
        self.device = device
        self.on_epoch = on_epoch or (lambda row: None)
        self.on_fold_end = on_fold_end or (lambda fold, combiner, result: None)
        self.progress = progress
        # cache position -> index into the human data
        self.slot = {position: i for i, position in enumerate(human.keep)}
        self.delay = float(os.environ.get(STEP_DELAY_ENV, "0") or 0)

    # -- one batch, one epoch ----------------------------------------------------------------

    def _maps(self, explain, positions: list[int]) -> list[torch.Tensor]:
        evidence = self.cache.evidence(positions, device=self.device)
        slots = [self.slot[p] for p in positions]
        sizes = [tuple(self.human.maps[s].shape) for s in slots]
        frames = [self.human.frames[s] for s in slots]
        amp = self.train.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, enabled=amp):
            return render(explain, evidence, sizes, frames)

    def _train_epoch(
        self, combiner: HAGCombiner, optimizer, positions: list[int], seed: int
    ) -> float:
        combiner.train()
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(positions), generator=generator).tolist()
        size = self.train.batch_size
        total, count = 0.0, 0
        for start in range(0, len(order), size):
            batch = [positions[i] for i in order[start : start + size]]
            maps = self._maps(lambda e, s: combiner(e, s, validate=False), batch)
            human = [self.human.maps[self.slot[p]] for p in batch]
            loss = batch_loss(hag_loss, maps, human)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
            if self.delay:
                time.sleep(self.delay)
        return total / max(count, 1)

    @torch.no_grad()
    def _validate(self, explain, positions: list[int]) -> dict[str, float]:
        """Loss and plausibility means over ``positions`` (NaN images left out of the means)."""
        values: dict[str, list[torch.Tensor]] = {k: [] for k in ("cc", "nss", "auc_judd", "kld")}
        values["sim"], losses = [], []
        for start in range(0, len(positions), self.train.batch_size):
            batch = positions[start : start + self.train.batch_size]
            maps = [m.float() for m in self._maps(explain, batch)]
            slots = [self.slot[p] for p in batch]
            human = [self.human.maps[s] for s in slots]
            fixations = [self.human.fixations[s] for s in slots]
            losses.append(batch_loss(hag_loss, maps, human) * len(batch))
            with warnings.catch_warnings():
                # constant maps give NaN by the metrics' rule; the means leave them out
                warnings.simplefilter("ignore", MetricWarning)
                for name, fn in (("cc", cc), ("kld", kld), ("sim", sim)):
                    values[name].append(grouped(fn, maps, human, stack=True))
                for name, fn in (("nss", nss), ("auc_judd", auc_judd)):
                    values[name].append(grouped(fn, maps, fixations, stack=False))
        row = {"val_loss": float(sum(losses)) / len(positions)}
        row.update({name: _nanmean(torch.cat(v).cpu()) for name, v in values.items()})
        return row

    def _faithfulness(self, explain, subset: dict | None) -> dict[str, float]:
        if subset is None:
            return {}
        with torch.no_grad():
            evidence = self.cache.evidence(subset["positions"], device=self.device)
            maps = explain(evidence, self.cache.input_size).float()
        result = faithfulness(
            self.adapter,
            subset["x"],
            subset["targets"],
            maps,
            steps=self.train.faithfulness_steps,
            seed=self.cfg.seed,
        )
        return {
            "deletion": _nanmean(result.deletion.auc.float().cpu()),
            "insertion": _nanmean(result.insertion.auc.float().cpu()),
        }

    def _faith_subset(self, held_out: list[int]) -> dict | None:
        """The fixed faithfulness images of a fold: model input and targets, made once."""
        count = min(self.train.faithfulness_images, len(held_out))
        if count == 0:
            return None
        positions = held_out[:count]
        prepared = self.adapter.preprocess([self.images(p) for p in positions])
        targets = self.cache.targets(positions)
        return {"positions": positions, "x": prepared.x, "targets": targets}

    # -- the run -----------------------------------------------------------------------------

    def run(self, resume: bool = False) -> list[FoldResult]:
        """Train every fold (continuing from the checkpoint when ``resume``).

        Returns:
            One :class:`FoldResult` per fold.
        """
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        path = self.run_dir / CHECKPOINT
        state: dict[str, Any] = {"fold": 0, "epoch": -1, "history": [], "results": []}
        tensors: dict[str, torch.Tensor] = {}
        if resume:
            tensors, state = load_checkpoint(path)
            torch.set_rng_state(tensors["rng/torch"])
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        total = len(self.folds) * (self.train.epochs + 1)
        done = sum(r["epochs_run"] + 1 for r in state["results"])
        done += state["epoch"] + 1 if state["fold"] < len(self.folds) else 0
        with Progress(*columns, disable=not self.progress, transient=True) as bar:
            task = bar.add_task("training", total=total, completed=done)
            for fold in range(state["fold"], len(self.folds)):
                self._run_fold(fold, state, tensors, path, bar, task)
                tensors = {}
        return [FoldResult(**r) for r in state["results"]]

    def _run_fold(self, fold, state, tensors, path, bar, task) -> None:
        cfg = self.train
        held_out = self.folds[fold]
        held = set(held_out)
        training = [p for fold_positions in self.folds for p in fold_positions if p not in held]
        training.sort()
        combiner = HAGCombiner(layers=self.cache.layers).to(self.device)
        optimizer = torch.optim.Adam(combiner.parameters(), lr=cfg.lr, weight_decay=0.0)
        best_state = {k: v.detach().clone() for k, v in combiner.state_dict().items()}
        if state["fold"] == fold and state["epoch"] >= 0:
            combiner.load_state_dict({k[6:]: v for k, v in tensors.items() if k[:6] == "model/"})
            best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
            restore_optimizer(optimizer, tensors, state["optimizer"])
        else:
            state.update(fold=fold, epoch=-1, best=None, bad_epochs=0, initial=None, stopped=False)
        subset = self._faith_subset(held_out)
        explain = lambda e, s: combiner(e, s, validate=False)  # noqa: E731 - bound to the loop
        metric = cfg.select_metric
        every = cfg.faithfulness_every
        # a fold that stopped early before the kill must not train on after the resume
        first = cfg.epochs + 1 if state["stopped"] else state["epoch"] + 1
        for epoch in range(first, cfg.epochs + 1):
            bar.update(task, description=f"fold {fold + 1}/{len(self.folds)} epoch {epoch}")
            row: dict[str, Any] = {"fold": fold, "epoch": epoch}
            if epoch == 0:
                row.update(lr=float("nan"), train_loss=float("nan"))
            else:
                lr = learning_rate(epoch, cfg.lr, cfg.lr_final, cfg.lr_step_epochs, cfg.epochs)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                seed = (self.cfg.seed * 1_000_003 + fold) * 10_007 + epoch
                row.update(lr=lr, train_loss=self._train_epoch(combiner, optimizer, training, seed))
            combiner.eval()
            row.update(self._validate(explain, held_out))
            if epoch == 0 or (every and epoch % every == 0):
                row.update(self._faithfulness(explain, subset))
            if epoch == 0:
                state["initial"] = {k: row[k] for k in METRICS if k in row}
            best = state["best"]
            if _better(metric, row[metric], None if best is None else best["score"]):
                state["best"] = {"epoch": epoch, "score": row[metric], "metrics": dict(row)}
                best_state = {k: v.detach().clone() for k, v in combiner.state_dict().items()}
                state["bad_epochs"] = 0
            elif epoch > 0:
                state["bad_epochs"] += 1
            state["history"].append(row)
            state["epoch"] = epoch
            stop = state["bad_epochs"] >= cfg.early_stop or epoch == cfg.epochs
            state["stopped"] = stop
            self._checkpoint(path, state, combiner, optimizer, best_state)
            self.on_epoch(row)
            bar.advance(task)
            if stop:
                bar.advance(task, cfg.epochs - epoch)
                break
        combiner.load_state_dict(best_state)
        combiner.eval()
        best = dict(state["best"]["metrics"])
        if subset is not None and "deletion" not in best:
            best.update(self._faithfulness(explain, subset))
        baselines = {}
        for name in cfg.baselines:
            method = explainers.get(name)
            baselines[name] = self._validate(method, held_out)
            baselines[name].update(self._faithfulness(method, subset))
        result = FoldResult(
            fold=fold,
            best_epoch=state["best"]["epoch"],
            epochs_run=state["epoch"],
            best={k: best[k] for k in METRICS if k in best},
            initial=state["initial"],
            baselines=baselines,
        )
        self.on_fold_end(fold, combiner, result)
        state["results"].append(vars(result))
        state.update(fold=fold + 1, epoch=-1, best=None, bad_epochs=0, initial=None, stopped=False)
        save_checkpoint(path, {"rng/torch": torch.get_rng_state()}, state)

    def _checkpoint(self, path, state, combiner, optimizer, best_state) -> None:
        optim, meta = optimizer_tensors(optimizer)
        state["optimizer"] = meta
        tensors = {f"model/{k}": v for k, v in combiner.state_dict().items()}
        tensors.update({f"best/{k}": v for k, v in best_state.items()})
        tensors.update(optim)
        tensors["rng/torch"] = torch.get_rng_state()
        save_checkpoint(path, tensors, state)
