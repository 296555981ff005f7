"""Combiner folders: safetensors + JSON card, refusal of foreign cards, reference import, CLI."""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import pytest
import torch
from torch import nn

from hagxai.combiner import REFERENCE_KEYS, HAGCombiner
from hagxai.commands import import_reference as import_command
from hagxai.errors import UserError
from hagxai.evidence import Evidence
from hagxai.export import (
    CARD_FILE,
    TENSORS_FILE,
    CombinerError,
    CombinerMismatchError,
    import_reference,
    load_combiner,
    read_card,
    save_combiner,
)
from hagxai.models import model_digest

VALUES = dict(zip(REFERENCE_KEYS, [1.3, 0.7, 1.1, 0.05, 2.0, 4.5, 0.8, 2.5, 0.9]))


def make_evidence() -> Evidence:
    generator = torch.Generator().manual_seed(2)
    shapes = {"a": (3, 8, 10), "b": (2, 4, 5)}
    index = torch.tensor([0, 1, 1])
    acts = {k: torch.randn(2, *s, generator=generator) for k, s in shapes.items()}
    grads = {k: torch.randn(3, *s, generator=generator) for k, s in shapes.items()}
    return Evidence(list(shapes), acts, grads, index, (32, 40))


def trained_combiner() -> HAGCombiner:
    """A combiner with every extension and parameters moved off their initial values."""
    combiner = HAGCombiner(
        ["a", "b"], layer_weights=True, channels={"a": 3, "b": 2}, learn_radius=True
    )
    with torch.no_grad():
        for parameter in combiner.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return combiner


def test_round_trip_reproduces_maps_exactly(tmp_path: Path) -> None:
    combiner = trained_combiner()
    digest = model_digest(nn.Linear(3, 2))
    save_combiner(
        combiner,
        tmp_path,
        model_name="tiny",
        model_digest=digest,
        input_size=(32, 40),
        grid=(8, 10),
        data_fingerprint="demo-v1",
        metrics={"val_cc": 0.41},
    )
    loaded = load_combiner(tmp_path, model_digest=digest, layers=["b", "a"])
    evidence = make_evidence()
    with torch.no_grad():
        assert torch.equal(loaded(evidence, (32, 40)), combiner(evidence, (32, 40)))
    card = read_card(tmp_path)
    assert card["model"] == {"name": "tiny", "digest": digest}
    assert card["layers"] == ["a", "b"] and card["grid"] == [8, 10]
    assert card["metrics"] == {"val_cc": 0.41} and card["data_fingerprint"] == "demo-v1"
    assert card["options"]["channels"] == {"a": 3, "b": 2}
    assert card["parameters"]["grad_s"]["reference_name"] == "G_sigma_grad"
    assert card["versions"]["torch"] == torch.__version__


def test_folder_holds_only_safetensors_and_json(tmp_path: Path) -> None:
    save_combiner(HAGCombiner(), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [CARD_FILE, TENSORS_FILE]
    raw = (tmp_path / TENSORS_FILE).read_bytes()
    # safetensors: an 8-byte little-endian header length, a JSON header, then raw tensor bytes.
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    assert header["__metadata__"]["format"] == "hagxai-combiner"
    assert {k for k in header if k != "__metadata__"} == {
        "act_pos",
        "act_neg",
        "grad_pos",
        "grad_neg",
        "grad_amp",
        "grad_s",
        "map_amp",
        "map_s",
        "obj_w",
    }
    assert raw[:1] != b"\x80" and not raw.startswith(b"PK")  # neither a pickle nor a torch zip
    json.loads((tmp_path / CARD_FILE).read_text())


def test_foreign_cards_are_refused(tmp_path: Path) -> None:
    model = nn.Linear(3, 2)
    save_combiner(HAGCombiner(["a", "b"]), tmp_path, model_digest=model_digest(model))
    other = model_digest(nn.Linear(3, 2))
    with pytest.raises(CombinerMismatchError, match=f"model digest {model_digest(model)}.*{other}"):
        load_combiner(tmp_path, model_digest=other)
    with pytest.raises(UserError, match=r"trained for layers \['a', 'b'\].*hooks \['a', 'c'\]"):
        load_combiner(tmp_path, layers=["a", "c"])
    load_combiner(tmp_path, model_digest=model_digest(model), layers=["a", "b"])


def test_corrupt_or_existing_folders(tmp_path: Path) -> None:
    save_combiner(HAGCombiner(), tmp_path)
    with pytest.raises(CombinerError, match="exists; pass overwrite"):
        save_combiner(HAGCombiner(), tmp_path)
    save_combiner(HAGCombiner(), tmp_path, overwrite=True)
    tensors = tmp_path / TENSORS_FILE
    tensors.write_bytes(tensors.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CombinerError, match="does not match the SHA-256"):
        load_combiner(tmp_path)
    with pytest.raises(CombinerError, match="does not exist"):
        load_combiner(tmp_path / "missing")
    with pytest.raises(ValueError, match="metric 'cc'"):
        save_combiner(HAGCombiner(), tmp_path / "new", metrics={"cc": float("nan")})


def test_import_reference_round_trips(tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(VALUES))
    out = import_reference(values, tmp_path / "ref", model_name="yolov5s", layers=["p3"])
    combiner = load_combiner(out, layers=["p3"])
    assert combiner.reference_values() == pytest.approx(VALUES, rel=1e-7)
    card = read_card(out)
    assert card["reference_values"] == pytest.approx(VALUES, rel=1e-7)
    assert card["model"] == {"name": "yolov5s", "digest": None}
    # Unbound (no digest recorded): loads for any model.
    load_combiner(out, model_digest=model_digest(nn.Linear(1, 1)))

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({k: v for k, v in VALUES.items() if k != "ObjW"}))
    with pytest.raises(CombinerError, match=r"broken.json: .*missing keys \['ObjW'\]"):
        import_reference(broken, tmp_path / "nope")
    broken.write_text(json.dumps({**VALUES, "ObjW": "one"}))
    with pytest.raises(CombinerError, match="ObjW = 'one' is not a number"):
        import_reference(broken, tmp_path / "nope")


def test_import_reference_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps(VALUES))
    parser = argparse.ArgumentParser(prog="hagxai")
    import_command.add_parser(parser.add_subparsers(dest="command"))
    argv = ["import-reference", str(values), "--out", str(tmp_path / "out")]
    args = parser.parse_args([*argv, "--layers", "p3", "p4", "--input-size", "640", "640"])
    assert import_command.run(args) == 0
    assert "combiner.json" in capsys.readouterr().out
    card = read_card(tmp_path / "out")
    assert card["layers"] == ["p3", "p4"] and card["input_size"] == [640, 640]
    with pytest.raises(CombinerError, match="exists"):
        import_command.run(parser.parse_args(argv))
    assert import_command.run(parser.parse_args([*argv, "--force"])) == 0
