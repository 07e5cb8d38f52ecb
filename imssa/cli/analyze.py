"""``imssa analyze {sensitivity,stability,width,transition-error}``: the command line of
:mod:`imssa.experiments.analyses`.

Every default is the analysis function's own (read from its signature), so the command and the
library cannot disagree; the library's errors name its parameters, and :func:`_run` translates a
parameter at the start of a message into its flag (``calib_samples`` -> ``--calib-samples``).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from imssa.cli.simulate import add_chip_options, chip_config, chip_memristors, default, translate
from imssa.errors import ImssaError
from imssa.experiments.analyses import VARIANTS, sensitivity, stability, width
from imssa.experiments.analyses.checks import check_bits
from imssa.experiments.analyses.stability import A_BAR_GRANULARITIES
from imssa.experiments.analyses.transition import summary, transition_error
from imssa.experiments.simulate import SimulationConfig
from imssa.names import ALIASES
from imssa.quant import TARGETS
from imssa.quant.spec import A_BAR_FORMS, GELU_FORMS, MAX_BITS, MIN_BITS

_POSITIONALS = ("run", "runs")


def parse_bits(text: str) -> tuple[int, ...]:
    """``"2,4,6,8"`` or ranges ``"2-8,10,12"`` -> sorted unique bit widths, checked."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ImssaError(f"--bits: cannot read {part!r} in {text!r}; give integers and "
                             f"ranges in {MIN_BITS}..{MAX_BITS}, e.g. '2,4,6,8' or '2-8'") from None
    return check_bits(out, "--bits")


def _names(text: str, valid: Sequence[str]) -> tuple[str, ...]:
    """A comma-separated list, or ``all``; the analysis checks the names."""
    if text.strip() == "all":
        return tuple(valid)
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _default(fn: Callable[..., Any], name: str) -> Any:
    return inspect.signature(fn).parameters[name].default


def _csv_default(fn: Callable[..., Any], name: str, valid: Sequence[str] | None = None) -> str:
    """The default of a sequence parameter as the command line writes it (``all`` when it is)."""
    value = tuple(_default(fn, name))
    if valid is not None and value == tuple(valid):
        return "all"
    return ",".join(map(str, value))


