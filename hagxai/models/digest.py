"""Model identity: a digest of a model's weights, recorded in caches and combiner cards."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def model_digest(model: nn.Module) -> str:
    """A fingerprint of a model's weights: ``"sha256:<hex>"``.

    SHA-256 over every ``state_dict()`` entry (parameters and buffers) in sorted key order; for
    each entry it hashes the key (UTF-8), the dtype name and the shape, each followed by a NUL
    byte, then the tensor's raw bytes in row-major order as stored in memory (little-endian on
    every platform torch supports). Device and ``requires_grad`` do not enter it; a weight that
    changes in any bit, dtype or shape changes the digest.

    Args:
        model: any module.

    Returns:
        ``"sha256:"`` followed by 64 hex digits.
    """
    digest = hashlib.sha256()
    state = model.state_dict()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        header = f"{key}\0{str(tensor.dtype).removeprefix('torch.')}\0{list(tensor.shape)}\0"
        digest.update(header.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"
