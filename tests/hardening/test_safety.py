"""No foreign code by accident: every ``torch.load`` is ``weights_only=True`` unless the user
trusts that one file; combiners, checkpoints and cache shards never unpickle; written files are
not writable by group or world; safetensors bytes do not depend on the process."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from hagxai.atomic import write_atomic
from hagxai.cache import open_evidence
from hagxai.combiner import HAGCombiner
from hagxai.config import ModelConfig
from hagxai.errors import UserError
from hagxai.export import CombinerError, load_combiner, save_combiner
from hagxai.models import build_adapter
from hagxai.tensorfile import tensor_bytes
from hagxai.training.checkpoint import load_checkpoint, save_checkpoint

PACKAGE = Path(__file__).resolve().parents[2] / "hagxai"
# The one ``torch.load(weights_only=False)`` of the package, reached only with
# ``model.trust_checkpoint`` (checked by test_yolov5's refusal tests and below).
TRUSTED_LOADS = {("models/yolov5.py", "load_checkpoint")}


def _torch_loads() -> list[tuple[str, str, ast.Call]]:
    """Every ``torch.load(...)`` call in the package: (file, enclosing function, call)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"
                ):
                    found.append((str(path.relative_to(PACKAGE)), function.name, node))
    return found


def test_every_torch_load_is_weights_only_unless_trusted():
    calls = _torch_loads()
    assert calls, "the scan must find the package's torch.load calls"
    for file, function, call in calls:
        flags = {k.arg: k.value for k in call.keywords}
        value = flags.get("weights_only")
        safe = isinstance(value, ast.Constant) and value.value is True
        assert safe or (file, function) in TRUSTED_LOADS, f"{file}:{call.lineno} in {function}"


def test_untrusted_yolov5_checkpoint_refusal_names_the_opt_in(tmp_path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"anything")
    cfg = ModelConfig(name=f"yolov5:{path}")
    with pytest.raises(UserError, match=r"model\.trust_checkpoint"):
        build_adapter(cfg)


def test_ultralytics_pickle_of_something_else_is_refused_without_running_it(tmp_path, planted):
    path = tmp_path / "best.pt"
    path.write_bytes(planted.data)
    with pytest.raises(UserError, match=r"best\.pt.*model\.trust_checkpoint"):
        build_adapter(ModelConfig(name=str(path)))
    assert not planted.ran()


def test_a_genuine_ultralytics_checkpoint_loads_without_trust(tmp_path):
    from hagxai.models.ultralytics_env import import_ultralytics

    path = tmp_path / "yolo.pt"
    import_ultralytics().YOLO("yolov8n.yaml").save(str(path))
    adapter = build_adapter(ModelConfig(name=str(path), input_size=(64, 64)))
    assert adapter.task == "detection"


def test_weights_file_pickle_is_refused_without_running_it(tmp_path, planted):
    path = tmp_path / "w.pt"
    path.write_bytes(planted.data)
    with pytest.raises(UserError, match=r"w\.pt could not be read"):
        build_adapter(ModelConfig(name="resnet18", num_classes=4, weights=path))
    assert not planted.ran()


def test_combiner_with_a_planted_pickle_is_refused(tmp_path, planted):
    folder = save_combiner(HAGCombiner(), tmp_path / "combiner")
    tensors = folder / "combiner.safetensors"
    tensors.write_bytes(planted.data)
    card = json.loads((folder / "combiner.json").read_text())
    # the card's checksum re-made to match, as a deliberate attacker would
    card["tensors"]["sha256"] = hashlib.sha256(planted.data).hexdigest()
    (folder / "combiner.json").write_text(json.dumps(card))
    with pytest.raises(CombinerError, match=r"combiner\.safetensors is not a readable"):
        load_combiner(folder)
    assert not planted.ran()


def test_checkpoint_with_a_planted_pickle_is_refused(tmp_path, planted):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"x": torch.ones(2)}, {"epoch": 1})
    path.write_bytes(planted.data)
    with pytest.raises(UserError, match=r"checkpoint\.safetensors: unreadable checkpoint"):
        load_checkpoint(path)
    assert not planted.ran()


def test_cache_shard_with_a_planted_pickle_is_refused(
    tmp_path, planted, small_classifier, tiny_samples
):
    def build():
        return open_evidence(
            small_classifier, tiny_samples, layers=["layer4"], root=tmp_path, progress=False
        )

    cache = build()
    index_path = cache.path / "index.json"
    index = json.loads(index_path.read_text())
    entry = index["shards"][0]
    (cache.path / entry["file"]).write_bytes(planted.data)
    # An index that still holds the old checksum: the shard is recomputed, never read.
    rebuilt = build()
    assert rebuilt.computed_shards == [0]
    rebuilt.evidence([0])
    # An index forged to match the pickle: the shard is refused with its name, never unpickled.
    (cache.path / entry["file"]).write_bytes(planted.data)
    entry |= {"sha256": hashlib.sha256(planted.data).hexdigest(), "bytes": len(planted.data)}
    index["shards"][0] = entry
    index_path.write_text(json.dumps(index))
    forged = build()
    with pytest.raises(UserError, match=r"shard-00000\.safetensors is not a cache shard"):
        forged.evidence([0])
    assert not planted.ran()


def test_written_files_are_not_group_or_world_writable(tmp_path):
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
        save_combiner(HAGCombiner(), tmp_path / "combiner")
        save_checkpoint(tmp_path / "c.safetensors", {"x": torch.ones(1)}, {})
    finally:
        os.umask(old)
    for path in [
        tmp_path / "a.bin",
        *(tmp_path / "combiner").iterdir(),
        tmp_path / "c.safetensors",
    ]:
        mode = path.stat().st_mode
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), f"{path}: {oct(mode)}"
        assert mode & stat.S_IRUSR


def test_the_command_line_restricts_the_umask(tmp_path):
    from hagxai.cli import main

    old = os.umask(0)
    try:
        values = {k: 0.5 for k in ("Alpha_act_pos", "Alpha_act_neg", "Alpha_grad_pos")}
        values |= {k: 1.0 for k in ("Alpha_grad_neg", "G_A_grad", "G_sigma_grad")}
        values |= {"G_A_all": 1.0, "G_sigma_all": 3.0, "ObjW": 1.0}
        (tmp_path / "values.json").write_text(json.dumps(values))
        assert (
            main(["import-reference", str(tmp_path / "values.json"), "--out", str(tmp_path / "o")])
            == 0
        )
        mask = os.umask(0)
    finally:
        os.umask(old)
    assert mask & 0o022 == 0o022
    for path in [tmp_path / "o", *(tmp_path / "o").iterdir()]:
        assert not path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH), path


def test_safetensors_bytes_do_not_depend_on_the_process():
    tensors = {"b": torch.arange(3.0), "a": torch.ones(2, dtype=torch.int64)}
    metadata = {"zeta": "1", "alpha": "2", "mid": "3", "format": "x"}
    files = {tensor_bytes(tensors, metadata) for _ in range(20)}
    assert len(files) == 1
    (data,) = files
    length = int.from_bytes(data[:8], "little")
    assert (8 + length) % 8 == 0
    header = json.loads(data[8 : 8 + length])
    assert list(header["__metadata__"]) == sorted(metadata)
    loaded = load(data)
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