def _run(handler: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    """``handler(args)``, its ImssaError worded with the flag of the parameter it names."""
    try:
        handler(args)
    except ImssaError as err:
        match = re.match(r"(\w+)\b", str(err))
        name = match.group(1) if match else ""
        if name not in vars(args) or name in _POSITIONALS:
            raise
        raise ImssaError("--" + name.replace("_", "-") + str(err)[len(name):]) from None


def _plot_path(args: argparse.Namespace) -> Path | None:
    if args.no_plot:
        return None
    return Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")


def _common(args: argparse.Namespace, plot: Path | None) -> dict[str, Any]:
    """The keyword arguments every analysis takes."""
    return {"device": args.device, "data_dir": args.data_dir, "out": args.out, "plot": plot}


def _ptq(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the analyses that calibrate and evaluate (sensitivity, width)."""
    return {"limit": args.limit, "calib_samples": args.calib_samples, "seed": args.seed,
            "batch_size": args.batch_size, "gelu": args.gelu}


def _written(args: argparse.Namespace, plot: Path | None) -> None:
    print(f"wrote {args.out}" + (f" and {plot}" if plot else ""))


def _percent_table(da: xr.DataArray, rows: str) -> str:
    bits = [int(b) for b in da.bits.values]
    w = max(len(str(r)) for r in (rows, *da[rows].values))
    lines = [f"{rows:>{w}} " + " ".join(f"{b:>6}" for b in bits)]
    for r in da[rows].values:
        vals = da.sel({rows: r}).values
        lines.append(f"{str(r):>{w}} " + " ".join(
            f"{100 * v:6.1f}" if np.isfinite(v) else f"{'-':>6}" for v in vals))
    return "\n".join(lines)


def _sensitivity_cmd(args: argparse.Namespace) -> None:
    plot = _plot_path(args)
    ds = sensitivity(args.run, parse_bits(args.bits), _names(args.targets, list(TARGETS)),
                     _names(args.variants, list(VARIANTS)), **_ptq(args), **_common(args, plot))
    print(f"full precision (recurrent): {100 * float(ds.fp_accuracy):.2f} %")
    for v in ds.variant.values:
        da = ds.accuracy.sel(variant=v)
        if np.isfinite(da.values).any():
            print(f"\n{v} ({ds.variant_description.sel(variant=v).item()}), accuracy %:")
            print(_percent_table(da.dropna("target", how="all"), "target"))
    _written(args, plot)


def _stability_cmd(args: argparse.Namespace) -> None:
    plot = _plot_path(args)
    ds = stability(args.run, parse_bits(args.bits), _names(args.forms, A_BAR_FORMS),
                   granularity=args.granularity, seq_len=args.seq_len, **_common(args, plot))
    k_last = int(ds.k[-1])
    for f in ds.form.values:
        for b in ds.bits.values:
            sel = {"form": f, "bits": b}
            print(f"{str(f):>9} {int(b):2d} bit: {int(ds.outside_unit_circle.sel(sel)):4d} "
                  f"mode(s) with |A_q| >= 1, max |A_q| {float(ds.max_abs.sel(sel)):.6f}, "
                  f"error of A^k at k=1 {float(ds.power_error.sel(sel).isel(k=0)):.2e}, "
                  f"k={k_last} {float(ds.power_error.sel(sel).isel(k=-1)):.2e}")
    _written(args, plot)


def _width_cmd(args: argparse.Namespace) -> None:
    plot = _plot_path(args)
    ds = width(args.runs, parse_bits(args.bits), a_bar_form=args.a_bar_form, **_ptq(args),
               **_common(args, plot))
    print("accuracy % of W{b}A{b} (mean over runs of each width):")
    print(_percent_table(ds.accuracy, "d_model"))
    print("full precision: " + ", ".join(
        f"{int(h)} heads {100 * float(ds.fp_accuracy.sel(d_model=h)):.2f} %"
        for h in ds.d_model.values))
    _written(args, plot)


def _transition_cmd(args: argparse.Namespace) -> None:
    """``transition-error``: the simulate verb's chip settings, its errors worded with its flags."""
    plot = _plot_path(args)
    try:
        memristor, _ = chip_memristors(args)
        ds = transition_error(args.run, memristor, chip_config(args), out=args.out, plot=plot)
    except ImssaError as err:
        raise ImssaError(translate(str(err))) from None
    print(summary(ds))
    _written(args, plot)


def _add_transition(sub: Any) -> None:
    """``imssa analyze transition-error``: ``imssa simulate``'s chip options (and defaults), no
    converters (it reads A_bar alone)."""
    p = sub.add_parser(
        "transition-error", help="each mode's A_bar on chip against its decay 1 - |A_bar|",
        description="Program the run's A_bar onto --chips simulated chips (the chips `imssa "
        "simulate` programs with the same options), drift them to each --t-inference and "
        "compare every mode's A_bar on chip (after drift compensation; 1 + the realized "
        "increment in the increment form) with the digital one: |A_chip - A_bar| against "
        "1 - |A_bar|. Modes whose error reaches their decay break.")
    p.add_argument("run", help="run folder written by `imssa train`")
    add_chip_options(p)
    _add_outputs(p, default(SimulationConfig, "device"))
    p.set_defaults(func=functools.partial(_run, _transition_cmd))


def _add_outputs(p: argparse.ArgumentParser, device: str) -> None:
    """The options of every analysis: its files and the torch device."""
    p.add_argument("--out", required=True, help="NetCDF file to write (FILE.nc)")
    p.add_argument("--plot", default=None, help="PNG figure to write (default: --out with .png)")
    p.add_argument("--no-plot", action="store_true", help="write no figure")
    p.add_argument("--device", default=device,
                   help="torch device: cpu, cuda, cuda:1 or auto (default %(default)s)")


def _add_analysis(sub: Any, fn: Callable[..., Any], handler: Callable[[argparse.Namespace], None],
                  help: str, description: str) -> argparse.ArgumentParser:
    """The subparser of ``fn`` with its run argument(s), ``--bits`` and the options of every
    analysis (output files, torch device, data folder)."""
    p = sub.add_parser(fn.__name__, help=help, description=description)
    if fn is width:
        p.add_argument("runs", nargs="+", help="run folders written by `imssa train`")
    else:
        p.add_argument("run", help="run folder written by `imssa train`")
    p.add_argument("--bits", default=_csv_default(fn, "bits"),
                   help=f"bit widths, e.g. '2,4,6,8' or '2-8,10' (each in {MIN_BITS}..{MAX_BITS};"
                   " default %(default)s)")
    _add_outputs(p, _default(fn, "device"))
    p.add_argument("--data-dir", default=_default(fn, "data_dir"),
                   help="folder with the dataset files (default: the run's, else $IMSSA_DATA_DIR)")
    p.set_defaults(func=functools.partial(_run, handler))
    return p


def _add_ptq(p: argparse.ArgumentParser, fn: Callable[..., Any], gelu_help: str) -> None:
    """The options of the analyses that calibrate static ranges and evaluate the test split."""
    p.add_argument("--gelu", default=_default(fn, "gelu"), choices=GELU_FORMS, help=gelu_help)
    p.add_argument("--limit", type=int, default=_default(fn, "limit"),
                   help="evaluate on the first LIMIT test sequences only (quick runs)")
    p.add_argument("--calib-samples", type=int, default=_default(fn, "calib_samples"),
                   help="training sequences for static ranges (default %(default)s)")
    p.add_argument("--seed", type=int, default=_default(fn, "seed"),
                   help="seed of the calibration subset (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=_default(fn, "batch_size"),
                   help="sequences per forward pass (default %(default)s)")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``imssa analyze {sensitivity,stability,width}`` on the CLI's subparsers.

    Each handler is ``args.func(args)``; bad input raises ImssaError, which ``imssa.cli.main``
    prints as one line.
    """
    parser = subparsers.add_parser(
        "analyze", help="analyses of trained runs (sensitivity, stability, width, "
        "transition-error)",
        description="Post-training-quantization analyses after Zhao et al. 2025 (Figs. 2-4), and "
        "the state transition on chip (transition-error). Each writes an xarray Dataset as "
        "NetCDF (--out) and a PNG figure.")
    sub = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")

    p = _add_analysis(sub, sensitivity, _sensitivity_cmd,
                      "accuracy with one target quantized at a time",
                      "PTQ test accuracy (recurrent mode) when one quantization target is "
                      "quantized at a time, for each bit width and quantizer variant.")
    p.add_argument("--targets", default=_csv_default(sensitivity, "targets", list(TARGETS)),
                   help=f"comma-separated quantization targets or 'all' ({', '.join(TARGETS)}): "
                   "a path, one layer's path (blocks.0.ssm.A_bar), a module (mix) or an alias "
                   f"({', '.join(ALIASES)}); default %(default)s")
    p.add_argument("--variants", default=_csv_default(sensitivity, "variants", list(VARIANTS)),
                   help=f"comma-separated quantizer variants or 'all' ({', '.join(VARIANTS)}); "
                   "default %(default)s")
    _add_ptq(p, sensitivity, "exact: the trained GELU, so a curve shows its target alone; auto: "
             "hard GELU when an activation is quantized (default %(default)s)")

    p = _add_analysis(sub, stability, _stability_cmd, "quantized A_bar against the unit circle",
                      "Grid levels and quantized values of A_bar against the unit circle, modes "
                      "with |A_bar_q| >= 1 and the error of A_bar_q^k up to the sequence length, "
                      "for Cartesian and polar grids.")
    p.add_argument("--forms", default=_csv_default(stability, "forms", A_BAR_FORMS),
                   help=f"comma-separated grids of A_bar or 'all' ({', '.join(A_BAR_FORMS)}); "
                   "default %(default)s")
    p.add_argument("--granularity", default=_default(stability, "granularity"),
                   choices=A_BAR_GRANULARITIES, help="ranges of A_bar (default %(default)s)")
    p.add_argument("--seq-len", type=int, default=_default(stability, "seq_len"),
                   help="largest power k of A_bar (default: the task's sequence length)")

    p = _add_analysis(sub, width, _width_cmd,
                      "accuracy of W{b}A{b} against bits for several widths",
                      "PTQ test accuracy (recurrent mode) of the model with every weight, "
                      "activation and the state at b bits, for runs of several widths (runs of "
                      "one width with different seeds are averaged).")
    p.add_argument("--a-bar-form", default=_default(width, "a_bar_form"), choices=A_BAR_FORMS,
                   help="grid of A_bar (default %(default)s, the paper's)")
    _add_ptq(p, width, "auto: hard GELU, as an integer model; exact: the trained GELU "
             "(default %(default)s)")
    _add_transition(sub)
    return parser
