"""``hagxai config show``: the resolved config with defaults, file values and overrides."""

from __future__ import annotations

from pathlib import Path

import yaml

from hagxai.cli import main
from hagxai.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_show_prints_defaults_file_values_and_overrides(capsys) -> None:
    config = CONFIGS / "demo_classifier.yaml"
    assert main(["config", "show", "-c", str(config), "train.epochs=7", "wandb.mode=disabled"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    expected = load_config(config, ["train.epochs=7", "wandb.mode=disabled"])
    assert shown == expected.model_dump(mode="json")
    assert shown["train"]["epochs"] == 7
    assert shown["train"]["lr_final"] == 0.01  # a default the file does not set
    assert shown["data"]["observer"]["viewers"] == 12


def test_show_without_file_is_the_defaults(capsys) -> None:
    assert main(["config", "show"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == load_config().model_dump(mode="json")


def test_show_refuses_an_unknown_key_in_one_line(capsys) -> None:
    assert main(["config", "show", "train.epoch=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'train.epoch'" in err and len(err.splitlines()) == 1
