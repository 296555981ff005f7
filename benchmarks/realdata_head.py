"""The learned head against every hand-made map, on held-out folds (issue #15's table).

Usage (from the project root)::

    python benchmarks/realdata_head.py ../shared/realdata            # the real development set
    python benchmarks/realdata_head.py configs/demo_detector.yaml     # a demo set
    python benchmarks/realdata_head.py ../shared/realdata --settings reference,recommended \\
        --seeds 5 --epochs 6

``SOURCE`` is the real development set's folder (it holds ``nus_yolov5n.yaml``; see its README)
or any run config. A missing source is skipped with a message and exit code 0, so the script can
run where the real set is absent.

For every training setting (``--settings``; :data:`SETTINGS`) and seed (``--seeds`` for the
first setting, ``--other-seeds`` for the rest), the trainer runs its folds
(``hagxai.training.train``, fold split seeded by the seed). Then on seed 0's folds every method
is scored per held-out image (CC, NSS, AUC-Judd) in the human maps' frame:

* each setting's learned head (each fold's exported combiner on that fold's held-out images);
* FullGrad-CAM++ and Grad-CAM at the default layers and at the Detect-head inputs (detectors),
  each as it is and smoothed with the Gaussian σ (pixels of the human map) that gave the best
  mean CC on that fold's *training* images (a fair hand-made rival);
* the centre bias (std 0.25 of each side), and the centre bias with its std chosen from
  :data:`CENTRE_WIDTHS` on each fold's training images;
* the human leave-one-viewer-out row where fixations carry viewer ids (each viewer's own map
  against the other viewers'; a reference, not a rival).

Rows give the mean over all held-out images with a 95% confidence interval (t); the paired
difference learned − best rival (per image, the rival with the highest mean CC) has its own CI
(printed below the table for CC, NSS and AUC-Judd, and against the plain centre bias too).
``--sigmas`` sets the smoothed rivals' σ grid (default :data:`SIGMAS`).
Deletion and insertion AUC are measured for the first setting's head and FullGrad-CAM++ (plain and
smoothed) on the first ``--faith-images`` held-out images of every fold. The worst drop of a
fold's validation CC below its start is over all folds and seeds of a setting.

Writes ``table.md`` and ``results.json`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from scipy import stats

#: The stable head with its extensions (per-channel slopes, layer weights, searched start).
_EXTENSIONS = [
    "combiner.parameterisation=stable",
    "combiner.init=search",
    "combiner.channel_slopes=true",
    "combiner.layer_weights=true",
]
#: ... with warm-up and clipping (the learning rate of the source's config).
_GUARDED = [*_EXTENSIONS, "combiner.warmup_steps=5", "combiner.grad_clip=1.0"]
#: The recommended head (README, "The learned head"); its lr chosen by the sweep in README
#: "Training settings, measured".
_RECOMMENDED = [*_GUARDED, "train.lr=0.05", "train.lr_final=0.0125"]

#: Training settings: name -> ``key=value`` overrides on top of the source's config.
SETTINGS: dict[str, list[str]] = {
    "reference": [],
    "reference+init": ["combiner.init=search"],
    "raw-extensions": ["combiner.channel_slopes=true", "combiner.layer_weights=true"],
    "stable": ["combiner.parameterisation=stable", "combiner.init=search"],
    "stable+extensions": _EXTENSIONS,
    "recommended": _RECOMMENDED,
    "recommended-wide": [*_RECOMMENDED, "combiner.init_widths=[0.05, 0.5, 1.5, 3, 6, 12, 24]"],
    "recommended-b20": [*_RECOMMENDED, "train.batch_size=20"],
    "recommended-lr05": _GUARDED,
    "recommended-lr02": [*_GUARDED, "train.lr=0.02", "train.lr_final=0.005"],
    "recommended-all": [*_RECOMMENDED, "model.layers=[backbone, head]"],
    "recommended-head": [*_RECOMMENDED, "model.layers=[head]"],
}

#: Gaussian σ (pixels of the human map) the smoothed rivals choose from; 0 is no smoothing. It
#: reaches far past 16 px because on the real set's 256×256 scenes every rival chose the largest
#: σ of a grid that ended there (at σ ≳ 48 px the zero-padded blur is itself a centre blob).
SIGMAS = (0.0, 2.0, 4.0, 8.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0)
#: Std of the centre bias (share of each side) the tuned centre-bias row chooses from; the plain
#: row is ``centre_bias``'s default 0.25.
CENTRE_WIDTHS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
METRICS = ("cc", "nss", "auc_judd")


def _config(source: Path, out: Path, epochs: int | None, extra: Sequence[str]):
    from hagxai.config import load_config

    overrides = [
        f"output_dir={out / 'runs'}",
        "wandb.mode=disabled",
        "train.faithfulness_images=0",
        "train.baselines=[]",
        *extra,
    ]
    if epochs is not None:
        overrides.append(f"train.epochs={epochs}")
    if source.is_dir():
        root = source.resolve()
        overrides += [
            f"data.root={root / 'nus-scene-person-car'}",
            f"model.name=yolov5:{root / 'weights' / 'yolov5n.pt'}",
        ]
        return load_config(root / "nus_yolov5n.yaml", overrides)
    return load_config(source, overrides)


class Scene:
    """The evidence, human data and scoring of one layer set on one dataset."""

    def __init__(self, cfg, adapter, dataset, layers: list[str] | None) -> None:
        from hagxai.training.data import load_human_data
        from hagxai.training.run import open_run_evidence, target_rule

        samples = dataset.samples
        if cfg.train.splits is not None:
            samples = [s for s in samples if s.split in cfg.train.splits]
        self.samples = samples
        self.adapter = adapter
        self.cache = open_run_evidence(
            cfg,
            adapter,
            samples,
            rule=target_rule(cfg, adapter, dataset.class_subset),
            layers=layers,
            progress=False,
        )
        self.human = load_human_data(self.cache, samples)
        self.slot = {p: i for i, p in enumerate(self.human.keep)}
        self.position = {sample_id: p for p, sample_id in enumerate(self.cache.ids)}

    def positions(self, ids: Sequence[str]) -> list[int]:
        return [self.position[i] for i in ids]

    @torch.no_grad()
    def maps(self, explain: Callable, positions: list[int]) -> list[torch.Tensor]:
        """Per image, the map in its human map's frame (``H_i×W_i``)."""
        from hagxai.training.data import render

        out: list[torch.Tensor] = []
        for start in range(0, len(positions), 16):
            batch = positions[start : start + 16]
            evidence = self.cache.evidence(batch)
            slots = [self.slot[p] for p in batch]
            sizes = [tuple(self.human.maps[s].shape) for s in slots]
            frames = [self.human.frames[s] for s in slots]
            out += [m.float() for m in render(explain, evidence, sizes, frames)]
        return out

    @torch.no_grad()
    def scores(self, maps: list[torch.Tensor], positions: list[int]) -> dict[str, torch.Tensor]:
        """Per image CC, NSS and AUC-Judd (``N`` each; NaN for a constant map)."""
        from hagxai.metrics import MetricWarning
        from hagxai.metrics.plausibility import auc_judd, cc, nss
        from hagxai.training.data import grouped

        slots = [self.slot[p] for p in positions]
        human = [self.human.maps[s] for s in slots]
        fixations = [self.human.fixations[s] for s in slots]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            return {
                "cc": grouped(cc, maps, human, stack=True),
                "nss": grouped(nss, maps, fixations, stack=False),
                "auc_judd": grouped(auc_judd, maps, fixations, stack=False),
            }


