"""The ``combiner`` config section in the trainer, the stability report, and ``hagxai sweep``
(tiny demo set, tiny random-init classifier: seconds on CPU)."""

from __future__ import annotations

import pytest
import torch

from hagxai.config import load_config
from hagxai.errors import ConfigError
from hagxai.export import load_combiner, read_card
from hagxai.training import train
from hagxai.training.run import build_model_and_data
from hagxai.training.sweep import sweep
from hagxai.training.trainer import cc_drop
from tests.training.test_training import REPO, TINY

EXTENSIONS = [
    "combiner.parameterisation=stable",
    "combiner.channel_slopes=true",
    "combiner.layer_weights=true",
    "combiner.init=search",
    "combiner.init_widths=[0.0, 3.0]",
    "combiner.warmup_steps=2",
    "combiner.grad_clip=1.0",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("options")
    overrides = [*TINY, f"cache_dir={base / 'cache'}", f"output_dir={base / 'runs'}"]
    overrides += ["train.faithfulness_images=0", "train.epochs=2"]
    cfg = load_config(REPO / "configs" / "demo_classifier.yaml", overrides)
    adapter, dataset = build_model_and_data(cfg, progress=False)
    return overrides, adapter, dataset


def _cfg(tiny, *extra: str):
    overrides, _, _ = tiny
    return load_config(REPO / "configs" / "demo_classifier.yaml", [*overrides, *extra])


def test_the_default_combiner_section_is_the_reference_mode() -> None:
    section = load_config().combiner
    assert (section.parameterisation, section.loss, section.init) == (
        "reference",
        "hag",
        "reference",
    )
    assert not (section.layer_weights or section.channel_slopes or section.learn_radius)
    assert section.warmup_steps == 0 and section.grad_clip is None
    with pytest.raises(ConfigError, match=r"combiner.parameterisation"):
        load_config(None, ["combiner.parameterisation=positive"])
    with pytest.raises(ConfigError, match=r"sweep.combiner"):
        load_config(None, ["sweep.combiner=[{slopes: true}]"])


@pytest.mark.parametrize("loss", ["hag", "nss"])
def test_extensions_reach_the_trainer_the_card_and_explain(tiny, loss) -> None:
    _, adapter, dataset = tiny
    cfg = _cfg(tiny, *EXTENSIONS, f"combiner.loss={loss}", f"name=ext-{loss}")
    summary = train(cfg, overwrite=True, progress=False, adapter=adapter, dataset=dataset)
    card = read_card(cfg.run_dir / "fold_0" / "combiner")
    options = card["options"]
    assert options["parameterisation"] == "stable" and options["layer_weights"]
    assert options["channels"] is not None and card["reference_values"] is None
    combiner = load_combiner(cfg.run_dir / "fold_0" / "combiner")
    assert combiner.parameterisation == "stable" and combiner.channels == options["channels"]
    assert float(combiner.grad_s.detach()) >= 0  # searched start, then trained
    for fold in summary["folds"]:
        assert fold["worst_cc_drop"] >= 0
        assert {"map_amp", "obj_w", "act_pos_mean", "layer_weight"} <= set(fold["parameters"])
        assert fold["parameters"]["map_amp"] == 1.0  # fixed in the stable parameterisation
    assert summary["combiner"]["loss"] == loss
    assert "worst CC drop" in (cfg.run_dir / "summary.md").read_text()


def test_init_search_starts_from_the_pair_with_the_lowest_training_loss(tiny, tmp_path) -> None:
    from hagxai.cache import open_evidence
    from hagxai.training.data import load_human_data
    from hagxai.training.run import target_rule
    from hagxai.training.trainer import Trainer

    _, adapter, dataset = tiny
    cfg = _cfg(tiny, "combiner.init=search", "combiner.init_widths=[3.0, 0.0]")
    samples = [s for s in dataset.samples if s.split == "val"]
    cache = open_evidence(
        adapter,
        samples,
        layers=adapter.resolve_layers(None),
        root=cfg.cache_dir / "evidence",
        rule=target_rule(cfg, adapter),
        progress=False,
    )
    human = load_human_data(cache, samples)
    folds = [human.keep[::2], human.keep[1::2]]
    trainer = Trainer(
        cfg,
        adapter,
        cache,
        human,
        folds,
        lambda p: None,
        tmp_path,
        torch.device("cpu"),
        progress=False,
    )
    training = folds[1]
    combiner = trainer._build_combiner()
    explain = lambda e, s: combiner(e, s, validate=False)  # noqa: E731

    def loss(grad_s: float, map_s: float) -> float:
        with torch.no_grad():
            combiner.grad_s.fill_(grad_s)
            combiner.map_s.fill_(map_s)
            return float(trainer._loss(trainer._maps(explain, training), training))

    losses = {(g, m): loss(g, m) for g in (3.0, 0.0) for m in (3.0, 0.0)}
    trainer._search_init(combiner, training)
    chosen = (float(combiner.grad_s.detach()), float(combiner.map_s.detach()))
    assert losses[chosen] == min(losses.values())
    assert losses[chosen] <= losses[(3.0, 3.0)]  # never worse than the reference start


def test_cc_drop_is_the_worst_fall_below_the_start() -> None:
    history = [
        {"fold": 0, "epoch": 0, "cc": 0.30},
        {"fold": 0, "epoch": 1, "cc": 0.36},
        {"fold": 0, "epoch": 2, "cc": -0.30},
        {"fold": 0, "epoch": 3, "cc": 0.40},
        {"fold": 1, "epoch": 0, "cc": 0.30},
        {"fold": 1, "epoch": 1, "cc": 0.35},
    ]
    assert cc_drop(history, 0) == pytest.approx(0.60)
    assert cc_drop(history, 1) == 0.0


def test_sweep_trains_every_combination_on_the_same_folds(tiny, tmp_path) -> None:
    cfg = _cfg(
        tiny,
        "name=sweep",
        f"output_dir={tmp_path}",
        "train.epochs=1",
        "train.baselines=[fullgradcam++]",
        "sweep.combiner=[{}, {parameterisation: stable}]",
    )
    result = sweep(cfg, progress=False)
    rows = [r["row"] for r in result["rows"]]
    assert len(rows) == 3 and rows[1].startswith("fullgradcam++")
    assert "parameterisation=stable" in rows[2]
    folds = {(tmp_path / "sweep" / n / "folds.json").read_text() for n in ("00", "01")}
    assert len(folds) == 1
    assert (
        "| learned: layers default; combiner as configured |"
        in (tmp_path / "sweep" / "sweep.md").read_text()
    )
    cards = [read_card(tmp_path / "sweep" / n / "fold_0" / "combiner") for n in ("00", "01")]
    assert [c["options"]["parameterisation"] for c in cards] == ["reference", "stable"]
    assert torch.isfinite(torch.tensor(result["rows"][0]["metrics"]["cc"]["mean"]))


def test_sweep_train_settings_merge_over_the_train_section_and_keep_the_folds(tiny) -> None:
    from hagxai.training.sweep import combinations

    cfg = _cfg(
        tiny,
        "name=sweep-train",
        "train.lr=0.02",
        "sweep.combiner=[{}, {parameterisation: stable}]",
        "sweep.train=[{batch_size: 5}, {lr: 0.05, lr_final: 0.05}]",
    )
    runs = combinations(cfg)
    assert [r.name for _, r in runs] == ["00", "01", "02", "03"]
    assert [(r.train.batch_size, r.train.lr, r.train.lr_final) for _, r in runs] == [
        (5, 0.02, cfg.train.lr_final),
        (cfg.train.batch_size, 0.05, 0.05),
    ] * 2
    assert [r.combiner.parameterisation for _, r in runs] == ["reference"] * 2 + ["stable"] * 2
    assert runs[1][0].endswith("; lr=0.05, lr_final=0.05")
    assert all(r.train.epochs == cfg.train.epochs for _, r in runs)
    with pytest.raises(ConfigError, match=r"sweep.train.*decide the folds"):
        _cfg(tiny, "sweep.train=[{folds: 3}]")
    with pytest.raises(ConfigError, match=r"sweep.train"):
        _cfg(tiny, "sweep.train=[{batch: 5}]")
