"""The demo models: trained locally and deterministically on the demo sets, cached by spec.

- classifier: timm ``resnet18`` with narrow stages (``model.demo.width``) and output stride 16,
  so its last stage keeps a 7×7 grid at 112 px; weights in safetensors beside a JSON card.
- detector: ultralytics YOLOv8n built from its yaml and trained on the set's ``data.yaml``; its
  weights are re-saved as safetensors (with the model yaml in the card) so loading runs no pickle.

A cached model is reused when its spec (architecture, training config, seed, data fingerprint)
matches, and retrained when not. Both are trained on the CPU unless CUDA is requested.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from safetensors.torch import load_file, save_file
from torch import nn

from hagxai import __version__
from hagxai.atomic import write_folder_atomic
from hagxai.config import RunConfig, cache_dir, resolve_device
from hagxai.data import open_dataset
from hagxai.data.demo import spec_key
from hagxai.models.classifier import IMAGENET_MEAN, IMAGENET_STD
from hagxai.models.ultralytics_env import import_ultralytics

DETECTOR_YAML = "yolov8n.yaml"
CARD = "card.json"
WEIGHTS = "model.safetensors"


@dataclass
class DemoModel:
    """A trained demo model: the module (eval mode), its card and its cache folder."""

    model: nn.Module
    card: dict[str, Any]
    path: Path


def build_classifier(num_classes: int, width: int) -> nn.Module:
    """The demo classifier's architecture (random init)."""
    import timm

    channels = (width, 2 * width, 4 * width, 8 * width)
    return timm.create_model(
        "resnet18", num_classes=num_classes, channels=channels, output_stride=16
    )


def load_images(samples, size: int | None = None) -> torch.Tensor:
    """Images of ``samples`` as a ``N×3×H×W`` float tensor in [0, 1]."""
    images = np.stack([s.load_image() for s in samples])
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    if size is not None and tensor.shape[-1] != size:
        tensor = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return tensor


