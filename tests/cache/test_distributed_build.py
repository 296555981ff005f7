"""Evidence extraction under ``torchrun --nproc_per_node=2`` (gloo): each shard computed by one
rank, one complete index, the same cache as one process builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hagxai.cache import EvidenceCache
from hagxai.config import ModelConfig
from hagxai.data import open_dataset
from hagxai.models import build_adapter

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["layer3", "layer4"]

# Each rank builds the cache with ``distributed=True`` and records the shards it computed.
_BUILD = """
import json, sys
from pathlib import Path
import torch
from hagxai import distributed
from hagxai.cache import EvidenceCache
from hagxai.cache.shards import ShardBuilder
from hagxai.config import ModelConfig
from hagxai.data import open_dataset
from hagxai.models import build_adapter

data, root, log = sys.argv[1:4]
distributed.init("cpu")
written = []
write = ShardBuilder.write
def record(self, path, number, *args):
    written.append(number)
    return write(self, path, number, *args)
ShardBuilder.write = record
torch.manual_seed(0)
adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))
samples = open_dataset(data, "hagxai").samples
cache = EvidenceCache.build(
    adapter, samples, layers=["layer3", "layer4"], root=Path(root), shard_size=1,
    progress=False, distributed=True,
)
Path(f"{log}.{distributed.rank()}").write_text(json.dumps(
    {"written": written, "computed": cache.computed_shards, "ids": cache.ids}
))
distributed.shutdown()
"""


@pytest.mark.slow
def test_two_ranks_compute_each_shard_once(small_demo_samples, tmp_path):
    root = tmp_path / "data"
    samples = small_demo_samples(root, "classification", image_size=48)
    script = tmp_path / "build.py"
    script.write_text(_BUILD)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    log = tmp_path / "rank"
    done = subprocess.run(
        [*command, str(script), str(root), str(tmp_path / "evidence"), str(log)],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    ranks = [json.loads(Path(f"{log}.{r}").read_text()) for r in range(2)]
    written = [r["written"] for r in ranks]
    assert sorted(written[0] + written[1]) == list(range(len(samples)))
    assert not set(written[0]) & set(written[1]) and all(written)
    assert ranks[0]["computed"] == ranks[1]["computed"] == list(range(len(samples)))
    assert ranks[0]["ids"] == ranks[1]["ids"] == [s.id for s in samples]

    torch.manual_seed(0)
    adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(64, 64)))
    again = EvidenceCache.build(
        adapter,
        open_dataset(root, "hagxai").samples,
        layers=LAYERS,
        root=tmp_path / "evidence",
        shard_size=1,
        progress=False,
    )
    assert again.computed_shards == [] and again.verify() == {}
