"""Speed of the combiner's hot path and of a training step on in-memory evidence.

1. Gradient smoothing, forward + backward, at ``T×C×h×w`` (default 8×512×44×76): the dense
   21×21 depthwise ``conv2d`` against :func:`hagxai.combiner.separable_smooth` (two 1-D passes).
   The two run alternately in the same process, so machine load hits both alike; the ratio of
   their medians and of their minima is the figure to read (goal ≥ 5×).
2. Training throughput: forward + backward + Adam step of :class:`HAGCombiner` with
   :func:`hag_loss` on evidence held in memory, in targets per second.
3. Training on cached evidence: a random-init resnet18's evidence (``layer3`` + ``layer4`` at
   ``--cache-input``) over a seeded demo set is cached once (:class:`hagxai.cache.EvidenceCache`,
   in a temporary folder; its build time is printed), then random batches of ``--cache-batch``
   images are read from the cache alone (the limit) and read + combiner forward + backward +
   Adam, alternately, in targets per second.

Run: ``python benchmarks/combiner.py [--repeats 5] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from hagxai.cache import EvidenceCache
from hagxai.combiner import HAGCombiner, separable_smooth
from hagxai.config import DemoDataConfig, ModelConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.evidence import Evidence
from hagxai.losses import hag_loss
from hagxai.models import build_adapter


def dense_smooth(x: torch.Tensor, amp: torch.Tensor, s: torch.Tensor, radius: int) -> torch.Tensor:
    """The reference's 21×21 depthwise convolution, kernel built from its 2-D formula."""
    u = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = amp * torch.exp(-(u[:, None] ** 2 + u[None, :] ** 2) / (2 * s.abs() + 1e-5))
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, 2 * radius + 1, 2 * radius + 1)
    return F.conv2d(x, weight, padding=radius, groups=channels)


def timed(step: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1e3:8.1f} ms   min {min(times) * 1e3:8.1f} ms"


def bench_smoothing(args: argparse.Namespace, device: torch.device) -> None:
    shape = (args.targets, args.channels, args.height, args.width)
    x = torch.randn(shape, device=device, requires_grad=True)
    amp = torch.tensor(1.0, device=device, requires_grad=True)
    s = torch.tensor(3.0, device=device, requires_grad=True)
    upstream = torch.randn(shape, device=device)

    def step(smooth: Callable) -> Callable[[], None]:
        def run() -> None:
            x.grad = amp.grad = s.grad = None
            smooth(x, amp, s, 10).backward(upstream)

        return run

    dense, separable = step(dense_smooth), step(separable_smooth)
    dense()  # warm-up: allocator and kernel selection
    separable()
    times: dict[str, list[float]] = {"dense": [], "separable": []}
    for _ in range(args.repeats):
        times["dense"].append(timed(dense, device))
        times["separable"].append(timed(separable, device))
    with torch.no_grad():
        error = (dense_smooth(x, amp, s, 10) - separable_smooth(x, amp, s, 10)).abs().max()
    print(f"smoothing forward+backward at {'×'.join(map(str, shape))}, {args.repeats} repeats:")
    print(f"  dense 21×21 conv2d   {summary(times['dense'])}")
    print(f"  separable (2 × 1-D)  {summary(times['separable'])}")
    median_ratio = statistics.median(times["dense"]) / statistics.median(times["separable"])
    min_ratio = min(times["dense"]) / min(times["separable"])
    print(f"  speed-up: {median_ratio:.1f}× (medians), {min_ratio:.1f}× (minima); goal ≥ 5×")
    print(f"  max |dense − separable| = {float(error):.2e}")


