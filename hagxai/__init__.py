"""hagxai: learn explanation heads for vision models from human attention (HAG-XAI).

The one-call API and the adapter classes load on first use, so that ``import hagxai`` stays as
light as the :class:`Evidence` type:

* :func:`explain` — saliency maps of any model (a name, an adapter, an ``nn.Module``);
* :class:`HAGCAM` — a learned head with pytorch-grad-cam's calling convention;
* :class:`ModelAdapter` (the protocol a model family implements), :class:`ClassifierAdapter`
  (any ``nn.Module`` classifier), :class:`YoloAdapter`, :class:`TorchvisionDetectorAdapter`,
  :class:`Prepared`, :class:`TargetSpec`, :class:`Targets`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hagxai.evidence import Evidence

if TYPE_CHECKING:
    from hagxai.api import explain
    from hagxai.hagcam import HAGCAM, ClassifierOutputTarget
    from hagxai.models.base import ModelAdapter, Prepared
    from hagxai.models.classifier import ClassifierAdapter
    from hagxai.models.targets import Targets, TargetSpec
    from hagxai.models.tv_detection import TorchvisionDetectorAdapter
    from hagxai.models.yolo import YoloAdapter

__version__ = "0.1.0"

_LAZY = {
    "explain": "hagxai.api",
    "HAGCAM": "hagxai.hagcam",
    "ClassifierOutputTarget": "hagxai.hagcam",
    "ModelAdapter": "hagxai.models.base",
    "Prepared": "hagxai.models.base",
    "ClassifierAdapter": "hagxai.models.classifier",
    "TargetSpec": "hagxai.models.targets",
    "Targets": "hagxai.models.targets",
    "TorchvisionDetectorAdapter": "hagxai.models.tv_detection",
    "YoloAdapter": "hagxai.models.yolo",
}

__all__ = [
    "HAGCAM",
    "ClassifierAdapter",
    "ClassifierOutputTarget",
    "Evidence",
    "ModelAdapter",
    "Prepared",
    "TargetSpec",
    "Targets",
    "TorchvisionDetectorAdapter",
    "YoloAdapter",
    "__version__",
    "explain",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
