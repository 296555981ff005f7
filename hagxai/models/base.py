"""The model adapter protocol: one interface in front of every model family (DESIGN.md, models/).

An adapter owns a frozen model and knows, for its family:

* preprocessing: original images -> a model input ``x`` (``B×3×H×W`` in [0, 1], at
  :attr:`ModelAdapter.input_size`), with a :class:`~hagxai.models.geometry.Frame` per image that
  maps boxes and maps back to the original pixels (plain resize for classifiers, letterbox for
  detectors);
* the forward pass (normalisation happens inside :meth:`ModelAdapter.forward`, so perturbation
  methods and faithfulness metrics work on ``x`` in [0, 1]);
* which targets to explain (:meth:`ModelAdapter.select_targets`) and a differentiable score per
  target (:meth:`ModelAdapter.score`);
* the named layers that can be hooked, and its default set: the layers given at construction,
  else a sensible set per family.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from hagxai.errors import UserError
from hagxai.models.geometry import Frame
from hagxai.models.targets import Targets, TargetSpec

Task = Literal["classification", "detection"]


@dataclass
class Prepared:
    """Model input for a batch of images, with the way back to each original image.

    Attributes:
        x: ``B×3×H×W`` float in [0, 1] at the adapter's input size, on the adapter's device.
        frames: one :class:`~hagxai.models.geometry.Frame` per image.
    """

    x: Tensor
    frames: list[Frame]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the model input."""
        return int(self.x.shape[-2]), int(self.x.shape[-1])


class ModelAdapter(ABC):
    """A frozen model of one family behind the protocol in the module docstring.

    Subclasses set :attr:`task`, :attr:`family`, :attr:`model` (in eval mode) and
    :attr:`input_size`, then call ``super().__init__(default_layers)``, and implement the abstract
    methods.

    Args:
        default_layers: layer names or aliases that become :meth:`default_layers` (e.g. the
            config's ``model.layers``); ``None`` or empty: the family's own
            :meth:`family_layers`.

    Raises:
        UserError: a name in ``default_layers`` the model does not have.
    """

    task: Task
    family: str
    model: nn.Module
    input_size: tuple[int, int]

    def __init__(self, default_layers: Sequence[str] | None = None) -> None:
        self._default_layers = self.resolve_layers(default_layers) if default_layers else None

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live."""
        return next(self.model.parameters()).device

    def freeze(self) -> None:
        """Eval mode and no parameter gradients.

        Evidence never needs gradients of parameters: the hooks make the captured activations
        require grad (see :mod:`hagxai.evidence.hooks`), so the graph starts at the first hooked
        layer.
        That also makes models loaded with ``requires_grad`` off (ultralytics ``.pt``) work.
        """
        self.model.eval().requires_grad_(False)

    @abstractmethod
    def preprocess(self, images: Sequence[Tensor] | Tensor) -> Prepared:
        """Original images (each ``3×H_i×W_i``, float in [0, 1] or uint8) -> :class:`Prepared`."""

    @abstractmethod
    def forward(self, x: Tensor) -> Any:
        """Run the model on ``x`` (``B×3×H×W`` in [0, 1]); the raw output, family-specific."""

    @abstractmethod
    def select_targets(self, output: Any, prepared: Prepared, spec: TargetSpec) -> Targets:
        """Choose the targets to explain from a forward output (no gradients involved)."""

    @abstractmethod
    def score(self, output: Any, targets: Targets) -> Tensor:
        """``T`` differentiable scores, one per target, read from the same forward output."""

    @abstractmethod
    def rescore(self, x: Tensor, targets: Targets) -> Tensor:
        """Scores of every target on perturbed inputs, without gradients.

        Args:
            x: ``N×3×H×W`` inputs in [0, 1] (e.g. masked copies of one image).
            targets: ``T`` targets.

        Returns:
            ``N×T``: classifier: the class probability; detector: the D-RISE similarity, the best
            IoU(target box, detection box) × the detection's probability of the target class.
        """

    def detections(self, output: Any) -> list[dict[str, Tensor]] | None:
        """Detectors: per image ``{"boxes": K×4 (input pixels), "scores": K, "labels": K}``."""
        return None

    @abstractmethod
    def hookable_layers(self) -> list[str]:
        """Names of the modules whose output can be hooked, in forward order."""

    def default_layers(self) -> list[str]:
        """The layers given at construction (resolved), else :meth:`family_layers`."""
        if self._default_layers is not None:
            return list(self._default_layers)
        return self.family_layers()

    @abstractmethod
    def family_layers(self) -> list[str]:
        """The family's default layer set."""

    def layer_aliases(self) -> dict[str, list[str]]:
        """Named layer sets accepted in ``layers`` (e.g. ``head`` for detectors)."""
        return {}

    def resolve_layers(self, names: Sequence[str] | None) -> list[str]:
        """Layer names from config -> module names; ``None`` -> :meth:`default_layers`.

        Raises:
            UserError: an unknown name, with the closest known names.
        """
        if not names:
            return self.default_layers()
        aliases = self.layer_aliases()
        known = self.hookable_layers()
        resolved: list[str] = []
        for name in names:
            if name in aliases:
                resolved.extend(aliases[name])
                continue
            if name not in known:
                close = difflib.get_close_matches(name, known + list(aliases), n=5, cutoff=0.5)
                hint = f"; close names: {', '.join(close)}" if close else ""
                raise UserError(
                    f"model {self.family!r} has no layer {name!r}{hint} "
                    "(hagxai layers --model ... lists them)"
                )
            resolved.append(name)
        return list(dict.fromkeys(resolved))

    def to_grid(self, layer: str, output: Tensor) -> Tensor:
        """A hooked layer's output as ``B×C×h×w``; transformers override (token -> grid)."""
        return output

    def from_grid(self, layer: str, grid: Tensor, output: Tensor) -> Tensor:
        """Inverse of :meth:`to_grid`: rebuild the layer's output from a (differentiable) grid."""
        return grid


def as_image_list(images: Sequence[Tensor] | Tensor) -> list[Tensor]:
    """``B×3×H×W`` or a list of ``3×H_i×W_i`` (float in [0, 1] or uint8) -> list of float."""
    items = list(images.unbind(0)) if isinstance(images, Tensor) and images.dim() == 4 else images
    out = []
    for i, image in enumerate(items):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise UserError(f"image {i}: expected a 3×H×W tensor, got {shape}")
        image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        out.append(image.expand(3, -1, -1) if image.shape[0] == 1 else image)
    return out
