"""The ``imssa`` command: one verb per job. Bad input prints one line naming the fix, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imssa.errors import ImssaError


def _train(args: argparse.Namespace) -> None:
    from imssa.experiments.train import TrainConfig, train

    cfg = TrainConfig(task=args.task, model=args.model, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, ssm_lr=args.ssm_lr,
                      weight_decay=args.weight_decay, seed=args.seed, limit=args.limit,
                      data_dir=args.data_dir, device=args.device)
    metrics = train(cfg, args.out, resume=args.resume)
    _print_metrics(metrics)


def _eval(args: argparse.Namespace) -> None:
    from imssa.experiments.train import evaluate

    _print_metrics(evaluate(args.run, args.mode, args.device, args.data_dir, args.limit))


def _demo(args: argparse.Namespace) -> None:
    from imssa.experiments.demo import run_demo

    run_demo(Path(args.out), device=args.device)


def _print_metrics(metrics: dict) -> None:
    shown = {k: v for k, v in metrics.items() if k not in ("history", "epoch_seconds")}
    print(json.dumps(shown, indent=2))


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the dataset files (default: $IMSSA_DATA_DIR)")
    p.add_argument("--limit", type=int, default=None,
                   help="use only this many train and test samples (quick checks)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imssa", description="Train S4D models and simulate them on analog crossbars.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train an S4D classifier in convolutional mode",
                       description="Train an S4D classifier; writes config.json, model.pt, "
                       "checkpoint.pt (every epoch) and metrics.json into --out.")
    p.add_argument("--task", default="sdigits",
                   help="sdigits (embedded, default), smnist, psmnist or fsdd")
    p.add_argument("--model", default="s4d-16", help="s4d-16 (default), s4d-64, s4d-256, s4d-512")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--ssm-lr", type=float, default=1e-3, help="learning rate of A and Delta")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    _add_common(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="test accuracy of a trained run",
                       description="Evaluate a run in convolutional or recurrent mode; writes "
                       "metrics_<mode>.json into the run folder.")
    p.add_argument("run", help="run folder written by `imssa train`")
    p.add_argument("--mode", default="conv", help="conv (default) or recurrent")
    _add_common(p)
    p.set_defaults(func=_eval)

    p = sub.add_parser("demo", help="the whole pipeline on the embedded dataset, in minutes on a CPU")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ImssaError as err:
        print(f"imssa {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imssa {args.command}: interrupted; finished files are complete, rerun with "
              "--resume where the command has it", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
