"""One training step of the combiner at the #11 shapes: the old, the new and the floor.

Synthetic evidence with the shapes of the issue's real set (a YOLOv5n's backbone layers 64/128/256
channels at 60×80/30×40/15×20, 40 images per batch, ~1.9 targets per image), human maps at
``--map-size``. Everything runs alternately in one process, so machine load hits all alike; each
figure is the median and the minimum of ``--repeats`` runs, and the ratios are taken between
figures of the same run.

1. φ alone: the old two clamps and a sum against the fused forms, on one layer's gradients.
2. One optimiser step (zero grad, forward, :func:`hag_loss`, backward, Adam) of
   * ``old``: the combiner before #11 (frozen in ``benchmarks/_baseline_combiner.py``);
   * ``new``: :class:`HAGCombiner` with its defaults (the reference's order of operations);
   * ``new fold``: with ``fold_resize=True``;
   * ``new fold + grid loss``: and the loss on the combiner's grid (what the trainer runs,
     ``train.grid_loss``);
   and the floors: the smoothing matmuls alone, forward and backward (the step needs both,
   because ``g±`` and the kernel width are learnt), on the upsampled ``T×ΣC×60×80`` gradients
   (what ``old`` and ``new`` smooth) and folded onto each layer's grid (what ``new fold``
   smooths). Goals (#11): the trainer's step ≥ 2.5× faster than ``old``, within 1.5× of its
   floor.
3. Evidence stored as float16 / bfloat16: one batch read from an in-memory store of 120 images
   (gathered as a cache does) and upcast per batch, then the ``new fold`` step.
4. With ``--sections groups``: the ``new fold`` step as the trainer takes it (``train.grad_group``,
   README "Many processes: torchrun"): the batch cut into groups of ``--groups`` images, each
   group's evidence sliced out, its loss weighted as its share of the batch, its gradient taken
   alone, and the flat gradients added up in order; against the one-pass step of before.
5. With ``--sections compile``: the ``new fold`` step through ``torch.compile`` (compile time
   printed).
6. On a GPU (when CUDA is present): steps on the device, with float32, bfloat16 smoothing, and
   half evidence read from pinned memory with non-blocking copies.

Allocation: by default the process raises glibc's mmap threshold as the ``hagxai`` command does
(:mod:`hagxai.allocator`); ``--malloc default`` measures glibc's default, where every large
tensor is paid again in page faults.

Run: ``python benchmarks/train_epoch.py [--repeats 5] [--sections phi steps storage groups
compile] [--groups 40 8 5] [--malloc default]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _baseline_combiner as baseline

from hagxai.allocator import tune_malloc
from hagxai.combiner import HAGCombiner, gaussian_factor, phi
from hagxai.combiner import _band as band
from hagxai.combiner_kernel import Resize, fold_band
from hagxai.evidence import Evidence
from hagxai.losses import hag_loss, hag_losses_on_grid, human_moments
from hagxai.training.trainer import set_summed_gradient

LAYERS = {"stage2": (64, 60, 80), "stage3": (128, 30, 40), "stage4": (256, 15, 20)}


def synthetic_evidence(images: int, seed: int = 0) -> tuple[Evidence, Tensor]:
    """Evidence of ``images`` images with 2 targets each but every tenth (1.9 per image).

    Returns:
        The evidence (``acts`` ``B×C×h×w``, ``grads`` ``T×C×h×w``, YOLO-like magnitudes) and the
        per-image target counts.
    """
    generator = torch.Generator().manual_seed(seed)
    counts = torch.tensor([1 if i % 10 == 9 else 2 for i in range(images)])
    index = torch.repeat_interleave(torch.arange(images), counts)
    acts, grads = {}, {}
    for name, (c, h, w) in LAYERS.items():
        acts[name] = torch.randn(images, c, h, w, generator=generator).relu_() * 2
        grads[name] = torch.randn(len(index), c, h, w, generator=generator) * 1e-6
    return Evidence(list(LAYERS), acts, grads, index, (480, 640)), counts


def human_maps(images: int, size: tuple[int, int], seed: int = 1) -> Tensor:
    """``B×H×W`` smooth blobs in ``[0, 1]``."""
    generator = torch.Generator().manual_seed(seed)
    ys = torch.linspace(0, 1, size[0])[:, None]
    xs = torch.linspace(0, 1, size[1])[None, :]
    centres = torch.rand(images, 2, generator=generator)
    return torch.exp(
        -((ys - centres[:, 0, None, None]) ** 2 + (xs - centres[:, 1, None, None]) ** 2) / 0.02
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return time.perf_counter() - start


def race(steps: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict:
    """Each step once to warm up, then ``repeats`` rounds of all of them in turn."""
    for step in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(timed(step, device))
    return times


def line(name: str, times: list[float], reference: list[float] | None = None) -> str:
    median, best = statistics.median(times), min(times)
    text = f"  {name:34s} median {median * 1e3:9.1f} ms   min {best * 1e3:9.1f} ms"
    if reference is not None:
        text += (
            f"   ×{statistics.median(reference) / median:5.2f} (medians)"
            f" ×{min(reference) / best:5.2f} (minima)"
        )
    return text


def print_lines(times: dict[str, list[float]], reference: str) -> None:
    """One :func:`line` per entry of ``times``, each with its speed against ``times[reference]``."""
    for name, t in times.items():
        print(line(name, t, times[reference]))


def ratio(top: list[float], bottom: list[float]) -> str:
    return (
        f"{statistics.median(top) / statistics.median(bottom):.2f} (medians), "
        f"{min(top) / min(bottom):.2f} (minima)"
    )


def training_step(
    combiner: torch.nn.Module, evidence: Evidence, human: Tensor, grid_loss: bool = False
) -> Callable[[], None]:
    """One optimiser step; ``grid_loss``: the loss on the combiner's grid, as the trainer
    computes it (``train.grid_loss``: the human maps reduced once, before the steps), else on
    maps resized to the human maps' size."""
    optimiser = torch.optim.Adam(combiner.parameters(), lr=1e-4)
    size = tuple(human.shape[-2:])
    moments = None
    if grid_loss:  # the human maps reduced on the combiner's own grid, as the trainer does
        with torch.no_grad():
            grid = tuple(combiner.grid_maps(evidence, validate=False).shape[-2:])
        moments = human_moments(human, grid)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        if moments is not None:
            loss = hag_losses_on_grid(combiner.grid_maps(evidence, validate=False), moments).mean()
        else:
            loss = hag_loss(combiner(evidence, size, validate=False), human)
        loss.backward()
        optimiser.step()

    return step


