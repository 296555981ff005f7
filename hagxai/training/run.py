"""A whole training run: data, model, evidence cache, k-fold training and the run folder.

``runs/<name>/`` ends up holding ``config.yaml`` (resolved), ``folds.json`` (held-out ids per
fold), ``metrics.csv`` and ``metrics.jsonl`` (one row per fold and epoch; epoch 0 is the untrained
combiner), ``fold_<k>/combiner/`` (each fold's best combiner, exported), ``best/`` (the best
fold's), ``summary.json`` and ``summary.md`` (per fold and mean ± std), ``plots/`` and the
checkpoint.

Under torchrun (:mod:`hagxai.distributed`) every rank runs this function: rank 0 builds the demo
data and model first, the ranks share the evidence extraction (each shard by one rank), train
together (:class:`~hagxai.training.trainer.Trainer`), and only rank 0 writes the run folder.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from hagxai.atomic import write_atomic, write_folder_atomic
from hagxai.cache import EvidenceSource, TargetRule, open_evidence
from hagxai.combiner import HAGCombiner
from hagxai.config import RunConfig, cache_dir, resolve_device, save_config
from hagxai.console import make_console
from hagxai.data import AttentionDataset, open_dataset, open_from_config
from hagxai.distributed import barrier, device_for, is_main, main_first
from hagxai.errors import UserError
from hagxai.export import save_combiner
from hagxai.models import ModelAdapter, model_digest
from hagxai.models.registry import card_fields
from hagxai.overlay import overlay
from hagxai.training import plots
from hagxai.training.checkpoint import CHECKPOINT, load_checkpoint
from hagxai.training.data import load_human_data
from hagxai.training.folds import load_folds, make_folds, read_groups, save_folds
from hagxai.training.logging import RunLog
from hagxai.training.metrics import NAMES, higher_is_better
from hagxai.training.trainer import FoldResult, Trainer, check_select_metric

STORAGE_DTYPE = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""``cache.dtype`` -> the evidence cache's storage dtype."""


def build_model_and_data(cfg: RunConfig, progress: bool = True):
    """The adapter and the dataset of ``cfg`` (the demo set and model when not configured).

    Under torchrun every rank calls it: the model goes to this rank's device
    (:func:`~hagxai.distributed.device_for`), and rank 0 builds the demo data and model first
    while the others wait, then load what it built. In one process it is a plain build.
    """
    device = device_for(cfg.device)
    local = cfg if device == cfg.device else cfg.model_copy(update={"device": device})
    with main_first():
        return _build_model_and_data(local, progress)


def _build_model_and_data(cfg: RunConfig, progress: bool):
    if cfg.data.root is not None:
        root = cfg.data.root
        # Any supported format (hagxai, folders, fixation tables, the reference's, COCO).
        dataset = open_from_config(cfg.data)
    else:
        from hagxai.data.demo import demo_dataset

        root = demo_dataset(cfg, progress)
        dataset = open_dataset(root, "hagxai")
    if cfg.model.name == "demo":
        from hagxai.models.demo import demo_adapter

        adapter = demo_adapter(cfg, root, progress)
    else:
        from hagxai.models.registry import build_adapter

        adapter = build_adapter(cfg.model, resolve_device(cfg.device))
    return adapter, dataset


def target_rule(
    cfg: RunConfig, adapter: ModelAdapter, classes: Sequence[int] | None = None
) -> TargetRule:
    """``train.target_rule``, with ``auto`` as ``label`` (classifier) or ``boxes`` (detector).

    Args:
        cfg: the run's config.
        adapter: the model (its task decides ``auto``).
        classes: the dataset's class subset; a detector explains only these classes.
    """
    rule = cfg.train.target_rule
    if rule == "auto":
        rule = "label" if adapter.task == "classification" else "boxes"
    return TargetRule(rule, classes=classes if adapter.task == "detection" else None)


