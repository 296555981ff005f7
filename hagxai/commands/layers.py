"""``hagxai layers --model NAME``: a model's hookable layers with their output shapes."""

from __future__ import annotations

import argparse

import torch
from rich.table import Table

from hagxai.config import ModelConfig
from hagxai.console import make_console
from hagxai.evidence import trace_layer_shapes
from hagxai.models import build_adapter


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--model``, ``--weights``, ``--pretrained``, ``--num-classes``, ``--input-size`` (shared
    with explain; there ``--model`` may come from a combiner's card instead)."""
    parser.add_argument("--model", "-m", required=required, help="model name, yaml or .pt")
    parser.add_argument("--weights", help="local weights file")
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="the library's pretrained weights (downloaded once: needs network access)",
    )
    parser.add_argument("--num-classes", type=int, help="number of classes of the model head")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"))


def model_config(args: argparse.Namespace, layers: list[str] | None = None) -> ModelConfig:
    """The :class:`ModelConfig` the model arguments describe."""
    return ModelConfig(
        name=args.model,
        weights=args.weights,
        pretrained=args.pretrained,
        num_classes=args.num_classes,
        input_size=tuple(args.input_size) if args.input_size else None,
        layers=layers,
    )


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("layers", help="list a model's hookable layers and shapes")
    add_model_arguments(parser)
    parser.add_argument(
        "--all", action="store_true", help="also list modules whose output is not a B×C×h×w grid"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    adapter = build_adapter(model_config(args))
    x = torch.rand(1, 3, *adapter.input_size, device=adapter.device)
    defaults = set(adapter.default_layers())
    aliases = {name: alias for alias, names in adapter.layer_aliases().items() for name in names}
    table = Table(
        title=f"{adapter.family}: input 1×3×{adapter.input_size[0]}×{adapter.input_size[1]}"
    )
    for column in ("layer", "type", "output shape", "sets"):
        table.add_column(column)
    for name, kind, shape in trace_layer_shapes(adapter, x):
        if len(shape) != 4 and not args.all:
            continue
        sets = ", ".join(
            s
            for s, on in (("default", name in defaults), (aliases.get(name, ""), True))
            if on and s
        )
        table.add_row(name, kind, "×".join(str(s) for s in shape), sets)
    make_console().print(table)
    return 0
