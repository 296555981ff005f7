"""The rows of an evaluation: baselines by name, learned heads from run or combiner folders,
sanity rows, and the rule that keeps a learned head off the images it trained on.

A learned head comes from

* a **training run folder** (``folds.json`` beside ``fold_<k>/combiner/``): each image is scored
  by the combiner of the fold that held it out, so the row covers every image once with no
  leakage; images outside every fold (another split) were seen by no fold and are scored by the
  run's best fold;
* a **combiner folder**: scored only on images it did not train on. When the folder sits in its
  run (``<run>/fold_<k>/combiner`` or ``<run>/best``) its training images are read from the run's
  ``folds.json``; a lone folder whose card records the evaluated dataset's fingerprint cannot say
  which images it saw, so all count as seen. Seen images are refused unless
  ``evaluate.allow_seen`` is set, and then the row is marked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from hagxai import explainers
from hagxai.combiner import HAGCombiner
from hagxai.errors import ConfigError, UserError
from hagxai.evidence import Evidence
from hagxai.explainers.cam import METHODS
from hagxai.export import load_combiner, read_card

SANITY = ("centre_bias", "uniform_random", "box_prior")
PERTURBATION = ("rise", "drise")


@dataclass
class LearnedHead:
    """A learned row: its combiners and which one scores each image.

    Attributes:
        name: the row's name (``learned``, or ``learned:<folder>`` when there are several).
        source: the run or combiner folder.
        combiners: the combiners (one per fold for a run folder).
        assign: sample id -> index into ``combiners``.
        seen: evaluated sample ids the scoring combiner trained on (only with ``allow_seen``).
        folds: per combiner, a label (``fold 0``, ``best``, the folder name).
    """

    name: str
    source: Path
    combiners: list[HAGCombiner]
    assign: dict[str, int]
    seen: list[str] = field(default_factory=list)
    folds: list[str] = field(default_factory=list)

    def explain(self, evidence: Evidence, ids: Sequence[str], out_size: tuple[int, int]) -> Tensor:
        """Maps of a batch, each image by its own combiner.

        Args:
            evidence: ``B`` images' evidence.
            ids: the ``B`` sample ids.
            out_size: ``(H, W)`` of the maps.

        Returns:
            ``B×H×W`` in [0, 1].
        """
        out = None
        chosen = torch.tensor([self.assign[i] for i in ids])
        for k in chosen.unique().tolist():
            keep = torch.nonzero(chosen == k).flatten()
            maps = self.combiners[k](subset_evidence(evidence, keep), out_size, validate=False)
            if out is None:
                out = maps.new_zeros(len(ids), *maps.shape[1:])
            out[keep.to(maps.device)] = maps
        return out


def subset_evidence(evidence: Evidence, keep: Tensor) -> Evidence:
    """The evidence of the images at ``keep`` (``K`` long), renumbered ``0..K-1``."""
    device = evidence.image_index.device
    keep = keep.to(device)
    remap = torch.full((evidence.num_images,), -1, dtype=torch.long, device=device)
    remap[keep] = torch.arange(keep.numel(), device=device)
    mask = remap[evidence.image_index] >= 0
    return Evidence(
        layers=list(evidence.layers),
        acts={k: v[keep.to(v.device)] for k, v in evidence.acts.items()},
        grads={k: v[mask.to(v.device)] for k, v in evidence.grads.items()},
        image_index=remap[evidence.image_index[mask]],
        input_size=evidence.input_size,
    )


def _load(folder: Path, digest: str, layers: list[str]) -> HAGCombiner:
    return load_combiner(folder, model_digest=digest, layers=layers)


def _best_fold(run: Path) -> int:
    summary = run / "summary.json"
    if summary.exists():
        return int(json.loads(summary.read_text()).get("best_fold", 0))
    return 0


def _read_folds(run: Path) -> list[list[str]]:
    path = run / "folds.json"
    try:
        return [list(f) for f in json.loads(path.read_text())["folds"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: not a readable folds file ({err})") from None


def resolve_learned(
    path: Path,
    ids: Sequence[str],
    *,
    digest: str,
    layers: list[str],
    fingerprint: str,
    allow_seen: bool,
    name: str = "learned",
) -> LearnedHead:
    """The learned row of ``path`` for the evaluated images ``ids`` (see the module docstring).

    Args:
        path: a training run folder or a combiner folder.
        ids: the evaluated sample ids.
        digest: the evaluated model's weights digest (a combiner for another model is refused).
        layers: the evaluated evidence's layers (a combiner for other layers is refused).
        fingerprint: the evaluated dataset's fingerprint.
        allow_seen: score images the combiner trained on, marking the row.
        name: the row's name.

    Raises:
        UserError: not a run or combiner folder, a mismatching combiner, or seen images without
            ``allow_seen``; the message names the folder and the key to change.
    """
    path = Path(path)
    if (path / "folds.json").exists():
        folds = _read_folds(path)
        combiners = [
            _load(path / f"fold_{k}" / "combiner", digest, layers) for k in range(len(folds))
        ]
        where = {i: k for k, fold in enumerate(folds) for i in fold}
        best = _best_fold(path)
        assign = {i: where.get(i, best) for i in ids}
        labels = [f"fold {k}" for k in range(len(folds))]
        return LearnedHead(name, path, combiners, assign, [], labels)
    if not (path / "combiner.json").exists():
        raise ConfigError(
            f"key 'evaluate.learned': {path} is neither a training run folder (folds.json) nor "
            "a combiner folder (combiner.json)"
        )
    combiner = _load(path, digest, layers)
    trained = _trained_ids(path, fingerprint, ids)
    seen = [i for i in ids if i in trained]
    if seen and not allow_seen:
        run = _run_of(path)
        hint = (
            f"evaluate its run folder {run[0]} (each fold scores its held-out images), "
            if run
            else ""
        )
        raise UserError(
            f"evaluate.learned {path}: the combiner trained on {len(seen)} of the {len(ids)} "
            f"evaluated images (e.g. {', '.join(seen[:3])}); {hint}choose other images "
            "(evaluate.splits), or set evaluate.allow_seen=true to score them anyway (the row "
            "is marked)"
        )
    return LearnedHead(name, path, [combiner], dict.fromkeys(ids, 0), seen, [path.name])


def _run_of(path: Path) -> tuple[Path, int] | None:
    """The run folder and fold a combiner folder inside a run belongs to."""
    if path.name == "combiner" and path.parent.name.startswith("fold_"):
        run = path.parent.parent
        if (run / "folds.json").exists():
            return run, int(path.parent.name.removeprefix("fold_"))
    if path.name == "best" and (path.parent / "folds.json").exists():
        return path.parent, _best_fold(path.parent)
    return None


def _trained_ids(path: Path, fingerprint: str, ids: Sequence[str]) -> set[str]:
    run = _run_of(path)
    if run is not None:
        folds = _read_folds(run[0])
        return {i for k, fold in enumerate(folds) if k != run[1] for i in fold}
    card = read_card(path)
    if card.get("data_fingerprint") == fingerprint:
        # trained on this very dataset, but the folder no longer says on which images
        return set(ids)
    return set()


def check_names(methods: Sequence[str], sanity: Sequence[str], task: str) -> None:
    """Refuse an unknown method or sanity name before any work, naming the key.

    Raises:
        ConfigError: an unknown name, or RISE for a detector / D-RISE for a classifier.
    """
    known = [*METHODS, *PERTURBATION]
    for name in methods:
        if name.lower() not in known:
            raise ConfigError(
                f"key 'evaluate.methods': unknown method {name!r} (known: {', '.join(known)})"
            )
    wrong = "drise" if task == "classification" else "rise"
    if wrong in [m.lower() for m in methods]:
        raise ConfigError(
            f"key 'evaluate.methods': {wrong!r} does not apply to a {task} model "
            f"(use {'rise' if wrong == 'drise' else 'drise'})"
        )
    for name in sanity:
        if name not in SANITY:
            raise ConfigError(
                f"key 'evaluate.sanity': unknown sanity row {name!r} (known: {', '.join(SANITY)})"
            )


MapFn = Callable[[Evidence, tuple[int, int]], Tensor]


def evidence_explainer(name: str, boxes: Tensor | None, seed: int) -> MapFn:
    """The explainer ``name`` of the CAM family or the sanity rows, bound to a batch's target
    boxes (``box_prior``) and the run's seed (``uniform_random``)."""
    if name == "box_prior":
        return explainers.get(name, boxes=boxes)
    if name == "uniform_random":
        return explainers.get(name, seed=seed)
    return explainers.get(name)
