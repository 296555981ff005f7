"""Plots of a run (matplotlib, Agg): training curves and the learned functions per fold."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from hagxai.combiner import HAGCombiner, gaussian_factor, phi


def training_curves(history: list[dict], path: Path) -> Path:
    """Train / validation loss, CC and faithfulness against epoch, one line per fold."""
    panels = [("loss", ("train_loss", "val_loss")), ("cc", ("cc",)), ("faithfulness", None)]
    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    folds = sorted({row["fold"] for row in history})
    for fold in folds:
        rows = [r for r in history if r["fold"] == fold]
        for axis, (title, keys) in zip(axes, panels):
            keys = keys or ("deletion", "insertion")
            for key in keys:
                points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
                if points:
                    x, y = zip(*points)
                    axis.plot(x, y, marker=".", label=f"fold {fold} {key}")
            axis.set_title(title)
            axis.set_xlabel("epoch")
    for axis in axes:
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


@torch.no_grad()
def learned_functions(combiners: list[HAGCombiner], path: Path) -> Path:
    """φ_a, φ_g and the 1-D profiles of both kernels (``K[u, 0]``) of each fold's combiner."""
    figure, axes = plt.subplots(1, 4, figsize=(16, 4))
    x = torch.linspace(-1, 1, 101)
    for fold, combiner in enumerate(combiners):
        c = combiner.to("cpu").float()
        label = f"fold {fold}"
        axes[0].plot(x, phi(x, c.value("act_pos").mean(), c.act_neg.mean()), label=label)
        axes[1].plot(x, phi(x, c.value("grad_pos").mean(), c.grad_neg.mean()), label=label)
        u = torch.arange(-c.radius, c.radius + 1)
        axes[2].plot(u, c.grad_amp * gaussian_factor(c.grad_s, c.radius), label=label)
        axes[3].plot(u, c.map_amp * gaussian_factor(c.map_s, c.radius), label=label)
    titles = ("φ_a (activations)", "φ_g (gradients)", "gradient kernel K_g[u,0]", "map kernel")
    for axis, title in zip(axes, titles):
        axis.set_title(title)
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
