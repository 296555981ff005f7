"""Why the reference parameterisation drifts and inverts, measured on one fold (issue #15).

Usage (from the project root)::

    python benchmarks/head_drift.py ../shared/realdata --epochs 4
    python benchmarks/head_drift.py configs/demo_classifier.yaml --epochs 6

``SOURCE`` is the real development set's folder or a run config (missing: skipped, exit 0).

1. At the initial values, on the fold's first training batch, the gradient of each half of the
   reference loss, ``1 − PCC`` and ``MSE``, with respect to the nearly scale-free parameters
   (``map_amp``, ``obj_w``, ``grad_amp``, the slopes): if the reading is right the PCC half is
   ~0 there and the MSE half has the sign that shrinks the map.
2. One fold trained per parameterisation (``--settings``), recording those values after every
   optimiser step: their range per epoch, the steps at which one crosses zero, and the held-out CC
   per epoch.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from realdata_head import _config

WATCHED = ("map_amp", "obj_w", "grad_amp", "act_pos", "act_neg", "grad_pos", "grad_neg")
SETTINGS = {
    "reference": [],
    "stable": ["combiner.parameterisation=stable"],
}


def trace_fold(name, cfg, adapter, cache, human, folds, fold, epochs, out) -> None:
    """Print the loss halves' gradients at the start and the per-epoch parameter ranges."""
    from hagxai.losses import pcc
    from hagxai.training.trainer import Trainer, learning_rate

    held = folds[fold]
    training = sorted(p for f in folds for p in f if p not in set(held))
    trace: list[dict[str, float]] = []
    combiner = None

    def record() -> None:
        assert combiner is not None
        trace.append({k: float(combiner.value(k).detach().mean()) for k in WATCHED})

    trainer = Trainer(
        cfg,
        adapter,
        cache,
        human,
        folds,
        lambda p: None,
        out,
        torch.device("cpu"),
        on_step=record,
        progress=False,
    )
    combiner = trainer._build_combiner()
    batch = training[: cfg.train.batch_size]
    maps = trainer._maps(lambda e, s: combiner(e, s, validate=False), batch)
    humans = [human.maps[trainer.slot[p]] for p in batch]
    stacked, target = torch.stack(maps), torch.stack(humans)
    halves = {
        "1-PCC": (1 - pcc(stacked, target)).mean(),
        "MSE": (stacked - target).pow(2).flatten(1).mean(1).mean(),
    }
    learned = dict(combiner.named_parameters())
    print(f"\n== {name}: gradient of each loss half at the initial values (first batch)")
    for half, loss in halves.items():
        grads = torch.autograd.grad(loss, list(learned.values()), retain_graph=True)
        shown = ", ".join(
            f"{k}={float(g.mean()):+.2e}" for k, g in zip(learned, grads) if g.numel()
        )
        print(f"  d({half}) / d(param): {shown}")
    optimizer = torch.optim.Adam(combiner.parameters(), lr=cfg.train.lr)
    explain = lambda e, s: combiner(e, s, validate=False)  # noqa: E731
    start_cc = trainer._validate(explain, held)["cc"]
    print(f"  epoch 0: held-out CC {start_cc:.3f}")
    record()
    for epoch in range(1, epochs + 1):
        lr = learning_rate(
            epoch, cfg.train.lr, cfg.train.lr_final, cfg.train.lr_step_epochs, epochs
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        first = len(trace)
        loss = trainer._train_epoch(combiner, optimizer, training, 1000 + epoch, epoch, lr)
        combiner.eval()
        cc = trainer._validate(explain, held)["cc"]
        steps = trace[first - 1 :]
        ranges = ", ".join(
            f"{k} {min(s[k] for s in steps):.3f}..{max(s[k] for s in steps):.3f}"
            for k in ("map_amp", "obj_w", "act_pos", "grad_pos")
        )
        crossed = [
            k
            for k in WATCHED
            if any((a[k] > 0) != (b[k] > 0) for a, b in itertools.pairwise(steps))
        ]
        print(
            f"  epoch {epoch}: lr {lr:.3g}, train loss {loss:.3f}, held-out CC {cc:.3f}; "
            f"{ranges}; crossed zero: {crossed or 'none'}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--settings", default="reference,stable")
    parser.add_argument("--out", type=Path, default=Path("runs/head-drift"))
    parser.add_argument("overrides", nargs="*", help="key=value for every setting")
    args = parser.parse_intermixed_args(argv)
    if not args.source.exists():
        print(f"skipping: {args.source} not found")
        return 0
    torch.set_num_threads(1)
    from hagxai.training.data import load_human_data
    from hagxai.training.folds import make_folds
    from hagxai.training.run import build_model_and_data, open_run_evidence, target_rule

    base = _config(args.source, args.out, args.epochs, args.overrides)
    adapter, dataset = build_model_and_data(base, progress=False)
    samples = dataset.samples
    if base.train.splits is not None:
        samples = [s for s in samples if s.split in base.train.splits]
    rule = target_rule(base, adapter, dataset.class_subset)
    cache = open_run_evidence(base, adapter, samples, rule=rule, progress=False)
    human = load_human_data(cache, samples)
    usable = [cache.ids[p] for p in human.keep]
    position = {i: p for p, i in enumerate(cache.ids)}
    folds = [[position[i] for i in f] for f in make_folds(usable, base.train.folds, base.seed)]
    for name in [n for n in args.settings.split(",") if n]:
        cfg = _config(args.source, args.out, args.epochs, [*args.overrides, *SETTINGS[name]])
        trace_fold(name, cfg, adapter, cache, human, folds, args.fold, args.epochs, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
