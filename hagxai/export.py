"""Save and load combiners: a folder with ``combiner.safetensors`` and a ``combiner.json`` card.

The tensors file holds only the combiner's parameters (safetensors: no pickle, nothing runs on
load). The card (JSON) says what they mean and what they belong to: format version, parameter
semantics, the model's name and weights digest, hooked layers, grid, input size, training-data
fingerprint, metrics, library versions, the constructor options that rebuild the combiner and the
tensors file's SHA-256. :func:`load_combiner` refuses a card made for another model or layer set.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import platform
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load_file

from hagxai.atomic import write_atomic_group
from hagxai.combiner import PARAMETER_MEANING, REFERENCE_TO_PARAMETER, HAGCombiner
from hagxai.errors import UserError
from hagxai.tensorfile import tensor_bytes

FORMAT = "hagxai-combiner"
FORMAT_VERSION = 1
TENSORS_FILE = "combiner.safetensors"
CARD_FILE = "combiner.json"


class CombinerError(UserError):
    """A combiner folder that is missing, unreadable or malformed; the message names the file."""


class CombinerMismatchError(CombinerError):
    """A combiner card made for another model (weights digest) or another layer set."""


def _versions() -> dict[str, str]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "hagxai": version("hagxai"),
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _pair(value: Sequence[int] | None, name: str) -> list[int] | None:
    if value is None:
        return None
    pair = [int(v) for v in value]
    if len(pair) != 2 or any(v < 1 for v in pair):
        raise ValueError(f"{name} must be two positive integers (H, W), got {value!r}")
    return pair


def _read_json(path: Path, missing_hint: str, what: str) -> Any:
    """The JSON in ``path``, or a one-line :class:`CombinerError` naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CombinerError(f"{path} does not exist{missing_hint}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CombinerError(f"{path} is not {what}: {err}") from None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_combiner(
    combiner: HAGCombiner,
    out_dir: str | Path,
    *,
    model_name: str | None = None,
    model_digest: str | None = None,
    model_build: Mapping[str, Any] | None = None,
    input_size: Sequence[int] | None = None,
    grid: Sequence[int] | None = None,
    data_fingerprint: str | None = None,
    metrics: Mapping[str, float] | None = None,
    provenance: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``combiner.safetensors`` and ``combiner.json`` into ``out_dir`` (created if needed).

    Args:
        combiner: the combiner to save (its layers and options go into the card).
        out_dir: the folder.
        model_name: the explained model's name (e.g. ``"yolov8n.yaml"``).
        model_digest: :func:`~hagxai.models.digest.model_digest` of the explained model; ``None``
            leaves the card unbound (it then loads for any model).
        model_build: what rebuilds the model beside its name (the weights file's path,
            ``pretrained``, ``num_classes`` …: :func:`hagxai.models.registry.card_fields`), so
            ``hagxai explain --combiner DIR`` works without ``--model``.
        input_size: ``(H, W)`` of the model input the evidence was computed on.
        grid: ``(h, w)`` of the common grid the combiner was trained on.
        data_fingerprint: a fingerprint of the training data.
        metrics: name -> finite number (e.g. validation CC).
        provenance: one line on where the values came from.
        overwrite: replace an existing combiner in ``out_dir``.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        CombinerError: ``out_dir`` already holds a combiner and ``overwrite`` is false.
        ValueError: a metric that is not a finite number, or a bad size.
    """
    out = Path(out_dir)
    if not overwrite and (out / CARD_FILE).exists():
        raise CombinerError(f"{out / CARD_FILE} exists; pass overwrite (--force) to replace it")
    clean_metrics = {}
    for key, value in (metrics or {}).items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValueError(f"metric {key!r} = {value!r} is not a finite number")
        clean_metrics[str(key)] = float(value)
    tensors = {name: p.detach().to("cpu").contiguous() for name, p in combiner.state_dict().items()}
    card = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "provenance": provenance,
        "model": {"name": model_name, "digest": model_digest, **dict(model_build or {})},
        "layers": combiner.layers,
        "grid": _pair(grid, "grid"),
        "input_size": _pair(input_size, "input_size"),
        "data_fingerprint": data_fingerprint,
        "metrics": clean_metrics,
        "options": combiner.options(),
        "parameters": {
            name: {
                "shape": list(tensor.shape),
                "meaning": PARAMETER_MEANING[name],
                "reference_name": next(
                    (k for k, v in REFERENCE_TO_PARAMETER.items() if v == name), None
                ),
            }
            for name, tensor in tensors.items()
        },
        "reference_values": (
            combiner.reference_values()
            if combiner.channels is None and combiner.parameterisation == "reference"
            else None
        ),
        "versions": _versions(),
        "tensors": {"file": TENSORS_FILE, "sha256": None},
    }
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob(f".{TENSORS_FILE}.*"), *out.glob(f".{CARD_FILE}.*")]:
        stale.unlink()  # temporaries of a save that was killed
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    data = tensor_bytes(tensors, header)
    card["tensors"]["sha256"] = hashlib.sha256(data).hexdigest()
    text = json.dumps(card, indent=2, allow_nan=False) + "\n"
    # Both files are written whole before either replaces its predecessor: a full disk leaves
    # the previous combiner intact, and the card's checksum refuses a mix of two versions.
    write_atomic_group({out / TENSORS_FILE: data, out / CARD_FILE: text.encode()})
    return out


def read_card(directory: str | Path) -> dict[str, Any]:
    """The card of a combiner folder, checked for format and version.

    Raises:
        CombinerError: a missing or unreadable card, or one of another format or a newer version.
    """
    path = Path(directory) / CARD_FILE
    card = _read_json(path, " (not a combiner folder?)", "a readable JSON card")
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CombinerError(f"{path} is not a {FORMAT} card")
    version = card.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise CombinerError(
            f"{path}: format version {version!r}; this hagxai reads versions 1..{FORMAT_VERSION}"
        )
    expected = {"model": dict, "layers": list | None, "options": dict, "tensors": dict}
    for key, kind in expected.items():
        if key not in card or not isinstance(card[key], kind):
            raise CombinerError(f"{path}: the card lacks {key!r} or holds a wrong type there")
    return card


def load_combiner(
    directory: str | Path,
    *,
    model_digest: str | None = None,
    layers: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
) -> HAGCombiner:
    """Rebuild a saved combiner.

    Args:
        directory: a folder written by :func:`save_combiner` or :func:`import_reference`.
        model_digest: the :func:`~hagxai.models.digest.model_digest` of the model to explain;
            refused if the card records another one. A card without a digest (an unbound import)
            loads for any model.
        layers: the layers the model to explain hooks; refused if the card records another set.
            A card without layers (a layer-agnostic combiner) loads for any set.
        device: where the parameters go.

    Returns:
        The combiner, in eval mode.

    Raises:
        CombinerMismatchError: the card was made for another model digest or layer set.
        CombinerError: a missing, corrupt or inconsistent file.
    """
    folder = Path(directory)
    card = read_card(folder)
    card_path = folder / CARD_FILE
    trained_digest = card["model"].get("digest")
    if model_digest is not None and trained_digest is not None and model_digest != trained_digest:
        raise CombinerMismatchError(
            f"{card_path}: card was trained for model digest {trained_digest}, "
            f"the given model has {model_digest}"
        )
    trained_layers = card.get("layers")
    if layers is not None and trained_layers is not None and set(layers) != set(trained_layers):
        raise CombinerMismatchError(
            f"{card_path}: card was trained for layers {trained_layers}, "
            f"the given model hooks {list(layers)}"
        )
    tensors_path = folder / str(card["tensors"].get("file", TENSORS_FILE))
    if not tensors_path.is_file():
        raise CombinerError(f"{tensors_path} does not exist")
    expected = card["tensors"].get("sha256")
    if expected is not None and _sha256_file(tensors_path) != expected:
        raise CombinerError(f"{tensors_path} does not match the SHA-256 recorded in {card_path}")
    try:
        tensors = load_file(tensors_path)
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CombinerError(f"{tensors_path} is not a readable safetensors file: {err}") from None
    try:
        combiner = HAGCombiner(**card["options"])
    except (TypeError, ValueError) as err:
        raise CombinerError(f"{card_path}: options cannot rebuild a combiner: {err}") from None
    try:
        combiner.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise CombinerError(
            f"{tensors_path} does not fit the combiner its card describes: {' '.join(first)}"
        ) from None
    return combiner.to(device).eval()


def import_reference(values_json: str | Path, out_dir: str | Path, **card_fields: Any) -> Path:
    """Write a combiner folder from a trained reference layer's values.

    Args:
        values_json: a JSON object of the nine reference property names
            (:data:`hagxai.combiner.REFERENCE_KEYS`) -> numbers.
        out_dir: the folder to write.
        **card_fields: ``layers`` (builds a combiner bound to those layers) and any keyword of
            :func:`save_combiner` (``model_name``, ``model_digest``, ``input_size``, ``grid``,
            ``data_fingerprint``, ``metrics``, ``overwrite``).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        CombinerError: an unreadable file, a missing or unknown key, or a value that is not a
            finite number, named with the file.
    """
    path = Path(values_json)
    values = _read_json(path, "", "readable JSON")
    if not isinstance(values, dict):
        raise CombinerError(f"{path}: expected a JSON object of reference values")
    layers = card_fields.pop("layers", None)
    try:
        combiner = HAGCombiner.from_reference(values, layers)
    except ValueError as err:
        raise CombinerError(f"{path}: {err}") from None
    card_fields.setdefault("provenance", f"imported from reference values {path.name}")
    return save_combiner(combiner, out_dir, **card_fields)
