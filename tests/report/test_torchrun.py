"""``torchrun --nproc_per_node=2 evaluate.py`` (gloo, CPU): the two processes share the evidence
extraction and the batches of images, rank 0 writes one output folder, and its per-image values
and summary are those of one process."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hagxai.config import DemoDataConfig, ObserverConfig
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.models import build_adapter, model_digest

from .test_methods import make_run

REPO = Path(__file__).resolve().parents[2]


def _table(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _close(a: str, b: str) -> bool:
    """Equal cells, or numbers within 1e-6."""
    if a == b:
        return True
    try:
        return abs(float(a) - float(b)) <= 1e-6
    except ValueError:
        return False


@pytest.mark.slow
def test_two_processes_evaluate_each_image_once_and_match_one(tmp_path):
    demo = DemoDataConfig(num_train=4, num_val=1)
    root = make_demo_dataset(tmp_path / "data", "classification", demo, ObserverConfig(), 0, False)
    ids = sorted(s.id for s in open_dataset(root, "hagxai").samples)
    adapter = build_adapter("demo-classifier")  # the cached demo model
    run = make_run(
        tmp_path / "run",
        [ids[:2], ids[2:]],
        digest=model_digest(adapter.model),
        layers=adapter.resolve_layers(None),
    )
    args = [
        "device=cpu",
        "model.name=demo-classifier",
        "data.format=hagxai",
        f"data.root={root}",
        f"evaluate.learned=[{run}]",
        "evaluate.methods=[gradcam, rise]",
        "evaluate.rise_masks=8",
        "evaluate.faithfulness_steps=2",
        "evaluate.bootstrap=200",
        "evaluate.batch_size=2",  # 5 images: 3 batches, so rank 1 idles in the second round
        "evaluate.overlay_images=1",
        "evaluate.randomisation.images=2",
        "evaluate.randomisation.steps=2",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # torchrun's default per process; the same for the one process
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    outs = {}
    for processes in (1, 2):
        out = outs[processes] = tmp_path / f"out{processes}"
        # each its own evidence cache: the two processes also share the extraction
        own = [f"cache_dir={tmp_path / f'cache{processes}'}", f"evaluate.out={out}"]
        launch = [sys.executable, "evaluate.py"]
        if processes > 1:
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
            launch += [f"--nproc_per_node={processes}", "evaluate.py"]
        done = subprocess.run(
            [*launch, *args, *own, "--no-progress"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    one, two = _table(outs[1] / "per_image.csv"), _table(outs[2] / "per_image.csv")
    methods = ["learned", "gradcam", "rise", "centre_bias", "uniform_random", "human"]
    assert [(r["method"], r["image"]) for r in two] == [(m, i) for m in methods for i in ids]
    assert [(r["method"], r["image"]) for r in one] == [(r["method"], r["image"]) for r in two]
    for a, b in zip(one, two, strict=True):
        assert all(_close(a[k], b[k]) for k in a), (a, b)
    summary_one, summary_two = _table(outs[1] / "summary.csv"), _table(outs[2] / "summary.csv")
    assert len(summary_one) == len(summary_two) == len(methods)
    for a, b in zip(summary_one, summary_two, strict=True):
        assert all(_close(a[k], b[k]) for k in a), (a, b)
    json_one, json_two = (json.loads((o / "summary.json").read_text()) for o in outs.values())
    assert json_one["randomisation"] == json_two["randomisation"]
    # one folder, each batch saved once, by rank 0
    names = sorted(p.name for p in (outs[2] / "parts").iterdir())
    assert names == [f"batch-0000{n}.safetensors" for n in range(3)] + [
        "key.json",
        "randomisation.json",
    ]
    assert {p.name for p in outs[1].iterdir()} == {p.name for p in outs[2].iterdir()}
