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


def _quant_config(args: argparse.Namespace):
    from imssa.experiments.quantize import QuantRunConfig, parse_overrides

    return QuantRunConfig(preset=args.preset, a_bits=args.a_bits, x_bits=args.x_bits,
                          a_form=args.a_form, x_granularity=args.x_granularity,
                          x_rounding=args.x_rounding, overrides=parse_overrides(args.set),
                          calib_samples=args.calib_samples)


def _ptq(args: argparse.Namespace) -> None:
    from imssa.experiments.quantize import ptq

    _print_metrics(ptq(args.run, _quant_config(args), args.out, args.device, args.data_dir,
                       args.limit))


def _qat(args: argparse.Namespace) -> None:
    from imssa.experiments.quantize import QATConfig, qat

    given = {k: getattr(args, k) for k in ("train_noise_transition", "train_noise_granularity",
                                           "train_read_noise", "a_margin")
             if getattr(args, k) is not None}  # None: the QATConfig default
    tcfg = QATConfig(parameterization=args.param, mode=args.mode, epochs=args.epochs,
                     batch_size=args.batch_size, lr=args.lr, ssm_lr=args.ssm_lr,
                     grad_clip=args.grad_clip, seed=args.seed, train_noise=args.train_noise,
                     train_noise_on=args.train_noise_on, train_noise_kind=args.train_noise_kind,
                     **given)
    _print_metrics(qat(args.run, _quant_config(args), tcfg, args.out, args.device, args.data_dir,
                       args.limit, args.resume))


def _characterize(args: argparse.Namespace) -> None:
    from imssa.devices import make_device
    from imssa.devices.characterize import characterize, plot_characterization
    from imssa.experiments.analyses import save_dataset
    from imssa.experiments.simulate import parse_times

    device = make_device(args.device, g_min=args.g_min, g_max=args.g_max)
    g_targets = [float(g) for g in args.g_targets.split(",")] if args.g_targets else \
        [args.g_min + f * (args.g_max - args.g_min) for f in (0.02, 0.1, 0.25, 0.5, 0.75, 1.0)]
    ds = characterize(device, g_targets, parse_times(args.t_inference), args.samples, args.seed)
    save_dataset(ds, args.out)
    plot = args.plot or str(Path(args.out).with_suffix(".png"))
    plot_characterization(ds, plot)
    print(ds[["programmed_mean", "programmed_std"]].to_dataframe().to_string())
    print(ds["read_mean"].to_pandas().to_string())
    print(f"wrote {args.out} and {plot}")


def _demo(args: argparse.Namespace) -> None:
    from imssa.experiments.demo import run_demo

    run_demo(Path(args.out), device=args.device)


