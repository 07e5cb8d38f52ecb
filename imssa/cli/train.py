"""``imssa train`` and ``imssa eval``: options from :class:`TrainConfig` and :class:`EvalConfig`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from imssa.cli.common import Parser, add_compute, add_field, build
from imssa.data import TASKS
from imssa.experiments.train import EvalConfig, TrainConfig
from imssa.ssm.model import PRESETS, SSM_KINDS

HIDDEN_METRICS = ("history", "epoch_seconds", "memory", "quant_config")


def print_metrics(metrics: dict) -> None:
    """The metrics a command wrote, without the long per-epoch and per-tensor parts."""
    print(json.dumps({k: v for k, v in metrics.items() if k not in HIDDEN_METRICS}, indent=2))


def _train(args: argparse.Namespace) -> None:
    from imssa.experiments.train import train

    print_metrics(train(build(TrainConfig, args), args.out, resume=args.resume))


def _eval(args: argparse.Namespace) -> None:
    from imssa.experiments.train import evaluate

    cfg = build(EvalConfig, args)
    print_metrics(evaluate(args.run, cfg.mode, cfg.device, cfg.data_dir, cfg.limit))


def add_data(p: Parser, cls: type, group: Any = None) -> None:
    """``--data-dir`` and ``--limit`` from the fields of ``cls``."""
    add_field(p, cls, "data_dir", "folder with the dataset files (none: a trained run's own, else "
              "$IMSSA_DATA_DIR, else ~/.cache/imssa/<dataset>)", group=group)
    add_field(p, cls, "limit", "use only this many training and test samples (quick checks)",
              group=group)


def add_optimizer(p: Parser, cls: type, seed_help: str) -> None:
    """The epoch loop's options, from the fields of ``cls`` (TrainConfig or QATConfig)."""
    add_field(p, cls, "epochs", "epochs")
    add_field(p, cls, "batch_size", "sequences per step")
    add_field(p, cls, "lr", "AdamW learning rate of the weights")
    add_field(p, cls, "ssm_lr", "learning rate of A and Delta, in (0, 1e-3] (S4 reference)")
    add_field(p, cls, "weight_decay", "AdamW weight decay (not on A and Delta)")
    add_field(p, cls, "seed", seed_help)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train an S4D classifier in convolutional mode",
                       description="Train an S4D classifier; writes config.json, model.pt, "
                       "checkpoint.pt (every epoch) and metrics.json into --out.")
    add_field(p, TrainConfig, "task", f"one of {', '.join(TASKS)} (sdigits is embedded)")
    add_field(p, TrainConfig, "model", f"preset, one of {', '.join(PRESETS)}")
    arch = p.add_argument_group("architecture", "replace the preset's fields (none: the "
                                "preset's own), e.g. --model s4d-16 --d-model 32 --n-layers 2")
    add_field(p, TrainConfig, "d_model", "width H (channels)", group=arch)
    add_field(p, TrainConfig, "n_layers", "depth (S4D blocks)", group=arch)
    add_field(p, TrainConfig, "d_state", "real state size N per channel (even)", group=arch)
    add_field(p, TrainConfig, "ssm", f"SSM kind, one of {', '.join(SSM_KINDS)}", group=arch)
    add_optimizer(p, TrainConfig, "seed of initialization, split and batch order")
    add_field(p, TrainConfig, "val_fraction", "share of the training set held out for validation")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (same settings)")
    add_data(p, TrainConfig)
    add_compute(p, TrainConfig)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="test accuracy of a trained run",
                       description="Evaluate a run in convolutional or recurrent mode; writes "
                       "metrics_<mode>.json into the run folder.")
    p.add_argument("run", help="run folder written by `imssa train` (e.g. runs/demo/train)")
    add_field(p, EvalConfig, "mode", "conv or recurrent")
    add_data(p, EvalConfig)
    add_compute(p, EvalConfig)
    p.set_defaults(func=_eval)
