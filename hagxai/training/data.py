"""What the trainer holds in memory besides the evidence: human maps, fixations and frames.

The loss and the plausibility metrics compare maps in the *human map's* frame. The combiner's maps
are computed on the model input, so each image gets a way back:

* plain resize (classifiers; detectors whose input size equals the image size, as in the demo):
  the input frame is the image stretched, so the combiner renders straight at the human map's
  size (``out_size``), exactly what :class:`~hagxai.combiner.HAGCombiner` does;
* letterbox (padding in the input): the combiner renders at the input size, the padding is cut off
  with :meth:`~hagxai.models.Frame.map_to_original`, and the result is resized bilinearly to
  the human map's size.

Faithfulness always runs on the model input frame (maps at the input size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hagxai.cache import EvidenceSource
from hagxai.data import Sample
from hagxai.data.sample import read_image_size
from hagxai.errors import DataError
from hagxai.metrics.plausibility import fixations_from_map
from hagxai.models import Frame


@dataclass
class HumanData:
    """Human attention of the images of an evidence source, in its order.

    Attributes:
        maps: per image, ``H_i×W_i`` float32 scaled to ``[0, 1]`` by its maximum.
        fixations: per image, ``N_i×2`` (x, y) in the map's pixels (recorded fixations scaled
            from image to map pixels, or the top of the map when none are recorded).
        frames: per image, the model-input frame (from the evidence source), or ``None`` for a
            plain resize.
        keep: positions (in the evidence source) whose human data was usable.
        skipped: sample id -> why it was left out.
    """

    maps: list[Tensor]
    fixations: list[Tensor]
    frames: list[Frame | None]
    keep: list[int]
    skipped: dict[str, str]


def _render_frame(frame: Frame) -> Frame | None:
    """The source's frame, or ``None`` for a plain resize (no padding in the input)."""
    return None if frame.pad == (0.0, 0.0) else frame


def load_human_data(source: EvidenceSource, samples: Sequence[Sample]) -> HumanData:
    """Read the human maps and fixations of the images of ``source`` (a bad one is skipped).

    Args:
        source: the evidence of the images (their ids, in order, and their input frames).
        samples: the dataset samples (a superset of ``source.ids``).

    Returns:
        :class:`HumanData`, positions and frames in ``source``'s order.
    """
    by_id = {s.id: s for s in samples}
    maps, fixations, keep, skipped = [], [], [], {}
    for position, sample_id in enumerate(source.ids):
        sample = by_id[sample_id]
        try:
            human = sample.load_map()
            height, width = read_image_size(sample.image_path)  # as shown: EXIF applied
        except (DataError, OSError) as err:
            skipped[sample_id] = str(err)
            continue
        peak = float(human.max())
        if peak <= 0 or float(human.min()) == peak:
            skipped[sample_id] = f"{sample.map_path}: constant human map"
            continue
        human_t = torch.from_numpy(np.ascontiguousarray(human)) / peak
        if len(sample.fixations):
            scale = np.array([human.shape[1] / width, human.shape[0] / height], np.float32)
            fix = torch.from_numpy(sample.fixations * scale)
        else:
            fix = fixations_from_map(human_t[None])[0]
        maps.append(human_t)
        fixations.append(fix)
        keep.append(position)
    frames = [_render_frame(frame) for frame in source.frames(keep)]
    return HumanData(maps, fixations, frames, keep, skipped)


def goes_direct(sizes: Sequence[tuple[int, ...]], frames: Sequence[Frame | None]) -> bool:
    """Whether :func:`render` resizes a batch's maps straight to one size (no letterbox frame,
    one human-map size), so that a map is the explainer's output at that size."""
    return all(f is None for f in frames) and len(set(sizes)) == 1


def render(
    explain,
    evidence,
    sizes: Sequence[tuple[int, int]],
    frames: Sequence[Frame | None],
) -> list[Tensor]:
    """Maps of a batch in the human maps' frames (see the module docstring).

    Args:
        explain: ``(evidence, out_size) -> B×H×W`` maps on the input frame: a combiner or an
            explainer from :func:`hagxai.explainers.get`.
        evidence: evidence of ``B`` images.
        sizes: per image, the human map's ``(H, W)``.
        frames: per image, the input frame (``None`` for a plain resize).

    Returns:
        ``B`` maps ``H_i×W_i``, differentiable in a combiner's parameters.
    """
    if goes_direct(sizes, frames):
        return list(explain(evidence, sizes[0]))
    on_input = explain(evidence, evidence.input_size)
    out = []
    for saliency, size, frame in zip(on_input, sizes, frames):
        if frame is not None:
            saliency = frame.map_to_original(saliency)
        if tuple(saliency.shape[-2:]) != tuple(size):
            saliency = F.interpolate(
                saliency[None, None], size=size, mode="bilinear", align_corners=False
            )[0, 0]
        out.append(saliency)
    return out


def grouped(fn, maps: Sequence[Tensor], others: Sequence[Tensor], *, stack: bool) -> Tensor:
    """``fn(maps, others)`` over groups of equal map size, values back in input order.

    Args:
        fn: a per-image metric ``(B×H×W, B×H×W | list of B tensors) -> B``.
        maps: ``B`` maps.
        others: ``B`` human maps (``stack=True``) or fixation tensors (``stack=False``).

    Returns:
        ``B`` values in the input order.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(tuple(m.shape), []).append(i)
    values: list[Tensor] = [maps[0].new_zeros(())] * len(maps)
    for members in groups.values():
        stacked = torch.stack([maps[i] for i in members])
        second = [others[i].to(stacked.device, non_blocking=True) for i in members]
        result = fn(stacked, torch.stack(second) if stack else second)
        for j, i in enumerate(members):
            values[i] = result[j]
    return torch.stack(values)


def batch_loss(loss_fn, maps: Sequence[Tensor], human: Sequence[Tensor]) -> Tensor:
    """``loss_fn`` (a batch-mean loss such as :func:`~hagxai.losses.hag_loss`) over groups of
    equal size, weighted by group size: the mean over images, as for one equal-size batch."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, m in enumerate(maps):
        groups.setdefault(tuple(m.shape), []).append(i)
    total = maps[0].new_zeros(())
    for members in groups.values():
        stacked = torch.stack([maps[i] for i in members])
        target = torch.stack([human[i] for i in members])
        # staged in pinned memory so the copy to the GPU does not block the host
        target = target.pin_memory() if stacked.is_cuda and not target.is_cuda else target
        target = target.to(stacked.device, non_blocking=True)
        total = total + loss_fn(stacked, target) * len(members)
    return total / len(maps)
