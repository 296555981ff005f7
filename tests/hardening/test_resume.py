"""Kill and resume for evidence caching, evaluation and export; a full disk while writing a
checkpoint, an export or a cache shard (simulated) leaves the previous file intact and says so in
one line."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hagxai.atomic import WriteError
from hagxai.cache import open_evidence
from hagxai.cli import main
from hagxai.combiner import HAGCombiner
from hagxai.config import ModelConfig
from hagxai.data import open_dataset
from hagxai.export import CombinerError, load_combiner, save_combiner
from hagxai.models import build_adapter, model_digest
from hagxai.training.checkpoint import load_checkpoint, save_checkpoint
from tests.report.test_methods import make_run

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["layer3", "layer4"]

# Builds the evidence cache of a tiny set, one sample per shard, pausing after each shard so the
# test can kill it between shards. argv: data root, cache root.
_SLOW_CACHE = """
import sys, time
from pathlib import Path
import torch
from hagxai.cache import open_evidence, shards
from hagxai.config import ModelConfig
from hagxai.data import open_dataset
from hagxai.models import build_adapter

write = shards.ShardBuilder.write
def slow(self, *args, **kwargs):
    entry = write(self, *args, **kwargs)
    time.sleep(0.4)
    return entry
shards.ShardBuilder.write = slow
torch.manual_seed(0)
adapter = build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(32, 32)))
samples = open_dataset(sys.argv[1], "hagxai").samples
open_evidence(adapter, samples, layers=["layer3", "layer4"], root=Path(sys.argv[2]),
              progress=False, shard_size=1)
"""

# Saves a combiner over an existing one and stops (sleeps, to be killed) at a chosen point:
# "writing" after the first file is written to its temporary file, "renaming" after the first
# file replaced its predecessor. argv: folder, point, marker file.
_SLOW_EXPORT = """
import os, sys, time
from pathlib import Path
import torch
from hagxai import atomic
from hagxai.combiner import HAGCombiner
from hagxai.export import save_combiner

folder, point, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
real = {"fsync": os.fsync, "replace": os.replace}
def pause(name):
    def call(*args):
        result = real[name](*args)
        if name == {"writing": "fsync", "renaming": "replace"}[point]:
            marker.touch()
            time.sleep(60)
        return result
    return call
atomic.os.fsync, atomic.os.replace = pause("fsync"), pause("replace")
combiner = HAGCombiner()
with torch.no_grad():
    for p in combiner.parameters():
        p.add_(0.25)
save_combiner(combiner, folder, model_name="new", overwrite=True)
"""


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)  # the same random weights as the subprocess's
    return build_adapter(ModelConfig(name="resnet18", num_classes=4, input_size=(32, 32)))


def _run_and_kill(script: str, args: list[str], ready) -> None:
    """Start ``script``, wait until ``ready()`` holds, then SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        # this process's thread count: CPU results differ in their last bits between counts
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": str(torch.get_num_threads()),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not ready():
        if process.poll() is not None:
            raise AssertionError(f"finished before the kill: {process.stderr.read().decode()}")
        assert time.monotonic() < deadline, "never reached the kill point"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _done_shards(root: Path) -> list[int]:
    indexes = list(root.glob("*/index.json"))
    if not indexes:
        return []
    try:
        shards = json.loads(indexes[0].read_text())["shards"]
    except (OSError, ValueError):
        return []
    return [n for n, entry in enumerate(shards) if entry is not None]


@pytest.mark.slow
def test_sigkill_while_caching_then_rerun_computes_only_what_is_missing(
    tiny_root, tmp_path, classifier
):
    samples = open_dataset(tiny_root, "hagxai").samples
    killed = tmp_path / "killed"
    _run_and_kill(
        _SLOW_CACHE, [str(tiny_root), str(killed)], lambda: len(_done_shards(killed)) >= 3
    )
    done = _done_shards(killed)
    assert 3 <= len(done) < len(samples), "the kill must land between shards"

    def build(root: Path):
        return open_evidence(
            classifier, samples, layers=LAYERS, root=root, progress=False, shard_size=1
        )

    resumed = build(killed)
    assert sorted(set(resumed.computed_shards) | set(done)) == list(range(len(samples)))
    assert not set(resumed.computed_shards) & set(done), "a complete shard was recomputed"
    straight = build(tmp_path / "straight")
    assert resumed.ids == straight.ids and resumed.skipped == straight.skipped
    positions = list(range(len(straight)))
    got, want = resumed.evidence(positions), straight.evidence(positions)
    for name in LAYERS:
        assert torch.equal(got.acts[name], want.acts[name]), name
        assert torch.equal(got.grads[name], want.grads[name]), name
    assert build(killed).computed_shards == [], "a third open recomputes nothing"


