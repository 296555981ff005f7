"""K-fold splits over images: seeded, balanced, saved with the run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from hagxai.errors import UserError


def make_folds(ids: Sequence[str], k: int, seed: int) -> list[list[str]]:
    """Split image ids into ``k`` held-out folds.

    The ids are sorted first (so the split does not depend on the order they come in), then
    shuffled by a ``torch.Generator`` seeded with ``seed``, and dealt round-robin: fold sizes
    differ by at most one.

    Args:
        ids: distinct image ids.
        k: number of folds (at least 2, at most ``len(ids)``).
        seed: the run's seed.

    Returns:
        ``k`` lists of held-out ids; fold ``f`` trains on all the others.

    Raises:
        UserError: fewer images than folds.
    """
    if len(ids) < k:
        raise UserError(f"{len(ids)} usable images cannot make {k} folds (train.folds)")
    ordered = sorted(ids)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ordered), generator=generator).tolist()
    return [[ordered[i] for i in order[f::k]] for f in range(k)]


def save_folds(folds: list[list[str]], path: Path) -> None:
    """Write ``{"folds": [[held-out ids], ...]}`` as JSON."""
    path.write_text(json.dumps({"folds": folds}, indent=1) + "\n")


def load_folds(path: Path) -> list[list[str]]:
    """Read folds written by :func:`save_folds`."""
    return [list(f) for f in json.loads(path.read_text())["folds"]]
