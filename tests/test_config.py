from pathlib import Path

import pytest
import torch

from hagxai.cli import main
from hagxai.config import RunConfig, load_config, resolve_device, save_config
from hagxai.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_every_shipped_config_loads() -> None:
    for path in sorted(CONFIGS.glob("*.yaml")):
        assert isinstance(load_config(path), RunConfig), path


def test_overrides_are_typed_and_nested() -> None:
    cfg = load_config(CONFIGS / "demo_classifier.yaml", ["train.epochs=5", "model.name=resnet18"])
    assert cfg.train.epochs == 5
    assert cfg.model.name == "resnet18"
    cfg = load_config(None, ["model.layers=[layer3, layer4]", "data.observer.viewers=15"])
    assert cfg.model.layers == ["layer3", "layer4"]
    assert cfg.data.observer.viewers == 15


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.epoch=5"], "unknown key 'train.epoch' in the command line"),
        (["train.epochs=abc"], "key 'train.epochs' = 'abc' in the command line"),
        (["device=gpu"], "expected auto, cpu, mps, cuda or cuda:N"),
        (["seed.x=1"], "seed is not a section"),
        (["epochs"], "expected key=value"),
    ],
)
def test_bad_overrides_are_refused_in_one_line(overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "demo_classifier.yaml", overrides)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_file_names_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=rf"'train.epochs' = 'many' in {path}"):
        load_config(path)
    path.write_text("data:\n  observer:\n    p_part: 0.9\n")
    with pytest.raises(ConfigError, match="p_object \\+ p_part"):
        load_config(path)
    path.write_text("train:\n  epochs: 3\ntrain:\n  folds: 2\n")
    with pytest.raises(ConfigError, match=r"key 'train' is given twice \(again on line 3\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_cli_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "train.epochs=abc"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "train.epochs" in err


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "demo_detector.yaml", ["seed=7", "model.input_size=[96, 128]"])
    saved = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(saved) == cfg


def test_device_auto_picks_cuda_only_when_present() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


def test_cache_dtype_names_a_storage_dtype() -> None:
    from typing import get_args

    from hagxai.config import CacheConfig
    from hagxai.training.run import STORAGE_DTYPE

    assert load_config(None, ["cache.dtype=bfloat16"]).cache.dtype == "bfloat16"
    assert set(get_args(CacheConfig.model_fields["dtype"].annotation)) == set(STORAGE_DTYPE)
    with pytest.raises(ConfigError, match=r"cache\.dtype"):
        load_config(None, ["cache.dtype=float64"])
