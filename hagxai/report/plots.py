"""The evaluation's pictures (matplotlib, Agg, PNG): plausibility against faithfulness, the
deletion / insertion curves, the overlay grid and the learned functions of each combiner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

COLOURS = plt.get_cmap("tab10")


def pareto_front(points: list[tuple[float, float]], higher: tuple[bool, bool]) -> list[int]:
    """Indices of the points no other point beats on both axes (directions in ``higher``)."""
    signs = np.array([1 if h else -1 for h in higher], np.float64)
    scored = [np.asarray(p, np.float64) * signs for p in points]
    front = []
    for i, p in enumerate(scored):
        if not np.all(np.isfinite(p)):
            continue
        dominated = any(
            np.all(np.isfinite(q)) and np.all(q >= p) and np.any(q > p)
            for j, q in enumerate(scored)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


def scatter(summary: dict[str, Any], path: Path) -> Path:
    """One point per row at (plausibility mean, faithfulness mean) with 95% CI bars; the Pareto
    front joined by a dashed line; axis labels say which way is better."""
    x_metric, y_metric = summary["scatter"]
    higher = summary["higher_is_better"]
    rows = [r for r in summary["rows"] if r["kind"] != "absent"]
    figure, axis = plt.subplots(figsize=(7, 5.2))
    points = []
    for i, row in enumerate(rows):
        mx, my = row["metrics"][x_metric], row["metrics"][y_metric]
        points.append((mx["mean"], my["mean"]))
        if not (np.isfinite(mx["mean"]) and np.isfinite(my["mean"])):
            continue
        axis.errorbar(
            mx["mean"],
            my["mean"],
            xerr=[[mx["mean"] - mx["low"]], [mx["high"] - mx["mean"]]],
            yerr=[[my["mean"] - my["low"]], [my["high"] - my["mean"]]],
            fmt="o" if row["kind"] != "learned" else "*",
            markersize=8 if row["kind"] != "learned" else 14,
            color=COLOURS(i % 10),
            capsize=3,
            label=row["name"] + (" (flagged)" if row.get("flagged") else ""),
        )
    front = pareto_front(points, (higher[x_metric], higher[y_metric]))
    if len(front) > 1:
        xy = sorted(points[i] for i in front)
        axis.plot(*zip(*xy), "--", color="grey", linewidth=1, label="Pareto front")
    for i in front:
        axis.annotate(rows[i]["name"], points[i], textcoords="offset points", xytext=(6, 6))

    def label(metric: str) -> str:
        return f"{metric} ({'higher' if higher[metric] else 'lower'} is better →)".replace(
            " →)", ")"
        )

    axis.set_xlabel(f"plausibility: {label(x_metric)}")
    axis.set_ylabel(f"faithfulness: {label(y_metric)}")
    axis.set_title(f"{summary['name']}: plausibility vs faithfulness (95% CI)")
    better_x = "→" if higher[x_metric] else "←"
    better_y = "↑" if higher[y_metric] else "↓"
    axis.text(
        0.99,
        0.01,
        f"better: {better_x} {better_y}",
        transform=axis.transAxes,
        ha="right",
        va="bottom",
        fontsize=9,
        color="dimgrey",
    )
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def curves(summary: dict[str, Any], collected, path: Path) -> Path:
    """Mean deletion and insertion curves per row, on both canvases, with the interquartile
    range over images shaded."""
    panels = [f"{m}_{c}" for c in ("black", "blur") for m in ("deletion", "insertion")]
    figure, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    rows = [r for r in summary["rows"] if r["kind"] != "absent"]
    for axis, panel in zip(axes, panels):
        for i, row in enumerate(rows):
            parts = collected.curves[row["name"]][panel]
            if not parts:
                continue
            data = np.concatenate(parts)
            x = np.linspace(0, 1, data.shape[1])
            colour = COLOURS(i % 10)
            axis.plot(x, np.nanmean(data, 0), color=colour, label=row["name"])
            low, high = np.nanpercentile(data, [25, 75], axis=0)
            axis.fill_between(x, low, high, color=colour, alpha=0.12)
        direction = "lower" if panel.startswith("deletion") else "higher"
        axis.set_title(f"{panel} (AUC {direction} is better)")
        axis.set_xlabel("fraction perturbed")
        axis.set_ylabel("score")
        axis.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def overlay_grid(summary: dict[str, Any], collected, items: dict[str, Any], path: Path) -> Path:
    """Rows are images (a seeded sample, the learned head's best and worst); columns are the
    image with its fixations (and boxes for detectors), the human map and each row's map."""
    entries = items["items"]
    methods = [r["name"] for r in summary["rows"] if r["kind"] not in ("absent", "human")]
    columns = 2 + len(methods)
    figure, axes = plt.subplots(
        max(1, len(entries)), columns, figsize=(1.9 * columns, 2.0 * max(1, len(entries)))
    )
    axes = np.atleast_2d(axes)
    for r, entry in enumerate(entries):
        image = entry["image"]
        h, w = image.shape[:2]
        ax = axes[r, 0]
        ax.imshow(image)
        if len(entry["fixations"]):
            ax.scatter(entry["fixations"][:, 0], entry["fixations"][:, 1], s=4, c="yellow")
        _boxes(ax, entry["boxes"])
        ax.set_ylabel(f"{entry['id']}\n{entry['label']}", fontsize=7)
        ax = axes[r, 1]
        ax.imshow(image)
        ax.imshow(entry["human"], cmap="jet", alpha=0.5, extent=(0, w, h, 0))
        for c, name in enumerate(methods, start=2):
            ax = axes[r, c]
            ax.imshow(image)
            thumb = collected.thumbs[name].get(entry["id"])
            if thumb is not None:
                ax.imshow(thumb.astype(np.float32), cmap="jet", alpha=0.5, extent=(0, w, h, 0))
            _boxes(ax, entry["boxes"])
    titles = ["image + fixations", "human map", *methods]
    for c, title in enumerate(titles):
        axes[0, c].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=70)
    plt.close(figure)
    return path


