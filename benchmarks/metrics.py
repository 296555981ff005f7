"""Speed of the metrics: batched deletion + insertion against a one-image-at-a-time loop, and
plausibility throughput.

Run ``python benchmarks/metrics.py [--device cuda] [--steps 100] [--images 4] [--repeats 3]``.
The scorer is a random-init torchvision resnet18 (softmax probability of a fixed class per image)
on 64×64 images. Both ways must give the same curves; the script asserts it, then prints the
median and min time over repeats and their ratio (goal: batched ≥ 5× faster), and for each
plausibility metric the maps per second on a batch of maps.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.models import resnet18

from hagxai.metrics.faithfulness import deletion, insertion
from hagxai.metrics.plausibility import PLAUSIBILITY, centre_bias


def _make_scorer(device: torch.device, images: int) -> Callable:
    model = resnet18(weights=None, num_classes=10).to(device).eval()
    targets = torch.arange(images, device=device) % 10

    def scorer(batch: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        probs = model(batch).softmax(1)
        return probs[torch.arange(len(batch), device=device), targets[image_ids]]

    return scorer


def _loop(images, maps, scorer, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The unbatched way: every perturbed image built and scored on its own."""
    b, _, h, w = images.shape
    generator = torch.Generator(images.device).manual_seed(seed)
    noise = torch.rand(images.shape, generator=generator, device=images.device)
    noise = noise.to(images)
    black = torch.zeros_like(images)
    curves = torch.empty(2, b, steps + 1, device=images.device)
    with torch.no_grad():
        for i in range(b):
            order = maps[i].flatten().argsort(descending=True, stable=True)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(h * w, device=images.device)
            for k in range(steps + 1):
                chosen = (rank < (k * h * w + steps // 2) // steps).view(1, h, w)
                ids = torch.tensor([i], device=images.device)
                deleted = torch.where(chosen, noise[i], images[i])
                shown = torch.where(chosen, images[i], black[i])
                curves[0, i, k] = scorer(deleted[None], ids)[0]
                curves[1, i, k] = scorer(shown[None], ids)[0]
    return curves[0], curves[1]


def _batched(images, maps, scorer, steps: int, seed: int, batch_size: int):
    generator = torch.Generator(images.device).manual_seed(seed)
    d = deletion(
        images, maps, scorer, steps=steps, generator=generator, batch_size=batch_size
    ).curves
    i = insertion(images, maps, scorer, steps=steps, batch_size=batch_size).curves
    return d, i


def _timed(fn: Callable, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def faithfulness_speed(args: argparse.Namespace, device: torch.device) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.images, 3, 64, 64, generator=g).to(device)
    maps = torch.rand(args.images, 64, 64, generator=g).to(device)
    scorer = _make_scorer(device, args.images)
    _batched(images, maps, scorer, 2, 0, args.batch_size)  # warm-up
    loop_times, batch_times = [], []
    for repeat in range(args.repeats):
        t_loop, (d_loop, i_loop) = _timed(
            lambda r=repeat: _loop(images, maps, scorer, args.steps, r), device
        )
        t_batch, (d_batch, i_batch) = _timed(
            lambda r=repeat: _batched(images, maps, scorer, args.steps, r, args.batch_size),
            device,
        )
        torch.testing.assert_close(d_batch, d_loop, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(i_batch, i_loop, atol=1e-5, rtol=1e-4)
        loop_times.append(t_loop)
        batch_times.append(t_batch)
    n = 2 * args.images * (args.steps + 1)
    print(
        f"deletion+insertion, resnet18 64×64, {args.images} images × {args.steps + 1} steps × 2"
        f" = {n} scored images, batch {args.batch_size}, {args.repeats} repeats on {device}"
    )
    for name, times in (("loop", loop_times), ("batched", batch_times)):
        print(f"  {name:8s} median {statistics.median(times):.3f} s  min {min(times):.3f} s")
    ratios = [a / b for a, b in zip(loop_times, batch_times)]
    print(
        f"  speed-up median {statistics.median(ratios):.1f}×  min {min(ratios):.1f}×"
        f"  (ratio of min times {min(loop_times) / min(batch_times):.1f}×)"
    )


def plausibility_speed(args: argparse.Namespace, device: torch.device) -> None:
    g = torch.Generator().manual_seed(1)
    b, h, w = args.maps, args.size, args.size
    maps = torch.rand(b, h, w, generator=g).to(device)
    human = torch.rand(b, h, w, generator=g).to(device)

    def points(n: int) -> torch.Tensor:
        return torch.stack(
            [torch.randint(0, w, (n,), generator=g), torch.randint(0, h, (n,), generator=g)], 1
        ).to(device)

    data = {
        "human_maps": human,
        "fixations": [points(30) for _ in range(b)],
        "other_fixations": [points(300) for _ in range(b)],
        "baseline_maps": centre_bias(h, w, device=device),
    }
    print(f"plausibility, {b} maps of {h}×{w}, 30 fixations, 300 other fixations, on {device}")
    for metric in PLAUSIBILITY.values():
        call = functools.partial(metric.fn, maps=maps, **{k: data[k] for k in metric.inputs})
        call()  # warm-up
        times = [_timed(call, device)[0] for _ in range(5)]
        print(
            f"  {metric.name:17s} median {b / statistics.median(times):10.0f} maps/s"
            f"  best {b / min(times):10.0f} maps/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--maps", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    faithfulness_speed(args, device)
    plausibility_speed(args, device)


if __name__ == "__main__":
    main()
