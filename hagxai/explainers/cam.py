"""The Grad-CAM family as pure, batched, differentiable functions of :class:`Evidence`.

Every method turns one layer's activations ``A`` and one target's gradients ``G`` (both
``C×h×w``) into a map at the layer's resolution. With ``A`` the activations of the target's image:

=============== ==========================================================================
gradcam         ReLU(Σ_c w_c A_c),  w_c = mean_xy G_c
gradcam++       ReLU(Σ_c w_c A_c),  w_c = Σ_xy ReLU(G_c) · α_c,  α = G² / (2G² + Σ_xy A_c · G³)
xgradcam        ReLU(Σ_c w_c A_c),  w_c = Σ_xy (G_c A_c) / Σ_xy A_c
hirescam        ReLU(Σ_c G_c A_c)                (element-wise)
fullgradcam     ReLU(Σ_c G_c A_c)                (the HAG-XAI paper's name for the same map)
layercam        ReLU(Σ_c ReLU(G_c) A_c)
fullgradcam++   ReLU(Σ_c ReLU(G_c) A_c)          (the HAG-XAI paper's name for the same map)
eigencam        ReLU(A projected on its first principal component)   (no gradients)
=============== ==========================================================================

Divisions have no absolute epsilon: a zero denominator gives a zero weight, so the maps of a YOLO
score (gradients ~1e-7) are not swamped. pytorch-grad-cam adds ``1e-6`` (Grad-CAM++) and ``1e-7``
(XGrad-CAM); ``eps`` reproduces that for comparisons.

Maps of several layers and targets are combined by the multi-object rule (DESIGN.md, "Core API"):
see :func:`combine_targets`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hagxai.evidence import Evidence

LayerMethod = Callable[[Tensor, Tensor], Tensor]


def _safe_divide(num: Tensor, den: Tensor, eps: float) -> Tensor:
    """``num / (den + eps)``; with ``eps == 0`` a zero denominator gives 0, not inf."""
    if eps:
        return num / (den + eps)
    ok = den != 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def gradcam(acts: Tensor, grads: Tensor) -> Tensor:
    """Grad-CAM. ``acts``, ``grads``: ``T×C×h×w`` -> ``T×h×w`` (before the ReLU)."""
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1)


def gradcam_plusplus(acts: Tensor, grads: Tensor, eps: float = 0.0) -> Tensor:
    """Grad-CAM++ (the exp-score closed form of Chattopadhyay et al., as pytorch-grad-cam).

    ``acts``, ``grads``: ``T×C×h×w`` -> ``T×h×w`` (before the ReLU).
    """
    g2 = grads.pow(2)
    g3 = g2 * grads
    sum_acts = acts.sum(dim=(2, 3), keepdim=True)
    alpha = _safe_divide(g2, 2 * g2 + sum_acts * g3, eps)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (grads.clamp_min(0) * alpha).sum(dim=(2, 3), keepdim=True)
    return (weights * acts).sum(dim=1)


def xgradcam(acts: Tensor, grads: Tensor, eps: float = 0.0) -> Tensor:
    """XGrad-CAM. ``acts``, ``grads``: ``T×C×h×w`` -> ``T×h×w`` (before the ReLU)."""
    num = (grads * acts).sum(dim=(2, 3), keepdim=True)
    weights = _safe_divide(num, acts.sum(dim=(2, 3), keepdim=True), eps)
    return (weights * acts).sum(dim=1)


def hirescam(acts: Tensor, grads: Tensor) -> Tensor:
    """HiResCAM = FullGrad-CAM: ``Σ_c G·A`` (before the ReLU), ``T×h×w``."""
    return (grads * acts).sum(dim=1)


def layercam(acts: Tensor, grads: Tensor) -> Tensor:
    """LayerCAM = FullGrad-CAM++: ``Σ_c ReLU(G)·A`` (before the ReLU), ``T×h×w``."""
    return (grads.clamp_min(0) * acts).sum(dim=1)


def eigen_projection(acts: Tensor) -> Tensor:
    """Projection of each image's activations on their first principal component.

    The activations (``B×C×h×w``) are read as ``h·w`` samples of ``C`` features, centred per
    channel; the sign of a principal component is arbitrary, so it is chosen to make the
    projection agree with the mean centred activation (the map points at stronger activity).

    Returns:
        ``B×h×w`` (before the ReLU).
    """
    batch, channels, height, width = acts.shape
    samples = acts.reshape(batch, channels, height * width).transpose(1, 2).double()
    samples = samples - samples.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(samples, full_matrices=False)
    projection = samples @ vh[:, 0, :].unsqueeze(-1)
    sign = torch.sign((projection.squeeze(-1) * samples.mean(dim=2)).sum(dim=1))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    projection = projection.squeeze(-1) * sign.unsqueeze(1)
    return projection.reshape(batch, height, width).to(acts.dtype)


_GRADIENT_METHODS: dict[str, LayerMethod] = {
    "gradcam": gradcam,
    "gradcam++": gradcam_plusplus,
    "xgradcam": xgradcam,
    "hirescam": hirescam,
    "fullgradcam": hirescam,
    "layercam": layercam,
    "fullgradcam++": layercam,
}
METHODS = (*_GRADIENT_METHODS, "eigencam")


def layer_maps(evidence: Evidence, method: str, eps: float = 0.0) -> dict[str, Tensor]:
    """Each target's map at each layer's own resolution, after the ReLU.

    Args:
        evidence: the evidence (``T`` targets).
        method: one of :data:`METHODS`.
        eps: the denominators' epsilon of Grad-CAM++ / XGrad-CAM (0: none; see module docstring).

    Returns:
        layer -> ``T×h×w``.
    """
    if method not in METHODS:
        raise KeyError(method)
    out = {}
    index = evidence.image_index
    for layer in evidence.layers:
        acts = evidence.acts[layer]
        if method == "eigencam":
            raw = eigen_projection(acts)[index]
        else:
            fn = _GRADIENT_METHODS[method]
            extra = {"eps": eps} if method in ("gradcam++", "xgradcam") else {}
            raw = fn(acts[index], evidence.grads[layer], **extra)
        out[layer] = raw.clamp_min(0)
    return out


def resize_maps(maps: Tensor, out_size: tuple[int, int]) -> Tensor:
    """Bilinear resize (half-pixel centres, no antialias) of ``N×h×w`` maps to ``N×H×W``."""
    if tuple(maps.shape[-2:]) == tuple(out_size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=out_size, mode="bilinear", align_corners=False)[
        :, 0
    ]


def target_maps(
    evidence: Evidence, method: str, out_size: tuple[int, int], eps: float = 0.0
) -> Tensor:
    """Per target: the method's map at each layer, resized to ``out_size``, summed over layers.

    Returns:
        ``T×H×W``, not normalised.
    """
    maps = layer_maps(evidence, method, eps)
    total = None
    for layer in evidence.layers:
        resized = resize_maps(maps[layer], out_size)
        total = resized if total is None else total + resized
    return total


def minmax(maps: Tensor) -> Tensor:
    """Min-max normalise each ``H×W`` map of ``N×H×W`` to [0, 1]; a constant map becomes zeros.

    No epsilon is added, so tiny but varying maps keep their full range.
    """
    flat = maps.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - low
    ok = span > 0
    safe = torch.where(ok, span, torch.ones_like(span))
    return torch.where(ok, (maps - low) / safe, torch.zeros_like(maps))


def combine_targets(maps: Tensor, image_index: Tensor, num_images: int) -> Tensor:
    """The multi-object rule: per image, min-max each target's map, average them, min-max.

    Args:
        maps: ``T×H×W`` per-target maps.
        image_index: ``T`` long.
        num_images: ``B``.

    Returns:
        ``B×H×W`` in [0, 1]; an image without targets gets zeros.
    """
    out = maps.new_zeros(num_images, *maps.shape[1:])
    if maps.shape[0] == 0:
        return out
    out = out.index_add(0, image_index, minmax(maps))
    counts = torch.bincount(image_index, minlength=num_images).to(maps.dtype).clamp_min(1)
    return minmax(out / counts.view(-1, 1, 1))


def cam(evidence: Evidence, out_size: tuple[int, int], method: str, eps: float = 0.0) -> Tensor:
    """A Grad-CAM-family explanation: ``B×H×W`` in [0, 1] (see the module docstring).

    Args:
        evidence: the evidence of ``B`` images and ``T`` targets.
        out_size: ``(H, W)`` of the maps.
        method: one of :data:`METHODS`.
        eps: see :func:`layer_maps`.
    """
    maps = target_maps(evidence, method, tuple(out_size), eps)
    return combine_targets(maps, evidence.image_index, evidence.num_images)
