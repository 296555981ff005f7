"""The Evidence type: what flows between model adapters, explainers, the combiner and metrics."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Evidence:
    """Activations and per-target gradients of hooked layers (DESIGN.md, "Core API").

    Attributes:
        layers: hooked layer names, in order.
        acts: layer -> ``B×C×h×w`` activations, one per image.
        grads: layer -> ``T×C×h×w`` gradients of each target's score. A layer where a target's
            score has no path holds zeros for that target.
        image_index: ``T`` (long): which image each target belongs to.
        input_size: ``(H, W)`` of the model input the layers were computed on.
    """

    layers: list[str]
    acts: dict[str, Tensor]
    grads: dict[str, Tensor]
    image_index: Tensor
    input_size: tuple[int, int]

    @property
    def num_images(self) -> int:
        """Number of images ``B``."""
        return int(self.acts[self.layers[0]].shape[0])

    @property
    def num_targets(self) -> int:
        """Number of explained targets ``T`` over all images."""
        return int(self.image_index.numel())

    def validate(self) -> Evidence:
        """Check shapes and values; raise ``ValueError`` naming the layer and the problem."""
        if not self.layers:
            raise ValueError("Evidence has no layers")
        missing = [name for name in self.layers if name not in self.acts or name not in self.grads]
        if missing:
            raise ValueError(f"Evidence lacks activations or gradients for layers {missing}")
        if self.image_index.dtype != torch.long or self.image_index.dim() != 1:
            raise ValueError("Evidence.image_index must be a 1-D long tensor")
        num_images = self.num_images
        if self.num_targets and int(self.image_index.max()) >= num_images:
            raise ValueError(
                f"Evidence.image_index points at image {int(self.image_index.max())} "
                f"but only {num_images} images have activations"
            )
        for name in self.layers:
            act, grad = self.acts[name], self.grads[name]
            if act.dim() != 4 or grad.dim() != 4:
                raise ValueError(f"layer {name!r}: activations and gradients must be 4-D")
            if act.shape[0] != num_images:
                raise ValueError(
                    f"layer {name!r}: {act.shape[0]} activation rows, {num_images} images"
                )
            if grad.shape[0] != self.num_targets or grad.shape[1:] != act.shape[1:]:
                raise ValueError(
                    f"layer {name!r}: gradients {tuple(grad.shape)} do not fit activations "
                    f"{tuple(act.shape)} with {self.num_targets} targets"
                )
            for kind, tensor in (("activations", act), ("gradients", grad)):
                if not torch.isfinite(tensor).all():
                    raise ValueError(f"layer {name!r}: {kind} hold NaN or inf")
        return self

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Evidence:
        """Move every tensor to ``device`` (and floating tensors to ``dtype`` when given)."""
        return Evidence(
            layers=list(self.layers),
            acts={k: v.to(device=device, dtype=dtype) for k, v in self.acts.items()},
            grads={k: v.to(device=device, dtype=dtype) for k, v in self.grads.items()},
            image_index=self.image_index.to(device),
            input_size=self.input_size,
        )
