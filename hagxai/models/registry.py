"""Model adapters by name, built from :class:`hagxai.config.ModelConfig`.

Resolution order for ``cfg.name``:

1. a name registered with :func:`register_adapter` (``demo`` registers itself from
   ``hagxai.models.demo`` the first time it is asked for);
2. an original YOLOv5 model: ``yolov5:`` and a package yaml or a checkpoint
   (``yolov5:yolov5s.yaml``, ``yolov5:runs/best.pt``; :mod:`hagxai.models.yolov5`);
3. an ultralytics model: a ``.yaml`` or ``.pt`` file name (``yolov8n.yaml``, ``best.pt``);
4. a torchvision detector (:data:`hagxai.models.tv_detection.DETECTORS`);
5. a torchvision classifier, then a timm model (``timm/`` prefix optional).

An unknown name raises :class:`~hagxai.errors.UserError` listing the closest known names.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import torch

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.models.base import ModelAdapter

AdapterBuilder = Callable[[ModelConfig, torch.device], ModelAdapter]

_REGISTRY: dict[str, AdapterBuilder] = {}
# Names whose builder lives in a module that registers it when imported (kept lazy so that
# building other models never pays for it).
_LAZY = {name: "hagxai.models.demo" for name in ("demo", "demo-classifier", "demo-detector")}


def register_adapter(name: str, builder: AdapterBuilder) -> None:
    """Make ``build_adapter`` build ``name`` with ``builder(cfg, device)``."""
    _REGISTRY[name] = builder


@cache
def _torchvision_classifiers() -> frozenset[str]:
    import torchvision

    return frozenset(torchvision.models.list_models(module=torchvision.models))


@cache
def _timm_models() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


def known_names() -> list[str]:
    """Every name :func:`build_adapter` accepts without a file (for messages and listings)."""
    from hagxai.models.tv_detection import DETECTORS

    names = set(_REGISTRY) | set(_LAZY) | set(DETECTORS)
    names |= _torchvision_classifiers() | _timm_models()
    names |= {f"{v}{s}.yaml" for v in ("yolov5", "yolov8", "yolo11") for s in "nsmlx"}
    names |= {f"yolov5:yolov5{s}.yaml" for s in "nsmlx"}
    return sorted(names)


def build_adapter(cfg: ModelConfig | str, device: torch.device | str = "cpu") -> ModelAdapter:
    """The adapter for ``cfg`` (a :class:`ModelConfig`, or just a model name).

    Raises:
        UserError: an unknown name (with close names), a missing file, or a model that cannot
            be built offline.
    """
    cfg = ModelConfig(name=cfg) if isinstance(cfg, str) else cfg
    device = torch.device(device)
    name = cfg.name
    if name not in _REGISTRY and name in _LAZY:
        try:
            importlib.import_module(_LAZY[name])
        except ModuleNotFoundError:
            raise UserError(f"model {name!r} is not available in this version") from None
    if name in _REGISTRY:
        return _REGISTRY[name](cfg, device)
    if name.startswith("yolov5:"):
        from hagxai.models.yolov5 import build_yolov5

        return build_yolov5(cfg, device)
    if name.endswith((".yaml", ".yml", ".pt")):
        from hagxai.models.yolo import build_yolo

        return build_yolo(cfg, device)
    from hagxai.models.tv_detection import DETECTORS, build_tv_detector

    if name in DETECTORS:
        return build_tv_detector(cfg, device)
    from hagxai.models.classifier import build_classifier

    if name in _torchvision_classifiers():
        return build_classifier(cfg, device, "torchvision")
    if name.removeprefix("timm/") in _timm_models():
        return build_classifier(cfg, device, "timm")
    close = difflib.get_close_matches(name, known_names(), n=5, cutoff=0.6)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise UserError(
        f"unknown model {name!r}{hint} (a torchvision or timm classifier, a torchvision detector, "
        "an ultralytics .yaml/.pt, yolov5:<yaml or .pt>, or demo)"
    )


def random_weights_message(cfg: ModelConfig) -> str | None:
    """A warning when ``cfg`` builds a model with randomly initialised weights, else ``None``.

    A library name (``resnet50``, ``yolov8n.yaml``, ``yolov5:yolov5s.yaml``) without
    ``weights`` and without ``pretrained`` is built with random weights: its explanations show
    an untrained network. Checkpoints (``.pt``) and registered names (the demo models) carry
    their weights.
    """
    if cfg.weights is not None or cfg.pretrained:
        return None
    name = cfg.name
    if name in _REGISTRY or name in _LAZY or name.endswith(".pt"):
        return None
    return (
        f"model {name!r} has random weights (no weights file, not pretrained): its explanations "
        "show an untrained network; load weights with --weights FILE / model.weights, or the "
        "library's with --pretrained / model.pretrained=true"
    )


#: The :class:`ModelConfig` keys a combiner card records (beside the name) to rebuild the model.
CARD_KEYS = ("weights", "pretrained", "num_classes", "objectness", "label_offset")


def card_fields(cfg: ModelConfig) -> dict[str, Any]:
    """What a combiner card records to rebuild ``cfg``'s model: :data:`CARD_KEYS`, with the
    weights file as an absolute path (so the card works from any folder)."""
    fields = cfg.model_dump(mode="json", include=set(CARD_KEYS))
    if cfg.weights is not None:
        fields["weights"] = str(Path(cfg.weights).resolve())
    return fields


def config_from_card(model: Mapping[str, Any], where: str) -> ModelConfig:
    """The :class:`ModelConfig` that a card's ``model`` section describes.

    Args:
        model: the card's ``model`` section (``name``, and the :data:`CARD_KEYS` it records).
        where: the card's path, for messages.

    Raises:
        UserError: a card that names no model (an unbound import: pass ``--model``).
    """
    name = model.get("name")
    if not name:
        raise UserError(f"{where} names no model; pass --model (and --weights)")
    return ModelConfig(name=name, **{k: model[k] for k in CARD_KEYS if model.get(k) is not None})
