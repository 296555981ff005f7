"""Typed, validated run configuration: YAML files in ``configs/`` plus ``key=value`` overrides.

Every section refuses unknown keys. :func:`load_config` turns any validation problem into a
:class:`~hagxai.errors.ConfigError` whose one-line message names the dotted key, where the value
came from (the YAML file or the command line) and what was expected.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hagxai.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ObserverConfig(_Section):
    """The simulated observer that records "human" attention on the demo sets.

    Each viewer makes ``fixations_min``..``fixations_max`` fixations. Each fixation is drawn from a
    mixture (weights ``p_*``, per viewer jittered by a Dirichlet with ``viewer_concentration``):
    an object (std ``object_spread`` × the object's size), the object's diagnostic part (std
    ``part_spread`` × the part's size), a centre bias (std ``centre_spread`` × the image size) or an
    exploratory fixation (uniform over the image, or on a distractor). Maps are fixation densities
    blurred with a Gaussian of std ``map_sigma`` × the image's longer side, in pixels.
    """

    viewers: int = Field(12, ge=2)
    fixations_min: int = Field(6, ge=1)
    fixations_max: int = Field(12, ge=1)
    p_object: float = Field(0.45, ge=0, le=1)
    p_part: float = Field(0.25, ge=0, le=1)
    p_centre: float = Field(0.12, ge=0, le=1)
    p_explore: float = Field(0.18, ge=0, le=1)
    viewer_concentration: float = Field(30.0, gt=0)
    object_spread: float = Field(0.25, gt=0)
    part_spread: float = Field(0.35, gt=0)
    centre_spread: float = Field(0.2, gt=0)
    map_sigma: float = Field(0.035, gt=0)

    @model_validator(mode="after")
    def _check(self) -> ObserverConfig:
        if self.fixations_max < self.fixations_min:
            raise ValueError("fixations_max must be >= fixations_min")
        total = self.p_object + self.p_part + self.p_centre + self.p_explore
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"p_object + p_part + p_centre + p_explore must be 1, got {total:g}")
        return self


class DemoDataConfig(_Section):
    """Size of the seeded synthetic demo set (used when ``data.root`` is not set)."""

    num_train: int = Field(600, ge=1)
    num_val: int = Field(200, ge=1)
    image_size: int = Field(112, ge=32)
    num_classes: int = Field(4, ge=2, le=4)
    distractors: int = Field(3, ge=0)


class DataConfig(_Section):
    """Where the dataset is. Without ``root``, the demo set for ``task`` is made in the cache.

    ``format`` says how ``root`` is laid out (``hagxai.data.open``; ``auto`` tells from its
    contents). ``images``, ``maps``, ``labels`` and ``fixations`` are paths relative to ``root``.
    Fixation maps take ``sigma_px``, or ``sigma_deg`` with the screen's width in pixels
    (``screen_px``) and cm (``screen_cm``) and the viewing distance (``distance_cm``).
    ``classes`` keeps only boxes of these class names (e.g. the study's vehicles).
    """

    task: Literal["classification", "detection"] = "classification"
    root: Path | None = None
    format: Literal["auto", "hagxai", "folders", "fixations", "reference", "coco"] = "auto"
    images: Path | None = None
    maps: Path | None = None
    labels: Path | None = None
    fixations: Path | None = None
    sigma_px: float | None = Field(None, gt=0)
    sigma_deg: float | None = Field(None, gt=0)
    screen_px: float | None = Field(None, gt=0)
    screen_cm: float | None = Field(None, gt=0)
    distance_cm: float | None = Field(None, gt=0)
    classes: list[str] | None = None
    demo: DemoDataConfig = DemoDataConfig()
    observer: ObserverConfig = ObserverConfig()


class DemoModelConfig(_Section):
    """How the demo models are trained (deterministically, cached by config and seed)."""

    epochs: int = Field(12, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(3e-3, gt=0)
    width: int = Field(24, ge=4)


class ModelConfig(_Section):
    """The model to explain.

    ``name`` is ``demo`` (the locally trained demo model for the data task), a torchvision or
    timm model name, or an ultralytics model yaml/``.pt`` (``yolov8n.yaml``). ``weights`` is a local
    weights file; ``pretrained`` loads the library's weights (needs network access).
    ``yolov5:<yaml or .pt>`` is an original YOLOv5 model (the ``yolov5`` extra); its checkpoints
    are pickles that run code when loaded, so they load only with ``trust_checkpoint: true``.
    ``objectness`` scores a YOLOv5 detection as objectness × class probability.
    ``label_offset`` is the model's label of dataset class 0: torchvision detectors keep label 0
    for the background, so their class ``k`` is the dataset's ``k - 1`` (``1``, the default there).
    """

    name: str = "demo"
    weights: Path | None = None
    pretrained: bool = False
    num_classes: int | None = Field(None, ge=1)
    layers: list[str] | None = None
    input_size: tuple[int, int] | None = None
    trust_checkpoint: bool = False
    objectness: bool = False
    label_offset: int | None = Field(None, ge=0)
    demo: DemoModelConfig = DemoModelConfig()


GROUP_CSV_PREFIX = "csv:"
"""``train.group_by: csv:PATH:COLUMN`` takes groups from a CSV file's column."""


class TrainConfig(_Section):
    """The combiner trainer's schedule (the reference protocol by default).

    ``splits`` names the dataset splits the folds are drawn from (``None``: every sample).
    ``target_rule`` is what the evidence explains (``auto``: ``label`` for classifiers, ``boxes``
    for detectors). ``faithfulness_images = 0`` turns faithfulness off; ``faithfulness_every = 0``
    measures it only for each fold's initial and best combiner. ``baselines`` are explainers
    (``hagxai.explainers.get`` names) scored on the same held-out images for comparison.

    Speed only (the maths is the same; see README "Speed"): ``chunk_targets`` bounds the
    combiner's peak memory (targets held at once; ``None``: the whole batch), ``fold_resize``
    smooths coarse layers on their own grid (float32 rounding differs from the reference's order
    by ~1e-6), ``smooth_dtype`` runs the gradient smoothing's matmuls in half precision (a GPU
    option; ``float32`` keeps reference parity), ``compile`` runs the combiner's per-chunk work
    through ``torch.compile``, ``grid_loss`` computes the reference training loss on the
    combiner's grid instead of on maps resized to the human maps' size (equal up to rounding,
    :func:`hagxai.losses.hag_losses_upsampled`).
    ``grad_group``: an optimiser step's gradient is the sum, in batch order, of the gradients of
    consecutive groups of ``grad_group`` images of its batch (``None``: the batch is one group);
    under torchrun the processes share the groups, so the step does not depend on the number of
    processes (bit for bit at equal thread counts; README "Many processes: torchrun").
    ``group_by`` keeps groups of images (frames of one video, one subject's images) whole in one
    fold: a regular expression on the sample id (its first group, else the whole match) or
    ``csv:PATH:COLUMN`` (:func:`hagxai.training.folds.read_groups`).
    """

    folds: int = Field(5, ge=2)
    epochs: int = Field(120, ge=1)
    batch_size: int = Field(40, ge=1)
    lr: float = Field(5e-2, gt=0)
    lr_final: float = Field(1e-2, gt=0)
    lr_step_epochs: int = Field(20, ge=1)
    early_stop: int = Field(10, ge=1)
    select_metric: str = "val_loss"
    faithfulness_every: int = Field(1, ge=0)
    faithfulness_images: int = Field(16, ge=0)
    amp: bool = True
    splits: list[str] | None = None
    target_rule: Literal["auto", "label", "predicted", "boxes", "detections"] = "auto"
    faithfulness_steps: int = Field(100, ge=2)
    baselines: list[str] = []
    chunk_targets: int | None = Field(8, ge=1)
    grad_group: int | None = Field(10, ge=1)
    fold_resize: bool = True
    smooth_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    compile: bool = False
    grid_loss: bool = True
    group_by: str | None = None

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith(GROUP_CSV_PREFIX):
            path, sep, column = value[len(GROUP_CSV_PREFIX) :].rpartition(":")
            if not sep or not path or not column:
                raise ValueError("expected csv:PATH:COLUMN, e.g. csv:meta/frames.csv:video")
            return value
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"not a regular expression ({err})") from None
        return value


class CacheConfig(_Section):
    """How the evidence cache stores activations and gradients (``cache_dir`` says where).

    ``dtype``: ``float32``, or ``float16`` / ``bfloat16`` for half the disk and memory (read back
    as float32, batch by batch; the effect on the demo's metrics is in the README). Part of the
    cache key, so each dtype is its own cache.
    """

    dtype: Literal["float32", "float16", "bfloat16"] = "float32"


class CombinerConfig(_Section):
    """Which combiner the trainer builds and how it is optimised (the reference mode by default).

    The reference mode (every default here) is the authors' maths exactly. The extensions:
    ``layer_weights`` learns one weight per hooked layer; ``channel_slopes`` learns the four
    slopes per channel; ``learn_radius`` learns a soft kernel radius; ``parameterisation:
    stable`` makes the normalisations scale-free, fixes the redundant amplitudes and keeps
    ``a⁺``, ``g⁺`` and the layer weights positive (no step can invert the map; see
    :mod:`hagxai.combiner`). ``loss`` is the training loss: ``hag`` (``1 − PCC + MSE``, the
    reference's), ``kl`` or ``nss`` (:mod:`hagxai.losses`); validation still reports them all.

    ``init: search`` starts each fold from the best pair of kernel widths ``(s_g, s_m)`` from
    ``init_widths`` (variance-like ``s``; ``0.05`` is almost none, while exactly ``0`` would
    never move, as ``d|s|/ds = 0`` there) by the loss on that fold's training
    images only (every ``k``-th of them, at most ``init_images``); ``reference`` starts at the
    reference's ``s = 3``. ``warmup_steps`` raises the
    learning rate linearly over a fold's first optimiser steps; ``grad_clip`` clips the gradient's
    norm. A fold whose validation CC falls more than ``cc_drop_report`` below its start at any
    epoch is reported in the summary.
    """

    layer_weights: bool = False
    channel_slopes: bool = False
    learn_radius: bool = False
    parameterisation: Literal["reference", "stable"] = "reference"
    loss: Literal["hag", "kl", "nss"] = "hag"
    init: Literal["reference", "search"] = "reference"
    init_widths: list[float] = Field([0.05, 0.5, 1.5, 3.0], min_length=1)
    init_images: int = Field(32, ge=1)
    warmup_steps: int = Field(0, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    cc_drop_report: float = Field(0.05, gt=0)

    @field_validator("init_widths")
    @classmethod
    def _widths(cls, value: list[float]) -> list[float]:
        if any(w < 0 for w in value):
            raise ValueError("kernel widths must be >= 0")
        return value


class SweepConfig(_Section):
    """``hagxai sweep``: runs over layer sets, combiner settings and training settings, with the
    same folds.

    ``layers`` lists layer sets (each a list of names or aliases as in ``model.layers``; ``null``
    is the model's default set); ``combiner`` lists partial ``combiner`` sections and ``train``
    partial ``train`` sections (batch size, learning rates, schedule, …), each merged over the
    run's own section (``{}`` is that section as it is). Every layer set is trained with every
    combiner setting and every training setting. A training setting may not change how the folds
    are drawn (``folds``, ``splits``, ``group_by``): the rows would not compare like with like.
    """

    layers: list[list[str] | None] = Field(default_factory=lambda: [None], min_length=1)
    combiner: list[dict[str, Any]] = Field(default_factory=lambda: [{}], min_length=1)
    train: list[dict[str, Any]] = Field(default_factory=lambda: [{}], min_length=1)

    @field_validator("combiner")
    @classmethod
    def _settings(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for setting in value:
            CombinerConfig.model_validate(setting)
        return value

    @field_validator("train")
    @classmethod
    def _train_settings(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for setting in value:
            fixed = sorted(set(setting) & {"folds", "splits", "group_by"})
            if fixed:
                raise ValueError(
                    f"{', '.join(fixed)} decide the folds, which every row of a sweep shares; "
                    "set them in the train section instead"
                )
            TrainConfig.model_validate(setting)
        return value


class RandomisationConfig(_Section):
    """The model-randomisation sanity check (Adebayo et al. 2018): the model's layers are
    re-initialised from the top down, cascading, in ``steps`` groups, and every method's maps of
    ``images`` images are recomputed after each step. A method whose maps keep a mean Spearman
    rank correlation of at least ``flag_spearman`` with its original maps after the last step is
    flagged as not depending on the model. ``images = 0`` turns the check off."""

    images: int = Field(8, ge=0)
    steps: int = Field(4, ge=1)
    flag_spearman: float = Field(0.5, ge=-1, le=1)


class EvaluateConfig(_Section):
    """``hagxai evaluate``: which methods are compared on which images, and how.

    ``methods`` are explainer names (the CAM family, ``rise`` / ``drise``); ``learned`` are
    training run folders (each fold's combiner scores the images that fold held out) or combiner
    folders (scored only on images they did not train on, unless ``allow_seen``, which marks the
    row). ``sanity`` rows: ``centre_bias``, ``uniform_random`` and, for detectors, ``box_prior``.
    ``human`` adds the leave-one-viewer-out row where fixations carry viewer ids.
    ``splits`` chooses the images (unset: ``train.splits``, else every sample); ``max_images``
    keeps the first ones by id. Faithfulness runs ``faithfulness_steps`` steps on a black and on
    a blurred canvas (``blur_sigma`` pixels). ``scatter`` is the (plausibility, faithfulness)
    metric pair of the scatter plot. ``out`` is the output folder (unset:
    ``output_dir/name/evaluation``).
    """

    methods: list[str] = ["gradcam", "gradcam++", "fullgradcam", "fullgradcam++"]
    learned: list[Path] = []
    sanity: list[str] = ["centre_bias", "uniform_random", "box_prior"]
    human: bool = True
    allow_seen: bool = False
    splits: list[str] | None = None
    max_images: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    faithfulness_steps: int = Field(20, ge=2)
    faithfulness_batch: int = Field(64, ge=1)
    blur_sigma: float = Field(5.0, gt=0)
    rise_masks: int = Field(1000, ge=1)
    bootstrap: int = Field(1000, ge=100)
    scatter: tuple[str, str] = ("cc", "insertion_blur")
    overlay_images: int = Field(3, ge=0)
    randomisation: RandomisationConfig = RandomisationConfig()
    out: Path | None = None


class WandbConfig(_Section):
    """Weights & Biases logging: ``offline`` by default, ``online`` with an account."""

    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "hagxai"
    entity: str | None = None


class RunConfig(_Section):
    """A whole run: data, model, trainer, logging, and where things go."""

    name: str = "demo"
    seed: int = 0
    device: str = "auto"
    output_dir: Path = Path("runs")
    cache_dir: Path | None = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    combiner: CombinerConfig = CombinerConfig()
    sweep: SweepConfig = SweepConfig()
    cache: CacheConfig = CacheConfig()
    wandb: WandbConfig = WandbConfig()
    evaluate: EvaluateConfig = EvaluateConfig()

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("expected auto, cpu, mps, cuda or cuda:N")
        return value

    @property
    def run_dir(self) -> Path:
        """The run folder, ``output_dir/name``."""
        return self.output_dir / self.name


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; other values are taken as they are."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def cache_dir(cfg: RunConfig | None = None) -> Path:
    """The cache: ``cache_dir`` in config, else ``$HAGXAI_CACHE``, else the user cache home."""
    if cfg is not None and cfg.cache_dir is not None:
        return cfg.cache_dir
    if os.environ.get("HAGXAI_CACHE"):
        return Path(os.environ["HAGXAI_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hagxai"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=5"`` -> ``(["train", "epochs"], 5)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise ConfigError(f"override {text!r} on the command line: expected key=value, e.g. seed=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_dotted(tree: dict[str, Any], path: list[str], value: Any, text: str) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(path[: i + 1])
            raise ConfigError(f"override {text!r} on the command line: {where} is not a section")
        node = child
    node[path[-1]] = value


def _describe(error: dict[str, Any], key: str, source: str) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = RunConfig
        for part in key.split(".")[:-1]:
            annotation = parent.model_fields[part].annotation
            parent = annotation if isinstance(annotation, type) else parent
        known = ", ".join(parent.model_fields)
        return f"unknown key {key!r} in {source} (known keys here: {known})"
    value = error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a section"
    message = error["msg"].removeprefix("Value error, ")
    return f"key {key!r} = {shown} in {source}: {message}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(f"key {key!r} is given twice (again on line {line})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults), apply ``key=value`` overrides and validate.

    Raises:
        ConfigError: an unreadable file, an unknown key or a wrong type, named in one line.
    """
    tree: dict[str, Any] = {}
    source = "the defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except ConfigError as err:
            raise ConfigError(f"config file {path}: {err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(
                f"config file {path} is not valid YAML: {err}".splitlines()[0]
            ) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping of keys at the top")
        tree = loaded or {}
    from_cli: set[str] = set()
    for text in overrides or []:
        parts, value = parse_override(text)
        _set_dotted(tree, parts, value, text)
        from_cli.add(".".join(parts))
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        overridden = any(key.startswith(k) or k.startswith(key) for k in from_cli)
        origin = "the command line" if overridden else source
        raise ConfigError(_describe(first, key, origin)) from None


def save_config(cfg: RunConfig, path: Path) -> Path:
    """Write the resolved config as YAML (the file re-loads to the same config)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    return path
