"""Evidence (DESIGN.md, evidence): the type, the layer hooks and the batched extraction.

The type and the hooks need torch alone. The extraction drives model adapters (and so imports
``hagxai.models`` and torchvision): its names load on first use, so that pure tensor code
importing :class:`Evidence` (the combiner, the metrics, ``import hagxai``) does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hagxai.evidence.hooks import capture_layers, trace_layer_shapes
from hagxai.evidence.types import Evidence

if TYPE_CHECKING:
    from hagxai.evidence.extraction import Extraction, batched_gradients, extract_evidence

_EXTRACTION = ("Extraction", "batched_gradients", "extract_evidence")

__all__ = [
    "Evidence",
    "Extraction",
    "batched_gradients",
    "capture_layers",
    "extract_evidence",
    "trace_layer_shapes",
]


def __getattr__(name: str) -> Any:
    if name in _EXTRACTION:
        from hagxai.evidence import extraction

        return getattr(extraction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
