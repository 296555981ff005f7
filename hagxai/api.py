"""One call for any model: ``hagxai.explain(model, images, ...)`` -> maps in the images' frames.

The model is a name (any torchvision or timm classifier, a torchvision detector, an ultralytics
yaml or ``.pt``, ``demo-classifier``), a :class:`~hagxai.models.ModelAdapter` (a model of any
family, e.g. your own detector: README, "Your own detector"), or a plain ``nn.Module`` classifier
(``B×3×H×W -> B×K`` logits), which is wrapped in a
:class:`~hagxai.models.classifier.ClassifierAdapter`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hagxai.combiner import HAGCombiner
from hagxai.config import ModelConfig
from hagxai.errors import UserError, cut_list
from hagxai.evidence import Evidence, Extraction, extract_evidence
from hagxai.explainers import PERTURBATION, available
from hagxai.explainers.cam import combine_targets, minmax, target_maps
from hagxai.models.base import ModelAdapter
from hagxai.models.targets import Targets, TargetSpec

ImageLike = Tensor | np.ndarray | str | Path | Any
"""One image: a ``3×H×W`` tensor (float in [0, 1] or uint8), an ``H×W×3`` uint8 array, a PIL
image or an image file path."""

TargetsLike = TargetSpec | int | Sequence[int | Sequence[int]] | None
"""Classifier: ``None`` (the predicted class), one class for every image, or per image a class
or a list of classes. Any model: a :class:`~hagxai.models.TargetSpec`."""


def layer_names(model: nn.Module, layers: Sequence[str | nn.Module] | None) -> list[str] | None:
    """Layer names of ``model`` from names or module objects (``[model.layer4]``).

    Raises:
        UserError: a module that is not part of ``model``.
    """
    if layers is None:
        return None
    if isinstance(layers, (str, nn.Module)):
        layers = [layers]
    by_identity = {id(module): name for name, module in model.named_modules() if name}
    names = []
    for layer in layers:
        if isinstance(layer, str):
            names.append(layer)
        elif id(layer) in by_identity:
            names.append(by_identity[id(layer)])
        else:
            raise UserError(f"layer {type(layer).__name__} is not a submodule of the model")
    return names


def as_adapter(
    model: str | ModelAdapter | nn.Module,
    layers: Sequence[str | nn.Module] | None = None,
    input_size: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
) -> ModelAdapter:
    """The adapter of ``model`` (a name, an adapter, or a plain ``nn.Module`` classifier).

    Args:
        model: see the module docstring.
        layers: the default layers (names or modules); ``None``: the family's default set.
        input_size: ``(H, W)`` of the model input (a name: its library's default; an
            ``nn.Module``: 224×224).
        device: where a model built from a name goes (``None``: CPU); an ``nn.Module`` or an
            adapter stays where it is.

    Raises:
        UserError: an unknown name or layer.
    """
    if isinstance(model, ModelAdapter):
        return model
    if isinstance(model, str):
        from hagxai.models.registry import build_adapter, random_weights_message

        if layers and not all(isinstance(layer, str) for layer in layers):
            raise UserError("a model given by name takes layers by name (hagxai layers lists them)")
        cfg = ModelConfig(
            name=model,
            layers=list(layers) if layers else None,
            input_size=tuple(input_size) if input_size else None,
        )
        message = random_weights_message(cfg)
        if message:
            warnings.warn(message, stacklevel=3)
        return build_adapter(cfg, device or "cpu")
    if isinstance(model, nn.Module):
        from hagxai.models.classifier import ClassifierAdapter

        return ClassifierAdapter(
            model,
            family=type(model).__name__,
            input_size=tuple(input_size or (224, 224)),
            default_layers=layer_names(model, layers),
        )
    raise UserError(
        f"model must be a name, a ModelAdapter or an nn.Module, not {type(model).__name__}"
    )


def load_images(images: ImageLike | Sequence[ImageLike]) -> list[Tensor]:
    """Images as a list of ``3×H_i×W_i`` tensors (float in [0, 1] or uint8, as given).

    Args:
        images: a ``B×3×H×W`` tensor, one image, or a sequence of images (see :data:`ImageLike`).

    Raises:
        DataError: an unreadable file. UserError: something that is not an image.
    """
    if isinstance(images, Tensor) and images.dim() == 4:
        return list(images.unbind(0))
    if isinstance(images, (str, Path, Tensor, np.ndarray)) or not isinstance(images, Sequence):
        images = [images]
    return [_one_image(image, i) for i, image in enumerate(images)]


def _one_image(image: ImageLike, index: int) -> Tensor:
    if isinstance(image, Tensor):
        return image
    if isinstance(image, (str, Path)):
        from hagxai.data.sample import read_image

        image = read_image(Path(image))
    elif not isinstance(image, np.ndarray):
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - pillow is a dependency
            Image = None
        if Image is None or not isinstance(image, Image.Image):
            raise UserError(
                f"image {index}: expected a tensor, an array, a PIL image or a path, "
                f"not {type(image).__name__}"
            )
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise UserError(f"image {index}: expected an H×W×3 array, got shape {array.shape}")
    tensor = torch.from_numpy(np.array(array, copy=True)).permute(2, 0, 1)
    return tensor if tensor.dtype == torch.uint8 else tensor.float()


def target_spec(adapter: ModelAdapter, targets: TargetsLike, num_images: int) -> TargetSpec:
    """The :class:`TargetSpec` that ``targets`` describes for ``num_images`` images.

    Raises:
        UserError: class targets for a detector, or a per-image list of the wrong length.
    """
    if isinstance(targets, TargetSpec):
        return targets
    if targets is None:
        return TargetSpec(predicted=adapter.task == "classification")
    if adapter.task != "classification":
        raise UserError(
            "a detector's targets are a TargetSpec (classes=, boxes= and labels=, "
            "conf_threshold=, max_per_image=)"
        )
    if isinstance(targets, int):
        return TargetSpec(labels=[[targets]] * num_images)
    per_image = list(targets)
    if len(per_image) != num_images:
        raise UserError(f"{len(per_image)} targets for {num_images} images (one entry per image)")
    return TargetSpec(labels=[[t] if isinstance(t, int) else list(t) for t in per_image])


def _spec_slice(spec: TargetSpec, start: int, stop: int) -> TargetSpec:
    """``spec`` for images ``start:stop`` of the whole list."""
    return TargetSpec(
        labels=None if spec.labels is None else list(spec.labels)[start:stop],
        boxes=None if spec.boxes is None else list(spec.boxes)[start:stop],
        classes=spec.classes,
        predicted=spec.predicted,
        iou_threshold=spec.iou_threshold,
        conf_threshold=spec.conf_threshold,
        max_per_image=spec.max_per_image,
    )


def per_target_evidence(evidence: Evidence) -> Evidence:
    """The same evidence with each target as its own image (``T`` images, one target each).

    An explainer's ``B×H×W`` maps of it are the ``T`` per-target maps, each normalised on its
    own. Activations are copied per target (``T×C×h×w`` per layer).
    """
    index = evidence.image_index
    return Evidence(
        layers=list(evidence.layers),
        acts={name: act[index] for name, act in evidence.acts.items()},
        grads=dict(evidence.grads),
        image_index=torch.arange(evidence.num_targets, device=index.device),
        input_size=evidence.input_size,
    )


def _per_target_targets(targets: Targets) -> Targets:
    return Targets(
        image_index=torch.arange(len(targets), device=targets.image_index.device),
        classes=targets.classes,
        confidences=targets.confidences,
        boxes=targets.boxes,
        anchors=targets.anchors,
        gt_index=targets.gt_index,
    )


class Method:
    """One explanation method bound to an adapter: a baseline by name, or a combiner.

    Args:
        adapter: the model.
        method: an explainer name (ignored with ``combiner``).
        combiner: a combiner folder or a :class:`~hagxai.combiner.HAGCombiner`, or ``None``.
        layers: layers to hook (``None``: the card's with a folder, else the adapter's default).
        num_masks: RISE / D-RISE masks per image.

    Attributes:
        layers: the resolved layers this method needs evidence of.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        method: str,
        combiner: str | Path | HAGCombiner | None,
        layers: list[str] | None,
        num_masks: int,
    ) -> None:
        self.adapter = adapter
        self.method = method.lower()
        self.num_masks = num_masks
        self.combiner: HAGCombiner | None = None
        if isinstance(combiner, (str, Path)):
            from hagxai.explainers.learned import LearnedExplainer

            learned = LearnedExplainer.from_folder(combiner, adapter)
            if layers is not None and set(adapter.resolve_layers(layers)) != set(learned.layers):
                raise UserError(
                    f"{combiner}: the combiner hooks the layers its card names "
                    f"({cut_list(learned.layers)}); drop layers="
                )
            self.combiner, self.layers = learned.combiner, learned.layers
        elif isinstance(combiner, HAGCombiner):
            self.combiner = combiner.to(adapter.device).eval()
            self.layers = adapter.resolve_layers(layers or combiner.layers)
        else:
            known = [m for m in available() if m != "human"] + list(PERTURBATION)
            if self.method not in known:
                raise UserError(f"unknown method {method!r} (known: {cut_list(known, 8)})")
            self.layers = adapter.resolve_layers(layers)

    @property
    def perturbation(self) -> bool:
        """Whether the method runs the model on masked inputs (RISE, D-RISE)."""
        return self.combiner is None and self.method in PERTURBATION

    def maps(
        self,
        extraction: Extraction,
        per_target: bool,
        on_image: Callable[[], None] | None = None,
    ) -> Tensor:
        """``B×H×W`` (or ``T×H×W`` per target) maps at the model input's size, in [0, 1].

        Args:
            extraction: the evidence of a batch on :attr:`layers`.
            per_target: one map per target.
            on_image: RISE / D-RISE: called after each image's (or target's) masks.
        """
        evidence, size = extraction.evidence, extraction.prepared.input_size
        if self.combiner is not None:
            if per_target:
                evidence = per_target_evidence(evidence)
            with torch.no_grad():
                return self.combiner(evidence, size)
        if self.method in PERTURBATION:
            from hagxai.explainers.perturbation import perturbation_maps

            x, targets = extraction.prepared.x, extraction.targets
            if per_target:
                x, targets = x[targets.image_index.to(x.device)], _per_target_targets(targets)
            return perturbation_maps(
                self.adapter, x, targets, num_masks=self.num_masks, on_image=on_image
            )
        if self.method == "centre_bias" or self.method == "uniform_random":
            from hagxai import explainers

            if per_target:
                evidence = per_target_evidence(evidence)
            return explainers.get(self.method)(evidence, size)
        maps = target_maps(evidence, self.method, size)
        if per_target:
            return minmax(maps)
        return combine_targets(maps, evidence.image_index, evidence.num_images)