def smoothing_floor(evidence: Evidence, device: torch.device, fold: bool) -> Callable[[], None]:
    """Forward + backward of the gradient smoothing matmuls alone, on the same data."""
    grid = (60, 80)
    s = torch.tensor(3.0, device=device, requires_grad=True)
    amp = torch.tensor(1.0, device=device, requires_grad=True)
    planes, upstreams = [], []
    for name in evidence.layers:
        grads = evidence.grads[name].to(device)
        if not fold:
            grads = torch.nn.functional.interpolate(grads, size=grid, mode="nearest")
        planes.append(grads.clone().requires_grad_(True))
        upstreams.append(torch.randn(*grads.shape[:2], *grid, device=device))

    def step() -> None:
        taps = gaussian_factor(s, 10)
        rows, cols = band(taps, grid[0]), band(amp * taps, grid[1])
        outputs = []
        for x in planes:
            r, c = rows, cols
            t, ch, h, w = x.shape
            if fold:
                resize = Resize.make((h, w), grid, device)
                r = fold_band(rows, resize.rows, h)
                c = fold_band(cols, resize.cols, w)
            # the tightest form measured: one 2-D matmul for the columns, a batched one with a
            # stride-0 row matrix for the rows (``r @ y`` of a 2-D by a 4-D tensor copies ``r``
            # per plane and took 1.85× as long)
            z = (x.reshape(-1, w) @ c.mT).view(t * ch, h, grid[1])
            outputs.append(torch.bmm(r.expand(t * ch, *r.shape), z).view(t, ch, *grid))
        torch.autograd.backward(outputs, upstreams)
        for x in planes:
            x.grad = None
        s.grad = amp.grad = None

    return step


