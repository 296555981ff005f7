"""Registry helpers: the random-weights warning and what a combiner card records of a model."""

from __future__ import annotations

import pytest

from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.models.registry import card_fields, config_from_card, random_weights_message


@pytest.mark.parametrize(
    ("cfg", "warns"),
    [
        (ModelConfig(name="resnet50"), True),
        (ModelConfig(name="yolov8n.yaml"), True),
        (ModelConfig(name="resnet50", weights="w.pt"), False),
        (ModelConfig(name="resnet50", pretrained=True), False),
        (ModelConfig(name="best.pt"), False),
        (ModelConfig(name="demo-classifier"), False),
    ],
)
def test_random_weights_message(cfg, warns) -> None:
    message = random_weights_message(cfg)
    assert (message is not None) == warns
    if warns:
        assert cfg.name in message and "--weights" in message and "--pretrained" in message


def test_card_fields_round_trip_with_an_absolute_weights_path(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = ModelConfig(name="resnet18", weights="w.pt", num_classes=3, layers=["layer4"])
    fields = card_fields(cfg)
    assert fields["weights"] == str(tmp_path / "w.pt")
    rebuilt = config_from_card({"name": "resnet18", "digest": "sha256:x", **fields}, "card")
    assert rebuilt.name == "resnet18" and rebuilt.num_classes == 3
    assert rebuilt.weights == tmp_path / "w.pt" and rebuilt.layers is None
    with pytest.raises(UserError, match="names no model; pass --model"):
        config_from_card({"name": None, "digest": None}, "card.json")
