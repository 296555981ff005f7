"""``hagxai evaluate`` end to end on a tiny demo set with the cached demo classifier: the files,
a baseline's numbers against the metrics module's, the learned row's folds, a refused leak, and
the report rendered in headless Chromium."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hagxai import explainers
from hagxai.cache import open_evidence
from hagxai.cli import main
from hagxai.config import DemoDataConfig, ObserverConfig, load_config
from hagxai.data import open_dataset
from hagxai.data.demo import make_demo_dataset
from hagxai.evaluation import faithfulness
from hagxai.export import load_combiner
from hagxai.metrics import plausibility
from hagxai.models import build_adapter, model_digest
from hagxai.training.data import load_human_data, render

from .test_methods import make_run

pytestmark = pytest.mark.slow

OVERRIDES = [
    "device=cpu",
    "model.name=demo-classifier",
    "data.format=hagxai",
    "evaluate.methods=[gradcam, rise]",
    "evaluate.rise_masks=16",
    "evaluate.faithfulness_steps=2",
    "evaluate.bootstrap=200",
    "evaluate.batch_size=4",
    "evaluate.overlay_images=1",
    "evaluate.randomisation.images=2",
    "evaluate.randomisation.steps=2",
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """A tiny demo set (4 images, 12 viewers), a two-fold run folder for the demo classifier,
    and one evaluation of it: ``(cfg overrides, output folder, run folder, data root)``."""
    base = tmp_path_factory.mktemp("evaluate")
    demo = DemoDataConfig(num_train=3, num_val=1)
    root = make_demo_dataset(base / "data", "classification", demo, ObserverConfig(), 0, False)
    ids = sorted(s.id for s in open_dataset(root, "hagxai").samples)
    adapter = build_adapter("demo-classifier")
    run = make_run(
        base / "run",
        [ids[:2], ids[2:]],
        digest=model_digest(adapter.model),
        layers=adapter.resolve_layers(None),
    )
    out = base / "out"
    overrides = [*OVERRIDES, f"data.root={root}", f"evaluate.out={out}"]
    assert main(["evaluate", *overrides, f"evaluate.learned=[{run}]", "--no-progress"]) == 0
    return overrides, out, run, root


def _per_image(out: Path) -> dict[tuple[str, str], dict[str, float]]:
    with (out / "per_image.csv").open() as handle:
        return {
            (r["method"], r["image"]): {
                k: float(v) for k, v in r.items() if k not in ("image", "method")
            }
            for r in csv.DictReader(handle)
        }


def test_writes_every_file_and_row(evaluated, capsys):
    _, out, _, _ = evaluated
    for name in ("per_image.csv", "summary.csv", "summary.json", "summary.md", "report.html"):
        assert (out / name).is_file(), name
    for name in ("scatter", "curves", "overlays", "randomisation", "learned_functions"):
        assert (out / "plots" / f"{name}.png").is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["rows"]}
    assert list(rows) == ["learned", "gradcam", "rise", "centre_bias", "uniform_random", "human"]
    assert "box_prior" not in rows  # a classifier has no boxes
    assert rows["human"]["kind"] == "human"  # the demo fixations carry viewer ids
    for name, row in rows.items():
        cc = row["metrics"]["cc"]
        assert cc["n"] == 4 and cc["low"] <= cc["mean"] <= cc["high"], name
        if name != "learned":
            assert set(row["p"]["learned"]) == set(summary["columns"])
    assert "centre_bias" in summary["randomisation"]["flagged"]
    assert rows["centre_bias"]["flagged"]
    table = (out / "summary.md").read_text()
    assert "| learned |" in table and "p=" in table and "insertion_blur" in table


def test_a_baselines_numbers_are_the_metrics_modules_on_the_same_maps(evaluated):
    overrides, out, _, root = evaluated
    cfg = load_config(None, overrides)
    adapter = build_adapter("demo-classifier")
    samples = open_dataset(root, "hagxai").samples
    cache = open_evidence(
        adapter, samples, layers=adapter.resolve_layers(None), root=Path(out).parent / "ev"
    )
    human = load_human_data(cache, samples)
    positions = sorted(human.keep, key=lambda p: cache.ids[p])
    slots = [human.keep.index(p) for p in positions]
    evidence = cache.evidence(positions)
    sizes = [tuple(human.maps[s].shape) for s in slots]
    maps = torch.stack(render(explainers.get("gradcam"), evidence, sizes, [None] * 4))
    table = _per_image(out)
    ids = [cache.ids[p] for p in positions]
    expected_cc = plausibility.cc(maps, torch.stack([human.maps[s] for s in slots]))
    expected_nss = plausibility.nss(maps, [human.fixations[s] for s in slots])
    got = torch.tensor([[table["gradcam", i]["cc"], table["gradcam", i]["nss"]] for i in ids])
    torch.testing.assert_close(got, torch.stack([expected_cc, expected_nss], 1), atol=1e-5, rtol=0)
    by_id = {
        s.id: torch.from_numpy(s.load_image().copy()).permute(2, 0, 1).float() / 255
        for s in samples
    }
    x = adapter.preprocess([by_id[i] for i in ids]).x
    on_input = explainers.get("gradcam")(evidence, evidence.input_size)
    result = faithfulness(
        adapter,
        x,
        cache.targets(positions),
        on_input,
        steps=cfg.evaluate.faithfulness_steps,
        baseline="zero",
        insertion_baseline="zero",
        seed=cfg.seed,
    )
    got = torch.tensor([table["gradcam", i]["insertion_black"] for i in ids])
    torch.testing.assert_close(got, result.insertion.auc.float(), atol=1e-5, rtol=0)


def test_the_learned_row_scores_each_image_with_its_held_out_fold(evaluated):
    _, out, run, root = evaluated
    folds = json.loads((run / "folds.json").read_text())["folds"]
    adapter = build_adapter("demo-classifier")
    samples = open_dataset(root, "hagxai").samples
    cache = open_evidence(
        adapter, samples, layers=adapter.resolve_layers(None), root=Path(out).parent / "ev"
    )
    human = load_human_data(cache, samples)
    table = _per_image(out)
    combiners = [load_combiner(run / f"fold_{k}" / "combiner") for k in range(len(folds))]
    for k, fold in enumerate(folds):
        for sample_id in fold:
            position = cache.ids.index(sample_id)
            slot = human.keep.index(position)
            evidence = cache.evidence([position])
            size = [tuple(human.maps[slot].shape)]
            own, other = (
                torch.stack(render(c, evidence, size, [None]))
                for c in (combiners[k], combiners[1 - k])
            )
            cc_own = plausibility.cc(own, human.maps[slot][None]).item()
            cc_other = plausibility.cc(other, human.maps[slot][None]).item()
            assert abs(cc_own - cc_other) > 1e-4, "the folds' combiners must differ here"
            assert table["learned", sample_id]["cc"] == pytest.approx(cc_own, abs=1e-5)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"][0]["seen"] == 0


def test_a_combiner_on_images_it_trained_on_is_refused_unless_allowed(evaluated, capsys, tmp_path):
    overrides, _, run, _ = evaluated
    fold0 = run / "fold_0" / "combiner"
    argv = ["evaluate", *overrides, f"evaluate.out={tmp_path}", f"evaluate.learned=[{fold0}]"]
    assert main([*argv, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "trained on 2 of the 4 evaluated images" in err and "allow_seen" in err
    assert not (tmp_path / "summary.json").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHECK = """<script>