def _boxes(ax, boxes) -> None:
    if boxes is None:
        return
    for x1, y1, x2, y2 in np.asarray(boxes).reshape(-1, 4):
        ax.add_patch(
            Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", linewidth=1)
        )


def randomisation(summary: dict[str, Any], path: Path) -> Path | None:
    """Spearman and SSIM of original vs randomised maps per cascading step, per row."""
    rand = summary.get("randomisation")
    if not rand:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    steps = np.arange(1, len(rand["steps"]) + 1)
    for i, (name, values) in enumerate(rand["spearman"].items()):
        style = "--" if name in rand["flagged"] else "-"
        label = name + (" (flagged)" if name in rand["flagged"] else "")
        axes[0].plot(steps, values, style, marker="o", color=COLOURS(i % 10), label=label)
        axes[1].plot(steps, rand["ssim"][name], style, marker="o", color=COLOURS(i % 10))
    axes[0].axhline(rand["threshold"], color="red", linewidth=0.8, linestyle=":")
    last = [s[-1] for s in rand["steps"]]
    for axis, title in zip(axes, ("Spearman rank correlation", "SSIM")):
        axis.set_title(f"{title}: original vs randomised maps")
        axis.set_xlabel("cascading step (blocks re-initialised from the top)")
        axis.set_xticks(steps, [f"{k}\n…{b}" for k, b in zip(steps, last)], fontsize=7)
        axis.set_ylim(-0.2, 1.05)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def all_figures(folder: Path, summary: dict[str, Any], collected, items) -> list[Path]:
    """Every picture of the evaluation into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = [
        scatter(summary, folder / "scatter.png"),
        curves(summary, collected, folder / "curves.png"),
        overlay_grid(summary, collected, items, folder / "overlays.png"),
    ]
    rand = randomisation(summary, folder / "randomisation.png")
    return figures + ([rand] if rand else [])


def learned_figures(folder: Path, heads) -> list[Path]:
    """φ_a, φ_g and both kernels of each learned head's combiners (one picture per head)."""
    from hagxai.training.plots import learned_functions

    out = []
    for head in heads:
        name = head.name.replace(":", "_")
        out.append(learned_functions(head.combiners, folder / f"{name}_functions.png"))
    return out
