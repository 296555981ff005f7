"""Deletion / insertion: closed-form toy cases, batching, baselines and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hagxai.metrics import MetricWarning
from hagxai.metrics.faithfulness import (
    FAITHFULNESS,
    box_area_fraction,
    deletion,
    insertion,
)

# A 4×4 image of ones and a map whose order is the raster order (pixel 0 first). The toy scorer
# is the mean of the top row R (pixels 0..3, r = |R|/HW = 1/4 of the image).
IMAGE = torch.ones(1, 3, 4, 4)
RASTER = torch.arange(16, 0, -1, dtype=torch.float32).view(1, 4, 4)


def top_row_mean(images: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    return images[:, :, 0, :].mean((1, 2))


def test_deletion_region_first_by_hand() -> None:
    # R goes first: the score falls linearly from 1 to 0 over x in [0, r] and stays 0, so the
    # AUC is r/2 = 1/8 (16 steps: trapezoids 7/8, 5/8, 3/8, 1/8, then 0, each 1/16 wide).
    result = deletion(IMAGE, RASTER, top_row_mean, steps=16, baseline="zero")
    expected = torch.tensor([1.0, 0.75, 0.5, 0.25] + [0.0] * 13)
    torch.testing.assert_close(result.curves[0], expected)
    torch.testing.assert_close(result.x, torch.linspace(0, 1, 17))
    assert result.auc.item() == pytest.approx(1 / 8)
    # With 4 steps of 4 pixels the curve is 1, 0, 0, 0, 0: the same area, r/2.
    coarse = deletion(IMAGE, RASTER, top_row_mean, steps=4, baseline="zero")
    assert coarse.auc.item() == pytest.approx(1 / 8)


def test_deletion_region_last_by_hand() -> None:
    # R goes last: the score stays 1 until x = 1 − r, then falls linearly: AUC 1 − r/2 = 7/8.
    result = deletion(IMAGE, RASTER.flip(1), top_row_mean, steps=16, baseline="zero")
    assert result.auc.item() == pytest.approx(7 / 8)


def test_insertion_by_hand() -> None:
    # Insertion on black reveals R first: 0 rising to 1 over [0, r], then 1: AUC 1 − r/2 = 7/8.
    result = insertion(IMAGE, RASTER, top_row_mean, steps=16)
    torch.testing.assert_close(result.curves[0, :5], torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    assert result.auc.item() == pytest.approx(7 / 8)


def test_max_fraction_by_hand() -> None:
    # Capped at r = 1/4 of the image, 4 steps delete one pixel of R each: the curve falls
    # linearly from 1 to 0 over the whole normalised axis, AUC 1/2.
    result = deletion(IMAGE, RASTER, top_row_mean, steps=4, baseline="zero", max_fraction=0.25)
    torch.testing.assert_close(result.curves[0], torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert result.auc.item() == pytest.approx(0.5)


def _channel_scorer(images: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
    # Depends on which image a row belongs to, so that a wrong image_id would show.
    channel = image_ids % images.shape[1]
    return images[torch.arange(len(images)), channel].mean((1, 2))


def _one_at_a_time(images, maps, fill, steps, fractions, insert):
    b, _, h, w = images.shape
    curves = torch.empty(b, steps + 1)
    for i in range(b):
        order = maps[i].flatten().argsort(descending=True, stable=True)
        for k in range(steps + 1):
            n = math.floor(k * float(fractions[i]) * h * w / steps + 0.5)
            chosen = torch.zeros(h * w, dtype=torch.bool)
            chosen[order[:n]] = True
            chosen = chosen.view(1, h, w)
            a, b_ = (images[i], fill[i]) if insert else (fill[i], images[i])
            out = torch.where(chosen, a, b_)
            curves[i, k] = _channel_scorer(out[None], torch.tensor([i]))[0]
    return curves


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batches_equal_a_loop(batch_size: int) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 6, 5, generator=g)
    maps = (torch.rand(3, 6, 5, generator=g) * 4).floor()  # ties, broken in raster order
    fractions = torch.tensor([1.0, 0.5, 0.3])
    for insert, fn in ((False, deletion), (True, insertion)):
        result = fn(
            images,
            maps,
            _channel_scorer,
            steps=9,
            baseline="mean",
            max_fraction=fractions,
            batch_size=batch_size,
        )
        fill = images.mean((2, 3), keepdim=True).expand_as(images)
        expected = _one_at_a_time(images, maps, fill, 9, fractions, insert)
        torch.testing.assert_close(result.curves, expected)
        torch.testing.assert_close(result.auc, torch.trapezoid(expected, result.x, dim=1))


def test_baselines() -> None:
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    maps = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(2))
    first = deletion(
        images, maps, _channel_scorer, steps=4, generator=torch.Generator().manual_seed(3)
    )
    again = deletion(
        images, maps, _channel_scorer, steps=4, generator=torch.Generator().manual_seed(3)
    )
    other = deletion(
        images, maps, _channel_scorer, steps=4, generator=torch.Generator().manual_seed(4)
    )
    torch.testing.assert_close(first.curves, again.curves)
    assert not torch.equal(first.curves, other.curves)
    # Step 0 is the image itself whatever the baseline.
    torch.testing.assert_close(first.curves[:, 0], _channel_scorer(images, torch.arange(2)))
    # Blurring a constant image changes nothing, so the deletion curve is flat.
    flat = torch.full((1, 3, 8, 8), 0.3)
    blurred = deletion(flat, maps[:1], _channel_scorer, steps=4, baseline="blur", blur_sigma=1.5)
    torch.testing.assert_close(blurred.curves, torch.full((1, 5), 0.3))
    # A tensor baseline: inserting the whole image on a grey one ends at the image's score.
    grey = torch.full((3, 8, 8), 0.5)
    shown = insertion(images, maps, _channel_scorer, steps=4, baseline=grey)
    torch.testing.assert_close(shown.curves[:, 0], torch.full((2,), 0.5))
    torch.testing.assert_close(shown.curves[:, -1], _channel_scorer(images, torch.arange(2)))


class _Counting:
    """``_channel_scorer`` that counts the images it scores."""

    def __init__(self) -> None:
        self.scored = 0

    def __call__(self, images: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        self.scored += len(images)
        return _channel_scorer(images, image_ids)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_shared_steps_are_scored_once_with_the_same_curves(batch_size: int) -> None:
    g = torch.Generator().manual_seed(5)
    images = torch.rand(3, 3, 6, 5, generator=g)
    maps = [torch.rand(3, 6, 5, generator=g) for _ in range(3)]
    calls = [
        (fn, baseline) for baseline in ("zero", "blur") for fn in (deletion, insertion)
    ]  # the evaluation's order: deletion then insertion, per canvas
    alone, counting, shared = [], _Counting(), {}
    for m in maps:
        for fn, baseline in calls:
            kwargs = {"steps": 4, "baseline": baseline, "batch_size": batch_size}
            alone.append(fn(images, m, _channel_scorer, **kwargs))
            together = fn(images, m, counting, shared=shared, **kwargs)
            torch.testing.assert_close(together.curves, alone[-1].curves)
            torch.testing.assert_close(together.auc, alone[-1].auc)
    # 3 maps × 4 curves × 5 steps × 3 images; the images themselves, the black and the blurred
    # canvas are scored once per image, not at both ends of every curve.
    assert counting.scored == 3 * 4 * 3 * 3 + 3 * 3
    assert set(shared) == {"image", "zero", "blur:5.0"}
    torch.testing.assert_close(shared["image"], _channel_scorer(images, torch.arange(3)))


def test_a_random_baseline_and_a_partial_last_step_are_not_shared() -> None:
    g = torch.Generator().manual_seed(6)
    images, maps = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 4, 4, generator=g)
    shared: dict[str, torch.Tensor] = {}
    deletion(images, maps, _channel_scorer, steps=2, generator=g, shared=shared)
    assert set(shared) == {"image"}  # the noise is drawn per call
    # Deleting at most half of one image never shows the bare canvas for both images.
    deletion(
        images,
        maps,
        _channel_scorer,
        steps=2,
        baseline="zero",
        max_fraction=torch.tensor([1.0, 0.5]),
        shared=shared,
    )
    assert "zero" not in shared
    counting = _Counting()
    result = insertion(images, maps, counting, steps=2, shared=shared)
    assert counting.scored == 2 * 3 - 2  # step 2 (the image) was known; step 0 is scored
    torch.testing.assert_close(
        result.curves, insertion(images, maps, _channel_scorer, steps=2).curves
    )
    assert "zero" in shared


def test_constant_map_goes_in_raster_order_with_a_warning() -> None:
    with pytest.warns(MetricWarning, match="1 of 1 maps are constant"):
        result = deletion(IMAGE, torch.zeros(1, 4, 4), top_row_mean, steps=16, baseline="zero")
    assert result.auc.item() == pytest.approx(1 / 8)


def test_bad_input() -> None:
    maps = RASTER.clone()
    maps[0, 1, 1] = math.nan
    with pytest.raises(ValueError, match="maps hold NaN or inf"):
        deletion(IMAGE, maps, top_row_mean)
    with pytest.raises(ValueError, match=r"\(1, 3, 4, 4\).*\(1, 4, 5\)"):
        deletion(IMAGE, torch.rand(1, 4, 5), top_row_mean)
    with pytest.raises(ValueError, match="floating"):
        deletion(IMAGE.to(torch.uint8), RASTER, top_row_mean)
    with pytest.raises(ValueError, match="max_fraction"):
        insertion(IMAGE, RASTER, top_row_mean, max_fraction=torch.tensor([1.5]))
    with pytest.raises(ValueError, match="baseline"):
        deletion(IMAGE, RASTER, top_row_mean, baseline="gray")
    with pytest.raises(ValueError, match="scorer returned"):
        deletion(IMAGE, RASTER, lambda x, i: x.mean((1, 2, 3))[:, None], steps=2)


def test_non_finite_scores_warn() -> None:
    def scorer(images: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        return torch.where(image_ids == 1, math.nan, images.mean((1, 2, 3)))

    with pytest.warns(MetricWarning, match="NaN or inf on 1 of 2 images"):
        result = deletion(IMAGE.expand(2, -1, -1, -1), RASTER.expand(2, -1, -1), scorer, steps=4)
    assert torch.isnan(result.auc).tolist() == [False, True]


def test_box_area_fraction() -> None:
    boxes = [
        torch.tensor([[0.0, 0.0, 5.0, 4.0], [5.0, 0.0, 10.0, 4.0]]),  # 40 of 100 pixels
        torch.tensor([[-5.0, -5.0, 20.0, 20.0]]),  # clipped to the image, capped at 1
        torch.zeros(0, 4),  # no box: the whole image
    ]
    fractions = box_area_fraction(boxes, (10, 10))
    torch.testing.assert_close(fractions, torch.tensor([0.4, 1.0, 1.0]))


def test_registry() -> None:
    assert not FAITHFULNESS["deletion"].higher_is_better
    assert FAITHFULNESS["insertion"].higher_is_better
    metric = FAITHFULNESS["insertion"]
    data = {"images": IMAGE, "scorer": top_row_mean}
    result = metric.fn(maps=RASTER, steps=16, **{k: data[k] for k in metric.inputs})
    assert result.auc.item() == pytest.approx(7 / 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_same_curves_on_the_gpu() -> None:
    images = torch.rand(2, 3, 8, 8)
    maps = torch.rand(2, 8, 8)
    cpu = deletion(images, maps, _channel_scorer, steps=8, baseline="blur")
    gpu = deletion(images.cuda(), maps.cuda(), _channel_scorer, steps=8, baseline="blur")
    assert gpu.auc.is_cuda
    torch.testing.assert_close(gpu.curves.cpu(), cpu.curves)
