"""Evidence of a chunk of samples, computed in batches: a failing batch is retried one image at a
time so that only the bad image is skipped (and listed with its reason)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hagxai.cache.rules import TargetRule, sample_problem
from hagxai.data import Sample
from hagxai.evidence import extract_evidence
from hagxai.models import Frame, ModelAdapter

TARGET_FIELDS = ("classes", "confidences", "boxes", "anchors", "gt_index")


@dataclass
class Computed:
    """Evidence of some samples, one row per kept image, targets grouped by image.

    Attributes:
        ids: the kept samples' ids, in input order.
        acts: layer -> ``n×C×h×w`` activations (``n = len(ids)``).
        grads: layer -> ``t×C×h×w`` gradients, the targets of each kept image in a row.
        counts: targets per kept image (``n``, summing to ``t``).
        targets: the :data:`TARGET_FIELDS` the adapter gave -> ``t`` (``t×4`` for boxes).
        frames: per kept image, how the original maps into the model input.
        skipped: sample id -> why it was left out, in input order.
    """

    ids: list[str]
    acts: dict[str, Tensor]
    grads: dict[str, Tensor]
    counts: list[int]
    targets: dict[str, Tensor]
    frames: list[Frame]
    skipped: dict[str, str]


def load_image(sample: Sample) -> Tensor:
    """``3×H×W`` uint8 (the adapter's preprocessing scales it to [0, 1])."""
    # A copy: the decoded array is read-only, and torch tensors must be writable.
    return torch.from_numpy(np.array(sample.load_image())).permute(2, 0, 1)


def compute(
    adapter: ModelAdapter,
    samples: Sequence[Sample],
    layers: list[str],
    rule: TargetRule,
    require_maps: bool,
    on_batch: Callable[[int], None],
    batch_size: int,
) -> Computed:
    """Evidence of ``samples`` in batches of ``batch_size``, bad samples skipped.

    Args:
        adapter: the frozen model.
        samples: the images, in order.
        layers: resolved layer names.
        rule: how targets are chosen.
        require_maps: skip samples without a readable, finite attention map.
        on_batch: called with the number of samples each step dealt with (a progress bar).
        batch_size: images per forward/backward pass.
    """
    skipped: dict[str, str] = {}
    good: list[Sample] = []
    for sample in samples:
        problem = sample_problem(sample, rule, require_maps)
        if problem is None:
            good.append(sample)
        else:
            skipped[sample.id] = problem
    parts: list[Computed] = []
    for start in range(0, len(good), batch_size):
        batch = good[start : start + batch_size]
        try:
            parts.append(_compute_batch(adapter, batch, layers, rule))
        except Exception:
            # Retry one image at a time so that only the bad image is skipped.
            for sample in batch:
                try:
                    parts.append(_compute_batch(adapter, [sample], layers, rule))
                except Exception as err:
                    # Whatever broke this one image must not stop the build: it is listed.
                    skipped[sample.id] = f"{type(err).__name__}: {err}".splitlines()[0]
        on_batch(len(batch))
    on_batch(len(samples) - len(good))
    for part in parts:
        skipped.update(part.skipped)
    order = {sample.id: i for i, sample in enumerate(samples)}
    skipped = dict(sorted(skipped.items(), key=lambda item: order[item[0]]))
    return _concat(parts, layers, skipped)


def _compute_batch(
    adapter: ModelAdapter, batch: Sequence[Sample], layers: list[str], rule: TargetRule
) -> Computed:
    images = [load_image(sample) for sample in batch]
    with warnings.catch_warnings():
        # Images without targets are reported in ``skipped``, not as a warning per batch.
        warnings.simplefilter("ignore")
        extraction = extract_evidence(adapter, images, rule.spec(batch), layers)
    evidence, targets = extraction.evidence, extraction.targets
    image_index = targets.image_index.cpu()
    order = torch.argsort(image_index, stable=True)
    counts = torch.bincount(image_index, minlength=len(batch))
    finite = torch.ones(len(batch), dtype=torch.bool)
    for name in layers:
        acts, grads = evidence.acts[name].cpu(), evidence.grads[name].cpu()
        finite &= torch.isfinite(acts).flatten(1).all(1)
        bad_rows = ~torch.isfinite(grads).flatten(1).all(1)
        finite[image_index[bad_rows]] = False
    skipped: dict[str, str] = {}
    for i, sample in enumerate(batch):
        if counts[i] == 0:
            skipped[sample.id] = "no target"
        elif not finite[i]:
            skipped[sample.id] = "non-finite evidence"
    keep = torch.tensor([s.id not in skipped for s in batch])
    keep_rows = keep[image_index[order]]
    rows = order[keep_rows]
    fields: dict[str, Tensor] = {}
    for field in TARGET_FIELDS:
        value = getattr(targets, field)
        if value is not None:
            fields[field] = value.detach().cpu()[rows]
    fields["confidences"] = fields["confidences"].float()
    return Computed(
        ids=[s.id for s, k in zip(batch, keep.tolist()) if k],
        acts={n: evidence.acts[n].cpu()[keep] for n in layers},
        grads={n: evidence.grads[n].cpu()[rows] for n in layers},
        counts=counts[keep].tolist(),
        targets=fields,
        frames=[f for f, k in zip(extraction.prepared.frames, keep.tolist()) if k],
        skipped=skipped,
    )


def _concat(parts: list[Computed], layers: list[str], skipped: dict[str, str]) -> Computed:
    parts = [p for p in parts if p.ids]
    if not parts:
        return Computed([], {}, {}, [], {}, [], skipped)
    return Computed(
        ids=[i for p in parts for i in p.ids],
        acts={n: torch.cat([p.acts[n] for p in parts]) for n in layers},
        grads={n: torch.cat([p.grads[n] for p in parts]) for n in layers},
        counts=[c for p in parts for c in p.counts],
        targets={k: torch.cat([p.targets[k] for p in parts]) for k in parts[0].targets},
        frames=[f for p in parts for f in p.frames],
        skipped=skipped,
    )


def frame_record(frame: Frame) -> list[float]:
    """A frame as the index stores it: ``[H, W, sy, sx, top, left]`` (the input size is the
    cache's)."""
    return [*frame.orig_size, *frame.scale, *frame.pad]


def frame_from_record(record: Sequence[float], input_size: tuple[int, int]) -> Frame:
    """The :class:`Frame` of a :func:`frame_record` for a model input of ``input_size``."""
    h0, w0, sy, sx, top, left = record
    return Frame((int(h0), int(w0)), (sy, sx), (top, left), input_size)