def normalise(images: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of ``N×3×H×W`` images in [0, 1]."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def classifier_accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on ``N×3×H×W`` images in [0, 1]."""
    model.eval()
    correct = 0
    for start in range(0, len(images), 128):
        logits = model(normalise(images[start : start + 128]))
        correct += int((logits.argmax(1) == labels[start : start + 128]).sum())
    return correct / len(images)


def train_classifier(cfg: RunConfig, data_root: Path, progress: bool = True) -> DemoModel:
    """Train (or reuse from the cache) the demo classifier on the demo set at ``data_root``."""
    data = open_dataset(data_root, "hagxai")
    train_cfg = cfg.model.demo
    spec = {
        "kind": "classifier",
        "arch": "timm/resnet18",
        "width": train_cfg.width,
        "epochs": train_cfg.epochs,
        "batch_size": train_cfg.batch_size,
        "lr": train_cfg.lr,
        "seed": cfg.seed,
        "data": data.fingerprint,
        "num_classes": len(data.classes),
    }
    folder = cache_dir(cfg) / "models" / f"demo-classifier-{spec_key(spec)}"
    if (folder / CARD).exists():
        return load_classifier(folder)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_classifier(len(data.classes), train_cfg.width).to(device)
    train, val = data.split("train"), data.split("val")
    x_train = load_images(train).to(device)
    y_train = torch.tensor([s.label for s in train], device=device)
    x_val = load_images(val).to(device)
    y_val = torch.tensor([s.label for s in val], device=device)
    steps = train_cfg.epochs * ((len(train) + train_cfg.batch_size - 1) // train_cfg.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, train_cfg.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(cfg.seed)
    started = time.perf_counter()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("training demo classifier", total=train_cfg.epochs)
        for _ in range(train_cfg.epochs):
            model.train()
            order = torch.randperm(len(train), generator=generator).to(device)
            for start in range(0, len(order), train_cfg.batch_size):
                idx = order[start : start + train_cfg.batch_size]
                batch = x_train[idx]
                # Horizontal flips keep every part shape's class; nothing else is needed here.
                flip = torch.rand(len(idx), generator=generator).to(device) < 0.5
                batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
                loss = F.cross_entropy(model(normalise(batch)), y_train[idx], label_smoothing=0.05)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                schedule.step()
            bar.advance(task)
    model.eval()
    card = {
        "hagxai_version": __version__,
        "spec": spec,
        "classes": data.classes,
        "input_size": list(data.metadata["image_size"]),
        "normalisation": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "val_accuracy": classifier_accuracy(model, x_val, y_val),
        "train_seconds": round(time.perf_counter() - started, 1),
        "data_root": str(data_root),
    }
    _store(folder, {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, card)
    return DemoModel(model.cpu(), card, folder)


def _store(folder: Path, tensors: dict[str, torch.Tensor], card: dict[str, Any]) -> None:
    def write(partial: Path) -> None:
        save_file(tensors, partial / WEIGHTS)
        (partial / CARD).write_text(json.dumps(card, indent=1, sort_keys=True) + "\n")

    write_folder_atomic(folder, write)


def load_classifier(folder: Path) -> DemoModel:
    """Load a cached demo classifier (safetensors + card; no pickle)."""
    card = json.loads((folder / CARD).read_text())
    model = build_classifier(len(card["classes"]), card["spec"]["width"])
    model.load_state_dict(load_file(folder / WEIGHTS))
    return DemoModel(model.eval(), card, folder)


def build_detector(model_yaml: dict[str, Any] | str, num_classes: int) -> nn.Module:
    """An ultralytics ``DetectionModel`` from a yaml name or dict (random init)."""
    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    return DetectionModel(cfg=model_yaml, nc=num_classes, verbose=False)


def train_detector(cfg: RunConfig, data_root: Path, progress: bool = True) -> DemoModel:
    """Train (or reuse from the cache) the demo YOLOv8n on the demo set at ``data_root``."""
    data = open_dataset(data_root, "hagxai")
    train_cfg = cfg.model.demo
    imgsz = int(data.metadata["image_size"][0])
    spec = {
        "kind": "detector",
        "arch": DETECTOR_YAML,
        "epochs": train_cfg.epochs,
        "batch_size": train_cfg.batch_size,
        "lr": train_cfg.lr,
        "imgsz": imgsz,
        "seed": cfg.seed,
        "data": data.fingerprint,
        "num_classes": len(data.classes),
    }
    folder = cache_dir(cfg) / "models" / f"demo-detector-{spec_key(spec)}"
    if (folder / CARD).exists():
        return load_detector(folder)
    ultralytics = import_ultralytics()
    runs = folder.with_name(folder.name + ".ultralytics")
    shutil.rmtree(runs, ignore_errors=True)
    yolo = ultralytics.YOLO(DETECTOR_YAML, task="detect")
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    if progress:
        print(f"training demo detector ({DETECTOR_YAML}, {train_cfg.epochs} epochs, {imgsz} px)")
    yolo.train(
        data=str((data_root / "data.yaml").resolve()),
        epochs=train_cfg.epochs,
        imgsz=imgsz,
        batch=train_cfg.batch_size,
        workers=0,
        seed=cfg.seed,
        deterministic=True,
        device="cpu" if device.type == "cpu" else device.index or 0,
        project=str(runs.parent.resolve()),
        name=runs.name,
        exist_ok=True,
        plots=False,
        amp=device.type == "cuda",
        val=False,
        verbose=False,
        pretrained=False,
        optimizer="AdamW",
        lr0=train_cfg.lr,
        # The demo set is tiny: mosaic and strong colour jitter slow convergence more than help.
        mosaic=0.0,
        hsv_h=0.0,
        cache=True,
    )
    metrics = yolo.val(
        data=str((data_root / "data.yaml").resolve()),
        imgsz=imgsz,
        batch=train_cfg.batch_size,
        workers=0,
        device="cpu" if device.type == "cpu" else device.index or 0,
        plots=False,
        verbose=False,
        project=str(runs.parent.resolve()),
        name=runs.name + "-val",
        exist_ok=True,
    )
    model = yolo.model.float().eval()
    card = {
        "hagxai_version": __version__,
        "spec": spec,
        "classes": data.classes,
        "input_size": [imgsz, imgsz],
        "model_yaml": model.yaml,
        "val_map50": float(metrics.box.map50),
        "val_map50_95": float(metrics.box.map),
        "train_seconds": round(time.perf_counter() - started, 1),
        "data_root": str(data_root),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _store(folder, tensors, card)
    # ultralytics leaves parameters frozen after training; gradients are what hagxai needs.
    for param in model.parameters():
        param.requires_grad_(True)
    return DemoModel(model, card, folder)


def load_detector(folder: Path) -> DemoModel:
    """Load a cached demo detector: rebuild from the yaml in the card, load safetensors."""
    card = json.loads((folder / CARD).read_text())
    model = build_detector(card["model_yaml"], len(card["classes"]))
    model.load_state_dict(load_file(folder / WEIGHTS))
    model.names = dict(enumerate(card["classes"]))
    for param in model.parameters():
        param.requires_grad_(True)
    return DemoModel(model.float().eval(), card, folder)


def demo_model(cfg: RunConfig, data_root: Path, progress: bool = True) -> DemoModel:
    """The demo model for ``cfg.data.task``: the classifier or the detector."""
    if cfg.data.task == "classification":
        return train_classifier(cfg, data_root, progress)
    return train_detector(cfg, data_root, progress)


def demo_adapter(
    cfg: RunConfig,
    data_root: Path | None = None,
    progress: bool = True,
    trained: DemoModel | None = None,
):
    """The adapter of the demo model for ``cfg`` (trained on first use), with ``cfg.model.layers``.

    ``data_root`` defaults to the cached demo set of ``cfg``; ``trained`` is a demo model the
    caller already holds (else it is loaded or trained).
    """
    from hagxai.data.demo import demo_dataset
    from hagxai.models.classifier import ClassifierAdapter
    from hagxai.models.yolo import YoloAdapter

    if trained is None:
        trained = demo_model(cfg, data_root or demo_dataset(cfg, progress), progress)
    size = tuple(trained.card["input_size"])
    device = resolve_device(cfg.device)
    layers = cfg.model.layers
    if cfg.data.task == "classification":
        return ClassifierAdapter(
            trained.model.to(device), "demo-classifier", size, default_layers=layers
        )
    return YoloAdapter(trained.model.to(device), "demo-detector", size, default_layers=layers)


def _register() -> None:
    """``demo-classifier`` / ``demo-detector`` (and ``demo``, the classifier) as model names.

    They build from the shipped demo configs (``configs/demo_*.yaml``), so a model name alone
    gives the same model that ``hagxai demo`` trains.
    """
    from hagxai.config import load_config
    from hagxai.errors import ConfigError
    from hagxai.models.registry import register_adapter

    configs = Path(__file__).resolve().parents[2] / "configs"

    def builder(config_name: str):
        def build(model_cfg, device):
            path = configs / config_name
            if not path.exists():
                raise ConfigError(f"{path} not found: demo models need the repository's configs/")
            cfg = load_config(path, [f"device={device}"])
            cfg.model.layers = model_cfg.layers
            return demo_adapter(cfg)

        return build

    register_adapter("demo", builder("demo_classifier.yaml"))
    register_adapter("demo-classifier", builder("demo_classifier.yaml"))
    register_adapter("demo-detector", builder("demo_detector.yaml"))


_register()
