"""Safetensors bytes that depend only on the tensors and the metadata, never on the process.

``safetensors`` keeps the header's ``__metadata__`` in a Rust hash map, so two runs that save the
same tensors with two or more metadata keys can write the keys in different orders: equal content,
different bytes, different SHA-256. :func:`tensor_bytes` writes the metadata keys sorted, so the
same tensors and metadata always give the same file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from safetensors.torch import save
from torch import Tensor


def tensor_bytes(tensors: Mapping[str, Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors file of ``tensors`` with ``metadata``, byte for byte reproducible.

    Args:
        tensors: name -> contiguous CPU tensor (stored in the library's own order: by dtype
            alignment, then name).
        metadata: string -> string entries of the header's ``__metadata__``.

    Returns:
        The file's bytes: 8-byte little-endian header length, the JSON header (its
        ``__metadata__`` keys sorted, padded with spaces as safetensors pads), then the data.
    """
    data = save(dict(tensors), metadata=dict(metadata) if metadata else None)
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + length :]