def explain(
    model: str | ModelAdapter | nn.Module | None,
    images: ImageLike | Sequence[ImageLike],
    method: str = "gradcam",
    *,
    combiner: str | Path | HAGCombiner | None = None,
    targets: TargetsLike = None,
    layers: Sequence[str | nn.Module] | None = None,
    per_target: bool = False,
    input_size: tuple[int, int] | None = None,
    batch_size: int = 16,
    num_masks: int = 2000,
    device: torch.device | str | None = None,
) -> Tensor | list[Tensor]:
    """Saliency maps of ``images`` for ``model``, in each image's own frame.

    Args:
        model: a model name, a :class:`~hagxai.models.ModelAdapter`, an ``nn.Module``
            classifier, or ``None`` with a combiner folder: the model its card names (and its
            weights file) is rebuilt. An ``nn.Module`` is a classifier: ``B×3×H×W`` images
            normalised with the ImageNet mean and std inside -> ``B×K`` logits (for another
            normalisation wrap it in :class:`~hagxai.models.classifier.ClassifierAdapter` with
            ``mean=``/``std=``).
        images: a ``B×3×H×W`` tensor, or images as ``3×H×W`` tensors (float in [0, 1] or uint8),
            ``H×W×3`` uint8 arrays, PIL images or file paths, of any sizes.
        method: an explainer name (``gradcam``, ``gradcam++``, ``fullgradcam++``, … ``rise``
            for classifiers, ``drise`` for detectors); ignored with ``combiner``.
        combiner: a saved combiner folder (refused for other model weights; hooks the layers its
            card names) or a :class:`~hagxai.combiner.HAGCombiner`.
        targets: what to explain: classifier: ``None`` = the predicted class, an ``int`` = that
            class in every image, or per image a class or a list of classes; any model: a
            :class:`~hagxai.models.TargetSpec` (detectors: ``classes=``, ``boxes=``,
            ``conf_threshold=``, ``max_per_image=``).
        layers: layers to hook, as names or modules of the model (``[model.layer4]``); ``None``
            = the model family's default.
        per_target: one map per explained target instead of one per image.
        input_size: ``(H, W)`` of the model input (see :func:`as_adapter`).
        batch_size: images per forward pass.
        num_masks: RISE / D-RISE masks per image.
        device: where a model built from a name runs.

    Returns:
        float32 maps in [0, 1] on the CPU, each at its original image's size: a ``B×H×W`` tensor
        when all images share one size, else a list of ``H_i×W_i``; with ``per_target``, a list
        of ``T_i×H_i×W_i`` (``T_i`` targets of image ``i``, in the order the adapter chose them).
        An image without a target gets an all-zero map (and a warning).

    Raises:
        UserError: an unknown model, method or layer, bad targets, or a combiner for another
            model.
    """
    if model is None:
        model = _model_from_card(combiner, input_size)
    if isinstance(model, ModelAdapter) and input_size is not None:
        raise UserError("input_size applies to a model name or an nn.Module, not an adapter")
    if isinstance(model, nn.Module):
        # The adapter freezes the module (eval mode, no parameter gradients); the caller's module
        # gets its own mode and flags back afterwards.
        training = model.training
        flags = [p.requires_grad for p in model.parameters()]
        try:
            return _explain(
                as_adapter(model, None, input_size),
                images,
                method,
                combiner,
                targets,
                layers,
                per_target,
                batch_size,
                num_masks,
            )
        finally:
            model.train(training)
            for param, flag in zip(model.parameters(), flags):
                param.requires_grad_(flag)
    adapter = as_adapter(model, None, input_size, device)
    return _explain(
        adapter, images, method, combiner, targets, layers, per_target, batch_size, num_masks
    )


