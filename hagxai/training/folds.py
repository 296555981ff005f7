"""K-fold splits over images: seeded, balanced, saved with the run; optionally grouped, so that
images of one scene, video or subject never sit on both sides of a split."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from hagxai.config import GROUP_CSV_PREFIX as CSV_PREFIX
from hagxai.errors import ConfigError, DataError, UserError


def make_folds(
    ids: Sequence[str], k: int, seed: int, groups: Mapping[str, str] | None = None
) -> list[list[str]]:
    """Split image ids into ``k`` held-out folds.

    The ids are sorted first (so the split does not depend on the order they come in), then
    shuffled by a ``torch.Generator`` seeded with ``seed``, and dealt round-robin: fold sizes
    differ by at most one.

    With ``groups``, whole groups are dealt instead: the groups, sorted by name and shuffled by
    the seeded generator, go largest first (ties in shuffled order) to the fold holding the fewest
    images so far (ties: the lowest fold), so no group is split and fold sizes stay as even as
    the groups allow. Inside a fold, ids keep the shuffled order.

    Args:
        ids: distinct image ids.
        k: number of folds (at least 2, at most ``len(ids)``, or the number of groups).
        seed: the run's seed.
        groups: image id -> group name (from :func:`read_groups`); every id must have one.

    Returns:
        ``k`` lists of held-out ids; fold ``f`` trains on all the others.

    Raises:
        UserError: fewer images (or groups) than folds.
    """
    if len(ids) < k:
        raise UserError(f"{len(ids)} usable images cannot make {k} folds (train.folds)")
    ordered = sorted(ids)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ordered), generator=generator).tolist()
    if groups is None:
        return [[ordered[i] for i in order[f::k]] for f in range(k)]
    members: dict[str, list[str]] = {}
    for i in order:
        members.setdefault(groups[ordered[i]], []).append(ordered[i])
    if len(members) < k:
        raise UserError(
            f"{len(members)} groups (train.group_by) cannot make {k} folds (train.folds); "
            "each group stays whole in one fold"
        )
    names = sorted(members)
    shuffled = [names[i] for i in torch.randperm(len(names), generator=generator).tolist()]
    rank = {name: r for r, name in enumerate(shuffled)}
    folds: list[list[str]] = [[] for _ in range(k)]
    for name in sorted(shuffled, key=lambda n: (-len(members[n]), rank[n])):
        smallest = min(range(k), key=lambda f: (len(folds[f]), f))
        folds[smallest].extend(members[name])
    return folds


def read_groups(spec: str, ids: Sequence[str]) -> dict[str, str]:
    """The group of every image id under ``train.group_by``.

    ``spec`` is a regular expression searched in each sample id (the group is its first
    capturing group, or the whole match when it has none), or ``csv:PATH:COLUMN``: the column
    ``COLUMN`` of a CSV file whose ``image`` column holds sample ids or image file names.

    Raises:
        ConfigError: an id the regular expression does not match, a CSV without the columns,
            or an id without a row.
        DataError: a CSV file that cannot be read.
    """
    if spec.startswith(CSV_PREFIX):
        path_text, _, column = spec[len(CSV_PREFIX) :].rpartition(":")
        table = _group_table(Path(path_text), column)
        missing = [i for i in ids if i not in table]
        if missing:
            raise ConfigError(
                f"train.group_by: {path_text} has no row for {len(missing)} image(s), "
                f"e.g. {missing[0]!r} (its image column must hold sample ids or file names)"
            )
        return {i: table[i] for i in ids}
    pattern = re.compile(spec)
    groups = {}
    for sample_id in ids:
        match = pattern.search(sample_id)
        if match is None:
            raise ConfigError(
                f"train.group_by: pattern {spec!r} does not match sample id {sample_id!r}"
            )
        groups[sample_id] = match.group(1) if pattern.groups else match.group(0)
    return groups


def _group_table(path: Path, column: str) -> dict[str, str]:
    """Sample id (the ``image`` column's file stem) -> the value of ``column``."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if "image" not in fields or column not in fields:
                raise ConfigError(
                    f"train.group_by: {path} needs columns image and {column} "
                    f"(has {', '.join(fields) or 'none'})"
                )
            return {Path(row["image"]).stem: row[column] for row in reader}
    except OSError as err:
        raise DataError(f"{path}: cannot read the group table ({err.strerror})") from None


def save_folds(folds: list[list[str]], path: Path, groups: Mapping[str, str] | None = None) -> None:
    """Write ``{"folds": [[held-out ids], ...]}`` as JSON, with ``"groups"`` (id -> group)
    when the folds were grouped."""
    record: dict = {"folds": folds}
    if groups is not None:
        record["groups"] = dict(sorted(groups.items()))
    path.write_text(json.dumps(record, indent=1) + "\n")


def load_folds(path: Path) -> list[list[str]]:
    """Read folds written by :func:`save_folds`."""
    return [list(f) for f in json.loads(path.read_text())["folds"]]
