"""Image classifiers from torchvision or timm; transformers via a token -> grid reshape."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.evidence.hooks import trace_layer_shapes
from hagxai.models.base import ModelAdapter, Prepared, as_image_list
from hagxai.models.geometry import resize_frame
from hagxai.models.targets import Targets, TargetSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ClassifierAdapter(ModelAdapter):
    """Any ``B×3×H×W -> B×K`` logits classifier.

    Targets are classes (the ground-truth labels by default, the predicted class on request);
    a target's score is its logit. Images are resized to :attr:`input_size` without cropping, so a
    map on the input maps back to the whole original image.

    Args:
        model: the classifier (put in eval mode and frozen).
        family: a name for messages (the model's name).
        input_size: ``(H, W)`` of the model input.
        mean, std: per-channel normalisation applied inside :meth:`forward`.
        default_layers: the default layer set (names or aliases); ``None`` picks the last
            spatial stage.
        token_grid: for transformers, ``(h, w)`` of the patch grid.
        prefix_tokens: for transformers, the class (and distillation / register) tokens ahead of
            the patch tokens; they are dropped from the grid and kept as they are in the model.
    """

    task = "classification"

    def __init__(
        self,
        model: nn.Module,
        family: str,
        input_size: tuple[int, int] = (224, 224),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        default_layers: Sequence[str] | None = None,
        token_grid: tuple[int, int] | None = None,
        prefix_tokens: int = 0,
    ) -> None:
        self.model = model
        self.family = family
        self.input_size = tuple(input_size)
        self.freeze()
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.token_grid = token_grid
        self.prefix_tokens = prefix_tokens
        self._last_spatial: str | None = None
        super().__init__(default_layers)

    def preprocess(self, images: Sequence[Tensor] | Tensor) -> Prepared:
        """Resize each image to the input size (bilinear, antialiased)."""
        items = as_image_list(images)
        frames, batch = [], []
        for image in items:
            size = (int(image.shape[-2]), int(image.shape[-1]))
            frames.append(resize_frame(size, self.input_size))
            if size != self.input_size:
                image = F.interpolate(
                    image[None], self.input_size, mode="bilinear", antialias=True
                )[0]
            batch.append(image)
        return Prepared(x=torch.stack(batch).to(self.device), frames=frames)

    def forward(self, x: Tensor) -> Tensor:
        """``B×K`` logits of ``x`` (``B×3×H×W`` in [0, 1])."""
        mean, std = self._mean.to(x), self._std.to(x)
        return self.model((x - mean) / std)

    def select_targets(self, output: Tensor, prepared: Prepared, spec: TargetSpec) -> Targets:
        """Ground-truth classes (``spec.labels``; several per image allowed) or the predicted one.

        Without labels, the predicted class is explained.
        """
        logits = output.detach()
        num_images, num_classes = logits.shape
        if spec.predicted or spec.labels is None:
            per_image = [[int(c)] for c in logits.argmax(dim=1).tolist()]
        else:
            if len(spec.labels) != num_images:
                raise UserError(f"{len(spec.labels)} label sets for {num_images} images")
            per_image = [torch.as_tensor(lab).reshape(-1).tolist() for lab in spec.labels]
        image_index = [i for i, labels in enumerate(per_image) for _ in labels]
        classes = [int(c) for labels in per_image for c in labels]
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise UserError(f"class {bad[0]} out of range for a model with {num_classes} classes")
        device = logits.device
        image_t = torch.tensor(image_index, dtype=torch.long, device=device)
        class_t = torch.tensor(classes, dtype=torch.long, device=device)
        return Targets(
            image_index=image_t,
            classes=class_t,
            confidences=logits.softmax(dim=1)[image_t, class_t],
            unmatched_gt=[torch.zeros(0, dtype=torch.long) for _ in range(num_images)],
        )

    def score(self, output: Tensor, targets: Targets) -> Tensor:
        """``T`` logits of the targets' classes."""
        return output[targets.image_index, targets.classes]

    @torch.no_grad()
    def rescore(self, x: Tensor, targets: Targets) -> Tensor:
        """``N×T`` class probabilities of the targets' classes on each input."""
        return self.forward(x).softmax(dim=1)[:, targets.classes.to(x.device)]

    def hookable_layers(self) -> list[str]:
        return [name for name, _ in self.model.named_modules() if name]

    def family_layers(self) -> list[str]:
        """The last spatial stage (found once, by tracing a random input)."""
        if self._last_spatial is None:
            self._last_spatial = self._last_spatial_child()
        return [self._last_spatial]

    def _last_spatial_child(self) -> str:
        """The last top-level module, in forward order, whose output is a spatial grid."""
        children = {name for name, _ in self.model.named_children()}
        x = torch.rand(1, 3, *self.input_size, device=self.device)
        spatial = [
            name
            for name, _, shape in trace_layer_shapes(self, x)
            if name in children and len(shape) == 4 and shape[-1] * shape[-2] > 1
        ]
        if not spatial:
            raise UserError(f"model {self.family!r}: no spatial layer found; set model.layers")
        return spatial[-1]

    def to_grid(self, layer: str, output: Tensor) -> Tensor:
        """Transformer tokens ``B×(P+h·w)×C`` -> ``B×C×h×w`` (the ``P`` prefix tokens dropped)."""
        if self.token_grid is None or output.dim() != 3:
            return output
        h, w = self.token_grid
        if output.shape[1] != self.prefix_tokens + h * w:
            return output
        patches = output[:, self.prefix_tokens :]
        return patches.reshape(output.shape[0], h, w, output.shape[2]).permute(0, 3, 1, 2)

    def from_grid(self, layer: str, grid: Tensor, output: Tensor) -> Tensor:
        if self.token_grid is None or output.dim() != 3:
            return grid
        tokens = grid.flatten(2).transpose(1, 2)
        return torch.cat([output[:, : self.prefix_tokens], tokens], dim=1)


def load_state_dict_file(model: nn.Module, path: Path) -> None:
    """Load a local weights file (a state dict, or a checkpoint holding one) into ``model``.

    Raises:
        UserError: the file is missing, unreadable, or its tensors do not fit the model.
    """
    if not Path(path).is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file
        raise UserError(f"weights file {path} could not be read: {err}".splitlines()[0]) from None
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UserError(
            f"weights file {path} does not fit the model: {err}".splitlines()[0]
        ) from None


def torchvision_model(cfg: ModelConfig, **kwargs: Any) -> nn.Module:
    """``torchvision.models.get_model(cfg.name)`` with the library's weights when
    ``cfg.pretrained``, ``cfg.num_classes`` when set, and a one-line ``UserError`` on failure."""
    import torchvision

    kwargs.setdefault("weights", "DEFAULT" if cfg.pretrained else None)
    if cfg.num_classes is not None:
        kwargs["num_classes"] = cfg.num_classes
    try:
        return torchvision.models.get_model(cfg.name, **kwargs)
    except (ValueError, OSError, RuntimeError) as err:
        raise UserError(f"model {cfg.name!r} could not be built: {err}".splitlines()[0]) from None


def _torchvision_classifier(cfg: ModelConfig) -> tuple[nn.Module, dict[str, Any]]:
    import torchvision

    model = torchvision_model(cfg)
    extra: dict[str, Any] = {}
    if isinstance(model, torchvision.models.VisionTransformer):
        side = model.image_size // model.patch_size
        extra = {
            "token_grid": (side, side),
            "prefix_tokens": 1,
            "input_size": (model.image_size,) * 2,
        }
        last = len(model.encoder.layers) - 1
        # The last block's output reaches the class token only, so its patch tokens have no
        # gradient; the input of its attention does (as pytorch-grad-cam recommends).
        extra["default_layers"] = [f"encoder.layers.encoder_layer_{last}.ln_1"]
    return model, extra


def _timm_classifier(cfg: ModelConfig, name: str) -> tuple[nn.Module, dict[str, Any]]:
    import timm

    kwargs: dict[str, Any] = {"pretrained": cfg.pretrained}
    if cfg.num_classes is not None:
        kwargs["num_classes"] = cfg.num_classes
    try:
        model = timm.create_model(name, **kwargs)
    except Exception as err:  # timm raises RuntimeError, OSError or hub errors when offline
        raise UserError(f"timm model {name!r} could not be built: {err}".splitlines()[0]) from None
    data = timm.data.resolve_data_config({}, model=model)
    extra: dict[str, Any] = {
        "mean": data["mean"],
        "std": data["std"],
        "input_size": tuple(data["input_size"][1:]),
    }
    patch_embed = getattr(model, "patch_embed", None)
    if patch_embed is not None and hasattr(patch_embed, "grid_size") and hasattr(model, "blocks"):
        extra["token_grid"] = tuple(patch_embed.grid_size)
        extra["prefix_tokens"] = int(getattr(model, "num_prefix_tokens", 1))
        extra["default_layers"] = [f"blocks.{len(model.blocks) - 1}.norm1"]
    elif getattr(model, "feature_info", None):
        extra["default_layers"] = [model.feature_info[-1]["module"]]
    return model, extra


def build_classifier(cfg: ModelConfig, device: torch.device, source: str) -> ClassifierAdapter:
    """A classifier adapter for ``cfg.name`` from ``source`` (``"torchvision"`` or ``"timm"``).

    ``cfg.weights`` (a local state dict) is loaded when given; ``cfg.input_size`` overrides the
    model's own input size (transformers keep theirs: their token grid is fixed).
    """
    if source == "torchvision":
        model, extra = _torchvision_classifier(cfg)
    else:
        model, extra = _timm_classifier(cfg, cfg.name.removeprefix("timm/"))
    if cfg.weights is not None:
        load_state_dict_file(model, cfg.weights)
    if cfg.input_size is not None and "token_grid" not in extra:
        extra["input_size"] = tuple(cfg.input_size)
    if cfg.layers:
        extra["default_layers"] = cfg.layers
    return ClassifierAdapter(model.to(device), family=cfg.name, **extra)
