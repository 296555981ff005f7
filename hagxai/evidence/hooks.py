"""Layer hooks: capture hooked layers' outputs as grids, and trace every module's output shape."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from hagxai.errors import UserError

if TYPE_CHECKING:
    from hagxai.models.base import ModelAdapter


@contextmanager
def capture_layers(
    adapter: ModelAdapter, layers: Sequence[str], make_leaf: bool = False
) -> Iterator[dict[str, Tensor]]:
    """Forward hooks on ``layers`` for as long as the ``with`` lasts; they are always removed.

    Yields a dict that fills with each layer's output as ``B×C×h×w`` (via
    :meth:`ModelAdapter.to_grid`) during the forward passes run inside the block.

    Args:
        adapter: the model's adapter.
        layers: module names (already resolved).
        make_leaf: make the captured grid require grad when nothing upstream does, so gradients
            can be taken with respect to it. The grid is fed back into the model, so it lies on
            the path from the input to every score.
    """
    captured: dict[str, Tensor] = {}
    handles = []

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
            if not isinstance(output, Tensor):
                raise UserError(f"layer {name!r} does not output one tensor; pick another layer")
            grid = adapter.to_grid(name, output)
            if grid.dim() != 4:
                raise UserError(
                    f"layer {name!r} outputs shape {tuple(output.shape)}, not B×C×h×w; "
                    "pick a convolutional layer"
                )
            if make_leaf and not grid.requires_grad:
                grid = grid.detach().requires_grad_()
            captured[name] = grid
            # The model goes on with a copy: an in-place op downstream (``out += identity``)
            # must change neither the captured values nor what their gradient means.
            return adapter.from_grid(name, grid.clone(), output)

        return hook

    modules = dict(adapter.model.named_modules())
    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def trace_layer_shapes(adapter: ModelAdapter, x: Tensor) -> list[tuple[str, str, tuple[int, ...]]]:
    """Run ``x`` once and record every module's output: ``(name, type, shape)`` in forward order.

    Only modules that return one tensor are listed; a transformer's token outputs are reported
    as the grid :meth:`ModelAdapter.to_grid` makes of them.
    """
    records: list[tuple[str, str, tuple[int, ...]]] = []
    handles = []

    def hook_for(name: str, module: nn.Module):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, Tensor):
                try:
                    shape = tuple(adapter.to_grid(name, output).shape)
                except (RuntimeError, ValueError):
                    shape = tuple(output.shape)
                records.append((name, type(module).__name__, shape))

        return hook

    try:
        for name, module in adapter.model.named_modules():
            if name:
                handles.append(module.register_forward_hook(hook_for(name, module)))
        with torch.no_grad():
            adapter.forward(x)
    finally:
        for handle in handles:
            handle.remove()
    seen: dict[str, tuple[str, str, tuple[int, ...]]] = {}
    for record in records:
        seen.setdefault(record[0], record)
    return list(seen.values())
