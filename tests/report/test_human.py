"""The human row: leave-one-viewer-out maps, and why the row is absent when it must be."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hagxai.data import AttentionDataset, Sample
from hagxai.data.fixations import fixation_map
from hagxai.report.human import absent_reason, leave_one_out


def _sample(viewers) -> Sample:
    xy = np.array([[4.0, 4.0], [20.0, 10.0], [30.0, 30.0], [8.0, 28.0]], np.float32)
    return Sample(
        "a", "val", Path("a.png"), None, fixations=xy, viewers=np.asarray(viewers, np.int32)
    )


def _dataset(samples, sigma=None) -> AttentionDataset:
    metadata = {"observer": {"map_sigma_px": sigma}} if sigma else {}
    return AttentionDataset(
        Path("."), "hagxai", "classification", ["x"], samples, [], metadata=metadata
    )


def test_each_viewer_is_scored_against_the_others_in_the_map_frame():
    sample = _sample([0, 0, 1, 2])
    own, rest, fixations = leave_one_out(sample, (16, 16), (32, 32), sigma_px=4.0)
    assert own.shape == rest.shape == (3, 16, 16) and len(fixations) == 3
    # viewer 0 (fixations 0 and 1), at half the image's size and σ
    xy = sample.fixations * 0.5
    torch.testing.assert_close(own[0], torch.from_numpy(fixation_map(xy[:2], 16, 16, 2.0)))
    torch.testing.assert_close(rest[0], torch.from_numpy(fixation_map(xy[2:], 16, 16, 2.0)))
    torch.testing.assert_close(fixations[0], torch.from_numpy(xy[2:]))
    assert leave_one_out(_sample([1, 1, 1, 1]), (16, 16), (32, 32), 4.0) is None


def test_the_row_is_absent_with_a_reason():
    maps_only = Sample("b", "val", Path("b.png"), Path("b.npy"))
    assert "maps only" in absent_reason([maps_only], _dataset([maps_only], 3.0))
    one_viewer = _sample([0, 0, 0, 0])
    assert "no viewer ids" in absent_reason([one_viewer], _dataset([one_viewer], 3.0))
    viewers = _sample([0, 1, 2, 3])
    assert "σ" in absent_reason([viewers], _dataset([viewers]))
    assert absent_reason([viewers], _dataset([viewers], 3.0)) is None
