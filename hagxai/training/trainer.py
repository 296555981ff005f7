"""The k-fold trainer of HAG-XAI combiners on an evidence cache.

Protocol (the reference's by default, every number from :class:`~hagxai.config.TrainConfig`):
k folds over images (:mod:`hagxai.training.folds`); per fold a fresh
:class:`~hagxai.combiner.HAGCombiner` at its initial values (FullGrad-CAM++ with smoothing),
Adam without weight decay, batches of ``batch_size`` images in a seeded order, and the loss
:func:`~hagxai.losses.hag_loss` against the human maps (frames: :mod:`hagxai.training.data`).

Learning rate, piecewise constant: with ``n = ceil(epochs / lr_step_epochs) - 1`` steps and
``k = floor((epoch - 1) / lr_step_epochs)`` for epochs numbered from 1,

    lr(epoch) = lr · (lr_final / lr) ** (k / n)        (lr when n = 0)

so it falls geometrically from ``lr`` in the first block to exactly ``lr_final`` in the last; the
reference's 120 epochs in blocks of 20 run 5e-2, 3.62e-2, 2.63e-2, 1.90e-2, 1.38e-2, 1e-2.

Epoch 0 evaluates the untrained combiner, so every fold records where training started; then each
epoch trains, then validates on the held-out fold (the loss and the plausibility metrics of
:mod:`hagxai.training.metrics`: CC, NSS, AUC-Judd, KLD, SIM) and, every
``faithfulness_every`` epochs, measures deletion / insertion AUC on a fixed subset of held-out
images through the real model. The best epoch by ``select_metric`` (ties keep the earlier) is
exported; its faithfulness is measured at the end of the fold if it was not at that epoch.
Training stops early after ``early_stop`` validations without improvement.

The ``combiner`` config section selects the extensions (:class:`~hagxai.config.CombinerConfig`):
layer weights, per-channel slopes, a learnable radius, the stable parameterisation, the KL or NSS
loss, an initial kernel width searched on the fold's training images, learning-rate warm-up over
the first optimiser steps (``lr · min(1, step / warmup_steps)``, steps counted from 1) and gradient
clipping. Every fold records its worst validation-CC drop below epoch 0 and its learned values.

Every epoch ends with an atomic checkpoint (:mod:`hagxai.training.checkpoint`); a resumed run
replays nothing and ends with exactly the parameters of an uninterrupted one, because nothing
random depends on the process: batch order comes from a generator seeded by (seed, fold, epoch)
and faithfulness noise from a fixed seed.

Under torchrun (:mod:`hagxai.distributed`) every rank holds the whole cache, the same folds and
the same combiner. Each optimiser step cuts its batch into consecutive groups of ``grad_group``
images (a cut that does not depend on the number of processes) and deals the groups out to the
ranks; a group's gradient (of its images' share of the batch-mean loss) is computed by the same
code on whichever rank takes it, the flat per-group gradients are gathered (copied, not added)
and every rank adds them up in batch order, as one process does. So every rank takes exactly the
step one process would, bit for bit wherever the kernels give a group the same bits at the
processes' thread counts (README, "Many processes: torchrun"). Validation and faithfulness
images are split between the ranks and their per-image values (the loss included) gathered and
reduced in image order, so every rank computes the same metric row and makes the same
best-epoch and early-stop decisions. Only rank 0 writes the checkpoint.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hagxai import explainers
from hagxai.cache import EvidenceSource
from hagxai.combiner import HAGCombiner
from hagxai.config import RunConfig
from hagxai.distributed import (
    all_gather_list,
    all_gather_shards,
    is_main,
    shard,
    shard_range,
    world_size,
)
from hagxai.errors import ConfigError
from hagxai.evaluation import faithfulness
from hagxai.explainers import Explainer
from hagxai.losses import (
    HumanMoments,
    hag_loss,
    hag_losses,
    hag_losses_on_grid,
    human_moments,
    kl_loss,
    nss_loss,
)
from hagxai.metrics import MetricWarning
from hagxai.models import ModelAdapter, Targets
from hagxai.training.checkpoint import (
    CHECKPOINT,
    load_checkpoint,
    optimizer_tensors,
    restore_optimizer,
    save_checkpoint,
)
from hagxai.training.data import HumanData, batch_loss, goes_direct, grouped, render
from hagxai.training.metrics import FAITH, LOSS, NAMES, VALIDATION, better
from hagxai.training.state import Best, FoldTensors, RunState

#: ``train.smooth_dtype`` -> the combiner's ``smooth_dtype``.
SMOOTH_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def learning_rate(epoch: int, lr: float, lr_final: float, step_epochs: int, epochs: int) -> float:
    """The piecewise-constant rate of ``epoch`` (numbered from 1; see the module docstring)."""
    steps = math.ceil(epochs / step_epochs) - 1
    if steps <= 0:
        return lr
    block = min((epoch - 1) // step_epochs, steps)
    return lr * (lr_final / lr) ** (block / steps)


def check_select_metric(cfg: RunConfig) -> None:
    """Refuse an unknown ``train.select_metric`` before any work is done."""
    metric = cfg.train.select_metric
    if metric not in NAMES:
        raise ConfigError(
            f"key 'train.select_metric' = {metric!r}: expected one of {', '.join(NAMES)}"
        )
    if metric in {m.name for m in FAITH} and not (
        cfg.train.faithfulness_images and cfg.train.faithfulness_every
    ):
        raise ConfigError(
            f"key 'train.select_metric' = {metric!r} needs faithfulness every "
            "epoch-check: set train.faithfulness_images and train.faithfulness_every above 0"
        )


def _nanmean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else float("nan")


@dataclass
class FaithSubset:
    """The fixed faithfulness images of a fold (this rank's share of them under torchrun):
    cache positions, model input, targets, the deletion noise each image gets, and the scores
    of the steps every map shares (filled in by the first faithfulness check)."""

    positions: list[int]
    x: torch.Tensor
    targets: Targets
    noise: torch.Tensor
    shared: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class FoldResult:
    """One fold's outcome (also the rows of the summary)."""

    fold: int
    best_epoch: int
    epochs_run: int
    best: dict[str, float]
    initial: dict[str, float]
    baselines: dict[str, dict[str, float]]
    worst_cc_drop: float = float("nan")
    parameters: dict[str, float | list[float]] | None = None


def cc_drop(history: Sequence[dict[str, Any]], fold: int) -> float:
    """The largest fall of a fold's validation CC below its epoch-0 value (0 if it never fell)."""
    rows = [r for r in history if r["fold"] == fold]
    start = next((r["cc"] for r in rows if r["epoch"] == 0), float("nan"))
    later = [r["cc"] for r in rows if r["epoch"] > 0 and r["cc"] == r["cc"]]
    if start != start or not later:
        return float("nan")
    return max(0.0, start - min(later))


def learned_values(combiner: HAGCombiner) -> dict[str, float | list[float]]:
    """Every learned value in the maths' terms: scalars as numbers, per-layer weights as a list,
    per-channel slopes as their mean over channels (``<name>_mean``)."""
    values: dict[str, float | list[float]] = {}
    names = [n.removesuffix("_log") for n, _ in combiner.named_parameters()]
    names += [n for n, _ in combiner.named_buffers()]
    for name in names:
        value = combiner.value(name).detach().float().cpu()
        if name == "layer_weight":
            values[name] = value.tolist()
        elif value.dim() == 0:
            values[name] = float(value)
        else:
            values[f"{name}_mean"] = float(value.mean())
    return values


class Trainer:
    """Trains one combiner per fold on an evidence source.

    Args:
        cfg: the run's config (``train``, ``seed``).
        adapter: the frozen model (faithfulness re-scores through it).
        cache: the evidence of the dataset's images (:func:`hagxai.cache.open_evidence`).
        human: the human data of the cache's images (:func:`load_human_data`).
        folds: per fold, held-out cache positions.
        images: ``position -> 3×H×W`` float image loader (faithfulness subset only).
        run_dir: where the checkpoint goes.
        device: where the combiner trains.
        on_epoch: called with each metrics row after its checkpoint is written.
        on_fold_end: called with the fold index, the best combiner and its result.
        on_step: called after every optimiser step (e.g. to watch or pace a run).
        progress: a rich progress bar.
    """

    def __init__(
        self,
        cfg: RunConfig,
        adapter: ModelAdapter,
        cache: EvidenceSource,
        human: HumanData,
        folds: Sequence[Sequence[int]],
        images: Callable[[int], torch.Tensor],
        run_dir: Path,
        device: torch.device,
        *,
        on_epoch: Callable[[dict], None] | None = None,
        on_fold_end: Callable[[int, HAGCombiner, FoldResult], None] | None = None,
        on_step: Callable[[], None] | None = None,
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
        self.on_step = on_step or (lambda: None)
        self.progress = progress
        # cache position -> index into the human data
        self.slot = {position: i for i, position in enumerate(human.keep)}
        self._moments: dict[tuple[int, tuple[int, int]], HumanMoments] = {}

    # -- one batch, one epoch ----------------------------------------------------------------

    def _maps(self, explain: Explainer, positions: list[int]) -> list[torch.Tensor]:
        evidence = self.cache.evidence(positions, device=self.device)
        slots = [self.slot[p] for p in positions]
        sizes = [tuple(self.human.maps[s].shape) for s in slots]
        frames = [self.human.frames[s] for s in slots]
        with self._autocast():
            return render(explain, evidence, sizes, frames)

    def _autocast(self) -> torch.autocast:
        """Mixed precision for the evidence pass where it is safe: on CUDA with ``train.amp``."""
        cuda = self.device.type == "cuda"
        return torch.autocast(self.device.type, enabled=self.train.amp and cuda)

    def _build_combiner(self) -> HAGCombiner:
        """A fresh combiner with the ``combiner`` section's extensions, on the device."""
        options = self.cfg.combiner
        channels = None
        if options.channel_slopes:
            evidence = self.cache.evidence([self.folds[0][0]])
            channels = {name: int(evidence.acts[name].shape[1]) for name in self.cache.layers}
        cfg = self.train
        return HAGCombiner(
            layers=self.cache.layers,
            layer_weights=options.layer_weights,
            channels=channels,
            learn_radius=options.learn_radius,
            parameterisation=options.parameterisation,
            chunk_targets=cfg.chunk_targets,
            fold_resize=cfg.fold_resize,
            smooth_dtype=SMOOTH_DTYPES[cfg.smooth_dtype],
            compile_kernels=cfg.compile,
        ).to(self.device)

    def _loss(self, maps: list[torch.Tensor], batch: list[int]) -> torch.Tensor:
        """The ``combiner.loss`` training loss of a batch's maps (a mean over its images)."""
        slots = [self.slot[p] for p in batch]
        kind = self.cfg.combiner.loss
        if kind == "nss":
            fixations = [self.human.fixations[s].to(maps[0].device) for s in slots]
            per_image = [nss_loss(m[None].float(), [f]) for m, f in zip(maps, fixations)]
            return torch.stack(per_image).mean()
        loss_fn = kl_loss if kind == "kl" else hag_loss
        return batch_loss(loss_fn, maps, [self.human.maps[s] for s in slots])

    def _combiner_loss(self, combiner: HAGCombiner, positions: list[int]) -> torch.Tensor:
        """The training loss of ``combiner`` on ``positions`` (a mean over the images).

        The reference loss of maps that go straight to one human-map size (no letterbox frame)
        is computed on the combiner's grid (:func:`hagxai.losses.hag_losses_on_grid`, equal
        up to rounding, with each human map reduced once per run); ``train.grid_loss: false``,
        another loss or framed maps take the full-size path.
        """
        slots = [self.slot[p] for p in positions]
        sizes = [tuple(self.human.maps[s].shape) for s in slots]
        on_grid = (
            self.train.grid_loss
            and self.cfg.combiner.loss == "hag"
            and goes_direct(sizes, [self.human.frames[s] for s in slots])
        )
        if not on_grid:
            maps = self._maps(lambda e, s: combiner(e, s, validate=False), positions)
            return self._loss(maps, positions)
        evidence = self.cache.evidence(positions, device=self.device)
        with self._autocast():
            grid = combiner.grid_maps(evidence, validate=False)
        moments = self._human_moments(slots, (int(grid.shape[-2]), int(grid.shape[-1])))
        return hag_losses_on_grid(grid, moments).mean()

    def _human_moments(self, slots: list[int], grid: tuple[int, int]) -> HumanMoments:
        """The human maps of ``slots`` reduced for the grid loss, each once per run (they never
        change), on the device."""
        missing = [s for s in dict.fromkeys(slots) if (s, grid) not in self._moments]
        if missing:
            maps = torch.stack([self.human.maps[s] for s in missing]).to(self.device)
            reduced = human_moments(maps, grid)
            for row, slot in enumerate(missing):
                self._moments[(slot, grid)] = reduced.take(row)
        return HumanMoments.cat([self._moments[(s, grid)] for s in slots])

    @torch.no_grad()
    def _search_init(self, combiner: HAGCombiner, positions: list[int]) -> None:
        """Set both kernel widths to the pair from ``init_widths`` with the lowest training loss
        on ``positions`` (the fold's training images only, evenly thinned to at most
        ``init_images``; ties keep the earlier pair)."""
        widths = self.cfg.combiner.init_widths
        stride = math.ceil(len(positions) / self.cfg.combiner.init_images)
        positions = positions[::stride]
        size = self.train.batch_size
        best: tuple[float, float, float] | None = None
        for grad_s in widths:
            for map_s in widths:
                combiner.grad_s.fill_(grad_s)
                combiner.map_s.fill_(map_s)
                total = 0.0
                for start in range(0, len(positions), size):
                    batch = positions[start : start + size]
                    total += float(self._combiner_loss(combiner, batch)) * len(batch)
                if best is None or total < best[0]:
                    best = (total, grad_s, map_s)
        assert best is not None
        combiner.grad_s.fill_(best[1])
        combiner.map_s.fill_(best[2])

    def _train_epoch(
        self,
        combiner: HAGCombiner,
        optimizer,
        positions: list[int],
        seed: int,
        epoch: int = 1,
        lr: float | None = None,
    ) -> float:
        combiner.train()
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(positions), generator=generator).tolist()
        size = self.train.batch_size
        options = self.cfg.combiner
        steps_per_epoch = math.ceil(len(order) / size)
        # summed on the device and read once per epoch: no `.item()` (a synchronisation with
        # the GPU) per batch
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        per_group = self.train.grad_group or size
        params = [p for p in combiner.parameters() if p.requires_grad]
        width = sum(p.numel() for p in params) + 1  # a group's flat gradient, then its loss
        for number, start in enumerate(range(0, len(order), size)):
            batch = [positions[i] for i in order[start : start + size]]
            if options.warmup_steps and lr is not None:
                step = (epoch - 1) * steps_per_epoch + number + 1
                for group in optimizer.param_groups:
                    group["lr"] = lr * min(1.0, step / options.warmup_steps)
            # This rank's groups of the batch (all of them in one process), gathered in batch
            # order and summed in that order on every rank: the step does not depend on how
            # many processes share it.
            groups = [batch[i : i + per_group] for i in range(0, len(batch), per_group)]
            mine = shard_range(len(groups))
            rows = [self._group_gradient(combiner, params, groups[k], len(batch)) for k in mine]
            table = torch.stack(rows) if rows else params[0].new_zeros(0, width)
            summed = set_summed_gradient(params, all_gather_shards(table, len(groups)))
            if options.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, options.grad_clip)
            optimizer.step()
            total += summed[-1] * len(batch)  # the batch's mean loss
            count += len(batch)
            self.on_step()
        return float(total) / max(count, 1)

    def _group_gradient(
        self, combiner: HAGCombiner, params: list[torch.Tensor], group: list[int], batch: int
    ) -> torch.Tensor:
        """One group's part of a step: its images' share of the batch mean loss
        (``len(group) / batch`` of their mean) and its gradient in ``params``, flat, followed by
        that loss. A group is computed by the same code whichever rank takes it."""
        loss = self._combiner_loss(combiner, group)
        if len(group) != batch:
            loss = loss * (len(group) / batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        flat = [
            (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
        ]
        return torch.cat([*flat, loss.detach().reshape(1).to(flat[0].dtype)])

    @torch.no_grad()
    def _validate(self, explain: Explainer, positions: list[int]) -> dict[str, float]:
        """Loss and plausibility means over ``positions`` (NaN images left out of the means)."""
        values: dict[str, list[torch.Tensor]] = {m.name: [] for m in VALIDATION}
        losses = []
        local = shard(positions)  # this rank's images; the values are gathered below
        for start in range(0, len(local), self.train.batch_size):
            batch = local[start : start + self.train.batch_size]
            maps = [m.float() for m in self._maps(explain, batch)]
            slots = [self.slot[p] for p in batch]
            held = {
                "human_maps": [self.human.maps[s] for s in slots],
                "fixations": [self.human.fixations[s] for s in slots],
            }
            # per image, summed in the images' order below: the same whatever the batches
            losses.append(grouped(hag_losses, maps, held["human_maps"], stack=True))
            with warnings.catch_warnings():
                # constant maps give NaN by the metrics' rule; the means leave them out
                warnings.simplefilter("ignore", MetricWarning)
                for metric in VALIDATION:
                    (name,) = metric.inputs  # one held input each (training.metrics.HELD)
                    stack = name == "human_maps"  # maps stack; fixation lists stay ragged
                    values[metric.name].append(grouped(metric.fn, maps, held[name], stack=stack))
        if world_size() > 1:
            losses = [t.detach().cpu() for t in losses]
            values = {name: [t.cpu() for t in v] for name, v in values.items()}
            losses, values = _gathered(losses, values)
        row = {LOSS: float(torch.cat(losses).double().sum()) / len(positions)}
        row.update({name: _nanmean(torch.cat(v).cpu()) for name, v in values.items()})
        return row

    def _faithfulness(self, explain: Explainer, subset: FaithSubset | None) -> dict[str, float]:
        if subset is None:
            return {}
        aucs: dict[str, list[torch.Tensor]] = {m.name: [] for m in FAITH}
        if subset.positions:
            with torch.no_grad():
                evidence = self.cache.evidence(subset.positions, device=self.device)
                maps = explain(evidence, self.cache.input_size).float()
            result = faithfulness(
                self.adapter,
                subset.x,
                subset.targets,
                maps,
                steps=self.train.faithfulness_steps,
                baseline=subset.noise,
                seed=self.cfg.seed,
                shared=subset.shared,
            )
            # the result has one field per faithfulness metric (deletion, insertion)
            aucs = {m.name: [getattr(result, m.name).auc.float().cpu()] for m in FAITH}
        if world_size() > 1:
            aucs = {name: all_gather_list(v) for name, v in aucs.items()}
        return {name: _nanmean(torch.cat(v)) for name, v in aucs.items()}

    def _faith_subset(self, held_out: list[int]) -> FaithSubset | None:
        """The fixed faithfulness images of a fold (this rank's share): model input, targets and
        noise, made once.

        The deletion noise is drawn for the whole subset at once from the run's seed, as
        :func:`~hagxai.evaluation.faithfulness` would draw it, and each rank keeps its images'
        rows: an image gets the same noise however many processes share the work.
        """
        count = min(self.train.faithfulness_images, len(held_out))
        if count == 0:
            return None
        mine = shard_range(count)
        positions = held_out[:count][mine.start : mine.stop]
        c, h, w = 3, *self.adapter.input_size
        device = self.adapter.device
        generator = torch.Generator(device=device).manual_seed(self.cfg.seed)
        noise = torch.rand((count, c, h, w), generator=generator, device=device)
        if not positions:
            empty = torch.zeros(0, c, h, w, device=device)
            none = torch.zeros(0, dtype=torch.long)
            return FaithSubset([], empty, Targets(none, none, torch.zeros(0)), noise[:0])
        prepared = self.adapter.preprocess([self.images(p) for p in positions])
        noise = noise[mine.start : mine.stop].to(prepared.x)
        return FaithSubset(positions, prepared.x, self.cache.targets(positions), noise)

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
        state, tensors = RunState(), FoldTensors()
        if resume:
            flat, saved = load_checkpoint(path)
            state, tensors = RunState.from_json(saved), FoldTensors.from_flat(flat)
            torch.set_rng_state(tensors.rng)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        total = len(self.folds) * (self.train.epochs + 1)
        done = sum(r["epochs_run"] + 1 for r in state.results)
        done += state.epoch + 1 if state.fold < len(self.folds) else 0
        with Progress(*columns, disable=not self.progress, transient=True) as bar:
            task = bar.add_task("training", total=total, completed=done)
            for fold in range(state.fold, len(self.folds)):
                self._run_fold(fold, state, tensors, path, bar, task)
                tensors = FoldTensors()
        return [FoldResult(**r) for r in state.results]

    def _run_fold(
        self, fold: int, state: RunState, tensors: FoldTensors, path: Path, bar, task
    ) -> None:
        cfg = self.train
        held_out = self.folds[fold]
        held = set(held_out)
        training = [p for fold_positions in self.folds for p in fold_positions if p not in held]
        training.sort()
        combiner = self._build_combiner()
        optimizer = torch.optim.Adam(combiner.parameters(), lr=cfg.lr, weight_decay=0.0)
        best_state = {k: v.detach().clone() for k, v in combiner.state_dict().items()}
        if state.fold == fold and state.in_progress:
            combiner.load_state_dict(tensors.model)
            best_state = tensors.best
            restore_optimizer(optimizer, tensors.optimizer, state.optimizer)
        else:
            state.start_fold(fold)
            if self.cfg.combiner.init == "search":
                self._search_init(combiner, training)
                best_state = {k: v.detach().clone() for k, v in combiner.state_dict().items()}
        subset = self._faith_subset(held_out)
        explain = lambda e, s: combiner(e, s, validate=False)  # noqa: E731 - bound to the loop
        metric = cfg.select_metric
        every = cfg.faithfulness_every
        # a fold that stopped early before the kill must not train on after the resume
        first = cfg.epochs + 1 if state.stopped else state.epoch + 1
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
                loss = self._train_epoch(combiner, optimizer, training, seed, epoch, lr)
                row.update(lr=lr, train_loss=loss)
            combiner.eval()
            row.update(self._validate(explain, held_out))
            if epoch == 0 or (every and epoch % every == 0):
                row.update(self._faithfulness(explain, subset))
            if epoch == 0:
                state.initial = {k: row[k] for k in NAMES if k in row}
            if better(metric, row[metric], None if state.best is None else state.best.score):
                state.best = Best(epoch=epoch, score=row[metric], metrics=dict(row))
                best_state = {k: v.detach().clone() for k, v in combiner.state_dict().items()}
                state.bad_epochs = 0
            elif epoch > 0:
                state.bad_epochs += 1
            state.history.append(row)
            state.epoch = epoch
            stop = state.bad_epochs >= cfg.early_stop or epoch == cfg.epochs
            state.stopped = stop
            self._checkpoint(path, state, combiner, optimizer, best_state)
            self.on_epoch(row)
            bar.advance(task)
            if stop:
                bar.advance(task, cfg.epochs - epoch)
                break
        combiner.load_state_dict(best_state)
        combiner.eval()
        assert state.best is not None  # epoch 0 always sets it unless every value is NaN
        best = dict(state.best.metrics)
        if subset is not None and not any(m.name in best for m in FAITH):
            best.update(self._faithfulness(explain, subset))
        baselines = {}
        for name in cfg.baselines:
            method = explainers.get(name)
            baselines[name] = self._validate(method, held_out)
            baselines[name].update(self._faithfulness(method, subset))
        result = FoldResult(
            fold=fold,
            best_epoch=state.best.epoch,
            epochs_run=state.epoch,
            best={k: best[k] for k in NAMES if k in best},
            initial=state.initial,
            baselines=baselines,
            worst_cc_drop=cc_drop(state.history, fold),
            parameters=learned_values(combiner),
        )
        self.on_fold_end(fold, combiner, result)
        state.results.append(vars(result))
        state.start_fold(fold + 1)
        if is_main():
            save_checkpoint(path, FoldTensors(rng=torch.get_rng_state()).flat(), state.to_json())

    def _checkpoint(
        self,
        path: Path,
        state: RunState,
        combiner: HAGCombiner,
        optimizer: torch.optim.Optimizer,
        best_state: dict[str, torch.Tensor],
    ) -> None:
        optim, state.optimizer = optimizer_tensors(optimizer)
        if not is_main():
            return
        tensors = FoldTensors(combiner.state_dict(), best_state, optim, torch.get_rng_state())
        save_checkpoint(path, tensors.flat(), state.to_json())


def _gathered(
    losses: list[torch.Tensor], values: dict[str, list[torch.Tensor]]
) -> tuple[list[torch.Tensor], dict[str, list[torch.Tensor]]]:
    """Every rank's validation losses and per-image metric values, in rank order."""
    parts = all_gather_list([(losses, values)])
    merged = {name: [t for _, v in parts for t in v[name]] for name in values}
    return [t for loss, _ in parts for t in loss], merged


def set_summed_gradient(params: list[torch.Tensor], table: torch.Tensor) -> torch.Tensor:
    """Add the rows of ``table`` (one group's flat gradient of ``params`` each, possibly followed
    by more columns such as its loss) one after the other, in row order, and set each
    parameter's ``.grad`` from the sum: one fixed order, so the step's bits do not depend on
    which process computed which row.

    Returns:
        The summed row.
    """
    summed = table[0]
    for row in table[1:]:
        summed = summed + row
    offset = 0
    for parameter in params:
        parameter.grad = summed[offset : offset + parameter.numel()].view_as(parameter)
        offset += parameter.numel()
    return summed
