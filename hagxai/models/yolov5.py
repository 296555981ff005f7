"""Original YOLOv5 models (the ``yolov5`` PyPI package, v7.0) behind the adapter protocol.

Names: ``yolov5:<yaml>`` builds an architecture (``yolov5:yolov5s.yaml`` from the package, or a
path to a yaml; random weights unless ``model.weights`` is given) and ``yolov5:<file>.pt`` loads
an original checkpoint (``torch.save({'model': model, ...})`` as YOLOv5's ``train.py`` writes).

An original checkpoint is a pickle of the model's classes: loading it runs code named in the
file. It loads only with ``model.trust_checkpoint: true`` (``model.trust_checkpoint=true`` on the
command line); a ``model.weights`` file that is a plain state dict loads without it.

YOLOv5's head gives, per anchor, xywh, objectness and class probabilities. The adapter turns that
into the ultralytics layout (``B×(4+nc)×N``) so targets, scores, NMS and D-RISE re-scoring are the
:class:`~hagxai.models.yolo.YoloAdapter`'s: a target's score is its class probability at its
anchor, or objectness × class probability with ``model.objectness: true`` (YOLOv5's own
confidence). Layers are the same as for ultralytics models: by default the backbone stages that
feed the neck, ``head`` for the Detect head's inputs.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hagxai.config import ModelConfig
from hagxai.errors import UserError, cut_list
from hagxai.models.ultralytics_env import configure_ultralytics
from hagxai.models.yolo import YoloAdapter
from hagxai.pil import restore_image_open

PREFIX = "yolov5:"


class YoloV5Adapter(YoloAdapter):
    """An original YOLOv5 ``DetectionModel`` behind the adapter protocol.

    Args:
        model: the YOLOv5 ``DetectionModel`` (put in eval mode and frozen).
        family: a name for messages.
        input_size: ``(H, W)`` of the letterboxed input, multiples of the model's largest stride.
        objectness: score a detection as objectness × class probability.
        default_layers: layer names or aliases; ``None``: the backbone stages feeding the neck.
    """

    def __init__(
        self,
        model: nn.Module,
        family: str,
        input_size: tuple[int, int] = (640, 640),
        objectness: bool = False,
        default_layers: Sequence[str] | None = None,
    ) -> None:
        self.objectness = objectness
        super().__init__(model, family, input_size, default_layers=default_layers)

    def _pred(self, output: Any) -> Tensor:
        """YOLOv5's ``B×N×(5+nc)`` inference output as ``B×(4+nc)×N`` (xywh, class scores)."""
        raw = output[0] if isinstance(output, (tuple, list)) else output
        scores = raw[..., 5:] * raw[..., 4:5] if self.objectness else raw[..., 5:]
        return torch.cat([raw[..., :4], scores], dim=-1).transpose(1, 2)


def import_yolov5() -> Any:
    """The ``yolov5`` package, or a ``UserError`` saying how to install it."""
    # yolov5 imports ultralytics: offline, with hagxai's settings folder, never the user's.
    configure_ultralytics()
    try:
        with warnings.catch_warnings():
            # yolov5 7.0 imports pkg_resources, deprecated in setuptools.
            warnings.simplefilter("ignore")
            import yolov5.models.yolo
    except ImportError as err:
        raise UserError(
            f"YOLOv5 models need the yolov5 package: pip install 'hagxai[yolov5]' ({err})"
        ) from None
    # yolov5 imports ultralytics, which replaces PIL's Image.open process-wide (hagxai.pil).
    restore_image_open()
    return yolov5


@contextmanager
def _quiet():
    """YOLOv5 logs a model summary on every build; keep the user's console for our messages."""
    logger = logging.getLogger("yolov5")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _yaml_path(spec: str) -> Path:
    package = Path(import_yolov5().__file__).parent / "models"
    for candidate in (Path(spec), package / spec, package / "hub" / spec):
        if candidate.is_file():
            return candidate
    known = sorted(p.name for p in [*package.glob("*.yaml"), *(package / "hub").glob("*.yaml")])
    raise UserError(f"YOLOv5 model yaml {spec!r} not found (package yamls: {cut_list(known)})")


def _untrusted(path: Path) -> UserError:
    return UserError(
        f"{path} is an original YOLOv5 checkpoint, a pickle: loading it runs code stored in the "
        "file. Load it only if you trust where it came from, with model.trust_checkpoint: true "
        "(or model.trust_checkpoint=true on the command line)"
    )


def load_checkpoint(path: Path, trust: bool) -> nn.Module:
    """The model of an original YOLOv5 checkpoint (its ``ema`` when saved, else ``model``).

    Raises:
        UserError: a missing file, ``trust`` off, or a file that holds no YOLOv5 model.
    """
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist (offline: nothing is downloaded)")
    if not trust:
        raise _untrusted(path)
    # Importing the package puts its folder on sys.path, so the original repository's module
    # names in the pickle (models.yolo, models.common, utils...) resolve to the package's code.
    import_yolov5()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ModuleNotFoundError) as err:
        raise UserError(f"{path} is not a YOLOv5 checkpoint: {err}".splitlines()[0]) from None
    model = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module) or type(model.model[-1]).__name__ != "Detect":
        raise UserError(f"{path} holds no YOLOv5 detection model under 'model' or 'ema'")
    return _compatible(model.float())


def _compatible(model: nn.Module) -> nn.Module:
    """What YOLOv5's own ``attempt_load`` updates in checkpoints saved by older versions."""
    if not hasattr(model, "stride"):
        model.stride = torch.tensor([32.0])
    if isinstance(getattr(model, "names", None), (list, tuple)):
        model.names = dict(enumerate(model.names))
    for module in model.modules():
        if type(module).__name__ == "Detect" and not isinstance(module.anchor_grid, list):
            delattr(module, "anchor_grid")
            module.anchor_grid = [torch.zeros(1)] * module.nl
        elif isinstance(module, nn.Upsample) and not hasattr(module, "recompute_scale_factor"):
            module.recompute_scale_factor = None
    return model


def _load_weights(model: nn.Module, path: Path, trust: bool) -> None:
    """``model.weights`` for a yaml: a state dict (safe) or, trusted, an original checkpoint."""
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist (offline: nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        state = load_checkpoint(path, trust).state_dict()
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise UserError(f"weights file {path} does not fit: {err}".splitlines()[0]) from None


def build_yolov5(cfg: ModelConfig, device: torch.device) -> YoloV5Adapter:
    """A :class:`YoloV5Adapter` from ``cfg.name`` (``yolov5:<yaml>`` or ``yolov5:<file>.pt``)."""
    spec = cfg.name.removeprefix(PREFIX)
    if spec.endswith(".pt"):
        model = load_checkpoint(Path(spec), cfg.trust_checkpoint)
    else:
        yolo = import_yolov5().models.yolo
        with _quiet():
            model = yolo.DetectionModel(str(_yaml_path(spec)), nc=cfg.num_classes)
        if cfg.weights is not None:
            _load_weights(model, Path(cfg.weights), cfg.trust_checkpoint)
        model.names = dict(enumerate(model.names))
    return YoloV5Adapter(
        model.to(device),
        cfg.name,
        tuple(cfg.input_size or (640, 640)),
        cfg.objectness,
        default_layers=cfg.layers,
    )
