"""Evidence computed on the fly, nothing stored: the cache's reading interface for datasets too
big to cache."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hagxai.cache.compute import Computed, compute, load_image
from hagxai.cache.rules import DEFAULT_RULE, TargetRule, sample_problem
from hagxai.data import Sample
from hagxai.errors import DataError
from hagxai.evidence import Evidence, capture_layers
from hagxai.models import Frame, ModelAdapter, Targets


class StreamingEvidence:
    """The reading interface of :class:`~hagxai.cache.store.EvidenceCache`, computed on the fly.

    An :class:`~hagxai.cache.source.EvidenceSource`. ``ids`` holds the samples that pass the
    checks that need no model (label, attention map, image header). An image that fails later
    (pixels unreadable, no target, non-finite evidence) keeps its place in ``ids``, contributes
    all-zero activations and no targets (its map is all zero), and is added to ``skipped`` when
    first computed.

    Args: as :meth:`EvidenceCache.build <hagxai.cache.store.EvidenceCache.build>`, without
    ``root``, ``dtype``, ``progress`` and the shard options; ``batch_size`` bounds the images of
    one forward/backward pass.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        samples: Sequence[Sample],
        *,
        layers: list[str],
        rule: TargetRule = DEFAULT_RULE,
        batch_size: int = 16,
        require_maps: bool = True,
    ) -> None:
        rule.check(adapter)
        self.adapter, self.rule = adapter, rule
        self.layers = adapter.resolve_layers(layers)
        self.input_size: tuple[int, int] = tuple(adapter.input_size)
        self.batch_size = batch_size
        self.skipped: dict[str, str] = {}
        self._samples: list[Sample] = []
        for sample in samples:
            problem = sample_problem(sample, self.rule, require_maps)
            if problem is None:
                self._samples.append(sample)
            else:
                self.skipped[sample.id] = problem
        self.ids = [s.id for s in self._samples]
        self._shapes: dict[str, tuple[int, ...]] | None = None
        self._last: tuple[tuple[int, ...], Evidence, Targets] | None = None

    def __len__(self) -> int:
        """Number of images that can be asked for."""
        return len(self.ids)

    def _compute(self, indices: Sequence[int]) -> tuple[Evidence, Targets]:
        key = tuple(int(i) for i in indices)
        if self._last is not None and self._last[0] == key:
            return self._last[1:]
        chosen = [self._samples[i] for i in key]
        computed = compute(
            self.adapter,
            chosen,
            self.layers,
            self.rule,
            False,
            lambda n: None,
            self.batch_size,
        )
        self.skipped.update(computed.skipped)
        position = {sample_id: i for i, sample_id in enumerate(computed.ids)}
        counts = torch.tensor(computed.counts, dtype=torch.long)
        starts = torch.cumsum(counts, 0) - counts
        acts, grads = {}, {}
        for name in self.layers:
            shape = self._layer_shape(name, computed)
            act_rows, grad_rows = [], []
            for sample in chosen:
                p = position.get(sample.id)
                if p is None:
                    act_rows.append(torch.zeros(1, *shape))
                else:
                    act_rows.append(computed.acts[name][p : p + 1].float())
                    begin = int(starts[p])
                    grad_rows.append(computed.grads[name][begin : begin + int(counts[p])].float())
            acts[name] = torch.cat(act_rows)
            grads[name] = torch.cat(grad_rows) if grad_rows else torch.zeros(0, *shape)
        per_image = [int(counts[position[s.id]]) if s.id in position else 0 for s in chosen]
        image_index = torch.repeat_interleave(torch.arange(len(chosen)), torch.tensor(per_image))
        target_rows = torch.cat(
            [
                torch.arange(int(starts[position[s.id]]), int(starts[position[s.id]]) + n)
                for s, n in zip(chosen, per_image)
                if n
            ]
            or [torch.zeros(0, dtype=torch.long)]
        )
        fields = {k: v[target_rows] for k, v in computed.targets.items()}
        fields.setdefault("classes", torch.zeros(0, dtype=torch.long))
        fields.setdefault("confidences", torch.zeros(0))
        targets = Targets(
            image_index=image_index,
            unmatched_gt=[torch.zeros(0, dtype=torch.long) for _ in chosen],
            **fields,
        )
        evidence = Evidence(list(self.layers), acts, grads, image_index, self.input_size)
        self._last = (key, evidence, targets)
        return evidence, targets

    def _layer_shape(self, layer: str, computed: Computed) -> tuple[int, ...]:
        """``C×h×w`` of a layer, from the computed batch or, if none was kept, one blank pass."""
        if computed.ids:
            return tuple(computed.acts[layer].shape[1:])
        if self._shapes is None:
            x = torch.zeros(1, 3, *self.input_size, device=self.adapter.device)
            with torch.no_grad(), capture_layers(self.adapter, self.layers) as captured:
                self.adapter.forward(x)
            self._shapes = {n: tuple(captured[n].shape[1:]) for n in self.layers}
        return self._shapes[layer]

    def evidence(
        self,
        indices: Sequence[int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Evidence:
        """As :meth:`EvidenceCache.evidence <hagxai.cache.store.EvidenceCache.evidence>`,
        computed now (a repeat of the last request is served from memory)."""
        return self._compute(indices)[0].to(device or "cpu", dtype)

    def targets(self, indices: Sequence[int], device: torch.device | str | None = None) -> Targets:
        """As :meth:`EvidenceCache.targets <hagxai.cache.store.EvidenceCache.targets>`."""
        targets = self._compute(indices)[1]
        if device is None:
            return targets
        return Targets(
            image_index=targets.image_index.to(device),
            classes=targets.classes.to(device),
            confidences=targets.confidences.to(device),
            boxes=None if targets.boxes is None else targets.boxes.to(device),
            anchors=None if targets.anchors is None else targets.anchors.to(device),
            gt_index=None if targets.gt_index is None else targets.gt_index.to(device),
            unmatched_gt=targets.unmatched_gt,
        )

    def frames(self, indices: Sequence[int]) -> list[Frame]:
        """As :meth:`EvidenceCache.frames <hagxai.cache.store.EvidenceCache.frames>`: the
        adapter's preprocessing of each image, in batches of ``batch_size``, without a model
        pass (an image whose pixels cannot be read gets an empty frame)."""
        chosen = [self._samples[int(i)] for i in indices]
        frames: list[Frame] = []
        for start in range(0, len(chosen), self.batch_size):
            images: list[torch.Tensor | None] = []
            for sample in chosen[start : start + self.batch_size]:
                try:
                    images.append(load_image(sample))
                except DataError:
                    images.append(None)
            readable = [image for image in images if image is not None]
            prepared = iter(self.adapter.preprocess(readable).frames if readable else [])
            empty = Frame((0, 0), (0.0, 0.0), (0.0, 0.0), self.input_size)
            frames.extend(empty if image is None else next(prepared) for image in images)
        return frames