def blur(maps: list[torch.Tensor], sigma: float) -> list[torch.Tensor]:
    """Each ``H×W`` map smoothed by a Gaussian of std ``sigma`` pixels (zero padding, radius
    ``3σ``), min-max normalised again; ``sigma = 0`` returns the maps."""
    from hagxai.combiner import separable_smooth

    if sigma == 0:
        return maps
    radius = max(1, math.ceil(3 * sigma))
    s = torch.tensor(sigma * sigma)
    out = []
    for m in maps:
        smoothed = separable_smooth(m, torch.tensor(1.0), s, radius)
        low, high = smoothed.min(), smoothed.max()
        out.append((smoothed - low) / (high - low) if high > low else torch.zeros_like(m))
    return out


def _nanmean(x: torch.Tensor) -> float:
    finite = x[torch.isfinite(x)]
    return float(finite.mean()) if finite.numel() else float("nan")


def ci(values: torch.Tensor) -> tuple[float, float]:
    """Mean and half-width of its 95% t confidence interval (NaNs left out)."""
    finite = values[torch.isfinite(values)].double()
    n = finite.numel()
    if n < 2:
        return float(finite.mean()) if n else float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, n - 1)) * float(finite.std()) / math.sqrt(n)
    return float(finite.mean()), half


def choose(
    scene: Scene,
    folds: list[list[int]],
    every: list[int],
    grid: Sequence[float],
    variant: Callable[[list[int], float], list[torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], list[float], dict[int, list[torch.Tensor]]]:
    """Held-out per-image scores of a hand-made family over ``folds``: each fold takes the value
    of ``grid`` whose maps (``variant(positions, value)``) have the best mean CC on that fold's
    *training* images (``every`` but the fold; a one-value grid chooses nothing).

    Returns:
        scores (per metric, ``N`` in fold order), the value of each fold, and per fold the
        held-out maps (for faithfulness).
    """
    chosen, parts, held_maps = [], [], {}
    for k, held in enumerate(folds):
        value = grid[0]
        if len(grid) > 1:
            training = [p for p in every if p not in set(held)]
            means = [_nanmean(scene.scores(variant(training, g), training)["cc"]) for g in grid]
            value = grid[max(range(len(grid)), key=lambda i: means[i])]
        chosen.append(value)
        held_maps[k] = variant(held, value)
        parts.append(scene.scores(held_maps[k], held))
    return {m: torch.cat([p[m] for p in parts]) for m in METRICS}, chosen, held_maps


def hand_made(
    scene: Scene,
    folds: list[list[int]],
    method: str,
    smoothed: bool,
    every: list[int],
    sigmas: Sequence[float] = SIGMAS,
) -> tuple[dict[str, torch.Tensor], list[float], dict[int, list[torch.Tensor]]]:
    """A hand-made method's held-out scores over ``folds`` (see :func:`choose`); with
    ``smoothed`` each fold's Gaussian σ is chosen from ``sigmas`` on its training images."""
    from hagxai import explainers

    explain = explainers.get(method)
    maps = dict(zip(every, scene.maps(explain, every)))
    grid = tuple(sigmas) if smoothed else (0.0,)
    return choose(scene, folds, every, grid, lambda ps, s: blur([maps[p] for p in ps], s))


def centre(
    scene: Scene, folds: list[list[int]], every: list[int], widths: Sequence[float]
) -> tuple[dict[str, torch.Tensor], list[float], dict[int, list[torch.Tensor]]]:
    """The centre bias, its std chosen from ``widths`` per fold on the training images."""
    from hagxai.explainers.sanity import centre_bias

    maps = {
        w: dict(zip(every, scene.maps(lambda e, s, w=w: centre_bias(e, s, sigma=w), every)))
        for w in widths
    }
    return choose(scene, folds, every, tuple(widths), lambda ps, w: [maps[w][p] for p in ps])


def human_ceiling(scene: Scene, positions: list[int], sigma_px: float) -> dict[str, torch.Tensor]:
    """Leave-one-viewer-out per image (each viewer's own map against the other viewers' map and
    fixations, mean over viewers; NaN for an image with fewer than two viewers)."""
    from hagxai.data.sample import read_image_size
    from hagxai.metrics import MetricWarning
    from hagxai.metrics.plausibility import auc_judd, cc, nss
    from hagxai.report.human import leave_one_out

    by_id = {s.id: s for s in scene.samples}
    out = {m: torch.full((len(positions),), math.nan) for m in METRICS}
    for i, p in enumerate(positions):
        sample = by_id[scene.cache.ids[p]]
        size = tuple(scene.human.maps[scene.slot[p]].shape)
        loo = leave_one_out(sample, size, read_image_size(sample.image_path), sigma_px)
        if loo is None:
            continue
        own, others, fixations = loo
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            values = {
                "cc": cc(own.float(), others.float()),
                "nss": nss(own.float(), fixations),
                "auc_judd": auc_judd(own.float(), fixations),
            }
        for m in METRICS:
            out[m][i] = _nanmean(values[m])
    return out


def learned(
    scene: Scene, run_dir: Path, folds: list[list[int]], numbers: list[int]
) -> dict[str, torch.Tensor]:
    """Fold ``numbers[i]``'s exported combiner scored on its held-out images ``folds[i]``."""
    from hagxai.export import load_combiner

    parts = []
    for k, held in zip(numbers, folds):
        combiner = load_combiner(run_dir / f"fold_{k}" / "combiner")
        explain = lambda e, s, c=combiner: c(e, s, validate=False)  # noqa: E731
        parts.append(scene.scores(scene.maps(explain, held), held))
    return {m: torch.cat([p[m] for p in parts]) for m in METRICS}


@torch.no_grad()
def faith(
    scene: Scene, explain: Callable, positions: list[int], steps: int
) -> dict[str, torch.Tensor]:
    """Per image deletion and insertion AUC of ``explain``'s maps on the model input (``N``)."""
    from hagxai.evaluation import faithfulness

    by_id = {s.id: s for s in scene.samples}
    images = []
    for p in positions:
        array = by_id[scene.cache.ids[p]].load_image()
        images.append(torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255))
    prepared = scene.adapter.preprocess(images)
    evidence = scene.cache.evidence(positions)
    maps = explain(evidence, scene.cache.input_size).float()
    result = faithfulness(
        scene.adapter, prepared.x, scene.cache.targets(positions), maps, steps=steps, seed=0
    )
    return {
        "deletion": result.deletion.auc.float().cpu(),
        "insertion": result.insertion.auc.float().cpu(),
    }