# ``hagxai evaluate`` that pauses after saving each batch of images, so the test can kill it
# between batches. argv: the command's arguments.
_SLOW_EVALUATE = """
import sys, time
from hagxai.cli import main
from hagxai.report import parts

write = parts.PartStore.write
def slow(self, number, data):
    write(self, number, data)
    time.sleep(0.5)
parts.PartStore.write = slow
sys.exit(main(sys.argv[1:]))
"""


def _files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*")) if p.is_file()}


def _same_evaluation_file(a: Path, b: Path) -> bool:
    """Equal files but for the time taken (``summary.json``) and made (``report.html``)."""
    if a.name == "summary.json":
        one, two = (json.loads(p.read_text()) for p in (a, b))
        return {**one, "timing": None} == {**two, "timing": None}
    if a.name == "report.html":
        created = r"<td>created</td><td[^>]*>[^<]*</td>"
        return re.sub(created, "", a.read_text()) == re.sub(created, "", b.read_text())
    return a.read_bytes() == b.read_bytes()


@pytest.mark.slow
def test_sigkill_during_evaluation_then_rerun_computes_only_the_missing_batches(
    tiny_root, tmp_path, capsys
):
    adapter = build_adapter("demo-classifier")  # the cached demo model
    ids = sorted(s.id for s in open_dataset(tiny_root, "hagxai").samples)
    run = make_run(
        tmp_path / "run",
        [ids[:4], ids[4:]],
        digest=model_digest(adapter.model),
        layers=adapter.resolve_layers(None),
    )
    out = tmp_path / "out"
    args = [
        "evaluate",
        "device=cpu",
        "model.name=demo-classifier",
        "data.format=hagxai",
        f"data.root={tiny_root}",
        f"cache_dir={tmp_path / 'cache'}",
        f"evaluate.learned=[{run}]",
        "evaluate.methods=[gradcam, rise]",
        "evaluate.rise_masks=8",
        "evaluate.faithfulness_steps=2",
        "evaluate.bootstrap=200",
        "evaluate.batch_size=2",  # 8 images: 4 batches
        "evaluate.overlay_images=1",
        "evaluate.randomisation.images=2",
        "evaluate.randomisation.steps=2",
        f"evaluate.out={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    straight = out.rename(tmp_path / "straight")
    capsys.readouterr()

    parts = out / "parts"

    def batches() -> list[Path]:
        return sorted(parts.glob("batch-*.safetensors"))

    _run_and_kill(_SLOW_EVALUATE, args, lambda: len(batches()) >= 2)
    saved = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in batches()}
    assert 2 <= len(saved) < 4, "the kill must land between batches"
    assert not (out / "summary.json").exists()

    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"resuming: {len(saved)} of 4 batches done" in printed
    assert f"computing {4 - len(saved)}" in printed
    for name, (mtime, data) in saved.items():  # complete batches were not computed again
        assert (parts / name).stat().st_mtime_ns == mtime, name
        assert (parts / name).read_bytes() == data, name
    want, got = _files(straight), _files(out)
    assert want.keys() == got.keys()
    assert "parts/randomisation.json" in want and "per_image.csv" in want
    differ = [name for name in want if not _same_evaluation_file(want[name], got[name])]
    assert not differ, differ

    # once complete, the same command again computes nothing and writes the same files
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "resuming: 4 of 4 batches done" in printed and "randomisation: read from" in printed
    differ = [name for name in want if not _same_evaluation_file(want[name], _files(out)[name])]
    assert not differ, differ


def _parameters(folder: Path) -> dict[str, torch.Tensor]:
    return load_combiner(folder).state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("point", ["writing", "renaming"])