window.addEventListener('load', () => {
  const out = {width: window.innerWidth, height: window.innerHeight};
  for (const id of ['summary', 'fig-scatter']) {
    const el = document.getElementById(id);
    const r = el ? el.getBoundingClientRect() : null;
    out[id] = r && {x: r.x, y: r.y, w: r.width, h: r.height,
      loaded: el.tagName !== 'IMG' || (el.complete && el.naturalWidth > 0)};
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    _, out, _, _ = evaluated
    report = (out / "report.html").read_text()
    assert "http://" not in report and "https://" not in report, "the report must need no network"
    # the check script goes into a copy: the report itself carries no script
    page = tmp_path / "report.html"
    page.write_text(report.replace("</body>", CHECK + "</body>"))
    flags = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,2000",
        "--enable-logging=stderr",
        "--v=0",
    ]
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert shot.is_file(), run.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1400)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01, "the screenshot is blank"
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    start = dom.stdout.index('<pre id="layout-check">') + len('<pre id="layout-check">')
    layout = json.loads(dom.stdout[start : dom.stdout.index("</pre>", start)])
    for element in ("summary", "fig-scatter"):
        box = layout[element]
        assert box is not None and box["loaded"], element
        assert box["w"] > 200 and box["h"] > 100, (element, box)
        assert box["y"] >= 0 and box["y"] + box["h"] <= layout["height"], (element, "off screen")
    for log in (run.stderr, dom.stderr):
        console = [line for line in log.splitlines() if ":CONSOLE" in line]
        assert not console, f"the page logged to the console: {console}"
