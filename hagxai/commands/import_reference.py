"""``hagxai import-reference``: turn a trained reference layer's values into a combiner folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "import-reference",
        help="write a combiner folder from a reference HAG-XAI layer's values (JSON)",
        description=(
            "Read a JSON object of the nine reference property names (Alpha_act_pos, "
            "Alpha_act_neg, Alpha_grad_pos, Alpha_grad_neg, G_A_grad, G_sigma_grad, G_A_all, "
            "G_sigma_all, ObjW) and write combiner.safetensors + combiner.json into --out."
        ),
    )
    parser.add_argument("values", type=Path, help="JSON file of reference values")
    parser.add_argument("--out", "-o", type=Path, required=True, help="combiner folder to write")
    parser.add_argument("--model-name", help="name of the model the values were trained for")
    parser.add_argument(
        "--model-digest", help="sha256:… weights digest of that model (binds the combiner to it)"
    )
    parser.add_argument(
        "--layers", nargs="+", metavar="LAYER", help="hooked layer names (binds it to them)"
    )
    parser.add_argument(
        "--input-size", nargs=2, type=int, metavar=("H", "W"), help="model input size"
    )
    parser.add_argument("--force", action="store_true", help="replace a combiner in --out")
    return parser


def run(args: argparse.Namespace) -> int:
    # Imported here so that `hagxai --help` does not pay for torch.
    from hagxai.export import import_reference

    out = import_reference(
        args.values,
        args.out,
        layers=args.layers,
        model_name=args.model_name,
        model_digest=args.model_digest,
        input_size=args.input_size,
        overwrite=args.force,
    )
    print(f"wrote {out / 'combiner.safetensors'} and {out / 'combiner.json'}")
    return 0
