"""Does a map depend on the model? The model-randomisation sanity check.

Adebayo et al., "Sanity checks for saliency maps" (NeurIPS 2018), cascading version (quantus'
model parameter randomisation test): the model's blocks are re-initialised from the top (output)
down, one more group of blocks per step, and every method's maps are recomputed on the
randomised model — for gradient methods and the learned head from the randomised model's
evidence of the *same* targets (the score is read at the same class, or the same anchor of a
detection). Per method and step, the maps are compared with the original ones by the Spearman
rank correlation over pixels and by SSIM; a method whose maps barely change after the last step
explains nothing of the model and is flagged.

The blocks are the model's parameterised children, descending while a module has only one (a
YOLO ``DetectionModel`` is one ``Sequential`` of 23 blocks). Re-initialising calls each
sub-module's ``reset_parameters`` under a seed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hagxai.evidence import Evidence
from hagxai.evidence.extraction import batched_gradients
from hagxai.evidence.hooks import capture_layers
from hagxai.models import ModelAdapter, Targets


def model_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's parameterised blocks in forward (definition) order, with their names."""
    node, prefix = model, ""
    while True:
        children = [
            (name, module)
            for name, module in node.named_children()
            if any(p.numel() for p in module.parameters())
        ]
        if len(children) == 1:
            prefix, node = f"{prefix}{children[0][0]}.", children[0][1]
            continue
        return [(prefix + name, module) for name, module in children]


def cascade(blocks: list[tuple[str, nn.Module]], steps: int) -> list[list[tuple[str, nn.Module]]]:
    """The blocks from the top down, split into at most ``steps`` consecutive groups."""
    top_down = blocks[::-1]
    count = min(steps, len(top_down))
    return [[top_down[i] for i in group] for group in np.array_split(range(len(top_down)), count)]


@torch.no_grad()
def reinitialise(block: nn.Module, seed: int) -> None:
    """Re-initialise every sub-module of ``block`` that can (``reset_parameters``), seeded."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for module in block.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    torch.random.set_rng_state(state)


def evidence_of_targets(
    adapter: ModelAdapter, x: Tensor, targets: Targets, layers: list[str]
) -> Evidence:
    """The evidence of fixed ``targets`` on ``adapter``'s model (one forward, batched
    gradients): the same targets as the original model's, whatever the model now predicts.

    Args:
        adapter: the (possibly randomised) model's adapter.
        x: ``B×3×H×W`` model input in [0, 1].
        targets: ``T`` targets chosen on the original model.
        layers: resolved layer names.
    """
    with torch.enable_grad(), capture_layers(adapter, layers, make_leaf=True) as captured:
        output = adapter.forward(x)
    acts = [captured[name] for name in layers]
    with torch.enable_grad():
        scores = adapter.score(output, targets)
        grads = batched_gradients(scores, acts, targets.image_index)
    return Evidence(
        layers=list(layers),
        acts={name: act.detach() for name, act in zip(layers, acts)},
        grads={name: g.detach() for name, g in zip(layers, grads)},
        image_index=targets.image_index.to(acts[0].device),
        input_size=(int(x.shape[-2]), int(x.shape[-1])),
    )


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Per pair of maps ``B×H×W``, the Spearman rank correlation over pixels (ties averaged).

    A constant map has no ranking: the value is 1 when both maps are equal, else 0 (the map
    changed completely, e.g. a CAM that became all zero).
    """
    from scipy.stats import rankdata

    out = []
    for x, y in zip(a.flatten(1).double().cpu().numpy(), b.flatten(1).double().cpu().numpy()):
        if x.min() == x.max() or y.min() == y.max():
            out.append(1.0 if np.array_equal(x, y) else 0.0)
            continue
        rx, ry = rankdata(x), rankdata(y)
        out.append(float(np.corrcoef(rx, ry)[0, 1]))
    return torch.tensor(out)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per pair of maps ``B×H×W`` in [0, 1], the mean SSIM (Wang et al. 2004; Gaussian window
    ``window``×``window`` of std ``sigma``, data range 1, no padding)."""
    x, y = a.float().cpu()[:, None], b.float().cpu()[:, None]
    size = min(window, x.shape[-1], x.shape[-2])
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :])[None, None]

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(z, kernel)

    c1, c2 = 0.01**2, 0.03**2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return index.flatten(1).mean(1)


@dataclass
class RandomisationResult:
    """Per method and cascading step, the mean similarity of randomised to original maps.

    Attributes:
        steps: per step, the names of the blocks re-initialised so far (cumulative).
        spearman: method -> per step, the mean Spearman rank correlation over images.
        ssim: method -> per step, the mean SSIM over images.
        flagged: methods whose maps barely change (mean Spearman after the last step at least
            the threshold).
        threshold: that threshold.
        images: how many images the check ran on.
    """

    steps: list[list[str]]
    spearman: dict[str, list[float]]
    ssim: dict[str, list[float]]
    flagged: list[str] = field(default_factory=list)
    threshold: float = 0.5
    images: int = 0


MapsOf = Callable[[ModelAdapter, Evidence, Tensor, Targets], dict[str, Tensor]]
"""``(adapter, evidence, x, targets) -> {method: B×H×W maps at the input size}``."""


def randomisation_check(
    adapter: ModelAdapter,
    x: Tensor,
    targets: Targets,
    layers: list[str],
    maps_of: MapsOf,
    *,
    steps: int = 4,
    threshold: float = 0.5,
    seed: int = 0,
    on_step: Callable[[], None] | None = None,
) -> RandomisationResult:
    """Run the cascading model-randomisation check on a batch of images.

    Args:
        adapter: the original model's adapter (left unchanged: a deep copy is randomised).
        x: ``B×3×H×W`` model input in [0, 1].
        targets: the targets the original model explains.
        layers: the resolved layers the evidence hooks.
        maps_of: every method's maps from an adapter and its evidence (see :data:`MapsOf`).
        steps: at most this many cascading groups of blocks.
        threshold: mean Spearman after the last step at or above which a method is flagged.
        seed: the re-initialisation seed.
        on_step: called after each step (progress).

    Returns:
        :class:`RandomisationResult`.
    """
    original = maps_of(adapter, evidence_of_targets(adapter, x, targets, layers), x, targets)
    randomised = copy.deepcopy(adapter)
    groups = cascade(model_blocks(randomised.model), steps)
    done: list[str] = []
    result = RandomisationResult([], {m: [] for m in original}, {m: [] for m in original})
    for step, group in enumerate(groups):
        for offset, (name, block) in enumerate(group):
            reinitialise(block, seed * 1000 + step * 100 + offset)
            done.append(name)
        randomised.freeze()
        evidence = evidence_of_targets(randomised, x, targets, layers)
        maps = maps_of(randomised, evidence, x, targets)
        result.steps.append(list(done))
        for method, before in original.items():
            after = maps[method]
            result.spearman[method].append(_mean(spearman(before, after)))
            result.ssim[method].append(_mean(ssim(before, after)))
        if on_step is not None:
            on_step()
    result.flagged = [
        m for m, values in result.spearman.items() if values and values[-1] >= threshold
    ]
    result.threshold = threshold
    result.images = int(x.shape[0])
    return result


def _mean(values: Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else math.nan