def open_run_evidence(
    cfg: RunConfig,
    adapter: ModelAdapter,
    samples: list,
    *,
    rule: TargetRule,
    layers: list[str] | None = None,
    progress: bool = True,
    distributed: bool = False,
) -> EvidenceSource:
    """The evidence cache of ``samples`` as a run's config keys it: ``cache_dir/evidence``, the
    config's layers (or ``layers``) and storage dtype. Training, evaluation and the benchmarks open
    it through here, so one config always finds one cache."""
    return open_evidence(
        adapter,
        samples,
        layers=adapter.resolve_layers(cfg.model.layers if layers is None else layers),
        root=cache_dir(cfg) / "evidence",
        rule=rule,
        dtype=STORAGE_DTYPE[cfg.cache.dtype],
        progress=progress,
        distributed=distributed,
    )


def train(
    cfg: RunConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
    adapter: ModelAdapter | None = None,
    dataset: AttentionDataset | None = None,
    on_step: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the k-fold training of ``cfg`` into ``cfg.run_dir``.

    Args:
        cfg: the run's config (the saved one when resuming).
        resume: continue from ``cfg.run_dir``'s checkpoint.
        overwrite: start afresh even if the run folder holds a run.
        progress: progress bars.
        console: where tables go (default: a new rich console).
        adapter, dataset: reuse an already built model and dataset (else from ``cfg``).
        on_step: called after every optimiser step (:class:`~hagxai.training.trainer.Trainer`).

    Returns:
        The summary (also in ``summary.json``).

    Raises:
        UserError: a run folder that already holds a run (without ``resume`` or ``overwrite``),
            too few usable images, or a bad config key.
    """
    check_select_metric(cfg)
    console = console or make_console()
    run_dir = cfg.run_dir
    main = is_main()
    progress = progress and main
    if not resume and (run_dir / CHECKPOINT).exists():
        if not overwrite:
            raise UserError(
                f"{run_dir} already holds a run; resume it with --resume {run_dir}, "
                "start over with --force, or pick another name=..."
            )
        for stale in ("fold_", "best", "plots", CHECKPOINT, "summary", "metrics"):
            for path in run_dir.glob(f"{stale}*"):
                if main:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
    barrier()  # every rank has looked for an old run before rank 0 writes the new one
    device = device_for(cfg.device)  # this process's: under torchrun, GPU LOCAL_RANK for CUDA
    if adapter is None or dataset is None:
        adapter, dataset = build_model_and_data(cfg, progress)
    # only once the data and the model opened: a bad one leaves no run folder behind
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.seed)
    samples = dataset.samples
    if cfg.train.splits is not None:
        samples = [s for s in samples if s.split in cfg.train.splits]
    # A dataset read with a class subset (data.classes) explains only those classes.
    rule = target_rule(cfg, adapter, dataset.class_subset)
    cache = open_run_evidence(cfg, adapter, samples, rule=rule, progress=progress, distributed=True)
    human = load_human_data(cache, samples)
    skipped = {**cache.skipped, **human.skipped}
    usable = [cache.ids[p] for p in human.keep]
    folds_path = run_dir / "folds.json"
    groups = None if cfg.train.group_by is None else read_groups(cfg.train.group_by, usable)
    folds_ids = (
        load_folds(folds_path) if resume else make_folds(usable, cfg.train.folds, cfg.seed, groups)
    )
    if main:
        save_folds(folds_ids, folds_path, groups)
    position = {sample_id: p for p, sample_id in enumerate(cache.ids)}
    folds = [[position[i] for i in fold] for fold in folds_ids]
    by_id = {s.id: s for s in samples}

    def image(p: int) -> torch.Tensor:
        array = by_id[cache.ids[p]].load_image()
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)

    history = load_checkpoint(run_dir / CHECKPOINT)[1]["history"] if resume else []
    log = RunLog(cfg, run_dir, history) if main else None
    digest = model_digest(adapter.model)
    # once per run: it stats every file of the dataset, and every fold trained on this data
    fingerprint = dataset.fingerprint
    grid = _grid(cache)
    combiners: dict[int, HAGCombiner] = {}

    def fold_end(fold: int, combiner: HAGCombiner, result: FoldResult) -> None:
        combiners[fold] = combiner
        save_combiner(
            combiner,
            run_dir / f"fold_{fold}" / "combiner",
            model_name=adapter.family,
            model_digest=digest,
            model_build=card_fields(cfg.model),
            input_size=cache.input_size,
            grid=grid,
            data_fingerprint=fingerprint,
            metrics=_finite(result.best),
            provenance=f"hagxai train {cfg.name}: fold {fold}, best epoch {result.best_epoch}",
            overwrite=True,
        )

    trainer = Trainer(
        cfg,
        adapter,
        cache,
        human,
        folds,
        image,
        run_dir,
        resolve_device(device),
        on_epoch=log.epoch if log is not None else None,
        on_fold_end=fold_end if main else None,
        on_step=on_step,
        progress=progress,
    )
    results = trainer.run(resume=resume)
    summary = summarise(cfg, results, skipped, len(usable))
    if log is None:  # not rank 0: the run folder is rank 0's to write
        return summary
    best_fold = summary["best_fold"]
    best_source = run_dir / f"fold_{best_fold}" / "combiner"
    write_folder_atomic(
        run_dir / "best", lambda partial: shutil.copytree(best_source, partial, dirs_exist_ok=True)
    )
    write_atomic(run_dir / "summary.json", (json.dumps(summary, indent=1) + "\n").encode())
    write_atomic(run_dir / "summary.md", summary_markdown(summary).encode())
    console.print(summary_table(summary))
    if summary["unstable_folds"]:
        console.print(
            f"[yellow]folds {summary['unstable_folds']}: validation CC fell more than "
            f"{cfg.combiner.cc_drop_report} below its start at some epoch "
            f"(worst {summary['worst_cc_drop']:.3f}); see summary.md[/yellow]"
        )
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    plot_dir = run_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    from hagxai.export import load_combiner

    learned = [load_combiner(run_dir / f"fold_{k}" / "combiner") for k in range(len(folds))]
    figures = [
        plots.training_curves(history, plot_dir / "training_curves.png"),
        plots.learned_functions(learned, plot_dir / "learned_functions.png"),
    ]
    overlays = held_out_overlays(
        cache, folds[best_fold], learned[best_fold], image, plot_dir / "overlays"
    )
    fold_folders = {
        f"{cfg.name}-fold{k}": run_dir / f"fold_{k}" / "combiner" for k in range(len(folds))
    }
    log.finish(summary, figures, {**fold_folders, f"{cfg.name}-best": run_dir / "best"}, overlays)
    return summary


def held_out_overlays(
    cache: EvidenceSource,
    positions: Sequence[int],
    combiner: HAGCombiner,
    image: Callable[[int], torch.Tensor],
    folder: Path,
    count: int = 4,
) -> list[Path]:
    """The learned maps of the first ``count`` held-out images over those images, as PNGs.

    Args:
        cache: the run's evidence.
        positions: a fold's held-out positions in ``cache``.
        combiner: that fold's combiner.
        image: position -> ``3×H×W`` image in [0, 1].
        folder: where ``<sample id>.png`` files go.

    Returns:
        The files written.
    """
    chosen = list(positions)[:count]
    if not chosen:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    evidence = cache.evidence(chosen)
    with torch.no_grad():
        maps = combiner.to(evidence.image_index.device)(evidence, evidence.input_size)
    written = []
    for position, frame, saliency in zip(chosen, cache.frames(chosen), maps):
        array = frame.map_to_original(saliency.cpu()).clamp(0, 1).numpy()
        path = folder / f"{cache.ids[position]}.png"
        overlay(image(position), array, []).save(path)
        written.append(path)
    return written


def _grid(cache: EvidenceSource) -> tuple[int, int]:
    evidence = cache.evidence([0])
    return max((tuple(a.shape[-2:]) for a in evidence.acts.values()), key=lambda s: s[0] * s[1])


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in values.items() if isinstance(v, float) and v == v and abs(v) < 1e300}


def _mean_std(values: list[float]) -> dict[str, float]:
    finite = [v for v in values if v is not None and v == v]
    if not finite:
        return {"mean": float("nan"), "std": float("nan")}
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return {"mean": statistics.fmean(finite), "std": std}


def summarise(
    cfg: RunConfig, results: list[FoldResult], skipped: dict[str, str], used: int
) -> dict[str, Any]:
    """Per-fold rows, mean ± std across folds for the learned head, its initial values and each
    baseline, the best fold by ``select_metric``, and the skipped samples."""
    metric = cfg.train.select_metric
    rows: dict[str, list[dict[str, float]]] = {
        "learned": [r.best for r in results],
        "initial": [r.initial for r in results],
    }
    for name in cfg.train.baselines:
        rows[name] = [r.baselines[name] for r in results]
    methods = {
        method: {k: _mean_std([r.get(k, float("nan")) for r in values]) for k in NAMES}
        for method, values in rows.items()
    }
    sign = 1 if higher_is_better(metric) else -1
    scored = [
        (sign * r.best[metric], -r.fold)
        for r in results
        if r.best.get(metric) == r.best.get(metric)
    ]
    best_fold = -max(scored)[1] if scored else 0
    drops = [r.worst_cc_drop for r in results]
    limit = cfg.combiner.cc_drop_report
    return {
        "name": cfg.name,
        "select_metric": metric,
        "images": used,
        "skipped": len(skipped),
        "skipped_samples": skipped,
        "best_fold": best_fold,
        "folds": [vars(r) for r in results],
        "methods": methods,
        "mean": {k: v["mean"] for k, v in methods["learned"].items()},
        "combiner": cfg.combiner.model_dump(mode="json"),
        "worst_cc_drop": max((d for d in drops if d == d), default=float("nan")),
        "unstable_folds": [r.fold for r in results if r.worst_cc_drop > limit],
    }


def _cell(stats: dict[str, float]) -> str:
    return "–" if stats["mean"] != stats["mean"] else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def summary_table(summary: dict[str, Any]) -> Table:
    """A rich table: per fold the best epoch's metrics, then mean ± std for every method."""
    table = Table(title=f"{summary['name']}: held-out folds ({summary['skipped']} samples skipped)")
    table.add_column("row")
    for key in NAMES:
        table.add_column(key, justify="right")
    for fold in summary["folds"]:
        values = fold["best"]
        table.add_row(
            f"fold {fold['fold']} (epoch {fold['best_epoch']})",
            *[f"{values[k]:.3f}" if k in values else "–" for k in NAMES],
        )
    for method, stats in summary["methods"].items():
        table.add_row(f"{method} mean ± std", *[_cell(stats[k]) for k in NAMES])
    return table


def summary_markdown(summary: dict[str, Any]) -> str:
    """The summary table as Markdown."""
    lines = [
        f"# {summary['name']}",
        "",
        f"{summary['images']} images in {len(summary['folds'])} folds; "
        f"{summary['skipped']} samples skipped; selected by {summary['select_metric']}; "
        f"best fold {summary['best_fold']}.",
        "",
        "| row | " + " | ".join(NAMES) + " |",
        "|---" * (len(NAMES) + 1) + "|",
    ]
    for fold in summary["folds"]:
        values = fold["best"]
        cells = [f"{values[k]:.3f}" if k in values else "–" for k in NAMES]
        lines.append(
            f"| fold {fold['fold']} (epoch {fold['best_epoch']}) | " + " | ".join(cells) + " |"
        )
    for method, stats in summary["methods"].items():
        lines.append(f"| {method} | " + " | ".join(_cell(stats[k]) for k in NAMES) + " |")
    lines += ["", *stability_lines(summary)]
    return "\n".join(lines) + "\n"


def stability_lines(summary: dict[str, Any]) -> list[str]:
    """Markdown lines: each fold's worst validation-CC drop below its start and learned values,
    and a warning naming the folds whose drop passed ``combiner.cc_drop_report``."""
    lines = ["| fold | worst CC drop | learned values |", "|---|---|---|"]
    for fold in summary["folds"]:
        values = fold.get("parameters") or {}
        shown = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}=[{', '.join(f'{x:.3g}' for x in v)}]"
            for k, v in values.items()
        )
        lines.append(
            f"| {fold['fold']} | {fold.get('worst_cc_drop', float('nan')):.3f} | {shown} |"
        )
    unstable = summary.get("unstable_folds") or []
    if unstable:
        limit = summary["combiner"]["cc_drop_report"]
        lines += [
            "",
            f"**Unstable:** folds {unstable} lost more than {limit} validation CC below their "
            "start at some epoch (the best-epoch export hides it).",
        ]
    return lines
