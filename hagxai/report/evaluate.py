"""``hagxai evaluate``: every method on plausibility and faithfulness, with statistics.

For the chosen images (``evaluate.splits``, else ``train.splits``, else all; the first
``evaluate.max_images`` by id) the evidence of the frozen model is read from the evidence cache
(computed once, shared with training), then per batch of images every row's maps are made once and
scored:

* plausibility, in the human map's frame: every metric of the registry (CC, NSS, AUC-Judd,
  shuffled AUC against up to 10 other images' fixations, KLD, SIM, information gain over a
  centre-bias baseline);
* faithfulness, on the model input: deletion and insertion AUC on a black canvas
  (``*_black``) and on a blurred copy of the image (``*_blur``).

Rows: the learned heads (:mod:`hagxai.report.methods`), the baselines (CAM family, RISE /
D-RISE), the sanity rows (centre bias, uniform random, box prior for detectors) and the human row
(:mod:`hagxai.report.human`; its faithfulness is that of the human map of all viewers). Per row:
the mean with a 95% bootstrap interval over images, the paired Wilcoxon signed-rank test of each
learned row against every other row per metric (Holm-corrected over the rows), and the
model-randomisation check (:mod:`hagxai.report.randomisation`).

The output folder holds ``per_image.csv``, ``summary.csv``, ``summary.json``, ``summary.md``,
``config.yaml``, ``plots/*.png``, ``report.html`` and ``parts/``: every finished batch of images
and the finished randomisation check (:mod:`hagxai.report.parts`), from which the same evaluation
run again (after a kill, say) resumes. Under torchrun the ranks share the batches and rank 0
saves them and writes the folder.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from hagxai.atomic import write_atomic
from hagxai.cache import TargetRule
from hagxai.config import RunConfig, save_config
from hagxai.console import make_console, progress_bar
from hagxai.data import AttentionDataset
from hagxai.distributed import all_gather_list, broadcast_object, is_main, rank, world_size
from hagxai.errors import UserError
from hagxai.evaluation import faithfulness
from hagxai.evidence import Evidence
from hagxai.explainers.perturbation import perturbation_maps
from hagxai.metrics import FAITHFULNESS, PLAUSIBILITY, MetricWarning
from hagxai.metrics.plausibility import centre_bias
from hagxai.models import Frame, ModelAdapter, Targets, model_digest
from hagxai.report import human as human_row
from hagxai.report import parts
from hagxai.report.methods import (
    PERTURBATION,
    LearnedHead,
    check_names,
    evidence_explainer,
    resolve_learned,
)
from hagxai.report.parts import BatchRecord, PartStore, decode, encode
from hagxai.report.randomisation import RandomisationResult, randomisation_check
from hagxai.report.stats import bootstrap_ci, holm, wilcoxon_p
from hagxai.training.data import load_human_data, render
from hagxai.training.run import open_run_evidence

CANVASES = {"black": "zero", "blur": "blur"}
FAITH_COLUMNS = tuple(f"{m}_{c}" for c in CANVASES for m in FAITHFULNESS)
COLUMNS: tuple[str, ...] = (*PLAUSIBILITY, *FAITH_COLUMNS)
"""Every per-image metric column, plausibility first."""
HUMAN = "human"
OVERLAY_SIDE = 96


def higher_is_better(column: str) -> bool:
    """The direction of a column of :data:`COLUMNS`."""
    if column in PLAUSIBILITY:
        return PLAUSIBILITY[column].higher_is_better
    return FAITHFULNESS[column.rsplit("_", 1)[0]].higher_is_better


@dataclass
class Row:
    """One row of the table: its name, kind and what makes its maps."""

    name: str
    kind: str  # learned, baseline, perturbation, sanity, human
    learned: LearnedHead | None = None
    note: str = ""


@dataclass
class Collected:
    """What the batches collect: per row and column, per-image values (in image order), the
    faithfulness curves per row and canvas, and small copies of the maps for the overlay grid."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    thumbs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


