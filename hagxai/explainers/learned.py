"""The learned explainer: a saved HAG-XAI combiner re-applied to new images of its model.

Not registered in :func:`hagxai.explainers.get`: unlike the baselines it needs a combiner folder
and the model's adapter, so it is built with :meth:`LearnedExplainer.from_folder`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from hagxai.combiner import HAGCombiner
from hagxai.evidence import Evidence, Extraction, extract_evidence
from hagxai.export import CombinerMismatchError, load_combiner, read_card
from hagxai.models import ModelAdapter, TargetSpec, model_digest


class LearnedExplainer:
    """Saliency maps of a trained combiner on the layers its card names.

    Args:
        combiner: the combiner (in eval mode).
        adapter: the adapter of the model the combiner was trained for.
        layers: the resolved layers to hook (the card's, or the adapter's defaults for a
            layer-agnostic combiner).
    """

    def __init__(self, combiner: HAGCombiner, adapter: ModelAdapter, layers: list[str]) -> None:
        self.combiner = combiner
        self.adapter = adapter
        self.layers = layers

    @classmethod
    def from_folder(cls, directory: str | Path, adapter: ModelAdapter) -> LearnedExplainer:
        """Load a combiner folder for ``adapter``'s model.

        Raises:
            CombinerMismatchError: the card records another model's weights digest, layers the
                model does not have, or another input size than the adapter's.
            CombinerError: a missing or corrupt folder.
        """
        card = read_card(directory)
        recorded = card.get("input_size")
        if recorded is not None and tuple(recorded) != tuple(adapter.input_size):
            raise CombinerMismatchError(
                f"{Path(directory)}: combiner was trained at input size {recorded[0]}×"
                f"{recorded[1]}, the model runs at {adapter.input_size[0]}×"
                f"{adapter.input_size[1]}; pass --input-size {recorded[0]} {recorded[1]}"
            )
        # The digest check comes first: a card for another model is refused as such, even when
        # its layer names also happen to be unknown to this model.
        combiner = load_combiner(
            directory, model_digest=model_digest(adapter.model), device=adapter.device
        )
        layers = adapter.resolve_layers(card["layers"])
        return cls(combiner, adapter, layers)

    def explain_evidence(self, evidence: Evidence, out_size: tuple[int, int]) -> Tensor:
        """The combiner's maps of ``evidence`` (differentiable; no gradient mode is set).

        Args:
            evidence: ``T`` targets over ``B`` images, hooked on :attr:`layers`.
            out_size: ``(H, W)`` of the maps.

        Returns:
            ``B×H×W`` in [0, 1]; an image without targets gets an all-zero map.
        """
        return self.combiner(evidence, out_size)

    def extract(
        self, images: Sequence[Tensor] | Tensor, spec: TargetSpec | None = None
    ) -> Extraction:
        """The evidence of ``images`` on the combiner's layers (see :func:`extract_evidence`)."""
        return extract_evidence(self.adapter, images, spec, self.layers)

    def __call__(
        self, images: Sequence[Tensor] | Tensor, spec: TargetSpec | None = None
    ) -> list[Tensor]:
        """Maps of original images in their own frames.

        Args:
            images: ``B×3×H×W`` or a list of ``3×H_i×W_i`` (float in [0, 1] or uint8).
            spec: which targets to explain (default: the adapter's default choice).

        Returns:
            per image, an ``H_i×W_i`` float32 map in [0, 1] on the CPU.
        """
        extraction = self.extract(images, spec)
        with torch.no_grad():
            maps = self.explain_evidence(extraction.evidence, self.adapter.input_size)
        return [
            frame.map_to_original(m.cpu()).clamp(0, 1)
            for frame, m in zip(extraction.prepared.frames, maps)
        ]
