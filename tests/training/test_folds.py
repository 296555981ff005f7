"""Grouped k-fold splits (``train.group_by``): no group is ever split across folds."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from hagxai.config import load_config
from hagxai.errors import ConfigError, UserError
from hagxai.training.folds import make_folds, read_groups, save_folds


def _frames() -> list[str]:
    """Frames of 9 videos of uneven length (video ``v<k>`` has ``3 + k % 4`` frames)."""
    return [f"v{video}_frame{f:03d}" for video in range(9) for f in range(3 + video % 4)]


def test_grouped_folds_keep_every_group_whole_and_cover_all():
    ids = _frames()
    groups = read_groups(r"^(v\d+)_", ids)
    assert groups["v3_frame005"] == "v3"
    for seed in range(5):
        folds = make_folds(ids, 3, seed, groups)
        assert sorted(i for f in folds for i in f) == sorted(ids)
        where = {}
        for number, fold in enumerate(folds):
            for sample_id in fold:
                where.setdefault(groups[sample_id], set()).add(number)
        assert all(len(f) == 1 for f in where.values()), f"a group split across folds: {where}"
        sizes = [len(f) for f in folds]
        assert max(sizes) - min(sizes) <= max(Counter(groups.values()).values())


def test_grouped_folds_are_seeded_and_independent_of_input_order():
    ids = _frames()
    groups = read_groups(r"^(v\d+)_", ids)
    folds = make_folds(ids, 3, 1, groups)
    assert folds == make_folds(list(reversed(ids)), 3, 1, groups)
    assert any(make_folds(ids, 3, seed, groups) != folds for seed in range(2, 6))


def test_ungrouped_folds_would_split_groups():
    """The reason group_by exists: a plain split puts frames of one video on both sides."""
    ids = _frames()
    groups = read_groups(r"^(v\d+)_", ids)
    folds = make_folds(ids, 3, 0)
    split = {
        g
        for g in set(groups.values())
        if len({n for n, f in enumerate(folds) for i in f if groups[i] == g}) > 1
    }
    assert split


def test_whole_match_without_a_capturing_group():
    groups = read_groups(r"subj\d+", ["a_subj1_x", "b_subj1_y", "c_subj22_z"])
    assert groups == {"a_subj1_x": "subj1", "b_subj1_y": "subj1", "c_subj22_z": "subj22"}


def test_groups_from_a_csv_column(tmp_path):
    table = tmp_path / "meta.csv"
    table.write_text("image,subject\nimg1.jpg,s1\nimg2.jpg,s1\nimg3.jpg,s2\nimg4.jpg,s3\n")
    groups = read_groups(f"csv:{table}:subject", ["img1", "img2", "img3", "img4"])
    assert groups == {"img1": "s1", "img2": "s1", "img3": "s2", "img4": "s3"}
    folds = make_folds(list(groups), 3, 0, groups)
    assert sorted(map(sorted, folds)) == [["img1", "img2"], ["img3"], ["img4"]]
    with pytest.raises(ConfigError, match=r"no row for 1 image.*'img9'"):
        read_groups(f"csv:{table}:subject", ["img1", "img9"])
    with pytest.raises(ConfigError, match="needs columns image and video"):
        read_groups(f"csv:{table}:video", ["img1"])


def test_bad_group_specs_are_refused():
    with pytest.raises(ConfigError, match="does not match sample id 'x'"):
        read_groups(r"^v(\d)", ["v1", "x"])
    with pytest.raises(UserError, match=r"2 groups .* cannot make 3 folds"):
        make_folds(["a1", "a2", "b1"], 3, 0, {"a1": "a", "a2": "a", "b1": "b"})
    with pytest.raises(ConfigError, match=r"train\.group_by.*not a regular expression"):
        load_config(None, ["train.group_by=(v"])
    with pytest.raises(ConfigError, match="csv:PATH:COLUMN"):
        load_config(None, ["train.group_by=csv:meta.csv"])


def test_groups_are_saved_with_the_folds(tmp_path):
    groups = {"a1": "a", "b1": "b"}
    save_folds([["a1"], ["b1"]], tmp_path / "folds.json", groups)
    assert json.loads((tmp_path / "folds.json").read_text())["groups"] == groups
