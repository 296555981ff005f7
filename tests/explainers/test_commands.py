"""``hagxai layers`` and ``hagxai explain`` (run through their modules, as the CLI does)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from hagxai.commands import explain, layers
from hagxai.errors import DataError, UserError


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_parser(parser.add_subparsers())
    return module.run(parser.parse_args(argv))


def test_layers_lists_shapes(capsys):
    assert _run(layers, ["layers", "--model", "resnet18", "--input-size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert "layer4" in out and "1×512×2×2" in out and "default" in out


def _images(folder, count=2):
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = rng.integers(0, 255, (40 + 8 * i, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"im{i}.png")


def test_explain_writes_maps_and_overlays(tmp_path):
    _images(tmp_path)
    out = tmp_path / "out"
    argv = ["explain", str(tmp_path), "--model", "resnet18", "--num-classes", "3"]
    argv += ["--input-size", "64", "64", "--method", "gradcam", "eigencam", "--out", str(out)]
    assert _run(explain, argv) == 0
    saliency = np.load(out / "im1.gradcam.npy")
    assert saliency.shape == (48, 56) and saliency.dtype == np.float32
    assert Image.open(out / "im0.eigencam.png").size == (56, 40)


def test_explain_detector_without_targets_warns_with_a_count(tmp_path, capsys):
    _images(tmp_path, 1)
    argv = ["explain", str(tmp_path / "im0.png"), "--model", "yolov8n.yaml"]
    argv += ["--input-size", "64", "64", "--out", str(tmp_path / "out")]
    assert _run(explain, argv) == 0
    assert "1 of 1 images have no target" in capsys.readouterr().out
    assert not np.load(tmp_path / "out" / "im0.gradcam.npy").any()


def test_explain_bad_inputs_are_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match=r"broken\.png is not a readable image"):
        _run(explain, ["explain", str(bad), "--model", "resnet18"])
    with pytest.raises(DataError, match=r"missing\.png does not exist"):
        _run(explain, ["explain", str(tmp_path / "missing.png"), "--model", "resnet18"])
    with pytest.raises(UserError, match="unknown method 'gradkam'"):
        _run(explain, ["explain", str(bad), "--model", "resnet18", "--method", "gradkam"])
