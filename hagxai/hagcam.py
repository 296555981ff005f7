"""``HAGCAM``: a learned HAG-XAI head behind pytorch-grad-cam's calling convention.

A pytorch-grad-cam user replaces ``GradCAM`` by ``HAGCAM`` in one line::

    cam = HAGCAM(model=model, target_layers=[model.layer4], combiner="runs/x/best")
    grayscale = cam(input_tensor=x, targets=[ClassifierOutputTarget(281)])   # B×H×W, [0, 1]

As in pytorch-grad-cam, ``input_tensor`` is what the model takes (already normalised), a target
is a callable on one image's model output (``ClassifierOutputTarget(c)``, a box score target, any
function returning a scalar), ``targets=None`` explains each image's highest-scoring category, and
the result is a ``B×H×W`` float32 NumPy array at the input's size, min-max normalised per image.
Beyond pytorch-grad-cam, an entry of ``targets`` may be a list of callables: several targets in
one image, combined by the combiner's multi-object rule (or one map each with ``per_target``).

All targets of a batch take their gradients from one forward pass and batched
``torch.autograd.grad`` calls (:func:`hagxai.evidence.batched_gradients`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hagxai.combiner import HAGCombiner
from hagxai.errors import UserError
from hagxai.evidence import Evidence
from hagxai.evidence.extraction import batched_gradients
from hagxai.explainers.cam import minmax

Target = Callable[[Any], Tensor]


class ClassifierOutputTarget:
    """The score of one class in one image's output (pytorch-grad-cam's target of that name).

    Args:
        category: the class index.
    """

    def __init__(self, category: int) -> None:
        self.category = int(category)

    def __call__(self, model_output: Tensor) -> Tensor:
        """``model_output[category]`` of a ``K`` vector (or ``[:, category]`` of ``N×K``)."""
        if model_output.dim() == 1:
            return model_output[self.category]
        return model_output[:, self.category]


class HAGCAM:
    """A HAG-XAI combiner as a pytorch-grad-cam style CAM object.

    Args:
        model: the model; called as ``model(input_tensor)``. Put in eval mode (as pytorch-grad-cam
            does); its parameters are left as they are (no parameter gradients are taken).
        target_layers: modules of ``model`` whose outputs are hooked (``[model.layer4]``).
        combiner: a saved combiner folder (its card must record ``model``'s weights digest, or
            none, and the names of ``target_layers``, or none), a
            :class:`~hagxai.combiner.HAGCombiner`, or ``None`` for the untrained combiner
            (FullGrad-CAM++ with the reference's Gaussian smoothing).
        reshape_transform: as pytorch-grad-cam's: turns a layer's output (e.g. transformer tokens
            ``B×N×C``) into ``B×C×h×w``; applied to activations and gradients alike.

    Raises:
        UserError: a layer that is not a submodule of ``model``.
        CombinerMismatchError: a combiner folder made for other weights or layers.
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: Sequence[nn.Module],
        combiner: str | Path | HAGCombiner | None = None,
        reshape_transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        from hagxai.api import layer_names

        self.model = model.eval()
        self.target_layers = list(target_layers)
        self.layers = layer_names(model, self.target_layers) or []
        if not self.layers:
            raise UserError("HAGCAM needs at least one target layer")
        self.reshape_transform = reshape_transform
        self.input_size: tuple[int, int] | None = None
        device = _device(model)
        if combiner is None:
            combiner = HAGCombiner()
        elif isinstance(combiner, (str, Path)):
            from hagxai.export import load_combiner, read_card
            from hagxai.models import model_digest

            recorded = read_card(combiner).get("input_size")
            self.input_size = tuple(recorded) if recorded else None
            combiner = load_combiner(
                combiner, model_digest=model_digest(model), layers=self.layers, device=device
            )
        self.combiner = combiner.to(device).eval()
        self.outputs: Any = None
        self._captured: dict[str, Tensor] = {}

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], Tensor]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Tensor:
            if not isinstance(output, Tensor):
                raise UserError(f"layer {name!r} does not output one tensor; pick another layer")
            # A leaf when nothing upstream needs grad (a frozen model); the model goes on with a
            # copy, so that an in-place op downstream changes neither the captured values nor
            # what their gradient means.
            captured = output if output.requires_grad else output.detach().requires_grad_()
            self._captured[name] = captured
            return captured.clone()

        return hook

    def evidence(
        self, input_tensor: Tensor, targets: Sequence[Target | Sequence[Target]] | None = None
    ) -> Evidence:
        """The :class:`~hagxai.evidence.Evidence` of ``input_tensor`` for ``targets``.

        Args:
            input_tensor: ``B×C×H×W`` model input.
            targets: per image a callable on that image's output (or a list of them); ``None``:
                each image's highest-scoring category (``ClassifierOutputTarget(argmax)``).

        Returns:
            The evidence: ``acts[layer]`` ``B×C×h×w``, ``grads[layer]`` ``T×C×h×w``.
        """
        modules = dict(self.model.named_modules())
        self._captured = {}
        handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]
        try:
            with torch.enable_grad():
                outputs = self.model(input_tensor)
        finally:
            for handle in handles:
                handle.remove()
        self.outputs = outputs
        per_image = _per_image_targets(outputs, targets, int(input_tensor.shape[0]))
        acts = [self._captured[name] for name in self.layers]
        image_index = torch.tensor(
            [i for i, group in enumerate(per_image) for _ in group],
            dtype=torch.long,
            device=acts[0].device,
        )
        with torch.enable_grad():
            scores = [
                torch.as_tensor(target(output)).sum()
                for group, output in zip(per_image, outputs)
                for target in group
            ]
            if scores:
                stacked = torch.stack([s.to(acts[0].device) for s in scores])
                grads = batched_gradients(stacked, acts, image_index)
            else:
                grads = [a.new_zeros((0, *a.shape[1:])) for a in acts]
        grid = self.reshape_transform or (lambda t: t)
        size = (int(input_tensor.shape[-2]), int(input_tensor.shape[-1]))
        return Evidence(
            layers=list(self.layers),
            acts={n: grid(a.detach()) for n, a in zip(self.layers, acts)},
            grads={n: grid(g) for n, g in zip(self.layers, grads)},
            image_index=image_index,
            input_size=size,
        )

    def __call__(
        self,
        input_tensor: Tensor,
        targets: Sequence[Target | Sequence[Target]] | None = None,
        per_target: bool = False,
    ) -> np.ndarray:
        """Saliency maps at the input's size, like pytorch-grad-cam's ``cam(...)``.

        Args:
            input_tensor: ``B×C×H×W`` model input.
            targets: see :meth:`evidence`.
            per_target: one map per target (``T×H×W``, in image order) instead of per image.

        Returns:
            ``B×H×W`` (or ``T×H×W``) float32 in [0, 1], each map min-max normalised (an image
            without targets, or a constant map, is all zeros).

        Raises:
            UserError: an input of another size than a loaded combiner was trained at.
        """
        size = (int(input_tensor.shape[-2]), int(input_tensor.shape[-1]))
        if self.input_size is not None and size != self.input_size:
            raise UserError(
                f"the combiner was trained at input size {self.input_size[0]}×"
                f"{self.input_size[1]}, the input is {size[0]}×{size[1]}"
            )
        evidence = self.evidence(input_tensor, targets)
        if per_target:
            from hagxai.api import per_target_evidence

            evidence = per_target_evidence(evidence)
        with torch.no_grad():
            maps = minmax(self.combiner(evidence, size))
        return maps.cpu().numpy().astype(np.float32)

    def __enter__(self) -> HAGCAM:
        """``with HAGCAM(...) as cam:`` as with pytorch-grad-cam (hooks live only inside a call,
        so there is nothing to release on exit)."""
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _per_image_targets(
    outputs: Any, targets: Sequence[Target | Sequence[Target]] | None, num_images: int
) -> list[list[Target]]:
    """Per image, the list of its target callables (pytorch-grad-cam's default when ``None``)."""
    if targets is None:
        if not isinstance(outputs, Tensor) or outputs.dim() != 2:
            raise UserError("targets=None needs B×K class scores; pass targets for this model")
        return [[ClassifierOutputTarget(int(c))] for c in outputs.argmax(dim=1).tolist()]
    if len(targets) != num_images:
        raise UserError(f"{len(targets)} targets for {num_images} images (one entry per image)")
    return [list(t) if isinstance(t, (list, tuple)) else [t] for t in targets]