def _print_metrics(metrics: dict) -> None:
    hidden = ("history", "epoch_seconds", "memory", "quant_config")
    shown = {k: v for k, v in metrics.items() if k not in hidden}
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

    for verb, text in (("ptq", "post-training quantization, evaluated in recurrent mode"),
                       ("qat", "quantization-aware fine-tuning of a trained run")):
        p = sub.add_parser(verb, help=text, description=text + "; writes metrics.json into --out.")
        p.add_argument("run", help="run folder written by `imssa train`")
        p.add_argument("--preset", default="W4A6", help="fp, W8A8 or W4A6 (default)")
        p.add_argument("--a-bits", type=int, default=None, help="bits of A_bar (heterogeneous)")
        p.add_argument("--x-bits", type=int, default=None, help="bits of the state x")
        p.add_argument("--a-form", default="cartesian",
                       help="grid of A_bar: cartesian (paper) or polar (levels inside |z| < 1)")
        p.add_argument("--x-granularity", default=None,
                       help="state ranges: tensor, head or mode (one per head and mode)")
        p.add_argument("--x-rounding", default=None,
                       help="state rounding: nearest (default) or stochastic (an unbiased "
                            "dither; slow modes keep integrating at low bits)")
        p.add_argument("--set", action="append", default=[], metavar="TARGET.FIELD=VALUE",
                       help="override any spec, e.g. --set mix_bias.bits=8 (repeatable)")
        p.add_argument("--calib-samples", type=int, default=1000,
                       help="training sequences for static range calibration")
        p.add_argument("--out", default=None if verb == "ptq" else argparse.SUPPRESS,
                       required=verb == "qat", help="output folder")
        _add_common(p)
        p.set_defaults(func=_ptq if verb == "ptq" else _qat)
        if verb == "qat":
            p.add_argument("--param", default="continuous",
                           help="continuous, discrete, frozen-a or polar (continuous training "
                           "with the stable polar A_bar grid)")
            p.add_argument("--mode", default="recurrent",
                           help="recurrent (paper) or conv (QS4D: state quantized indirectly)")
            p.add_argument("--epochs", type=int, default=10)
            p.add_argument("--batch-size", type=int, default=64)
            p.add_argument("--lr", type=float, default=1e-3)
            p.add_argument("--ssm-lr", type=float, default=1e-4)
            p.add_argument("--grad-clip", type=float, default=1.0)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--resume", action="store_true")
            p.add_argument("--train-noise", type=float, default=0.0, metavar="SIGMA",
                           help="weight noise at every training step, after quantization: std "
                           "relative to each crossbar tensor's max |w| (gaussian) or multiple of "
                           "the PCM programming noise (pcm); 0 (default) = none")
            p.add_argument("--train-noise-on", default="all", metavar="COMPONENTS",
                           help="comma-separated: A_bar, B_bar, C, D, encoder, mix, decoder, "
                           "or all (default); A_bar alone as in QS4D")
            p.add_argument("--train-noise-model", "--train-noise-kind", "--train-noise-device",
                           dest="train_noise_kind", default="gaussian",
                           help="gaussian (default) or pcm (programming noise of the PCM model)")
            p.add_argument("--train-noise-transition", default=None,
                           help="the state-transition form the noise is drawn in, as simulate's "
                           "mapping: direct (the array holds A_bar; default) or increment "
                           "(A_bar - 1, one scale with B_bar)")
            p.add_argument("--train-noise-granularity", default=None,
                           help="conductance scale of the noise: tensor (default), channel or "
                           "mode (one per mode of A_bar and B_bar)")
            p.add_argument("--train-read-noise", type=float, default=None, metavar="SIGMA",
                           help="per-step read noise of A_bar and B_bar relative to their scale "
                           "(recurrent mode only; default 0)")
            p.add_argument("--a-margin", type=float, default=None, metavar="K",
                           help="keep 1 - |A_bar| of every noisy mode above K times its error "
                           "std (continuous parameterizations; default 0 = none)")

    from imssa.cli.analyze import add_parser as add_analyze_parser

    add_analyze_parser(sub)

    from imssa.cli.simulate import add_parser as add_simulate_parser

    add_simulate_parser(sub)

    p = sub.add_parser("device", help="device models: characterize their conductance statistics")
    dsub = p.add_subparsers(dest="device_command", required=True, metavar="VERB")
    p = dsub.add_parser("characterize", help="conductance distributions against target and time",
                        description="Program, drift and read many devices per target conductance; "
                        "writes the statistics as NetCDF and a figure.")
    p.add_argument("--device", default="pcm", help="pcm (default), rram, gaussian or ideal")
    p.add_argument("--g-min", type=float, default=0.0, help="µS")
    p.add_argument("--g-max", type=float, default=25.0, help="µS")
    p.add_argument("--g-targets", default=None, help="comma-separated µS (default: 6 over range)")
    p.add_argument("--t-inference", default="1s,1h,1d,1y", help="times after programming")
    p.add_argument("--samples", type=int, default=10_000, help="devices per target")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="characterization.nc")
    p.add_argument("--plot", default=None, help="figure path (default: --out with .png)")
    p.set_defaults(func=_characterize)

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
