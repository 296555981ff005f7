"""Model adapters: one protocol in front of classifiers and detectors (DESIGN.md, models/)."""

from hagxai.models.base import Frame, ModelAdapter, Prepared, Targets, TargetSpec
from hagxai.models.registry import build_adapter, register_adapter

__all__ = [
    "Frame",
    "ModelAdapter",
    "Prepared",
    "TargetSpec",
    "Targets",
    "build_adapter",
    "register_adapter",
]
