"""Training checkpoints without pickle: one safetensors file, tensors plus a JSON state.

Tensors (combiner parameters, the best combiner so far, Adam's moment and step tensors, the
torch RNG state as ``uint8``) are safetensors entries; everything else (epoch, fold, best-so-far
metrics, early-stop counter, metric history, optimiser hyper-parameters) is JSON in the file's
metadata under ``"state"``. One file written atomically (:func:`hagxai.atomic.write_atomic`), so
a reader sees the previous checkpoint or the new one, never half of one, even after SIGKILL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from hagxai.atomic import write_atomic
from hagxai.errors import UserError
from hagxai.tensorfile import tensor_bytes

CHECKPOINT = "checkpoint.safetensors"


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Flatten an optimiser's state: ``optim/<param>/<key>`` tensors and JSON-able groups.

    Non-tensor state values (none for Adam) would be lost, so they are refused.
    """
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if not isinstance(value, Tensor):
                raise TypeError(f"optimiser state {key!r} is not a tensor; cannot store it")
            tensors[f"optim/{index}/{key}"] = value.detach().to("cpu").contiguous()
    return tensors, {"param_groups": state["param_groups"]}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict):
    """Load what :func:`optimizer_tensors` flattened back into ``optimizer``."""
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optim/"):
            _, index, key = name.split("/", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(path: Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and the JSON ``state`` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    metadata = {"state": json.dumps(state, allow_nan=True)}
    write_atomic(path, tensor_bytes(clean, metadata))


def load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        UserError: a missing or unreadable file, named.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        return tensors, json.loads(meta["state"])
    except FileNotFoundError:
        raise UserError(f"{path}: no checkpoint to resume from") from None
    except Exception as err:  # safetensors raises its own error type for corrupt files
        raise UserError(f"{path}: unreadable checkpoint ({err})") from None
