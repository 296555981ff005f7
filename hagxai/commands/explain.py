"""``hagxai explain``: explanations of images: overlays (PNG) and raw maps (.npy).

For each image and method it writes ``<stem>.<method>.npy`` (float32, the original image's size,
in [0, 1]) and ``<stem>.<method>.png`` (the map over the image; a detector's explained boxes are
drawn on it). ``--combiner DIR`` adds the learned head saved in ``DIR`` as the method
``learned`` (alone unless ``--method`` is given too); it hooks the layers its card names and is
refused for a model whose weights digest differs from the card's. Without ``--model`` the model
is rebuilt from the card (its name and weights file). ``--per-target`` writes one map per
explained target, ``<stem>.<method>.t<k>.npy`` / ``.png``, with that target's box.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from hagxai import explainers
from hagxai.api import Method
from hagxai.commands.layers import add_model_arguments, model_config
from hagxai.config import ModelConfig, resolve_device
from hagxai.console import progress_bar
from hagxai.data.sample import read_image
from hagxai.errors import DataError, UserError, cut_list
from hagxai.evidence import Extraction, extract_evidence
from hagxai.export import CARD_FILE, read_card
from hagxai.models import ModelAdapter, TargetSpec, build_adapter
from hagxai.models.registry import config_from_card, random_weights_message
from hagxai.overlay import overlay

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("explain", help="baseline or learned saliency maps for images")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    add_model_arguments(parser, required=False)
    parser.add_argument(
        "--method", nargs="+", help="explainer names (default: gradcam, or none with --combiner)"
    )
    parser.add_argument(
        "--combiner",
        type=Path,
        help="a saved combiner folder: adds its maps as 'learned'; without --model, the model "
        "its card names (and its weights file) is rebuilt",
    )
    parser.add_argument("--layers", nargs="+", help="layer names or a set (head, backbone)")
    parser.add_argument("--label", type=int, help="classifier: explain this class")
    parser.add_argument(
        "--classes",
        nargs="+",
        help="classifier: explain these classes (one map each with --per-target); detector: "
        "explain only detections of these classes (ids, or names the model knows)",
    )
    parser.add_argument("--conf", type=float, default=0.25, help="detector: least confidence")
    parser.add_argument(
        "--max-det", type=int, help="detector: explain at most this many detections per image"
    )
    parser.add_argument(
        "--per-target",
        action="store_true",
        help="one map per explained target (class or detection): <stem>.<method>.t<k>.npy/png",
    )
    parser.add_argument("--out", type=Path, default=Path("explanations"), help="output folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--masks", type=int, default=2000, help="RISE / D-RISE masks per image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def image_paths(inputs: list[str]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted)."""
    paths: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            paths.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        elif item.is_file():
            paths.append(item)
        else:
            raise DataError(f"{item} does not exist")
    if not paths:
        raise DataError(f"no images found in {cut_list(inputs)}")
    return paths


def load_image(path: Path) -> torch.Tensor:
    """``3×H×W`` float in [0, 1]; a file that is not an image raises :class:`DataError`."""
    try:
        array = read_image(path)
    except DataError:
        raise DataError(f"{path} is not a readable image") from None
    return torch.from_numpy(array.astype(np.float32) / 255.0).permute(2, 0, 1)


def _write(
    out: Path,
    name: str,
    paths: list[Path],
    images: list[torch.Tensor],
    maps: torch.Tensor,
    extraction: Extraction,
    per_target: bool,
) -> int:
    """Each map in its image's original frame as ``.npy`` and as an overlay ``.png``.

    Args:
        maps: ``B×h×w`` per image, or ``T×h×w`` per target (``per_target``), on the model input.

    Returns:
        The number of maps written.
    """
    targets = extraction.targets
    index = targets.image_index.cpu()
    written = 0
    for i, (path, image) in enumerate(zip(paths, images)):
        frame = extraction.prepared.frames[i]
        mine = torch.nonzero(index == i).flatten()
        boxes = None
        if targets.boxes is not None:
            boxes = frame.boxes_to_original(targets.boxes[mine.to(targets.boxes.device)].cpu())
        if per_target:
            items = [
                (f"{path.stem}.{name}.t{k}", maps[t], [] if boxes is None else [boxes[k].tolist()])
                for k, t in enumerate(mine.tolist())
            ]
        else:
            items = [(f"{path.stem}.{name}", maps[i], [] if boxes is None else boxes.tolist())]
        for stem, saliency, drawn in items:
            array = frame.map_to_original(saliency.detach().cpu()).clamp(0, 1).numpy()
            np.save(out / f"{stem}.npy", array.astype(np.float32))
            overlay(image, array, drawn).save(out / f"{stem}.png")
            written += 1
    return written