def bench_phi(evidence: Evidence, repeats: int, device: torch.device) -> None:
    x = evidence.grads["stage2"].to(device)
    pos, neg = torch.tensor(1.0, device=device), torch.tensor(0.3, device=device)
    steps = {
        "clamps + sum (old)": lambda: pos * x.clamp(min=0) + neg * x.clamp(max=0),
        "where(x>0, p·x, n·x)": lambda: torch.where(x > 0, pos * x, neg * x),
        "p·relu(x) − n·relu(−x)": lambda: pos * torch.relu(x) - neg * torch.relu(-x),
        "x·where(x>0, p, n)": lambda: x * torch.where(x > 0, pos, neg),
        "addcmul(p·max(x,0), n, min(x,0)) (new)": lambda: phi(x, pos, neg),
    }
    times = race(steps, repeats, device)
    print(f"φ alone on {'×'.join(map(str, x.shape))} ({device.type}):")
    print_lines(times, next(iter(times)))


def bench_steps(args: argparse.Namespace, device: torch.device) -> None:
    evidence, _ = synthetic_evidence(args.images)
    evidence = evidence.to(device)
    human = human_maps(args.images, tuple(args.map_size)).to(device)
    chunk = args.chunk
    steps = {
        "old (before #11)": training_step(baseline.HAGCombiner().to(device), evidence, human),
        "new": training_step(HAGCombiner(chunk_targets=chunk).to(device), evidence, human),
        "new fold": training_step(
            HAGCombiner(chunk_targets=chunk, fold_resize=True).to(device), evidence, human
        ),
        "new fold + grid loss (trainer)": training_step(
            HAGCombiner(chunk_targets=chunk, fold_resize=True).to(device), evidence, human, True
        ),
        "floor: smoothing, upsampled": smoothing_floor(evidence, device, fold=False),
        "floor: smoothing, folded": smoothing_floor(evidence, device, fold=True),
    }
    if device.type == "cuda":
        steps["new fold, bf16 smoothing"] = training_step(
            HAGCombiner(chunk_targets=chunk, fold_resize=True, smooth_dtype=torch.bfloat16).to(
                device
            ),
            evidence,
            human,
        )
    times = race(steps, args.repeats, device)
    print(
        f"one optimiser step, {evidence.num_images} images, {evidence.num_targets} targets, "
        f"layers {', '.join(f'{c}×{h}×{w}' for c, h, w in LAYERS.values())}, maps "
        f"{args.map_size[0]}×{args.map_size[1]}, chunk_targets={chunk} ({device.type}):"
    )
    print_lines(times, "old (before #11)")
    old = times["old (before #11)"]
    trainer = times["new fold + grid loss (trainer)"]
    print(f"  speed-up trainer's step vs old: {ratio(old, trainer)}   (goal ≥ 2.5)")
    print(f"  speed-up new fold vs old:       {ratio(old, times['new fold'])}")
    print(f"  speed-up new vs old:            {ratio(old, times['new'])}")
    folded = times["floor: smoothing, folded"]
    upsampled = times["floor: smoothing, upsampled"]
    print(f"  trainer's step / its floor:     {ratio(trainer, folded)}   (goal ≤ 1.5)")
    print(f"  new fold / its floor:           {ratio(times['new fold'], folded)}")
    print(f"  new / its floor:                {ratio(times['new'], upsampled)}")


