"""``imssa ptq`` and ``imssa qat``: options from :class:`QuantRunConfig` and :class:`QATConfig`
(the run's device, data folder and limit as in ``imssa eval``)."""

from __future__ import annotations

import argparse
from typing import Any

from imssa.cli.common import Parser, add_compute, add_field, build
from imssa.cli.train import add_data, add_optimizer, print_metrics
from imssa.experiments.quantize import QATConfig, QuantRunConfig
from imssa.experiments.train import EvalConfig
from imssa.files import check_writable


def _quant_config(args: argparse.Namespace) -> QuantRunConfig:
    from imssa.experiments.quantize import parse_overrides

    return build(QuantRunConfig, args, overrides=parse_overrides(args.set))


def _ptq(args: argparse.Namespace) -> None:
    from imssa.experiments.quantize import ptq

    qcfg = _quant_config(args)
    check_writable(args.out or args.run, "--out folder")  # before the work, not after it
    print_metrics(ptq(args.run, qcfg, args.out, args.device, args.data_dir, args.limit))


def _qat(args: argparse.Namespace) -> None:
    from imssa.experiments.quantize import qat

    qcfg, tcfg = _quant_config(args), build(QATConfig, args)
    check_writable(args.out, "--out folder")
    print_metrics(qat(args.run, qcfg, tcfg, args.out, args.device, args.data_dir, args.limit,
                      args.resume))


def _add_quant(p: Parser) -> None:
    p.add_argument("run", help="run folder written by `imssa train` (e.g. runs/demo/train)")
    add_field(p, QuantRunConfig, "preset", "fp, W8A8 or W4A6")
    add_field(p, QuantRunConfig, "a_bits", "bits of A_bar (heterogeneous); none: the preset's")
    add_field(p, QuantRunConfig, "x_bits", "bits of the state x; none: the preset's")
    add_field(p, QuantRunConfig, "a_form",
              "grid of A_bar: cartesian (paper) or polar (levels inside |z| < 1)")
    add_field(p, QuantRunConfig, "x_granularity",
              "state ranges: tensor, channel or mode; none: the preset's")
    add_field(p, QuantRunConfig, "x_rounding", "state rounding: nearest or stochastic (an "
              "unbiased dither; slow modes keep integrating at low bits); none: nearest")
    p.add_argument("--set", action="append", default=[], metavar="TARGET.FIELD=VALUE",
                   help="override any spec by selector, e.g. --set blocks.*.mix.bias.bits=8 or "
                   "--set A.bits=6 (repeatable)")
    add_field(p, QuantRunConfig, "calib_samples", "training sequences for static range "
              "calibration")


def add_parser(sub: Any) -> None:
    text = "post-training quantization, evaluated in recurrent mode"
    p = sub.add_parser("ptq", help=text, description=text + "; writes metrics.json into --out.")
    _add_quant(p)
    p.add_argument("--out", default=None, help="output folder (default: RUN/ptq-<settings>)")
    add_data(p, EvalConfig)
    add_compute(p, EvalConfig)
    p.set_defaults(func=_ptq)

    text = "quantization-aware fine-tuning of a trained run"
    p = sub.add_parser("qat", help=text, description=text + "; writes config.json, "
                       "checkpoint.pt, model.pt and metrics.json into --out.")
    _add_quant(p)
    p.add_argument("--out", required=True, help="output folder")
    add_field(p, QATConfig, "parameterization", "continuous, discrete, frozen-a or polar "
              "(continuous training with the stable polar A_bar grid)", "--param")
    add_field(p, QATConfig, "mode", "recurrent (paper) or conv (QS4D: state quantized "
              "indirectly)")
    add_optimizer(p, QATConfig, "seed of batch order, dropout and training noise")
    add_field(p, QATConfig, "grad_clip", "gradient-norm clip")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its last checkpoint (same settings)")
    add_field(p, QATConfig, "train_noise", "weight noise at every training step, after "
              "quantization: std relative to each crossbar tensor's max |w| (gaussian) or "
              "multiple of the PCM programming noise (pcm); 0 = none", metavar="SIGMA")
    add_field(p, QATConfig, "train_noise_on", "comma-separated selectors: A, B, C, D, encoder, "
              "mix, decoder, a path such as blocks.0.ssm.A_bar, or all; A alone as in QS4D",
              metavar="COMPONENTS")
    add_field(p, QATConfig, "train_noise_kind", "gaussian or pcm (programming noise of the PCM "
              "model)", "--train-noise-model", "--train-noise-kind", "--train-noise-device")
    add_field(p, QATConfig, "train_noise_transition", "the state-transition form the noise is "
              "drawn in, as simulate's mapping: direct (the array holds A_bar) or increment "
              "(A_bar - 1, one scale with B_bar)")
    add_field(p, QATConfig, "train_noise_granularity", "conductance scale of the noise: tensor, "
              "channel or mode (one per mode of A_bar and B_bar)")
    add_field(p, QATConfig, "train_read_noise", "per-step read noise of A_bar and B_bar relative "
              "to their scale (recurrent mode only)", metavar="SIGMA")
    add_field(p, QATConfig, "train_noise_t", "with --train-noise-kind pcm: draw what the chip "
              "reads this many seconds after programming (drift, 1/f read noise, global drift "
              "compensation; 86400 = 1 day); 0 = programming noise alone", metavar="SECONDS")
    add_field(p, QATConfig, "a_margin", "keep 1 - |A_bar| of every noisy mode above K times its "
              "error std (continuous parameterizations; 0 = none)", metavar="K")
    add_data(p, EvalConfig)
    add_compute(p, EvalConfig)
    p.set_defaults(func=_qat)