def bench_training(args: argparse.Namespace, device: torch.device) -> None:
    images = max(1, args.targets // 2)
    generator = torch.Generator().manual_seed(0)
    grid = (args.channels, args.height, args.width)
    evidence = Evidence(
        layers=["layer"],
        acts={"layer": torch.randn(images, *grid, generator=generator)},
        grads={"layer": torch.randn(args.targets, *grid, generator=generator)},
        image_index=torch.arange(args.targets) % images,
        input_size=(8 * args.height, 8 * args.width),
    ).to(device)
    human = torch.rand(images, *evidence.input_size, generator=generator).to(device)
    combiner = HAGCombiner(["layer"]).to(device)
    optimiser = torch.optim.Adam(combiner.parameters(), lr=5e-2)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        hag_loss(combiner(evidence, evidence.input_size), human).backward()
        optimiser.step()

    step()
    times = [timed(step, device) for _ in range(args.repeats)]
    rate = args.targets / statistics.median(times)
    best = args.targets / min(times)
    print(
        f"training step (forward+backward+Adam), {args.targets} targets over {images} images, "
        f"maps {evidence.input_size[0]}×{evidence.input_size[1]}:"
    )
    print(f"  {summary(times)}   → {rate:.1f} targets/s (median), {best:.1f} (best)")


def bench_cached_training(args: argparse.Namespace, device: torch.device) -> None:
    layers = ["layer3", "layer4"]
    size = args.cache_input
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(size, size)))
    dtype = {"float32": torch.float32, "float16": torch.float16}[args.cache_dtype]
    with tempfile.TemporaryDirectory() as folder:
        demo = DemoDataConfig(num_train=args.cache_images, num_val=1)
        root = make_demo_dataset(
            Path(folder) / "data", "classification", demo, ObserverConfig(), 0, False
        )
        samples = open_dataset(root, "hagxai").split("train")
        start = time.perf_counter()
        cache = EvidenceCache.build(
            adapter,
            samples,
            layers=layers,
            root=Path(folder) / "cache",
            dtype=dtype,
            progress=False,
        )
        build_s = time.perf_counter() - start
        on_disk = sum(p.stat().st_size for p in cache.path.iterdir()) / 2**20
        maps = {s.id: torch.from_numpy(s.load_map()) for s in samples}
        human = torch.stack([maps[i] for i in cache.ids]).to(device)
        combiner = HAGCombiner(layers, layer_weights=True).to(device)
        optimiser = torch.optim.Adam(combiner.parameters(), lr=5e-2)
        generator = torch.Generator().manual_seed(0)
        batch = min(args.cache_batch, len(cache))

        def read() -> None:
            cache.evidence(torch.randperm(len(cache), generator=generator)[:batch], device)

        def train() -> None:
            index = torch.randperm(len(cache), generator=generator)[:batch]
            evidence = cache.evidence(index, device)
            optimiser.zero_grad(set_to_none=True)
            maps = combiner(evidence, tuple(human.shape[-2:]), validate=False)
            hag_loss(maps, human[index.to(device)]).backward()
            optimiser.step()

        read()
        train()
        times: dict[str, list[float]] = {"read": [], "train": []}
        for _ in range(args.repeats):
            times["read"].append(timed(read, device))
            times["train"].append(timed(train, device))
    shapes = ", ".join(
        f"{n} {'×'.join(map(str, cache.evidence([0]).acts[n].shape[1:]))}" for n in layers
    )
    print(
        f"training on cached evidence: resnet18 at {size}×{size} ({shapes}), {len(cache)} images "
        f"cached as {args.cache_dtype} ({on_disk:.1f} MiB, built in {build_s:.1f} s), "
        f"batches of {batch} images (1 target each), maps "
        f"{human.shape[-2]}×{human.shape[-1]}:"
    )
    for name, label in (("read", "read only (the limit)"), ("train", "read + fwd+bwd+Adam")):
        rate = batch / statistics.median(times[name])
        best = batch / min(times[name])
        print(
            f"  {label:24s} {summary(times[name])}   → {rate:8.1f} targets/s (median), "
            f"{best:.1f} (best)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--height", type=int, default=44)
    parser.add_argument("--width", type=int, default=76)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-images", type=int, default=80, help="demo images to cache")
    parser.add_argument("--cache-input", type=int, default=224, help="model input size")
    parser.add_argument("--cache-batch", type=int, default=40, help="images per batch")
    parser.add_argument("--cache-dtype", choices=("float32", "float16"), default="float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} CPU threads")
    bench_smoothing(args, device)
    bench_training(args, device)
    bench_cached_training(args, device)


if __name__ == "__main__":
    main()