def partial_summary(run_dir: Path) -> dict[str, Any]:
    """What an interrupted run's folder says about its finished folds: worst CC drops, learned
    values and the exported combiners' validation CC (the shape of a summary's fields used here)."""
    from hagxai.export import load_combiner, read_card
    from hagxai.training.trainer import cc_drop, learned_values

    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    done = sorted(int(c.parent.parent.name[5:]) for c in run_dir.glob("fold_*/combiner/*.json"))
    folds = [
        {
            "fold": k,
            "worst_cc_drop": cc_drop(history, k),
            "parameters": learned_values(load_combiner(run_dir / f"fold_{k}" / "combiner")),
            "cc": read_card(run_dir / f"fold_{k}" / "combiner")["metrics"]["cc"],
        }
        for k in done
    ]
    drops = [f["worst_cc_drop"] for f in folds if f["worst_cc_drop"] == f["worst_cc_drop"]]
    mean = sum(f["cc"] for f in folds) / len(folds) if folds else float("nan")
    return {"folds": folds, "worst_cc_drop": max(drops, default=float("nan")), "mean": {"cc": mean}}


def _row(name: str, scores: dict[str, torch.Tensor], note: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {"method": name, "note": note}
    for metric in METRICS:
        row[metric] = ci(scores[metric])
    return row


def _fmt(value: tuple[float, float]) -> str:
    mean, half = value
    return "–" if mean != mean else f"{mean:.3f} ± {half:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the real set's folder, or a run config")
    parser.add_argument("--settings", default="reference,recommended", help="comma-separated")
    parser.add_argument(
        "--seeds", type=int, default=1, help="fold-split seeds of the first setting"
    )
    parser.add_argument("--other-seeds", type=int, default=1, help="seeds of the other settings")
    parser.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    parser.add_argument("--faith-images", type=int, default=4, help="per fold (0: none)")
    parser.add_argument("--faith-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-head"))
    parser.add_argument(
        "--sigmas",
        default=",".join(f"{s:g}" for s in SIGMAS),
        help="comma-separated Gaussian σ (human-map pixels) the smoothed rivals choose from",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--reuse", action="store_true", help="keep finished runs in --out instead of retraining"
    )
    parser.add_argument(
        "--train-only", action="store_true", help="train the runs, skip the table (see --reuse)"
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="with --reuse: tabulate interrupted runs on the folds every run finished",
    )
    parser.add_argument("overrides", nargs="*", help="key=value for every setting")
    args = parser.parse_intermixed_args(argv)
    try:
        sigma_grid = tuple(float(v) for v in args.sigmas.split(",") if v.strip())
    except ValueError:
        parser.error(f"--sigmas {args.sigmas!r}: expected comma-separated numbers, e.g. 0,8,16")
    if not sigma_grid or any(not v >= 0 for v in sigma_grid):
        parser.error(f"--sigmas {args.sigmas!r}: expected numbers >= 0")
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown settings {unknown}; known: {', '.join(SETTINGS)}")
    if not args.source.exists():
        print(
            f"skipping: {args.source} not found (the real development set is not part of "
            "the project; see ../shared/realdata/README.md)"
        )
        return 0
    torch.set_num_threads(args.threads)

    from rich.console import Console

    from hagxai.training import train
    from hagxai.training.folds import load_folds
    from hagxai.training.run import build_model_and_data

    args.out.mkdir(parents=True, exist_ok=True)
    base = _config(args.source, args.out, args.epochs, args.overrides)
    adapter, dataset = build_model_and_data(base, progress=False)
    quiet = Console(quiet=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        for seed in range(args.seeds if name == names[0] else args.other_seeds):
            cfg = _config(
                args.source,
                args.out,
                args.epochs,
                [*args.overrides, *SETTINGS[name], f"seed={seed}", f"name={name}-seed{seed}"],
            )
            saved = cfg.run_dir / "summary.json"
            if args.reuse and saved.exists():
                summary = json.loads(saved.read_text())
            elif args.partial and (cfg.run_dir / "metrics.jsonl").exists():
                summary = partial_summary(cfg.run_dir)
            else:
                summary = train(
                    cfg,
                    overwrite=True,
                    progress=False,
                    console=quiet,
                    adapter=adapter,
                    dataset=dataset,
                )
            runs.setdefault(name, []).append(
                {
                    "seed": seed,
                    "run_dir": str(cfg.run_dir),
                    "layers": cfg.model.layers,
                    "worst_cc_drop": summary["worst_cc_drop"],
                    "fold_drops": [f["worst_cc_drop"] for f in summary["folds"]],
                    "parameters": [f["parameters"] for f in summary["folds"]],
                    "mean_cc": summary["mean"]["cc"],
                }
            )
            print(
                f"{name} seed {seed}: mean CC {summary['mean']['cc']:.3f}, "
                f"worst drop {summary['worst_cc_drop']:.3f}",
                flush=True,
            )

    if args.train_only:
        return 0
    scenes: dict[str, Scene] = {"default": Scene(base, adapter, dataset, base.model.layers)}
    if adapter.task == "detection":
        scenes["head"] = Scene(base, adapter, dataset, ["head"])
    first = Path(runs[names[0]][0]["run_dir"])
    all_ids = load_folds(first / "folds.json")
    numbers = [
        k
        for k in range(len(all_ids))
        if all((Path(runs[n][0]["run_dir"]) / f"fold_{k}" / "combiner").exists() for n in names)
    ]
    fold_ids = [all_ids[k] for k in numbers]
    rows: list[dict[str, Any]] = []
    per_image: dict[str, dict[str, torch.Tensor]] = {}

    def scene_of(layers: list[str] | None) -> Scene:
        key = "default" if layers is None else "+".join(layers)
        if key not in scenes:
            scenes[key] = Scene(base, adapter, dataset, layers)
        return scenes[key]

    for name in names:
        run = runs[name][0]
        scene = scene_of(run["layers"])
        folds = [scene.positions(f) for f in fold_ids]
        scores = learned(scene, Path(run["run_dir"]), folds, numbers)
        per_image[f"learned: {name}"] = scores
        drops = [d for r in runs[name] for d in r["fold_drops"] if d == d]
        note = f"worst CC drop {max(drops, default=float('nan')):.3f} ({len(runs[name])} seeds)"
        rows.append(_row(f"learned: {name}", scores, note))
    rival_maps: dict[str, dict[int, list[torch.Tensor]]] = {}
    sigmas: dict[str, list[float]] = {}
    for layer_set, scene in [(k, scenes[k]) for k in ("default", "head") if k in scenes]:
        folds = [scene.positions(f) for f in fold_ids]
        every = scene.positions([i for f in all_ids for i in f])
        for method in ("fullgradcam++", "gradcam"):
            for smoothed in (False, True):
                label = f"{method} @{layer_set}" + (" + best Gaussian" if smoothed else "")
                scores, chosen, maps = hand_made(scene, folds, method, smoothed, every, sigma_grid)
                per_image[label], sigmas[label], rival_maps[label] = scores, chosen, maps
                note = f"σ per fold {chosen}" if smoothed else ""
                rows.append(_row(label, scores, note))
    scene = scenes["default"]
    folds = [scene.positions(f) for f in fold_ids]
    label = "centre bias"
    every = scene.positions([i for f in all_ids for i in f])
    scores, _, _ = hand_made(scene, folds, "centre_bias", False, every)
    per_image[label] = scores
    rows.append(_row(label, scores, "std 0.25 of each side"))
    label = "centre bias + best width"
    scores, chosen, _ = centre(scene, folds, every, CENTRE_WIDTHS)
    per_image[label] = scores
    rows.append(_row(label, scores, f"std per fold {chosen}"))
    rivals = [k for k in per_image if not k.startswith("learned")]

    from hagxai.report.human import absent_reason, viewer_sigma

    held_positions = [p for f in folds for p in f]
    why = absent_reason(scene.samples, dataset)
    if why is None:
        sigma_px = viewer_sigma(scene.samples[0], dataset)
        scores = human_ceiling(scene, held_positions, sigma_px)
        per_image["human (leave-one-viewer-out)"] = scores
        rows.append(
            _row(
                "human (leave-one-viewer-out)", scores, "one viewer against the others; not a rival"
            )
        )
    else:
        print(f"no human row: {why}")

    best_rival = max(rivals, key=lambda k: _nanmean(per_image[k]["cc"]))
    for row in rows:
        if row["method"].startswith("learned"):
            diff = per_image[row["method"]]["cc"] - per_image[best_rival]["cc"]
            row["cc_minus_best_rival"] = ci(diff)

    if args.faith_images:
        from hagxai import explainers

        run = runs[names[0]][0]
        chosen_scene = scene_of(run["layers"])
        subsets = [f[: args.faith_images] for f in fold_ids]
        faith_rows: dict[str, list[dict[str, torch.Tensor]]] = {}
        for i, (k, ids) in enumerate(zip(numbers, subsets)):
            from hagxai.export import load_combiner

            combiner = load_combiner(Path(run["run_dir"]) / f"fold_{k}" / "combiner")
            positions = chosen_scene.positions(ids)
            faith_rows.setdefault(f"learned: {names[0]}", []).append(
                faith(
                    chosen_scene,
                    lambda e, s, c=combiner: c(e, s, validate=False),
                    positions,
                    args.faith_steps,
                )
            )
            plain = explainers.get("fullgradcam++")
            default_positions = scenes["default"].positions(ids)
            faith_rows.setdefault("fullgradcam++ @default", []).append(
                faith(scenes["default"], plain, default_positions, args.faith_steps)
            )
            sigma = sigmas["fullgradcam++ @default + best Gaussian"][i]
            scale = scenes["default"].cache.input_size[0] / scenes["default"].human.maps[0].shape[0]

            def smoothed(e, s, sigma=sigma * scale, method=plain):
                return torch.stack(blur(list(method(e, s)), sigma))

            faith_rows.setdefault("fullgradcam++ @default + best Gaussian", []).append(
                faith(scenes["default"], smoothed, default_positions, args.faith_steps)
            )
        for row in rows:
            if row["method"] in faith_rows:
                for key in ("deletion", "insertion"):
                    values = torch.cat([r[key] for r in faith_rows[row["method"]]])
                    row[key] = ci(values)

    lines = [
        f"Held-out folds of {args.source} ({len(fold_ids)} of {len(all_ids)} folds, "
        f"{sum(len(f) for f in fold_ids)} images, seed 0); mean ± 95% CI over images "
        f"(faithfulness: the first {args.faith_images} held-out images of each fold, "
        f"{args.faith_steps} steps). "
        f"Best rival by CC: {best_rival}.",
        "",
        "| method | CC | NSS | AUC-Judd | CC − best rival | deletion ↓ | insertion ↑ | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [_fmt(row[m]) for m in METRICS]
        cells.append(_fmt(row["cc_minus_best_rival"]) if "cc_minus_best_rival" in row else "")
        cells += [_fmt(row[k]) if k in row else "" for k in ("deletion", "insertion")]
        lines.append(f"| {row['method']} | " + " | ".join(cells) + f" | {row['note']} |")
    lines.append("")
    compared = [best_rival] + (["centre bias"] if best_rival != "centre bias" else [])
    for row in rows:
        if not row["method"].startswith("learned"):
            continue
        for rival in compared:
            diffs = {m: ci(per_image[row["method"]][m] - per_image[rival][m]) for m in METRICS}
            row.setdefault("paired", {})[rival] = diffs
            lines.append(
                f"{row['method']} − {rival} (paired, per image): "
                + ", ".join(f"{m} {_fmt(diffs[m])}" for m in METRICS)
            )
    table = "\n".join(lines) + "\n"
    print(table)
    (args.out / "table.md").write_text(table)
    (args.out / "results.json").write_text(
        json.dumps({"rows": rows, "runs": runs, "best_rival": best_rival}, indent=1) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
