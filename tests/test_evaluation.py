"""The faithfulness scorer made from an adapter and the explained targets."""

from __future__ import annotations

import torch

from hagxai.evaluation import target_scorer
from hagxai.models import Targets


class _FixedScores:
    """An adapter stand-in whose rescore gives target ``t`` the score ``(t + 1) / 10`` times the
    image's mean pixel, for every perturbed image."""

    device = torch.device("cpu")

    def rescore(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        per_target = (torch.arange(len(targets), dtype=torch.float32) + 1) / 10
        return x.mean((1, 2, 3))[:, None] * per_target[None, :]


def test_target_scorer_averages_each_images_own_targets():
    # image 0 has targets 0 and 1, image 1 none, image 2 target 2
    targets = Targets(
        image_index=torch.tensor([0, 0, 2]),
        classes=torch.tensor([3, 4, 3]),
        confidences=torch.tensor([0.9, 0.8, 0.7]),
    )
    scorer = target_scorer(_FixedScores(), targets)
    images = torch.stack([torch.full((3, 4, 4), v) for v in (1.0, 0.5, 1.0, 0.2)])
    image_ids = torch.tensor([0, 1, 2, 0])  # perturbed copies of images 0, 1, 2 and 0 again
    scores = scorer(images, image_ids)
    expected = torch.tensor([(0.1 + 0.2) / 2, 0.0, 0.3, 0.2 * (0.1 + 0.2) / 2])
    torch.testing.assert_close(scores, expected)


class _ConvScores:
    """An adapter stand-in scoring through a convolution; it records the inputs' memory order."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.channels_last: list[bool] = []

    def rescore(self, x: torch.Tensor, targets: Targets) -> torch.Tensor:
        self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last))
        return self.conv(x).mean((2, 3))[:, targets.classes]


def test_target_scorer_feeds_channels_last_with_the_same_scores():
    targets = Targets(
        image_index=torch.tensor([0, 1]),
        classes=torch.tensor([1, 3]),
        confidences=torch.tensor([0.9, 0.8]),
    )
    adapter = _ConvScores()
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    image_ids = torch.tensor([0, 1, 0, 1, 1])
    scores = target_scorer(adapter, targets)(images, image_ids)
    assert adapter.channels_last == [True]
    with torch.no_grad():
        plain = adapter.conv(images).mean((2, 3))[:, targets.classes]
    torch.testing.assert_close(scores, plain[torch.arange(5), image_ids])