def _explain(
    adapter: ModelAdapter,
    images: ImageLike | Sequence[ImageLike],
    method: str,
    combiner: str | Path | HAGCombiner | None,
    targets: TargetsLike,
    layers: Sequence[str | nn.Module] | None,
    per_target: bool,
    batch_size: int,
    num_masks: int,
) -> Tensor | list[Tensor]:
    """:func:`explain` on an adapter."""
    names = layer_names(adapter.model, layers)
    explainer = Method(adapter, method, combiner, names, num_masks)
    items = load_images(images)
    spec = target_spec(adapter, targets, len(items))
    out: list[Tensor] = []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        chunk = _spec_slice(spec, start, start + len(batch))
        extraction = extract_evidence(adapter, batch, chunk, explainer.layers)
        maps = explainer.maps(extraction, per_target).detach()
        frames = extraction.prepared.frames
        if per_target:
            index = extraction.targets.image_index.to(maps.device)
            for i, frame in enumerate(frames):
                mine = maps[index == i]
                out.append(_to_original(frame, mine, frame.orig_size))
        else:
            out.extend(_to_original(f, m, f.orig_size) for f, m in zip(frames, maps))
    if per_target or len({tuple(m.shape) for m in out}) > 1:
        return out
    return torch.stack(out)


def _model_from_card(combiner: Any, input_size: tuple[int, int] | None) -> ModelAdapter:
    """The adapter of the model a combiner folder's card names (its name and weights file)."""
    if not isinstance(combiner, (str, Path)):
        raise UserError("model=None needs combiner= a combiner folder whose card names the model")
    from hagxai.export import CARD_FILE, read_card
    from hagxai.models.registry import build_adapter, config_from_card

    card = read_card(combiner)
    cfg = config_from_card(card["model"], str(Path(combiner) / CARD_FILE))
    size = input_size or card.get("input_size")
    return build_adapter(cfg.model_copy(update={"input_size": tuple(size) if size else None}))


def _to_original(frame, maps: Tensor, size: tuple[int, int]) -> Tensor:
    """``...×h×w`` maps on the model input -> ``...×H0×W0`` float32 on the CPU in [0, 1]."""
    if maps.dim() == 3 and maps.shape[0] == 0:
        return maps.new_zeros((0, *size), dtype=torch.float32).cpu()
    return frame.map_to_original(maps.float().cpu()).clamp(0, 1)
