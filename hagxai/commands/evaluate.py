"""``hagxai evaluate``: every method on plausibility and faithfulness, with statistics, pictures
and an HTML report (:mod:`hagxai.report.evaluate`).

``hagxai evaluate --config FILE [key=value ...]`` writes ``evaluate.out`` (default
``runs/<name>/evaluation/``). The same command after a kill computes only the batches of images
not yet saved in ``<out>/parts`` (``--force`` computes everything again). It runs as many
processes under ``torchrun`` (:mod:`hagxai.distributed`).
"""

from __future__ import annotations

import argparse
import shlex

from hagxai.commands._common import add_config_arguments, config_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="compare explanation methods on plausibility and faithfulness"
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--force", action="store_true", help="recompute every batch, ignoring saved parts"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    from hagxai import distributed
    from hagxai.report.evaluate import evaluate
    from hagxai.training.run import build_model_and_data, target_rule

    # under torchrun: join the process group (gloo on the CPU, NCCL on GPUs); else nothing
    distributed.init(cfg.device)
    progress = not args.no_progress and distributed.is_main()
    adapter, dataset = build_model_and_data(cfg, progress)
    rule = target_rule(cfg, adapter, dataset.class_subset)
    words = ["hagxai", "evaluate", *(["--config", args.config] if args.config else [])]
    command = " ".join(shlex.quote(str(a)) for a in [*words, *args.overrides])
    evaluate(cfg, adapter, dataset, rule, command=command, progress=progress, fresh=args.force)
    distributed.shutdown()
    return 0