def test_sigkill_during_export_then_rerun_gives_the_uninterrupted_combiner(tmp_path, point):
    folder = tmp_path / "combiner"
    save_combiner(HAGCombiner(), folder, model_name="old")
    old = _parameters(folder)
    marker = tmp_path / "paused"
    _run_and_kill(_SLOW_EXPORT, [str(folder), point, str(marker)], marker.exists)
    if point == "writing":
        # killed before any rename: the previous combiner is whole and loads
        assert all(torch.equal(old[k], v) for k, v in _parameters(folder).items())
    else:
        # killed between the two renames: the card's checksum refuses the mix
        with pytest.raises(CombinerError, match="does not match the SHA-256"):
            load_combiner(folder)
    # the same command again completes the export
    save_combiner(_new_combiner(), folder, model_name="new", overwrite=True)
    straight = save_combiner(_new_combiner(), tmp_path / "straight", model_name="new")
    assert (folder / "combiner.safetensors").read_bytes() == (
        straight / "combiner.safetensors"
    ).read_bytes()
    assert load_combiner(folder).options() == load_combiner(straight).options()
    _no_temporaries(folder)


def _new_combiner() -> HAGCombiner:
    """The combiner ``_SLOW_EXPORT`` saves."""
    combiner = HAGCombiner()
    with torch.no_grad():
        for p in combiner.parameters():
            p.add_(0.25)
    return combiner


# --- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """``fill(after)``: from the ``after``-th file write on, half of the bytes reach the disk and
    then the write fails with ENOSPC, as on a full disk."""
    real = os.fdopen

    class Filling:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(bytes(data)[: len(data) // 2])
            self.handle.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.handle, name)

    def fill(after: int = 1) -> None:
        count = {"n": 0}

        def fdopen(fd, *args, **kwargs):
            handle = real(fd, *args, **kwargs)
            count["n"] += 1
            return Filling(handle) if count["n"] >= after else handle

        monkeypatch.setattr(os, "fdopen", fdopen)

    return fill


def _no_temporaries(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "temporary left"


def test_full_disk_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, full_disk):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, {"w": torch.arange(4.0)}, {"epoch": 1})
    before = path.read_bytes()
    full_disk()
    with pytest.raises(WriteError) as raised:
        save_checkpoint(path, {"w": torch.arange(4.0) * 2}, {"epoch": 2})
    message = str(raised.value)
    assert "\n" not in message
    assert "checkpoint.safetensors: cannot write (No space left on device)" in message
    assert "previous file is unchanged" in message
    assert path.read_bytes() == before
    assert load_checkpoint(path)[1] == {"epoch": 1}
    _no_temporaries(tmp_path)


@pytest.mark.parametrize("after", [1, 2], ids=["tensors", "card"])
def test_full_disk_while_exporting_keeps_the_previous_combiner(tmp_path, full_disk, after):
    folder = save_combiner(HAGCombiner(), tmp_path / "combiner", model_name="old")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    new = HAGCombiner()
    with torch.no_grad():
        new.act_pos.fill_(3.0)
    full_disk(after)
    with pytest.raises(WriteError, match=r"cannot write \(No space left on device\); nothing"):
        save_combiner(new, folder, model_name="new", overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert float(load_combiner(folder).act_pos.detach()) == 1.0
    _no_temporaries(folder)


def test_full_disk_while_writing_a_cache_shard(tiny_root, tmp_path, full_disk, classifier):
    samples = open_dataset(tiny_root, "hagxai").samples

    def build():
        return open_evidence(
            classifier, samples, layers=LAYERS, root=tmp_path, progress=False, shard_size=4
        )

    cache = build()
    index = cache.path / "index.json"
    (cache.path / "shard-00001.safetensors").unlink()
    before = index.read_bytes()
    full_disk()
    with pytest.raises(WriteError, match=r"shard-00001\.safetensors: cannot write \(No space"):
        build()
    assert index.read_bytes() == before, "the index must survive"
    assert not (cache.path / "shard-00001.safetensors").exists()
    _no_temporaries(cache.path)


def test_full_disk_from_the_command_line_is_one_line(tmp_path, full_disk, capsys):
    values = {k: 1.0 for k in ("Alpha_act_pos", "Alpha_act_neg", "Alpha_grad_pos", "G_A_grad")}
    values |= {"Alpha_grad_neg": 0.0, "G_sigma_grad": 3.0, "G_A_all": 1.0, "G_sigma_all": 3.0}
    values |= {"ObjW": 1.0}
    (tmp_path / "values.json").write_text(json.dumps(values))
    full_disk()
    code = main(["import-reference", str(tmp_path / "values.json"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "combiner.safetensors: cannot write (No space left on device)" in err