def _class_ids(adapter: ModelAdapter, classes: list[str] | None) -> list[int] | None:
    """``--classes`` as ids: integers as they are, names through the model's class names."""
    if not classes:
        return None
    names = getattr(adapter, "class_names", None) or {}
    by_name = {str(v): int(k) for k, v in names.items()}
    ids, unknown = [], []
    for item in classes:
        if item.lstrip("-").isdigit():
            ids.append(int(item))
        elif item in by_name:
            ids.append(by_name[item])
        else:
            unknown.append(item)
    if unknown:
        known = f"its {len(by_name)} classes: {cut_list(by_name)}" if by_name else "no class names"
        raise UserError(
            f"--classes: {cut_list(unknown)} not among the model's classes "
            f"(give class ids; the model has {known})"
        )
    return ids


def _model_config(args: argparse.Namespace) -> ModelConfig:
    """``--model`` and its options, or the model a combiner's card names (``--weights``,
    ``--num-classes``, ``--input-size``, ``--pretrained`` override the card's)."""
    if args.model is not None:
        return model_config(args, args.layers)
    if args.combiner is None:
        raise UserError("give --model NAME, or --combiner DIR whose card names the model")
    card = read_card(args.combiner)
    cfg = config_from_card(card["model"], str(args.combiner / CARD_FILE))
    updates = {"layers": args.layers}
    if args.weights is not None:
        updates["weights"] = Path(args.weights)
    if args.pretrained:
        updates["pretrained"] = True
    if args.num_classes is not None:
        updates["num_classes"] = args.num_classes
    size = args.input_size or card.get("input_size")
    if size:
        updates["input_size"] = tuple(size)
    return cfg.model_copy(update=updates)


def _target_spec(args: argparse.Namespace, adapter: ModelAdapter, count: int) -> TargetSpec:
    classes = _class_ids(adapter, args.classes)
    if adapter.task == "classification":
        if classes is not None and args.label is not None:
            raise UserError("give --label or --classes, not both")
        if classes is None and args.label is not None:
            classes = [args.label]
        return TargetSpec(labels=None if classes is None else [classes] * count)
    return TargetSpec(conf_threshold=args.conf, classes=classes, max_per_image=args.max_det)


def run(args: argparse.Namespace) -> int:
    methods = args.method if args.method is not None else ([] if args.combiner else ["gradcam"])
    known = [m for m in explainers.available() if m != "human"] + list(explainers.PERTURBATION)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r} (known: {cut_list(known, 8)})")
    if args.max_det is not None and args.max_det < 1:
        raise UserError("--max-det must be at least 1")
    paths = image_paths(args.inputs)
    cfg = _model_config(args)
    warning = random_weights_message(cfg)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    adapter = build_adapter(cfg, resolve_device(args.device))
    runners = {m: Method(adapter, m, None, args.layers, args.masks) for m in methods}
    if args.combiner is not None:
        runners["learned"] = Method(adapter, "learned", args.combiner, None, args.masks)
    args.out.mkdir(parents=True, exist_ok=True)
    empty = written = 0
    # One unit per image and method; RISE / D-RISE advance per image, as they run thousands of
    # masks each (per target with --per-target, they advance once per batch).
    total = len(paths) * len(runners)
    with progress_bar("explaining", total, not args.no_progress) as advance:
        for start in range(0, len(paths), args.batch_size):
            batch = paths[start : start + args.batch_size]
            images = [load_image(p) for p in batch]
            spec = _target_spec(args, adapter, len(images))
            # One extraction per layer set: methods that hook the same layers share it.
            extractions: dict[tuple[str, ...], Extraction] = {}
            for name, runner in runners.items():
                key = tuple(sorted(runner.layers))
                if key not in extractions:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        extractions[key] = extract_evidence(adapter, images, spec, runner.layers)
                extraction = extractions[key]
                if runner.perturbation and not args.per_target:
                    maps = runner.maps(extraction, False, on_image=lambda: advance(1))
                else:
                    maps = runner.maps(extraction, args.per_target)
                    advance(len(batch))
                written += _write(args.out, name, batch, images, maps, extraction, args.per_target)
            empty += len(next(iter(extractions.values())).images_without_targets)
    if empty:
        print(f"warning: {empty} of {len(paths)} images have no target; their maps are all zero")
    print(f"wrote {written} maps to {args.out}")
    return 0