def bench_storage(args: argparse.Namespace, device: torch.device) -> None:
    """Read a batch from a store of ``3·images`` images in a storage dtype, upcast, train."""
    store_images = 3 * args.images
    stored, counts = synthetic_evidence(store_images, seed=2)
    starts = torch.cumsum(counts, 0) - counts
    human = human_maps(args.images, tuple(args.map_size)).to(device)
    pin = device.type == "cuda"
    stores = {}
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        stores[dtype] = stored.to("cpu", dtype)
        if pin:
            stores[dtype] = Evidence(
                stores[dtype].layers,
                {k: v.pin_memory() for k, v in stores[dtype].acts.items()},
                {k: v.pin_memory() for k, v in stores[dtype].grads.items()},
                stores[dtype].image_index,
                stores[dtype].input_size,
            )
    generator = torch.Generator().manual_seed(0)
    combiner = HAGCombiner(chunk_targets=args.chunk, fold_resize=True).to(device)
    optimiser = torch.optim.Adam(combiner.parameters(), lr=1e-4)

    def read(dtype: torch.dtype) -> Evidence:
        images = torch.randperm(store_images, generator=generator)[: args.images]
        rows = torch.cat([torch.arange(starts[i], starts[i] + counts[i]) for i in images])
        source = stores[dtype]
        acts = {k: v[images] for k, v in source.acts.items()}
        grads = {k: v[rows] for k, v in source.grads.items()}
        if pin:
            acts = {k: v.pin_memory() for k, v in acts.items()}
            grads = {k: v.pin_memory() for k, v in grads.items()}
        index = torch.repeat_interleave(torch.arange(args.images), counts[images])
        # copy in the stored dtype (half the bytes), upcast where the work runs
        return Evidence(
            source.layers,
            {k: v.to(device, non_blocking=pin).float() for k, v in acts.items()},
            {k: v.to(device, non_blocking=pin).float() for k, v in grads.items()},
            index.to(device, non_blocking=pin),
            source.input_size,
        )

    def step(dtype: torch.dtype) -> Callable[[], None]:
        def run() -> None:
            evidence = read(dtype)
            optimiser.zero_grad(set_to_none=True)
            hag_loss(combiner(evidence, tuple(human.shape[-2:]), validate=False), human).backward()
            optimiser.step()

        return run

    steps: dict[str, Callable[[], object]] = {}
    for dtype in stores:
        steps[f"read {str(dtype)[6:]} + upcast"] = lambda d=dtype: read(d)
    for dtype in stores:
        steps[f"read {str(dtype)[6:]} + upcast + step"] = step(dtype)
    times = race(steps, args.repeats, device)
    sizes = {
        d: sum(t.numel() * t.element_size() for t in (*s.acts.values(), *s.grads.values()))
        for d, s in stores.items()
    }
    print(
        f"evidence stored as float32 / float16 / bfloat16 ({store_images} images: "
        + " / ".join(f"{sizes[d] / 2**20:.0f}" for d in stores)
        + f" MiB), batches of {args.images} images read and upcast per batch ({device.type}):"
    )
    first = times["read float32 + upcast"]
    for name, t in times.items():
        print(line(name, t, first if "step" not in name else times["read float32 + upcast + step"]))


def images_of(evidence: Evidence, start: int, stop: int) -> Evidence:
    """The evidence of images ``start..stop`` (targets sorted by image, as a cache returns them)."""
    index = evidence.image_index
    first, last = int((index < start).sum()), int((index < stop).sum())
    return Evidence(
        evidence.layers,
        {k: v[start:stop] for k, v in evidence.acts.items()},
        {k: v[first:last] for k, v in evidence.grads.items()},
        index[first:last] - start,
        evidence.input_size,
    )


