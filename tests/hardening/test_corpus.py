"""The bad-input corpus: inputs real users bring, made at test time, each with its documented
outcome (README, "Bad inputs").

Every case builds its files in a fresh folder and names one call: a ``hagxai`` command run in
process, or a library function. Outcomes:

* :class:`Error`: a one-line error that names the file (or key) and the problem, with exit code 2
  for usage (configuration) and 1 for data; never a traceback from inside a library.
* :class:`Skip`: the sample is left out and counted, with its reason, among the run's skipped
  samples (what ``summary.json`` reports).
* :class:`Reads`: the input is valid and is read correctly (the check says what correct means).
* :class:`Recovers`: damaged derived data (a cache) is recomputed, with the same result.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hagxai.cache import open_evidence
from hagxai.cache.rules import TargetRule
from hagxai.cli import main
from hagxai.combiner import HAGCombiner
from hagxai.config import ModelConfig
from hagxai.data import open_dataset
from hagxai.data.sample import read_image, read_image_size
from hagxai.errors import UserError
from hagxai.export import load_combiner, save_combiner
from hagxai.models import build_adapter
from hagxai.training.checkpoint import load_checkpoint, save_checkpoint
from hagxai.training.data import load_human_data

SIZE = 16  # images are SIZE×SIZE unless a case says otherwise


# --- outcomes -------------------------------------------------------------------------------


@dataclass
class Error:
    """A one-line error with ``code``, naming ``names`` (a file or key) and matching ``says``."""

    code: int
    names: str
    says: str


@dataclass
class Skip:
    """The sample ``sample`` is skipped and counted, its reason matching ``says``."""

    sample: str
    says: str
    others_used: bool = True


@dataclass
class Reads:
    """The call succeeds and ``check(result)`` holds."""

    check: Callable[[Any], bool]


@dataclass
class Recovers:
    """The call succeeds after recomputing damaged derived data; ``check(result)`` holds."""

    check: Callable[[Any], bool]


@dataclass
class Case:
    name: str
    make: Callable[[Path], Callable[[], Any]]
    outcome: Error | Skip | Reads | Recovers


@dataclass
class Cli:
    """What an in-process ``hagxai`` command returned."""

    code: int


# --- makers ---------------------------------------------------------------------------------


def _pattern(size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.stack([x * 255 // max(size - 1, 1), y * 255 // max(size - 1, 1), (x + y) % 256], 2)


def png(image: Image.Image | np.ndarray, **kw: Any) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format=kw.pop("format", "PNG"), **kw)
    return buffer.getvalue()


def jpeg(image: Image.Image | np.ndarray, **kw: Any) -> bytes:
    return png(image, format="JPEG", **kw)


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def blob_map(size: int = SIZE) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    return np.exp(-((x - size / 2) ** 2 + (y - size / 3) ** 2) / 8).astype(np.float32)


def zero_size_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def folders(
    root: Path, images: dict[str, bytes] | None = None, maps: dict[str, bytes] | None = None
) -> Path:
    """A ``folders`` dataset: ``a`` and ``b`` good pairs, overridden by ``images`` / ``maps``."""
    good_images = {"a.png": png(_pattern()), "b.png": png(_pattern()[::-1])}
    good_maps = {"a.npy": npy(blob_map()), "b.npy": npy(blob_map()[::-1].copy())}
    for name, data in {**good_images, **(images or {})}.items():
        write(root / "images" / name, data)
    for name, data in {**good_maps, **(maps or {})}.items():
        write(root / "maps" / name, data)
    return root


def fixations(root: Path, table: str, name: str = "fixations.csv") -> Path:
    """A ``fixations`` dataset: images ``a`` and ``b`` and the given table."""
    write(root / "images" / "a.png", png(_pattern()))
    write(root / "images" / "b.png", png(_pattern()[::-1]))
    write(root / name, table)
    return root


GOOD_TABLE = "image,x,y\na.png,3,4\na.png,8,8\nb.png,10,2\n"


def detection(root: Path, labels: dict[str, str], names: list[str] | None = None) -> Path:
    """A ``folders`` dataset with YOLO labels (``labels/``) and class names in ``data.yaml``."""
    folders(root)
    for stem, text in labels.items():
        write(root / "labels" / f"{stem}.txt", text)
    write(root / "labels" / "data.yaml", yaml.safe_dump({"names": names or ["car", "bus"]}))
    return root


def coco(root: Path, document: str | dict) -> Path:
    folders(root)
    text = document if isinstance(document, str) else json.dumps(document)
    write(root / "annotations.json", text)
    return root


COCO_OK = {
    "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
    "annotations": [{"image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]}],
    "categories": [{"id": 7, "name": "car"}],
}


def cli(*argv: str) -> Callable[[], Cli]:
    return lambda: Cli(main([str(a) for a in argv]))


def check(root: Path, *options: str) -> Callable[[], Cli]:
    return cli("data", "check", root, *options)


def config(root: Path, text: str) -> Path:
    return write(root / "run.yaml", text)


def train_cli(root: Path, *overrides: str) -> Callable[[], Cli]:
    out = [f"output_dir={root / 'runs'}", f"cache_dir={root / 'cache'}", "device=cpu"]
    return cli("train", "-c", root / "run.yaml", *out, *overrides, "--no-progress")


# --- skips: the training path's own steps (evidence cache, then human data) --------------------


@dataclass
class Skipped:
    """The samples a training run would skip, with reasons (``summary.json``'s
    ``skipped_samples``) and the number it would use."""

    skipped: dict[str, str]
    used: int


def training_skips(root: Path, adapter: Any, rule: TargetRule | None = None) -> Skipped:
    dataset = open_dataset(root)
    samples = dataset.samples
    for s in samples:
        if s.label is None and rule is None:
            s.label = 0
    cache = open_evidence(
        adapter,
        samples,
        layers=adapter.resolve_layers(None),
        root=root / "cache",
        rule=rule or TargetRule(),
        progress=False,
    )
    human = load_human_data(cache, samples)
    return Skipped({**cache.skipped, **human.skipped}, len(human.keep))


# --- the corpus -----------------------------------------------------------------------------


def _exif_rotated(stored_hw: tuple[int, int]) -> bytes:
    image = Image.fromarray(np.zeros((*stored_hw, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    return jpeg(image, exif=exif)


def _combiner(root: Path, layers: list[str] | None = None, **card: Any) -> Path:
    return save_combiner(HAGCombiner(layers), root / "combiner", **card)


def _edited_combiner(root: Path) -> Path:
    folder = _combiner(root)
    tensors = folder / "combiner.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 0x01  # one bit of one parameter
    tensors.write_bytes(bytes(data))
    return folder


def _card(root: Path, edit: Callable[[dict], None]) -> Path:
    folder = _combiner(root)
    card = json.loads((folder / "combiner.json").read_text())
    edit(card)
    (folder / "combiner.json").write_text(json.dumps(card))
    return folder


def _not_a_checkpoint(root: Path) -> Path:
    return write(root / "weights.pt", b"PK\x03\x04 this is not a torch file")


def _pickle_of_something_else(root: Path) -> Path:
    buffer = io.BytesIO()
    # a class outside torch's allow-list: a weights-only load refuses it
    torch.save({"model": argparse.Namespace(layers=3)}, buffer)
    return write(root / "weights.pt", buffer.getvalue())


def _truncated_checkpoint(root: Path) -> Path:
    path = root / "checkpoint.safetensors"
    save_checkpoint(path, {"x": torch.arange(100.0)}, {"epoch": 1})
    path.write_bytes(path.read_bytes()[:60])
    return path


def _cache_then(root: Path, adapter: Any, damage: Callable[[Path], None]) -> Callable[[], Any]:
    """Build a cache over a tiny ``folders`` set, damage it, and return the rebuild."""
    folders(root)
    samples = open_dataset(root).samples
    for s in samples:
        s.label = 0

    def build():
        return open_evidence(
            adapter, samples, layers=["layer4"], root=root / "cache", progress=False, shard_size=1
        )

    first = build()
    want = first.evidence([0, 1]).acts["layer4"].clone()
    damage(first.path)

    def rebuild():
        cache = build()
        return cache, want

    return rebuild


def _truncate_shard(path: Path) -> None:
    shard = path / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])


def _index_of_other_data(path: Path) -> None:
    index = json.loads((path / "index.json").read_text())
    index["key"] = "0123456789abcdef"
    index["num_samples"] = 99
    (path / "index.json").write_text(json.dumps(index))


def _index_of_other_layers(path: Path) -> None:
    index = json.loads((path / "index.json").read_text())
    index["layers"] = ["layer3"]
    (path / "index.json").write_text(json.dumps(index))


def _rebuilt(result: Any) -> bool:
    cache, want = result
    return torch.equal(cache.evidence([0, 1]).acts["layer4"], want) and bool(cache.computed_shards)


def with_image(d: Path, name: str, data: bytes, map_array: np.ndarray | None = None) -> Path:
    """A ``folders`` set with one more image ``name`` (and a fitting map unless given)."""
    stem = Path(name).stem
    return folders(
        d, {name: data}, {f"{stem}.npy": npy(blob_map() if map_array is None else map_array)}
    )


def with_map(d: Path, data: bytes, name: str = "c.npy") -> Path:
    """A ``folders`` set with one more image ``c.png`` whose map file is ``data``."""
    return folders(d, {"c.png": png(_pattern())}, {name: data})


def image_file(d: Path, name: str, data: bytes) -> Path:
    return write(d / name, data)


def corpus(adapter: Any, detector: Any) -> list[Case]:
    """Every case (``adapter``: a small classifier; ``detector``: a small random YOLO)."""
    pattern = _pattern().astype(np.uint8)
    grey = pattern[..., 0]
    wide = grey.astype(np.uint16) * 257
    cmyk = Image.fromarray(pattern).convert("CMYK")
    rgba = np.concatenate([pattern, np.full((SIZE, SIZE, 1), 7, np.uint8)], 2)
    palette = Image.fromarray(pattern).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    box = "0 0.5 0.5 0.25 0.25\n"
    cases = [
        # --- images ---
        Case(
            "truncated JPEG",
            lambda d: check(with_image(d, "c.jpg", jpeg(pattern)[:150])),
            Error(1, "c.jpg", "cannot be read as an image"),
        ),
        Case(
            "truncated PNG",
            lambda d: check(with_image(d, "c.png", png(pattern)[:60])),
            Error(1, "c.png", "cannot be read as an image"),
        ),
        Case(
            "corrupt JPEG (garbage after the header)",
            lambda d: check(with_image(d, "c.jpg", jpeg(pattern)[:20] + bytes(range(256)) * 4)),
            Error(1, "c.jpg", "cannot be read as an image"),
        ),
        Case(
            "zero-byte image file",
            lambda d: check(with_image(d, "c.png", b"")),
            Error(1, "c.png", "cannot be read as an image"),
        ),
        Case(
            "text file named .png",
            lambda d: check(with_image(d, "c.png", b"hello\n")),
            Error(1, "c.png", "cannot be read as an image"),
        ),
        Case(
            "zero-size image (0×0 PNG header)",
            lambda d: lambda: read_image(image_file(d, "z.png", zero_size_png())),
            Error(1, "z.png", "cannot be read as an image|no pixels"),
        ),
        Case(
            "zero-size image skipped in training",
            lambda d: lambda: training_skips(with_image(d, "c.png", zero_size_png()), adapter),
            Skip("c", "unreadable image"),
        ),
        Case(
            "truncated image skipped in training",
            lambda d: lambda: training_skips(with_image(d, "c.jpg", jpeg(pattern)[:150]), adapter),
            Skip("c", "unreadable image|truncated|cannot be read"),
        ),
        Case(
            "greyscale image",
            lambda d: lambda: read_image(image_file(d, "g.png", png(grey))),
            Reads(lambda rgb: rgb.shape == (SIZE, SIZE, 3) and (rgb == grey[..., None]).all()),
        ),
        Case(
            "RGBA image (alpha dropped)",
            lambda d: lambda: read_image(image_file(d, "r.png", png(rgba))),
            Reads(lambda rgb: (rgb == pattern).all()),
        ),
        Case(
            "16-bit greyscale image (scaled, not clipped)",
            lambda d: lambda: read_image(image_file(d, "w.png", png(Image.fromarray(wide)))),
            Reads(lambda rgb: (rgb[..., 0] == grey).all()),
        ),
        Case(
            "palette image",
            lambda d: lambda: read_image(image_file(d, "p.png", png(palette))),
            Reads(lambda rgb: (rgb == np.asarray(palette.convert("RGB"))).all()),
        ),
        Case(
            "CMYK JPEG",
            lambda d: lambda: read_image(image_file(d, "k.jpg", jpeg(cmyk, quality=100))),
            Reads(
                lambda rgb: (
                    rgb.shape == (SIZE, SIZE, 3) and np.abs(rgb.astype(int) - pattern).mean() < 8
                )
            ),
        ),
        Case(
            "1×1 image",
            lambda d: lambda: read_image(image_file(d, "o.png", png(pattern[:1, :1]))),
            Reads(lambda rgb: rgb.shape == (1, 1, 3) and (rgb[0, 0] == pattern[0, 0]).all()),
        ),
        Case(
            "EXIF-rotated photo (read as shown)",
            lambda d: (
                lambda: (
                    read_image(p := image_file(d, "e.jpg", _exif_rotated((10, 20)))),
                    read_image_size(p),
                )
            ),
            Reads(lambda out: out[0].shape == (20, 10, 3) and out[1] == (20, 10)),
        ),
        Case(
            "EXIF-rotated photo with a map of the stored frame",
            lambda d: check(with_image(d, "e.jpg", _exif_rotated((10, 20)), blob_map(20)[:10])),
            Error(1, "e.npy", "map is 20×10, its image e.jpg is 10×20"),
        ),
        # --- attention maps ---
        Case(
            "map with NaN",
            lambda d: check(with_map(d, npy(np.where(blob_map() > 0.5, np.nan, blob_map())))),
            Error(1, "c.npy", "NaN or inf"),
        ),
        Case(
            "map with inf",
            lambda d: check(with_map(d, npy(np.where(blob_map() > 0.5, np.inf, blob_map())))),
            Error(1, "c.npy", "NaN or inf"),
        ),
        Case(
            "map with negative values",
            lambda d: check(with_map(d, npy(blob_map() - 0.5))),
            Error(1, "c.npy", "negative values"),
        ),
        Case(
            "NaN map skipped in training",
            lambda d: (
                lambda: training_skips(
                    with_map(d, npy(np.full((SIZE, SIZE), np.nan, np.float32))), adapter
                )
            ),
            Skip("c", "bad attention map.*c.npy.*NaN"),
        ),
        Case(
            "all-zero map skipped in training",
            lambda d: (
                lambda: training_skips(
                    with_map(d, npy(np.zeros((SIZE, SIZE), np.float32))), adapter
                )
            ),
            Skip("c", "c.npy: constant human map"),
        ),
        Case(
            "constant map skipped in training",
            lambda d: (
                lambda: training_skips(
                    with_map(d, npy(np.full((SIZE, SIZE), 0.3, np.float32))), adapter
                )
            ),
            Skip("c", "c.npy: constant human map"),
        ),
        Case(
            "map of the wrong size",
            lambda d: check(with_map(d, npy(blob_map(8)))),
            Error(1, "c.npy", "map is 8×8, its image c.png is 16×16"),
        ),
        Case(
            "map of the wrong rank (H×W×3)",
            lambda d: check(with_map(d, npy(np.ones((SIZE, SIZE, 3), np.float32)))),
            Error(1, "c.npy", "must be 2-D"),
        ),
        Case(
            "empty map (0×16)",
            lambda d: check(with_map(d, npy(np.ones((0, SIZE), np.float32)))),
            Error(1, "c.npy", "is empty"),
        ),
        Case(
            "complex-valued map",
            lambda d: check(with_map(d, npy(blob_map().astype(np.complex64)))),
            Error(1, "c.npy", "real numbers"),
        ),
        Case(
            "map .npy holding a pickle",
            lambda d: check(with_map(d, npy(np.array([{}], object), True))),
            Error(1, "c.npy", "cannot be read as a .npy"),
        ),
        Case(
            "truncated .npy map",
            lambda d: check(with_map(d, npy(blob_map())[:90])),
            Error(1, "c.npy", "cannot be read as a .npy"),
        ),
        Case(
            "broken .mat map",
            lambda d: check(with_map(d, b"MATLAB 5.0 garbage", "c.mat")),
            Error(1, "c.mat", "cannot be read as a MATLAB"),
        ),
        Case(
            "map without an image",
            lambda d: check(folders(d, {}, {"x.npy": npy(blob_map())})),
            Error(1, "x.npy", "has no image"),
        ),
        Case(
            "image without a map",
            lambda d: check(folders(d, {"c.png": png(pattern)}, {})),
            Error(1, "c.png", "no attention map"),
        ),
        # --- fixation tables ---
        Case(
            "fixation table without column y",
            lambda d: check(fixations(d, "image,x\na.png,3\n"), "-o", "sigma_px=2"),
            Error(1, "fixations.csv", "lacks column.*y"),
        ),
        Case(
            "text in a number column",
            lambda d: check(fixations(d, GOOD_TABLE + "b.png,left,3\n"), "-o", "sigma_px=2"),
            Error(1, "fixations.csv:5", "must be numbers"),
        ),
        Case(
            "NaN in a fixation table",
            lambda d: check(fixations(d, GOOD_TABLE + "b.png,nan,3\n"), "-o", "sigma_px=2"),
            Error(1, "fixations.csv:5", "NaN or inf"),
        ),
        Case(
            "fixations outside the image",
            lambda d: check(fixations(d, GOOD_TABLE + "b.png,40,-3\n"), "-o", "sigma_px=2"),
            Error(1, "sample b", "1 fixation.*outside the 16×16 image"),
        ),
        Case(
            "an image without fixations",
            lambda d: check(fixations(d, "image,x,y\na.png,3,4\n"), "-o", "sigma_px=2"),
            Error(1, "b.png", "no fixations in"),
        ),
        Case(
            "empty fixation table (header only)",
            lambda d: check(fixations(d, "image,x,y\n"), "-o", "sigma_px=2"),
            Error(1, "a.png", "no fixations in"),
        ),
        Case(
            "zero-byte fixation table",
            lambda d: check(fixations(d, ""), "-o", "sigma_px=2"),
            Error(1, "fixations.csv", "lacks column"),
        ),
        Case(
            "JSON-lines table with a broken line",
            lambda d: check(
                fixations(d, '{"image": "a.png", "x": 1, "y": 2}\n{"image": \n', "fixations.jsonl"),
                "-o",
                "sigma_px=2",
            ),
            Error(1, "fixations.jsonl:2", "not valid JSON"),
        ),
        Case(
            "fixations of an image that has no file",
            lambda d: check(fixations(d, GOOD_TABLE + "zz.png,1,1\n"), "-o", "sigma_px=2"),
            Error(1, "fixations.csv", "'zz', which has no file"),
        ),
        # --- labels and boxes ---
        Case(
            "YOLO label with a bad line",
            lambda d: check(
                detection(d, {"a": box + "0 0.5 oops 0.1\n", "b": box}), "-o", "labels=labels"
            ),
            Error(1, "a.txt", "each line must be 'class cx cy w h'"),
        ),
        Case(
            "YOLO class out of range",
            lambda d: check(
                detection(d, {"a": box, "b": "5 0.5 0.5 0.2 0.2\n"}), "-o", "labels=labels"
            ),
            Error(1, "b.txt", "class index outside the 2 classes"),
        ),
        Case(
            "box outside the image",
            lambda d: check(
                detection(d, {"a": box, "b": "1 0.9 0.9 0.5 0.5\n"}), "-o", "labels=labels"
            ),
            Error(1, "sample b", "box lies outside the 16×16 image"),
        ),
        Case(
            "COCO annotation of an unknown image id",
            lambda d: check(
                coco(
                    d,
                    {
                        **COCO_OK,
                        "annotations": [{"image_id": 9, "category_id": 7, "bbox": [1, 1, 2, 2]}],
                    },
                )
            ),
            Error(1, "annotations.json", "annotation 0 needs a known image_id"),
        ),
        Case(
            "COCO file that is not JSON",
            lambda d: check(coco(d, "{images: [")),
            Error(1, "annotations.json", "not valid JSON"),
        ),
        Case(
            "COCO JSON without categories",
            lambda d: check(coco(d, {"images": [], "annotations": []})),
            Error(1, "annotations.json", "not COCO.*categories"),
        ),
        Case(
            "classification CSV with an unknown class",
            lambda d: check(
                write(folders(d) / "labels.csv", "image,label\na.png,cat\nb.png,7\n").parent,
                "-o",
                "labels=labels.csv",
                "-o",
                "class_names=[cat, dog]",
            ),
            Error(1, "labels.csv:3", "label '7' is not one of"),
        ),
        Case(
            "image with no detection skipped in training",
            lambda d: (
                lambda: training_skips(
                    detection(d, {"a": box, "b": ""}), detector, TargetRule("boxes")
                )
            ),
            Skip("b", "no target", others_used=False),
        ),
        # --- configs (exit 2, before any work) ---
        Case(
            "config with an unknown key",
            lambda d: config(d, "name: x\ntrain:\n  epoch: 3\n") and train_cli(d),
            Error(2, "run.yaml", "unknown key 'train.epoch'"),
        ),
        Case(
            "config value of the wrong type",
            lambda d: config(d, "train:\n  epochs: many\n") and train_cli(d),
            Error(2, "run.yaml", "train.epochs"),
        ),
        Case(
            "override of the wrong type",
            lambda d: config(d, "name: x\n") and train_cli(d, "train.folds=1"),
            Error(2, "command line", "train.folds"),
        ),
        Case(
            "config file that does not exist",
            lambda d: cli("train", "-c", d / "nope.yaml"),
            Error(2, "nope.yaml", "No such file|does not exist"),
        ),
        Case(
            "config that is not YAML",
            lambda d: config(d, "train: [\n") and train_cli(d),
            Error(2, "run.yaml", "not valid YAML"),
        ),
        Case(
            "config with a key given twice",
            lambda d: config(d, "seed: 1\nseed: 2\n") and train_cli(d),
            Error(2, "run.yaml", "seed"),
        ),
        Case(
            "data.root that does not exist",
            lambda d: config(d, f"data:\n  root: {d / 'missing'}\n") and train_cli(d),
            Error(1, "missing", "does not exist"),
        ),
        # --- caches ---
        Case(
            "truncated cache shard",
            lambda d: _cache_then(d, adapter, _truncate_shard),
            Recovers(_rebuilt),
        ),
        Case(
            "cache index of other data",
            lambda d: _cache_then(d, adapter, _index_of_other_data),
            Recovers(_rebuilt),
        ),
        Case(
            "cache index of other layers",
            lambda d: _cache_then(d, adapter, _index_of_other_layers),
            Error(1, "index.json", "holds layers \\['layer3'\\]"),
        ),
        # --- combiners ---
        Case(
            "combiner card of another model",
            lambda d: (
                lambda: load_combiner(_combiner(d, model_digest="0" * 16), model_digest="f" * 16)
            ),
            Error(1, "combiner.json", "trained for model digest 0+"),
        ),
        Case(
            "combiner with edited parameters",
            lambda d: lambda: load_combiner(_edited_combiner(d)),
            Error(1, "combiner.safetensors", "does not match the SHA-256"),
        ),
        Case(
            "combiner card of a newer format version",
            lambda d: lambda: load_combiner(_card(d, lambda c: c.update(format_version=99))),
            Error(1, "combiner.json", "format version 99"),
        ),
        Case(
            "combiner card that is not JSON",
            lambda d: lambda: load_combiner(write(_combiner(d) / "combiner.json", "{").parent),
            Error(1, "combiner.json", "not a readable JSON card"),
        ),
        Case(
            "combiner folder without a card",
            lambda d: lambda: load_combiner(d),
            Error(1, "combiner.json", "does not exist"),
        ),
        Case(
            "combiner card of another model (explain command)",
            lambda d: cli(
                "explain",
                "--model",
                "resnet18",
                "--combiner",
                _combiner(d, model_digest="0" * 16),
                write(d / "i.png", png(pattern)),
                "--out",
                d / "maps",
            ),
            Error(1, "combiner.json", "trained for model digest 0+, the given model has"),
        ),
        # --- weights and checkpoints ---
        Case(
            ".pt that is not a checkpoint",
            lambda d: (
                lambda: build_adapter(
                    ModelConfig(name="resnet18", num_classes=4, weights=_not_a_checkpoint(d))
                )
            ),
            Error(1, "weights.pt", "could not be read"),
        ),
        Case(
            ".pt that is a pickle of something else",
            lambda d: (
                lambda: build_adapter(
                    ModelConfig(
                        name="resnet18", num_classes=4, weights=_pickle_of_something_else(d)
                    )
                )
            ),
            Error(1, "weights.pt", "could not be read"),
        ),
        Case(
            "ultralytics .pt that is not a checkpoint",
            lambda d: lambda: build_adapter(ModelConfig(name=str(_not_a_checkpoint(d)))),
            Error(1, "weights.pt", "not an ultralytics checkpoint"),
        ),
        Case(
            "YOLOv5 checkpoint without trust",
            lambda d: (
                lambda: build_adapter(ModelConfig(name=f"yolov5:{_pickle_of_something_else(d)}"))
            ),
            Error(1, "weights.pt", "model.trust_checkpoint"),
        ),
        Case(
            "truncated training checkpoint",
            lambda d: lambda: load_checkpoint(_truncated_checkpoint(d)),
            Error(1, "checkpoint.safetensors", "unreadable checkpoint"),
        ),
    ]
    return cases


# --- the test -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models():
    classifier = build_adapter(ModelConfig(name="resnet18", num_classes=2, input_size=(32, 32)))
    detector = build_adapter(ModelConfig(name="yolov8n.yaml", num_classes=2, input_size=(32, 32)))
    return classifier, detector


def _one_line(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def run_case(case: Case, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run one case and assert its documented outcome."""
    folder.mkdir(parents=True)
    call = case.make(folder)
    capsys.readouterr()
    outcome = case.outcome
    try:
        result = call()
    except UserError as err:
        message = str(err)
        assert isinstance(outcome, Error), f"{case.name}: unexpected error: {message}"
        assert err.exit_code == outcome.code, f"{case.name}: exit {err.exit_code}: {message}"
        assert "\n" not in message, f"{case.name}: more than one line: {message}"
        assert outcome.names in message, f"{case.name}: does not name {outcome.names}: {message}"
        assert re.search(outcome.says, message), f"{case.name}: {message}"
        return
    out = capsys.readouterr()
    if isinstance(result, Cli):
        text = out.out + out.err
        assert "Traceback" not in text, f"{case.name}: {text}"
        assert isinstance(outcome, Error), f"{case.name}: exit {result.code}: {text}"
        assert result.code == outcome.code, f"{case.name}: exit {result.code}: {text}"
        if out.err.strip():  # an error: exactly one error line (warnings may precede it)
            lines = [line for line in _one_line(out.err) if ": error: " in line]
            assert len(lines) == 1, f"{case.name}: not one error line: {out.err}"
            text = lines[0]
        hits = [line for line in _one_line(text) if outcome.names in line]
        assert any(re.search(outcome.says, line) for line in hits), f"{case.name}: {text}"
        assert not (folder / "runs").exists(), f"{case.name}: a run folder was left behind"
        return
    if isinstance(outcome, Skip):
        assert isinstance(result, Skipped)
        assert outcome.sample in result.skipped, f"{case.name}: not skipped: {result.skipped}"
        assert re.search(outcome.says, result.skipped[outcome.sample]), result.skipped
        if outcome.others_used:
            assert result.used >= 1, f"{case.name}: the good samples must still be used"
        return
    assert isinstance(outcome, Reads | Recovers), f"{case.name}: no error, expected {outcome}"
    assert outcome.check(result), f"{case.name}: wrong result"


def test_every_case_meets_its_documented_outcome(models, tmp_path, capsys):
    cases = corpus(*models)
    names = [case.name for case in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    failures = []
    seconds = {}
    for number, case in enumerate(cases):
        started = time.perf_counter()
        try:
            run_case(case, tmp_path / f"case{number:02d}", capsys)
        except AssertionError as err:
            failures.append(str(err).splitlines()[0])
        except Exception as err:  # a traceback from inside a library is a failed case
            failures.append(f"{case.name}: {type(err).__name__}: {err}".splitlines()[0])
        seconds[case.name] = time.perf_counter() - started
    kinds = {
        kind.__name__: sum(isinstance(c.outcome, kind) for c in cases)
        for kind in (Error, Skip, Reads, Recovers)
    }
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(cases)} cases ({kinds}), {len(failures)} failed")
        slowest = sorted(seconds.items(), key=lambda item: -item[1])[:3]
        print("slowest: " + ", ".join(f"{name} {t:.1f} s" for name, t in slowest))
    assert len(cases) >= 40
    assert not failures, "\n".join(failures)
