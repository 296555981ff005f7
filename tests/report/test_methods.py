"""Learned rows: each fold's combiner on its held-out images, and leaks refused."""

from __future__ import annotations

import json

import pytest
import torch

from hagxai.combiner import HAGCombiner
from hagxai.errors import ConfigError, UserError
from hagxai.evidence import Evidence
from hagxai.export import save_combiner
from hagxai.report.methods import check_names, resolve_learned, subset_evidence

LAYERS = ["a"]
DIGEST = "d" * 16


def make_run(folder, folds, digest=DIGEST, layers=LAYERS):
    """A training run folder: ``folds.json`` and one combiner per fold (fold k's map kernel
    variance is 1 + k, so the folds' maps differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "folds.json").write_text(json.dumps({"folds": folds}))
    (folder / "summary.json").write_text(json.dumps({"best_fold": 1}))
    for k in range(len(folds)):
        combiner = HAGCombiner(layers=layers)
        with torch.no_grad():
            combiner.map_s.fill_(1.0 + k)
        save_combiner(
            combiner,
            folder / f"fold_{k}" / "combiner",
            model_digest=digest,
            data_fingerprint="f" * 16,
        )
    return folder


def _resolve(path, ids, allow_seen=False, fingerprint="0" * 16):
    return resolve_learned(
        path, ids, digest=DIGEST, layers=LAYERS, fingerprint=fingerprint, allow_seen=allow_seen
    )


def test_run_folder_scores_each_image_by_the_fold_that_held_it_out(tmp_path):
    run = make_run(tmp_path / "run", [["a", "b"], ["c"], ["d"]])
    head = _resolve(run, ["a", "b", "c", "d", "other"])
    assert head.assign == {"a": 0, "b": 0, "c": 1, "d": 2, "other": 1}  # other: the best fold
    assert head.seen == [] and len(head.combiners) == 3


def test_combiner_folder_on_images_it_trained_on_is_refused(tmp_path):
    run = make_run(tmp_path / "run", [["a", "b"], ["c"], ["d"]])
    fold0 = run / "fold_0" / "combiner"
    assert _resolve(fold0, ["a", "b"]).seen == []  # its own held-out images: fine
    with pytest.raises(UserError, match=r"trained on 2 of the 3 evaluated images.*allow_seen"):
        _resolve(fold0, ["a", "c", "d"])
    head = _resolve(fold0, ["a", "c", "d"], allow_seen=True)
    assert head.seen == ["c", "d"]
    # best/ is the best fold's copy: it trained on every other fold
    (run / "best").mkdir()
    for f in (run / "fold_1" / "combiner").iterdir():
        (run / "best" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(UserError, match="trained on 1 of"):
        _resolve(run / "best", ["c", "d"])


def test_lone_combiner_folder_of_the_same_data_is_refused_of_other_data_accepted(tmp_path):
    run = make_run(tmp_path / "run", [["a"], ["b"]])
    lone = tmp_path / "lone"
    (run / "fold_0" / "combiner").rename(lone)
    with pytest.raises(UserError, match="allow_seen"):
        _resolve(lone, ["a", "b"], fingerprint="f" * 16)
    assert _resolve(lone, ["a", "b"], fingerprint="e" * 16).seen == []


def test_other_model_and_bad_folders_are_named(tmp_path):
    run = make_run(tmp_path / "run", [["a"], ["b"]], digest="e" * 16)
    with pytest.raises(UserError, match="model digest"):
        _resolve(run, ["a"])
    with pytest.raises(ConfigError, match=r"evaluate\.learned.*neither"):
        _resolve(tmp_path, ["a"])
    with pytest.raises(ConfigError, match=r"evaluate\.methods.*gradcm"):
        check_names(["gradcm"], [], "classification")
    with pytest.raises(ConfigError, match="'drise' does not apply"):
        check_names(["drise"], [], "classification")
    with pytest.raises(ConfigError, match=r"evaluate\.sanity"):
        check_names([], ["centre"], "detection")


def test_each_image_gets_its_own_folds_map(tmp_path):
    run = make_run(tmp_path / "run", [["x"], ["y"]])
    head = _resolve(run, ["x", "y"])
    evidence = Evidence(
        layers=LAYERS,
        acts={"a": torch.rand(2, 3, 6, 6)},
        grads={"a": torch.rand(3, 3, 6, 6)},
        image_index=torch.tensor([0, 1, 1]),
        input_size=(12, 12),
    )
    maps = head.explain(evidence, ["x", "y"], (12, 12))
    for k in (0, 1):
        alone = head.combiners[k](subset_evidence(evidence, torch.tensor([k])), (12, 12))
        torch.testing.assert_close(maps[k], alone[0])
