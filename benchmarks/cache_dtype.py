"""What storing the evidence in float16 or bfloat16 (``cache.dtype``) does to the maps and metrics.

For a demo config (the demo set and model, trained once into the cache), builds the evidence of
the training split the config trains on in each storage dtype (in a temporary folder, deleted at
the end), reads it back as float32, and renders the maps of the untrained combiner (FullGrad-CAM++
with smoothing) and of a trained one (``--combiner``, e.g. ``runs/demo-classifier/best``). Prints
per dtype the mean of each validation metric over the images, its difference from float32, the
largest per-image metric difference and the largest map difference, and the cache's size.

Usage: ``python benchmarks/cache_dtype.py [--config configs/demo_classifier.yaml]
[--combiner RUN/best]``.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import torch

from hagxai.cache import open_evidence
from hagxai.combiner import HAGCombiner
from hagxai.config import load_config
from hagxai.export import load_combiner
from hagxai.metrics import MetricWarning
from hagxai.training.data import grouped, load_human_data, render
from hagxai.training.metrics import VALIDATION
from hagxai.training.run import STORAGE_DTYPE, build_model_and_data, target_rule

REPO = Path(__file__).resolve().parents[1]


def per_image(cache, human, combiner: HAGCombiner) -> tuple[dict[str, torch.Tensor], list]:
    """Each validation metric per image, and the maps, for the combiner on the cache."""
    values: dict[str, list[torch.Tensor]] = {m.name: [] for m in VALIDATION}
    maps_all = []
    for start in range(0, len(human.keep), 40):
        positions = human.keep[start : start + 40]
        slots = range(start, start + len(positions))
        with torch.no_grad():
            evidence = cache.evidence(positions)
            sizes = [tuple(human.maps[s].shape) for s in slots]
            frames = [human.frames[s] for s in slots]
            maps = [m.float() for m in render(combiner, evidence, sizes, frames)]
        held = {
            "human_maps": [human.maps[s] for s in slots],
            "fixations": [human.fixations[s] for s in slots],
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MetricWarning)
            for metric in VALIDATION:
                (name,) = metric.inputs
                stack = name == "human_maps"
                values[metric.name].append(grouped(metric.fn, maps, held[name], stack=stack))
        maps_all.extend(maps)
    return {k: torch.cat(v) for k, v in values.items()}, maps_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo_classifier.yaml"))
    parser.add_argument("--combiner", type=Path, help="a trained combiner folder to compare too")
    args = parser.parse_args()
    cfg = load_config(args.config, ["device=cpu"])
    adapter, dataset = build_model_and_data(cfg, progress=False)
    samples = [s for s in dataset.samples if s.split in (cfg.train.splits or [s.split])]
    rule = target_rule(cfg, adapter, dataset.class_subset)
    layers = adapter.resolve_layers(cfg.model.layers)
    combiners = {"initial": HAGCombiner(layers=layers)}
    if args.combiner is not None:
        combiners["trained"] = load_combiner(args.combiner)
    results = {}
    with tempfile.TemporaryDirectory(prefix="hagxai-cache-dtype-") as root:
        for name, dtype in STORAGE_DTYPE.items():
            cache = open_evidence(
                adapter, samples, layers=layers, root=Path(root), rule=rule, dtype=dtype,
                progress=False,
            )  # fmt: skip
            size = sum(p.stat().st_size for p in cache.path.glob("shard-*.safetensors"))
            human = load_human_data(cache, samples)
            for label, combiner in combiners.items():
                results[name, label] = (*per_image(cache, human, combiner.eval()), size)
    print(f"{cfg.name}: {len(results['float32', 'initial'][1])} images")
    for label in combiners:
        print(f"\n{label} combiner")
        base, base_maps, _ = results["float32", label]
        for name in STORAGE_DTYPE:
            values, maps, size = results[name, label]
            diff = max(float((a - b).abs().max()) for a, b in zip(maps, base_maps))
            cells = []
            for metric, v in values.items():
                ok = torch.isfinite(v) & torch.isfinite(base[metric])
                mean, delta = float(v[ok].mean()), float(v[ok].mean() - base[metric][ok].mean())
                worst = float((v[ok] - base[metric][ok]).abs().max())
                cells.append(f"{metric} {mean:.4f} ({delta:+.1e}, max {worst:.1e})")
            print(
                f"  {name:8s} {size / 1e6:6.1f} MB  map max|diff| {diff:.1e}  " + "  ".join(cells)
            )


if __name__ == "__main__":
    main()