def grouped_step(
    combiner: torch.nn.Module, evidence: Evidence, human: Tensor, group: int
) -> Callable[[], None]:
    """One optimiser step as the trainer takes it with ``train.grad_group = group``."""
    optimiser = torch.optim.Adam(combiner.parameters(), lr=1e-4)
    params = list(combiner.parameters())
    size = tuple(human.shape[-2:])
    images = evidence.num_images

    def step() -> None:
        rows = []
        for start in range(0, images, group):
            stop = min(images, start + group)
            part = images_of(evidence, start, stop)
            loss = hag_loss(combiner(part, size, validate=False), human[start:stop])
            if stop - start != images:
                loss = loss * ((stop - start) / images)
            grads = torch.autograd.grad(loss, params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
        set_summed_gradient(params, torch.stack(rows))
        optimiser.step()

    return step


def bench_groups(args: argparse.Namespace, device: torch.device) -> None:
    evidence, _ = synthetic_evidence(args.images)
    evidence = evidence.to(device)
    human = human_maps(args.images, tuple(args.map_size)).to(device)

    def combiner() -> HAGCombiner:
        return HAGCombiner(chunk_targets=args.chunk, fold_resize=True).to(device)

    steps = {"one pass (before grad_group)": training_step(combiner(), evidence, human)}
    for group in args.groups:
        steps[f"grad_group={group}"] = grouped_step(combiner(), evidence, human, group)
    times = race(steps, args.repeats, device)
    print(
        f"one optimiser step in groups, {evidence.num_images} images, {evidence.num_targets} "
        f"targets, maps {args.map_size[0]}×{args.map_size[1]}, chunk_targets={args.chunk} "
        f"({device.type}); ×: speed against the one-pass step:"
    )
    print_lines(times, "one pass (before grad_group)")


def bench_compile(args: argparse.Namespace, device: torch.device) -> None:
    evidence, _ = synthetic_evidence(args.images)
    evidence = evidence.to(device)
    human = human_maps(args.images, tuple(args.map_size)).to(device)
    eager = training_step(
        HAGCombiner(chunk_targets=args.chunk, fold_resize=True).to(device), evidence, human
    )
    compiled = training_step(
        HAGCombiner(chunk_targets=args.chunk, fold_resize=True, compile_kernels=True).to(device),
        evidence,
        human,
    )
    start = time.perf_counter()
    compiled()
    print(f"torch.compile of the chunk kernels: first step {time.perf_counter() - start:.1f} s")
    times = race({"new fold, eager": eager, "new fold, compiled": compiled}, args.repeats, device)
    print_lines(times, "new fold, eager")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images per batch")
    parser.add_argument("--map-size", type=int, nargs=2, default=(600, 800), help="H W")
    parser.add_argument("--chunk", type=int, default=8, help="chunk_targets of the new combiner")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--groups",
        type=int,
        nargs="+",
        default=(40, 8, 5),
        help="train.grad_group values of the groups section",
    )
    parser.add_argument("--skip-cpu", action="store_true", help="only the GPU section")
    parser.add_argument(
        "--malloc",
        choices=("tuned", "default"),
        default="tuned",
        help="glibc's mmap threshold raised as the hagxai command does (hagxai.allocator), or "
        "glibc's default (every large tensor paid again in page faults)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=("phi", "steps", "storage", "groups", "compile"),
        default=("phi", "steps", "storage"),
        help="which sections to run (groups and compile only when named)",
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    tuned = args.malloc == "tuned" and tune_malloc()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, malloc "
        f"{'tuned (hagxai.allocator)' if tuned else 'as glibc defaults'}"
    )
    devices = [] if args.skip_cpu else [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"GPU: {torch.cuda.get_device_name()}")
    for device in devices:
        print(f"\n=== {device.type} ===")
        if "phi" in args.sections:
            bench_phi(synthetic_evidence(args.images)[0], args.repeats, device)
        if "steps" in args.sections:
            bench_steps(args, device)
        if "storage" in args.sections:
            bench_storage(args, device)
        if "groups" in args.sections:
            bench_groups(args, device)
        if "compile" in args.sections:
            bench_compile(args, device)


if __name__ == "__main__":
    main()
