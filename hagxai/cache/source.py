"""What a reader of evidence relies on: :class:`EvidenceSource`, the interface of the disk cache
and of the stream alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

from hagxai.evidence import Evidence
from hagxai.models import Frame, Targets


@runtime_checkable
class EvidenceSource(Protocol):
    """Evidence, targets and frames of a fixed list of images, read by position.

    Implemented by :class:`~hagxai.cache.store.EvidenceCache` (on disk) and
    :class:`~hagxai.cache.stream.StreamingEvidence` (computed on the fly); the trainer reads
    through this interface only.

    Attributes:
        ids: sample ids of the images that can be asked for, by position.
        skipped: sample id -> why it is not (or no longer) usable.
        layers: resolved layer names, in order.
        input_size: ``(H, W)`` of the model input.
    """

    ids: list[str]
    skipped: dict[str, str]
    layers: list[str]
    input_size: tuple[int, int]

    def __len__(self) -> int:
        """Number of images that can be asked for."""
        ...

    def evidence(
        self,
        indices: Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Evidence:
        """The evidence of the images at ``indices`` (positions in :attr:`ids`, repeats allowed):
        ``B = len(indices)`` images in that order, ``image_index`` renumbered ``0..B-1``,
        activations and gradients in ``dtype`` on ``device`` (``None``: CPU)."""
        ...

    def targets(self, indices: Sequence[int], device: torch.device | str | None = None) -> Targets:
        """The targets of the images at ``indices``, aligned with :meth:`evidence` (``T``
        classes and confidences; ``T×4`` boxes in model-input pixels for detectors)."""
        ...

    def frames(self, indices: Sequence[int]) -> list[Frame]:
        """Per image at ``indices``, how the original image maps into the model input."""
        ...