class Timer:
    """Seconds per stage, in the order the stages ran."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def line(self) -> str:
        parts = [f"{k} {v:.1f} s" for k, v in self.stages.items()]
        return f"time per stage: {', '.join(parts)}; total {sum(self.stages.values()):.1f} s"


def output_folder(cfg: RunConfig) -> Path:
    """``evaluate.out``, else ``output_dir/name/evaluation``."""
    return cfg.evaluate.out or cfg.run_dir / "evaluation"


def evaluate(
    cfg: RunConfig,
    adapter: ModelAdapter,
    dataset: AttentionDataset,
    rule: TargetRule,
    *,
    command: str = "",
    progress: bool = True,
    console: Console | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """Evaluate every configured row on ``dataset`` and write the output folder.

    Each finished batch of images is saved in ``<out>/parts`` (:mod:`hagxai.report.parts`), so
    the same call after a kill computes only what is missing and writes the files an
    uninterrupted run writes. Under torchrun (:mod:`hagxai.distributed`) every rank calls this
    function: the ranks share the evidence extraction and the batches, and rank 0 saves every
    batch and writes the output folder.

    Args:
        cfg: the run's config (its ``evaluate`` section says what to compare).
        adapter: the frozen model.
        dataset: the images with human attention.
        rule: what the evidence explains (``train.target_rule`` resolved for the model).
        command: the command line that made the report (recorded in it).
        progress: progress bars.
        console: where the table and timings go.
        fresh: ignore (and delete) saved parts: compute every batch again.

    Returns:
        The summary (also ``summary.json``); an empty dict on ranks other than 0.

    Raises:
        UserError: an unknown method, a learned head that would score images it trained on,
            or no usable image.
    """
    ev = cfg.evaluate
    console = console or make_console()
    main = is_main()
    timer = Timer()
    check_names(ev.methods, ev.sanity, adapter.task)
    out = output_folder(cfg)
    started = time.perf_counter()
    splits = ev.splits if ev.splits is not None else cfg.train.splits
    samples = [s for s in dataset.samples if splits is None or s.split in splits]
    if not samples:
        raise UserError(f"no sample in splits {splits} (evaluate.splits / train.splits)")
    progress = progress and main
    cache = open_run_evidence(cfg, adapter, samples, rule=rule, progress=progress, distributed=True)
    layers = cache.layers
    human = load_human_data(cache, samples)
    slots = sorted(range(len(human.keep)), key=lambda s: cache.ids[human.keep[s]])
    if ev.max_images is not None:
        slots = slots[: ev.max_images]
    if not slots:
        raise UserError("no usable image to evaluate (every sample was skipped)")
    by_id = {s.id: s for s in samples}
    ids = [cache.ids[human.keep[s]] for s in slots]
    digest = model_digest(adapter.model)
    fingerprint = dataset.fingerprint
    rows = _rows(cfg, adapter, dataset, ids, by_id, digest, layers, fingerprint)
    timer.add("evidence", time.perf_counter() - started)

    scored = [r for r in rows if r.kind != "absent"]
    others = _other_images(len(slots), cfg.seed)
    sigma = human_row.viewer_sigma(by_id[ids[0]], dataset)
    ctx = _Context(cfg, adapter, cache, human, by_id, timer, sigma)
    # fixed batches of the sorted images, whatever the number of processes: the unit of work
    # dealt out to the ranks and of the parts saved on disk
    size = ev.batch_size
    batches = [list(range(s, min(s + size, len(slots)))) for s in range(0, len(slots), size)]
    batch_ids = [[ids[i] for i in batch] for batch in batches]
    names = [r.name for r in scored]
    fields = _part_fields(cfg, adapter, scored, ids, digest, fingerprint, layers, rule)
    key = parts.digest(fields)
    store, records = None, {}
    if main:
        store = PartStore(out / "parts", fields, names, COLUMNS, fresh=fresh)
        if store.message:
            console.print(f"[yellow]{store.message}[/yellow]")
        records = store.done(batch_ids)
        if records:
            console.print(
                f"resuming: {len(records)} of {len(batches)} batches done in {store.folder}, "
                f"computing {len(batches) - len(records)}"
            )
    # rank 0 alone reads the folder; every rank learns what is left
    pending = broadcast_object([n for n in range(len(batches)) if n not in records])
    world, me = world_size(), rank()
    with progress_bar("evaluating", len(slots) * len(scored), progress and main) as advance:
        advance(sum(len(batches[n]) for n in records) * len(scored))
        # one round: each rank scores one batch; rank 0 saves the round's records
        for start in range(0, len(pending), world):
            group = pending[start : start + world]
            mine = []
            if me < len(group):
                number = group[me]
                step = advance if main else _ignore
                record = ctx.batch(scored, number, batches[number], slots, others, step)
                mine.append((number, encode(record, key, names, COLUMNS)))
            done = all_gather_list(mine)
            if not main:
                continue
            for number, data in done:
                store.write(number, data)
                records[number] = decode(data, store.key, names, COLUMNS)
            # rank 0's own batch advanced the bar as it went (it is the first of the round)
            advance(sum(len(batches[n]) for n, _ in done[1:]) * len(scored))
    if not main:
        return {}
    collected = _collect(scored, [records[n] for n in range(len(batches))])

    randomisation = None
    if ev.randomisation.images > 0:
        t0 = time.perf_counter()
        chosen = slots[: ev.randomisation.images]
        randomisation = _saved_randomisation(ctx, rows, chosen, layers, progress, store, console)
        timer.add("randomisation", time.perf_counter() - t0)

    t0 = time.perf_counter()
    summary = summarise(cfg, rows, ids, collected, randomisation)
    summary.update(
        command=command,
        model={"name": adapter.family, "digest": digest, "task": adapter.task, "layers": layers},
        dataset={
            "root": str(dataset.root),
            "format": dataset.format,
            "fingerprint": fingerprint,
            "images": len(ids),
            "splits": splits,
            "skipped": len(cache.skipped) + len(human.skipped),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    _write_per_image(out / "per_image.csv", rows, ids, collected)
    _write_summary_csv(out / "summary.csv", summary)
    write_atomic(out / "summary.md", summary_markdown(summary).encode("utf-8"))
    timer.add("statistics", time.perf_counter() - t0)

    from hagxai.report import html, plots

    t0 = time.perf_counter()
    figures = plots.all_figures(out / "plots", summary, collected, ctx.overlay_items(ids, summary))
    figures += plots.learned_figures(out / "plots", [r.learned for r in rows if r.learned])
    timer.add("plots", time.perf_counter() - t0)
    t0 = time.perf_counter()
    summary["figures"] = [str(p.relative_to(out)) for p in figures]
    summary["timing"] = dict(timer.stages)
    write_atomic(out / "summary.json", (json.dumps(_clean(summary), indent=1) + "\n").encode())
    html.write_report(out / "report.html", summary, figures, (out / "config.yaml").read_text())
    timer.add("report", time.perf_counter() - t0)
    summary["timing"] = dict(timer.stages)
    write_atomic(out / "summary.json", (json.dumps(_clean(summary), indent=1) + "\n").encode())
    # plain print: rich would wrap the wide Markdown table at the console's width
    print(summary_markdown(summary, title=False), flush=True)
    console.print(timer.line())
    console.print(f"report: {out / 'report.html'}")
    return summary


def _rows(
    cfg: RunConfig,
    adapter: ModelAdapter,
    dataset: AttentionDataset,
    ids: list[str],
    by_id: dict,
    digest: str,
    layers: list[str],
    fingerprint: str,
) -> list[Row]:
    ev = cfg.evaluate
    rows: list[Row] = []
    for path in ev.learned:
        name = "learned" if len(ev.learned) == 1 else f"learned:{Path(path).name}"
        head = resolve_learned(
            Path(path),
            ids,
            digest=digest,
            layers=layers,
            fingerprint=fingerprint,
            allow_seen=ev.allow_seen,
            name=name,
        )
        note = f"SEEN: {len(head.seen)} of {len(ids)} images were trained on" if head.seen else ""
        rows.append(Row(name, "learned", head, note))
    for name in ev.methods:
        kind = "perturbation" if name.lower() in PERTURBATION else "baseline"
        rows.append(Row(name.lower(), kind))
    for name in ev.sanity:
        if name == "box_prior" and adapter.task != "detection":
            continue
        rows.append(Row(name, "sanity"))
    if ev.human:
        reason = human_row.absent_reason([by_id[i] for i in ids], dataset)
        if reason is None:
            rows.append(Row(HUMAN, "human", note="leave-one-viewer-out"))
        else:
            rows.append(Row(HUMAN, "absent", note=f"absent: {reason}"))
    return [r for r in rows if r.kind != "absent"] + [r for r in rows if r.kind == "absent"]


def _other_images(count: int, seed: int, per_image: int = 10) -> list[list[int]]:
    """For shuffled AUC: per image, up to ``per_image`` other images (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        order = [j for j in torch.randperm(count, generator=generator).tolist() if j != i]
        out.append(order[:per_image])
    return out


def _to_input(human_map: torch.Tensor, frame: Frame) -> torch.Tensor:
    """A map in the original image's frame placed into the model input (resize, then pad)."""
    height = round(frame.orig_size[0] * frame.scale[0])
    width = round(frame.orig_size[1] * frame.scale[1])
    resized = F.interpolate(
        human_map[None, None].float(), size=(height, width), mode="bilinear", align_corners=False
    )[0, 0]
    out = resized.new_zeros(frame.input_size)
    top, left = round(frame.pad[0]), round(frame.pad[1])
    out[top : top + height, left : left + width] = resized[
        : frame.input_size[0] - top, : frame.input_size[1] - left
    ]
    return out


def _to_human(maps: torch.Tensor, sizes, frames) -> list[torch.Tensor]:
    """Maps on the model input -> maps in the human maps' frames (as ``render`` does)."""
    out = []
    for saliency, size, frame in zip(maps, sizes, frames):
        if frame is not None:
            saliency = frame.map_to_original(saliency)
        if tuple(saliency.shape[-2:]) != tuple(size):
            saliency = F.interpolate(
                saliency[None, None], size=tuple(size), mode="bilinear", align_corners=False
            )[0, 0]
        out.append(saliency)
    return out


def _by_size(fn, maps: list[torch.Tensor], inputs: dict[str, list]) -> torch.Tensor:
    """``fn(maps=stacked, **inputs)`` over groups of equal map size; values in input order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(tuple(m.shape), []).append(i)
    values = torch.full((len(maps),), math.nan)
    for members in groups.values():
        kwargs = {}
        for key, items in inputs.items():
            picked = [items[i] for i in members]
            stack = key in ("human_maps", "baseline_maps")
            kwargs[key] = torch.stack(picked) if stack else picked
        result = fn(maps=torch.stack([maps[i] for i in members]).float(), **kwargs)
        values[members] = result.float().cpu()
    return values


def plausibility_values(maps: list[torch.Tensor], held: dict[str, list]) -> dict[str, torch.Tensor]:
    """Every plausibility metric of ``maps`` (one per image, any sizes) against ``held``.

    Args:
        maps: ``B`` maps ``H_i×W_i``.
        held: ``human_maps``, ``fixations``, ``other_fixations`` and ``baseline_maps``, one per
            image.

    Returns:
        metric name -> ``B`` values (NaN where a metric is undefined, e.g. a constant map).
    """
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        for metric in PLAUSIBILITY.values():
            out[metric.name] = _by_size(metric.fn, maps, {k: held[k] for k in metric.inputs})
    return out


class _Context:
    """Everything a batch needs: config, model, evidence, human data."""

    def __init__(self, cfg, adapter, cache, human, by_id, timer, sigma) -> None:
        self.cfg, self.ev = cfg, cfg.evaluate
        self.adapter, self.cache, self.human, self.by_id = adapter, cache, human, by_id
        self.timer = timer
        self.sigma = sigma
        self.thumb_sizes: dict[str, tuple[int, int]] = {}

    def image(self, sample_id: str) -> torch.Tensor:
        array = self.by_id[sample_id].load_image()
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)

    def input_maps(
        self,
        row: Row,
        adapter: ModelAdapter,
        evidence: Evidence,
        x: torch.Tensor,
        targets: Targets,
        ids: Sequence[str],
    ) -> torch.Tensor:
        """A model-dependent row's maps on the model input, ``B×H×W``."""
        size = evidence.input_size
        if row.kind == "perturbation":
            return perturbation_maps(
                adapter, x, targets, num_masks=self.ev.rise_masks, seed=self.cfg.seed
            )
        return self.explainer(row, targets, ids)(evidence, size)

    def explainer(self, row: Row, targets: Targets, ids: Sequence[str]):
        if row.learned is not None:
            head = row.learned
            return lambda e, s: head.explain(e, ids, s)
        return evidence_explainer(row.name, targets.boxes, self.cfg.seed)

    def batch(self, rows, number, order, all_slots, others, advance) -> BatchRecord:
        """Score every row on batch ``number``: the images ``order`` (indices into ``all_slots``,
        the human-data slots of every evaluated image)."""
        human, timer = self.human, self.timer
        t0 = time.perf_counter()
        positions_slots = [all_slots[i] for i in order]
        positions = [human.keep[s] for s in positions_slots]
        ids = [self.cache.ids[p] for p in positions]
        device = self.adapter.device
        evidence = self.cache.evidence(positions, device=device)
        targets = self.cache.targets(positions, device=device)
        x = self.adapter.preprocess([self.image(i) for i in ids]).x
        sizes = [tuple(human.maps[s].shape) for s in positions_slots]
        frames = [human.frames[s] for s in positions_slots]
        input_frames = self.cache.frames(positions)
        centre = {size: centre_bias(*size) for size in set(sizes)}
        held = {
            "human_maps": [human.maps[s] for s in positions_slots],
            "fixations": [human.fixations[s] for s in positions_slots],
            "other_fixations": [
                self._others(s, [all_slots[o] for o in others[i]])
                for s, i in zip(positions_slots, order)
            ],
            "baseline_maps": [centre[size] for size in sizes],
        }
        timer.add("evidence", time.perf_counter() - t0)
        record = BatchRecord(number, list(ids))
        shared: dict[str, torch.Tensor] = {}  # every row of this batch, both canvases
        for row in rows:
            t0 = time.perf_counter()
            if row.kind == "human":
                plaus_values = self._human_values(ids, sizes, held)
                on_input = torch.stack(
                    [_to_input(human.maps[s], f) for s, f in zip(positions_slots, input_frames)]
                ).to(x.device)
                plaus_maps = [human.maps[s] for s in positions_slots]
                timer.add("human", time.perf_counter() - t0)
            else:
                with torch.no_grad():
                    if row.kind == "perturbation":
                        on_input = self.input_maps(row, self.adapter, evidence, x, targets, ids)
                        plaus_maps = _to_human(on_input, sizes, frames)
                    else:
                        explain = self.explainer(row, targets, ids)
                        plaus_maps = render(explain, evidence, sizes, frames)
                        on_input = explain(evidence, evidence.input_size)
                timer.add("maps", time.perf_counter() - t0)
                t0 = time.perf_counter()
                plaus_values = plausibility_values([m.float().cpu() for m in plaus_maps], held)
                timer.add("plausibility", time.perf_counter() - t0)
            t0 = time.perf_counter()
            faith = self._faithfulness(on_input.float(), x, targets, shared)
            timer.add("faithfulness", time.perf_counter() - t0)
            record.values[row.name] = {
                name: [float(v) for v in values]
                for name, values in {**plaus_values, **faith[0]}.items()
            }
            record.curves[row.name] = faith[1]
            record.thumbs[row.name] = {
                sample_id: _thumb(saliency) for sample_id, saliency in zip(ids, plaus_maps)
            }
            advance(len(ids))
        return record

    def _others(self, slot: int, other_slots: list[int]) -> torch.Tensor:
        """Fixations of other images, rescaled into this image's map frame."""
        h, w = self.human.maps[slot].shape
        parts = []
        for o in other_slots:
            oh, ow = self.human.maps[o].shape
            fix = self.human.fixations[o].float()
            parts.append(fix * torch.tensor([w / ow, h / oh]))
        return torch.cat(parts) if parts else torch.zeros(0, 2)

    def _human_values(self, ids, sizes, held) -> dict[str, torch.Tensor]:
        """Leave-one-viewer-out values per image (NaN for an image with fewer than 2 viewers)."""
        out = {m: torch.full((len(ids),), math.nan) for m in PLAUSIBILITY}
        for i, (sample_id, size) in enumerate(zip(ids, sizes)):
            sample = self.by_id[sample_id]
            image_size = _image_size(sample)
            loo = human_row.leave_one_out(sample, size, image_size, self.sigma)
            if loo is None:
                continue
            own, rest, rest_fix = loo
            views = own.shape[0]
            per_viewer = plausibility_values(
                list(own),
                {
                    "human_maps": list(rest),
                    "fixations": rest_fix,
                    "other_fixations": [held["other_fixations"][i]] * views,
                    "baseline_maps": [held["baseline_maps"][i]] * views,
                },
            )
            for name, values in per_viewer.items():
                finite = values[torch.isfinite(values)]
                out[name][i] = finite.mean() if finite.numel() else math.nan
        return out

    def _faithfulness(
        self, maps, x, targets, shared: dict[str, torch.Tensor]
    ) -> tuple[dict[str, list], dict[str, np.ndarray]]:
        """Deletion and insertion of ``maps`` on every canvas; ``shared`` carries the scores of
        the unperturbed images and the bare canvases from one row of the batch to the next."""
        values, curves = {}, {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            for canvas, baseline in CANVASES.items():
                result = faithfulness(
                    self.adapter,
                    x,
                    targets,
                    maps,
                    steps=self.ev.faithfulness_steps,
                    baseline=baseline,
                    insertion_baseline=baseline,
                    batch_size=self.ev.faithfulness_batch,
                    seed=self.cfg.seed,
                    blur_sigma=self.ev.blur_sigma,
                    shared=shared,
                )
                for metric in FAITHFULNESS:
                    part = getattr(result, metric)
                    values[f"{metric}_{canvas}"] = part.auc.float().cpu().tolist()
                    curves[f"{metric}_{canvas}"] = part.curves.float().cpu().numpy()
        return values, curves

    def overlay_items(self, ids: list[str], summary: dict[str, Any]) -> dict[str, Any]:
        """The overlay grid's images: a seeded sample plus the learned head's best and worst
        images by the scatter's plausibility metric."""
        count = self.ev.overlay_images
        generator = torch.Generator().manual_seed(self.cfg.seed)
        chosen = [ids[i] for i in torch.randperm(len(ids), generator=generator)[:count].tolist()]
        labels = ["sample"] * len(chosen)
        learned = [r for r in summary["rows"] if r["kind"] == "learned"]
        if learned and count:
            metric = self.ev.scatter[0]
            values = np.asarray(summary["per_image"][learned[0]["name"]][metric], np.float64)
            values = np.where(np.isfinite(values), values, np.nan)
            if np.isfinite(values).any():
                sign = 1 if higher_is_better(metric) else -1
                best = ids[int(np.nanargmax(sign * values))]
                worst = ids[int(np.nanargmin(sign * values))]
                chosen += [best, worst]
                labels += [f"best {metric}", f"worst {metric}"]
        items = []
        for sample_id, label in zip(chosen, labels):
            sample = self.by_id[sample_id]
            slot = self.human.keep.index(self.cache.ids.index(sample_id))
            items.append(
                {
                    "id": sample_id,
                    "label": label,
                    "image": sample.load_image(),
                    "fixations": sample.fixations,
                    "boxes": sample.boxes if self.adapter.task == "detection" else None,
                    "human": self.human.maps[slot].numpy(),
                }
            )
        return {"items": items}


def _image_size(sample) -> tuple[int, int]:
    from hagxai.data.sample import read_image_size

    return read_image_size(sample.image_path)


def _thumb(saliency: torch.Tensor) -> np.ndarray:
    """A small float16 copy of a map for the overlay grid (longer side at most 96 px)."""
    h, w = saliency.shape[-2:]
    scale = min(1.0, OVERLAY_SIDE / max(h, w))
    small = saliency.detach().float().cpu()
    if scale < 1:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        small = F.interpolate(small[None, None], size=size, mode="bilinear", align_corners=False)[
            0, 0
        ]
    return small.numpy().astype(np.float16)


def _collect(rows: list[Row], records: list[BatchRecord]) -> Collected:
    """The batches' records put together, in image order."""
    collected = Collected()
    for row in rows:
        values = collected.values[row.name] = {c: [] for c in COLUMNS}
        curves = collected.curves[row.name] = {c: [] for c in FAITH_COLUMNS}
        thumbs = collected.thumbs[row.name] = {}
        for record in records:
            for column in COLUMNS:
                values[column].extend(record.values[row.name][column])
            for column, part in record.curves[row.name].items():
                curves[column].append(part)
            thumbs.update(record.thumbs[row.name])
    return collected


def _ignore(count: int) -> None:
    """A progress callback that shows nothing (ranks other than 0)."""


def _part_fields(cfg, adapter, rows, ids, digest, fingerprint, layers, rule) -> dict[str, Any]:
    """What an evaluation's per-image results depend on (:class:`~hagxai.report.parts.PartStore`
    keys its saved batches by it). Presentation settings (bootstrap, scatter, overlays, the
    output folder) and the number of processes are left out: changing them reuses the parts."""
    from hagxai import __version__

    ev = cfg.evaluate
    learned = {
        r.name: parts.digest(
            [
                [parts.module_digest(c, c.options()) for c in r.learned.combiners],
                sorted(r.learned.assign.items()),
                sorted(r.learned.seen),
            ]
        )
        for r in rows
        if r.learned is not None
    }
    return {
        "hagxai": __version__,
        "model": {
            "digest": digest,
            "family": adapter.family,
            "config": cfg.model.model_dump(mode="json"),
            "layers": list(layers),
        },
        "data": {
            "fingerprint": fingerprint,
            "config": cfg.data.model_dump(mode="json", exclude={"root"}),
            "target_rule": repr(rule),
            "cache_dtype": cfg.cache.dtype,
        },
        "images": {"count": len(ids), "ids": parts.digest(ids)},
        "rows": [[r.name, r.kind, learned.get(r.name, "")] for r in rows],
        "evaluate": ev.model_dump(
            mode="json",
            include={
                "batch_size",
                "faithfulness_steps",
                "faithfulness_batch",
                "blur_sigma",
                "rise_masks",
            },
        ),
        "seed": cfg.seed,
        "device": torch.device(adapter.device).type,
    }


def _saved_randomisation(
    ctx: _Context, rows, slots, layers, progress, store: PartStore, console: Console
) -> RandomisationResult:
    """The model-randomisation check, or the saved one of the same evaluation and settings."""
    key = parts.digest([store.key, ctx.ev.randomisation.model_dump(mode="json")])
    saved = store.read_randomisation(key)
    if saved is not None:
        console.print(f"randomisation: read from {store.folder}")
        return RandomisationResult(**saved)
    result = _randomise(ctx, rows, slots, layers, progress)
    store.write_randomisation(key, dataclasses.asdict(result))
    return result


def _randomise(ctx: _Context, rows, slots, layers, progress) -> RandomisationResult:
    positions = [ctx.human.keep[s] for s in slots]
    ids = [ctx.cache.ids[p] for p in positions]
    device = ctx.adapter.device
    targets = ctx.cache.targets(positions, device=device)
    x = ctx.adapter.preprocess([ctx.image(i) for i in ids]).x
    model_rows = [r for r in rows if r.kind not in ("human", "absent")]

    def maps_of(adapter, evidence, x_in, targets_in) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {
                r.name: ctx.input_maps(r, adapter, evidence, x_in, targets_in, ids).float().cpu()
                for r in model_rows
            }

    rand = ctx.ev.randomisation
    with progress_bar("randomisation", rand.steps, progress) as advance:
        return randomisation_check(
            ctx.adapter,
            x,
            targets,
            layers,
            maps_of,
            steps=rand.steps,
            threshold=rand.flag_spearman,
            seed=ctx.cfg.seed,
            on_step=lambda: advance(1),
        )


def summarise(
    cfg: RunConfig,
    rows: list[Row],
    ids: list[str],
    collected: Collected,
    randomisation: RandomisationResult | None,
) -> dict[str, Any]:
    """Means with bootstrap CIs, paired tests and flags per row (the ``summary.json`` body)."""
    ev = cfg.evaluate
    scored = [r for r in rows if r.kind != "absent"]
    table = []
    for row in rows:
        entry: dict[str, Any] = {"name": row.name, "kind": row.kind, "note": row.note}
        if row.kind != "absent":
            entry["metrics"] = {}
            for k, column in enumerate(COLUMNS):
                values = collected.values[row.name][column]
                mean, low, high, n = bootstrap_ci(values, ev.bootstrap, cfg.seed + k)
                entry["metrics"][column] = {"mean": mean, "low": low, "high": high, "n": n}
            entry["seen"] = len(row.learned.seen) if row.learned else 0
            entry["flagged"] = bool(randomisation and row.name in randomisation.flagged)
        table.append(entry)
    tests: dict[str, dict[str, dict[str, float]]] = {}
    for learned in [r for r in scored if r.kind == "learned"]:
        per_metric: dict[str, dict[str, float]] = {}
        for column in COLUMNS:
            others = [r for r in scored if r.name != learned.name]
            raw = [
                wilcoxon_p(
                    collected.values[learned.name][column], collected.values[o.name][column]
                )[0]
                for o in others
            ]
            per_metric[column] = dict(zip([o.name for o in others], holm(raw)))
        tests[learned.name] = per_metric
    for entry in table:
        if entry["kind"] == "absent":
            continue
        entry["p"] = {
            learned: {c: tests[learned][c].get(entry["name"], math.nan) for c in COLUMNS}
            for learned in tests
            if learned != entry["name"]
        }
    return {
        "name": cfg.name,
        "columns": list(COLUMNS),
        "higher_is_better": {c: higher_is_better(c) for c in COLUMNS},
        "scatter": list(ev.scatter),
        "images": len(ids),
        "ids": ids,
        "rows": table,
        "tests": "two-sided Wilcoxon signed-rank (scipy), paired over images, Holm-corrected "
        "over the rows compared with each learned row, per metric",
        "ci": f"95% percentile bootstrap over images, {ev.bootstrap} resamples, seed {cfg.seed}",
        "randomisation": None
        if randomisation is None
        else {
            "steps": randomisation.steps,
            "spearman": randomisation.spearman,
            "ssim": randomisation.ssim,
            "flagged": randomisation.flagged,
            "threshold": randomisation.threshold,
            "images": randomisation.images,
        },
        "per_image": {r.name: {c: collected.values[r.name][c] for c in COLUMNS} for r in scored},
        "faithfulness_steps": ev.faithfulness_steps,
    }


def _fmt(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"


def _p(value: float) -> str:
    if value != value:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def table_columns(summary: dict[str, Any]) -> list[str]:
    """The columns of the printed table: the scatter pair first, then the rest."""
    first = [c for c in summary["scatter"] if c in summary["columns"]]
    return first + [c for c in summary["columns"] if c not in first]


def summary_markdown(summary: dict[str, Any], title: bool = True) -> str:
    """The summary as Markdown: means with 95% CIs, p-values against the learned head, flags."""
    columns = table_columns(summary)
    arrows = {c: "↑" if summary["higher_is_better"][c] else "↓" for c in columns}
    lines = []
    if title:
        lines += [f"# {summary['name']}: evaluation", ""]
    lines += [
        f"{summary['images']} images; mean [95% CI]; p: {summary['tests']}.",
        "",
        "| row | " + " | ".join(f"{c} {arrows[c]}" for c in columns) + " | flags |",
        "|---" * (len(columns) + 2) + "|",
    ]
    learned = [r["name"] for r in summary["rows"] if r["kind"] == "learned"]
    for row in summary["rows"]:
        if row["kind"] == "absent":
            lines.append(
                f"| {row['name']} | " + " | ".join("–" for _ in columns) + f" | {row['note']} |"
            )
            continue
        cells = []
        for c in columns:
            m = row["metrics"][c]
            cell = f"{_fmt(m['mean'])} [{_fmt(m['low'])}, {_fmt(m['high'])}]"
            if learned and row["name"] not in learned:
                cell += f" p={_p(row['p'][learned[0]][c])}"
            cells.append(cell)
        flags = []
        if row.get("flagged"):
            flags.append("RANDOMISATION: map barely depends on the model")
        if row["note"]:
            flags.append(row["note"])
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {'; '.join(flags)} |")
    rand = summary.get("randomisation")
    if rand:
        lines += [
            "",
            f"Model randomisation ({rand['images']} images, cascading from the top, "
            f"{len(rand['steps'])} steps): Spearman / SSIM of original vs randomised maps per "
            f"step; flagged when Spearman after the last step ≥ {rand['threshold']}.",
            "",
            "| row | " + " | ".join(f"step {i + 1}" for i in range(len(rand["steps"]))) + " |",
            "|---" * (len(rand["steps"]) + 1) + "|",
        ]
        for name, values in rand["spearman"].items():
            cells = [f"{_fmt(s)} / {_fmt(q)}" for s, q in zip(values, rand["ssim"][name])]
            mark = " (flagged)" if name in rand["flagged"] else ""
            lines.append(f"| {name}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_per_image(path: Path, rows: list[Row], ids: list[str], collected: Collected) -> None:
    with _csv_file(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "method", *COLUMNS])
        for row in rows:
            if row.kind == "absent":
                continue
            values = collected.values[row.name]
            for i, sample_id in enumerate(ids):
                writer.writerow([sample_id, row.name, *(f"{values[c][i]:.6g}" for c in COLUMNS)])


def _write_summary_csv(path: Path, summary: dict[str, Any]) -> None:
    learned = [r["name"] for r in summary["rows"] if r["kind"] == "learned"]
    header = ["method", "kind", "n", "flagged", "note"]
    for c in summary["columns"]:
        header += [f"{c}_mean", f"{c}_low", f"{c}_high"] + [f"{c}_p_vs_{name}" for name in learned]
    with _csv_file(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in summary["rows"]:
            if row["kind"] == "absent":
                writer.writerow([row["name"], row["kind"], 0, False, row["note"]])
                continue
            n = max(m["n"] for m in row["metrics"].values())
            cells = [row["name"], row["kind"], n, row["flagged"], row["note"]]
            for c in summary["columns"]:
                m = row["metrics"][c]
                cells += [f"{m['mean']:.6g}", f"{m['low']:.6g}", f"{m['high']:.6g}"]
                cells += [
                    f"{row['p'][name][c]:.6g}" if name in row["p"] else "" for name in learned
                ]
            writer.writerow(cells)


@contextlib.contextmanager
def _csv_file(path: Path):
    """A text buffer written to ``path`` atomically when the block ends."""
    handle = io.StringIO(newline="")
    yield handle
    write_atomic(path, handle.getvalue().encode("utf-8"))


def _clean(value: Any) -> Any:
    """JSON without NaN: non-finite floats become ``null``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
