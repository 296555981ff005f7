"""``hagxai explain``: explanations of images: overlays (PNG) and raw maps (.npy).

For each image and method it writes ``<stem>.<method>.npy`` (float32, the original image's size,
in [0, 1]) and ``<stem>.<method>.png`` (the map over the image; a detector's explained boxes are
drawn on it). ``--combiner DIR`` adds the learned head saved in ``DIR`` as the method
``learned`` (alone unless ``--method`` is given too); it hooks the layers its card names and is
refused for a model whose weights digest differs from the card's.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hagxai import explainers
from hagxai.commands.layers import add_model_arguments, model_config
from hagxai.config import resolve_device
from hagxai.data.sample import read_image
from hagxai.errors import DataError, UserError, cut_list
from hagxai.evidence import Extraction, extract_evidence
from hagxai.explainers.learned import LearnedExplainer
from hagxai.explainers.perturbation import perturbation_maps
from hagxai.models import TargetSpec, build_adapter

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("explain", help="baseline or learned saliency maps for images")
    parser.add_argument("inputs", nargs="+", help="image files or folders of images")
    add_model_arguments(parser)
    parser.add_argument(
        "--method", nargs="+", help="explainer names (default: gradcam, or none with --combiner)"
    )
    parser.add_argument(
        "--combiner", type=Path, help="a saved combiner folder: adds its maps as 'learned'"
    )
    parser.add_argument("--layers", nargs="+", help="layer names or a set (head, backbone)")
    parser.add_argument("--label", type=int, help="classifier: explain this class")
    parser.add_argument("--conf", type=float, default=0.25, help="detector: least confidence")
    parser.add_argument("--out", type=Path, default=Path("explanations"), help="output folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--masks", type=int, default=2000, help="RISE / D-RISE masks per image")
    parser.add_argument("--device", default="auto")
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


def overlay(image: torch.Tensor, saliency: np.ndarray, boxes: list[list[float]]) -> Image.Image:
    """The map in the jet colour map at half opacity over the image, with boxes in white."""
    from matplotlib import colormaps

    base = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    heat = (colormaps["jet"](saliency)[..., :3] * 255).astype(np.uint8)
    out = Image.fromarray((0.5 * base + 0.5 * heat).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for box in boxes:
        draw.rectangle(box, outline=(255, 255, 255), width=2)
    return out


def _write(
    out: Path,
    method: str,
    paths: list[Path],
    images: list[torch.Tensor],
    maps: torch.Tensor,
    extraction: Extraction,
) -> None:
    """Each image's map in its original frame as ``.npy`` and as an overlay ``.png``."""
    targets = extraction.targets
    for i, (path, image) in enumerate(zip(paths, images)):
        frame = extraction.prepared.frames[i]
        saliency = frame.map_to_original(maps[i].detach().cpu()).clamp(0, 1).numpy()
        np.save(out / f"{path.stem}.{method}.npy", saliency.astype(np.float32))
        boxes = []
        if targets.boxes is not None:
            mine = targets.boxes[targets.image_index == i].cpu()
            boxes = frame.boxes_to_original(mine).tolist()
        overlay(image, saliency, boxes).save(out / f"{path.stem}.{method}.png")


def run(args: argparse.Namespace) -> int:
    methods = args.method if args.method is not None else ([] if args.combiner else ["gradcam"])
    known = [m for m in explainers.available() if m != "human"] + list(explainers.PERTURBATION)
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise UserError(f"unknown method {unknown[0]!r} (known: {cut_list(known, 8)})")
    paths = image_paths(args.inputs)
    adapter = build_adapter(model_config(args, args.layers), resolve_device(args.device))
    learned = LearnedExplainer.from_folder(args.combiner, adapter) if args.combiner else None
    args.out.mkdir(parents=True, exist_ok=True)
    empty = 0
    size = adapter.input_size
    for start in range(0, len(paths), args.batch_size):
        batch = paths[start : start + args.batch_size]
        images = [load_image(p) for p in batch]
        if adapter.task == "classification":
            spec = TargetSpec(labels=None if args.label is None else [args.label] * len(images))
        else:
            spec = TargetSpec(conf_threshold=args.conf)
        extraction = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if methods:
                extraction = extract_evidence(adapter, images, spec)
            # The learned head reuses the baselines' evidence when it hooks the same layers.
            if learned is not None and (
                extraction is None or set(extraction.evidence.layers) != set(learned.layers)
            ):
                learned_extraction = learned.extract(images, spec)
            else:
                learned_extraction = extraction
        empty += len((extraction or learned_extraction).images_without_targets)
        for method in methods:
            if method in explainers.PERTURBATION:
                maps = perturbation_maps(
                    adapter, extraction.prepared.x, extraction.targets, num_masks=args.masks
                )
            else:
                maps = explainers.get(method)(extraction.evidence, size)
            _write(args.out, method, batch, images, maps, extraction)
        if learned is not None:
            with torch.no_grad():
                maps = learned.explain_evidence(learned_extraction.evidence, size)
            _write(args.out, "learned", batch, images, maps, learned_extraction)
    if empty:
        print(f"warning: {empty} of {len(paths)} images have no target; their maps are all zero")
    count = len(methods) + (learned is not None)
    print(f"wrote {len(paths) * count} maps to {args.out}")
    return 0
