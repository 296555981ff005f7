"""Model adapters: one protocol in front of classifiers and detectors (DESIGN.md, models/)."""

from hagxai.models.base import ModelAdapter, Prepared
from hagxai.models.digest import model_digest
from hagxai.models.geometry import Frame
from hagxai.models.registry import build_adapter, register_adapter
from hagxai.models.targets import Targets, TargetSpec

__all__ = [
    "Frame",
    "ModelAdapter",
    "Prepared",
    "TargetSpec",
    "Targets",
    "build_adapter",
    "model_digest",
    "register_adapter",
]
