"""Evidence extraction: forward hooks capture activations, batched autograd gives the gradients.

One forward pass per batch; then the gradients of all ``T`` target scores with respect to every
hooked layer come from as few ``torch.autograd.grad`` calls as memory allows, never one
``retain_graph`` backward per target. Images of a batch are independent in an eval-mode model, so
targets that sit in *different* images share one gradient row: the ``r``-th target of every image
forms round ``r`` (its one-hot ``grad_outputs`` row has a 1 for each of them), and the rounds go
through one ``is_grads_batched`` call. A round's gradient at image ``b`` is exactly the gradient
of image ``b``'s own target.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hagxai.evidence.hooks import capture_layers
from hagxai.evidence.types import Evidence
from hagxai.models.base import ModelAdapter, Prepared
from hagxai.models.targets import Targets, TargetSpec


@dataclass
class Extraction:
    """Evidence of a batch with what it was computed from.

    Attributes:
        evidence: the :class:`~hagxai.evidence.types.Evidence` (on the adapter's device).
        targets: the explained targets (``evidence.image_index == targets.image_index``).
        prepared: the model input and the frames back to the original images.
        output: the model's raw forward output, detached.
    """

    evidence: Evidence
    targets: Targets
    prepared: Prepared
    output: Any

    @property
    def images_without_targets(self) -> list[int]:
        """Indices of images with no target (their maps are all zero)."""
        has = set(self.targets.image_index.tolist())
        return [i for i in range(self.evidence.num_images) if i not in has]


def target_rounds(image_index: Tensor) -> Tensor:
    """``T`` long: each target's rank among the targets of its image (0 for the first)."""
    ranks = torch.zeros_like(image_index)
    seen: dict[int, int] = {}
    for t, image in enumerate(image_index.tolist()):
        ranks[t] = seen.get(image, 0)
        seen[image] = int(ranks[t]) + 1
    return ranks


def batched_gradients(
    scores: Tensor,
    acts: Sequence[Tensor],
    image_index: Tensor,
    max_targets_per_call: int = 256,
    retain_graph: bool = False,
) -> list[Tensor]:
    """Gradients of each target's score with respect to captured activations, batched.

    Args:
        scores: ``T`` differentiable scores.
        acts: per layer ``B×C×h×w`` captured tensors on the path to the scores.
        image_index: ``T`` long, the image of each target.
        max_targets_per_call: memory budget: one call computes ``rounds × B`` gradient rows per
            layer, with ``rounds = max(1, max_targets_per_call // B)``.
        retain_graph: keep the graph after the last call.

    Returns:
        per layer, ``T×C×h×w`` gradients; zeros where a score has no path to the layer.
    """
    num_targets = int(scores.numel())
    out = [a.new_zeros((num_targets, *a.shape[1:])) for a in acts]
    if num_targets == 0:
        return out
    num_images = int(acts[0].shape[0])
    rounds = target_rounds(image_index.cpu()).to(scores.device)
    image_index = image_index.to(scores.device)
    num_rounds = int(rounds.max()) + 1
    per_call = max(1, max_targets_per_call // num_images)
    for start in range(0, num_rounds, per_call):
        stop = min(start + per_call, num_rounds)
        chosen = torch.nonzero((rounds >= start) & (rounds < stop)).flatten()
        rows = rounds[chosen] - start
        grad_outputs = scores.new_zeros(stop - start, num_targets)
        grad_outputs[rows, chosen] = 1.0
        keep = retain_graph or stop < num_rounds
        batched = stop - start > 1
        grads = torch.autograd.grad(
            scores,
            list(acts),
            grad_outputs=grad_outputs if batched else grad_outputs[0],
            retain_graph=keep,
            allow_unused=True,
            is_grads_batched=batched,
        )
        for layer, grad in enumerate(grads):
            if grad is None:
                continue
            if not batched:
                grad = grad.unsqueeze(0)
            out[layer][chosen] = grad[rows, image_index[chosen]]
    return out


def extract_evidence(
    adapter: ModelAdapter,
    images: Sequence[Tensor] | Tensor | Prepared,
    spec: TargetSpec | None = None,
    layers: Sequence[str] | None = None,
    max_targets_per_call: int = 256,
) -> Extraction:
    """Activations and per-target gradients of the hooked layers for a batch of images.

    Args:
        adapter: the model's adapter.
        images: original images (``B×3×H×W`` or a list of ``3×H_i×W_i``, float in [0, 1] or
            uint8), or an already :class:`~hagxai.models.base.Prepared` batch.
        spec: which targets to explain (default: the adapter's default choice).
        layers: layer names or aliases (``None``: the adapter's defaults).
        max_targets_per_call: memory budget of one gradient call (see :func:`batched_gradients`).

    Returns:
        the :class:`Extraction`; ``evidence.grads[layer]`` is ``T×C×h×w``. Images without a
        target are counted in one warning (their maps will be all zero), and so are
        ground-truth boxes no detection matched.
    """
    prepared = images if isinstance(images, Prepared) else adapter.preprocess(images)
    names = adapter.resolve_layers(layers)
    spec = spec or TargetSpec()
    with torch.enable_grad(), capture_layers(adapter, names, make_leaf=True) as captured:
        output = adapter.forward(prepared.x)
    targets = adapter.select_targets(output, prepared, spec)
    acts = [captured[name] for name in names]
    with torch.enable_grad():
        scores = adapter.score(output, targets)
        grads = batched_gradients(scores, acts, targets.image_index, max_targets_per_call)
    evidence = Evidence(
        layers=list(names),
        acts={name: act.detach() for name, act in zip(names, acts)},
        grads=dict(zip(names, grads)),
        image_index=targets.image_index.to(acts[0].device),
        input_size=prepared.input_size,
    )
    result = Extraction(evidence, targets, prepared, _detach(output))
    _warn_about(result)
    return result


def _warn_about(result: Extraction) -> None:
    empty = result.images_without_targets
    if empty:
        warnings.warn(
            f"{len(empty)} of {result.evidence.num_images} images have no target to explain "
            f"(images {empty[:10]}); their maps are all zero",
            stacklevel=3,
        )
    unmatched = sum(int(u.numel()) for u in result.targets.unmatched_gt)
    if unmatched:
        warnings.warn(
            f"{unmatched} ground-truth boxes matched no detection (see Targets.unmatched_gt)",
            stacklevel=3,
        )


def _detach(output: Any) -> Any:
    if isinstance(output, Tensor):
        return output.detach()
    if isinstance(output, (list, tuple)):
        return type(output)(_detach(o) for o in output)
    if isinstance(output, dict):
        return {k: _detach(v) for k, v in output.items()}
    return output
