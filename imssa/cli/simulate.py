"""``imssa simulate``: the command line of :func:`imssa.experiments.simulate.simulate`.

Every default is read from the config dataclasses (SimulationConfig, MappingConfig,
PeripheryConfig, the memristor's config), and a library error naming a config field or an
argument of ``simulate`` is reworded with the flag that sets it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from imssa.crossbar import (
    ADC_GRANULARITIES,
    CALIBRATIONS,
    COMPENSATIONS,
    PER_TENSOR_PERIPHERY,
    PeripheryConfig,
)
from imssa.devices import DEVICES, READ_NOISE_MODES, DeviceConfig, make_device
from imssa.errors import ImssaError
from imssa.experiments.io import parse_value
from imssa.experiments.simulate import (
    DEFAULT_MEMRISTOR,
    SPLITS,
    SimulationConfig,
    check_plot_path,
    format_times,
    plot_accuracy,
    simulate,
    sweep_memristors,
)
from imssa.experiments.simulate.parts import MANIFEST, parts_folder
from imssa.mapping import (
    MAPPING_GRANULARITIES,
    TRANSITION_SCALES,
    TRANSITIONS,
    Encoding,
    MappingConfig,
)

#: Library names (config fields, ``simulate`` arguments) -> the flag that sets them.
FLAGS: dict[str, str] = {
    **{f"SimulationConfig.{f}": f"--{f.replace('_', '-')}"
       for f in ("t_inference", "chips", "digital", "split", "limit", "calibration_samples",
                 "batch_size", "seed", "data_dir", "device")},
    **{f"PeripheryConfig.{f}": f"--{f.replace('_', '-')}"
       for f in ("dac_bits", "dac_range", "adc_bits", "adc_granularity", "calibration",
                 "percentile", "output_noise", "state_bits", "state_clip")},
    "PeripheryConfig.read_noise_mode": "--read-noise",
    "PeripheryConfig.drift_compensation": "--compensation",
    "MappingConfig.tile_rows": "--tile-size (rows)", "MappingConfig.tile_cols": "--tile-size (cols)",
    "MappingConfig.encoding": "--encoding", "MappingConfig.granularity": "--granularity",
    "MappingConfig.transition_scale": "--transition-scale",
    "MappingConfig.transition": "--transition",
    "SimulationConfig.per_tensor": "--per-tensor", "per_tensor ": "--per-tensor ",
    "`out`": "--out", "`force=True`": "--force", "`sweep`": "--sweep", "plot path": "--plot",
}
#: Memristor-config fields with their own flag; any other is set with --set FIELD=VALUE.
MEMRISTOR_FLAGS: dict[str, str] = {f: f"--{f.replace('_', '-')}" for f in
                                   ("prog_noise", "n_devices", "verify_tol", "g_min", "g_max")}
_MEMRISTOR_CONFIGS = "|".join(cls.__name__ for cls, _ in DEVICES.values())
_MEMRISTOR_FIELD = re.compile(rf"\b(?:{_MEMRISTOR_CONFIGS})\.(\w+)")


def default(cls: type, field: str) -> Any:
    """The default of a dataclass field (an enum as its value), for a flag's default."""
    f = next(f for f in dataclasses.fields(cls) if f.name == field)
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
    return getattr(value, "value", value)


def translate(message: str) -> str:
    """A library error message with config fields and arguments reworded as flags."""
    for name, flag in FLAGS.items():
        message = message.replace(name, flag)
    return _MEMRISTOR_FIELD.sub(
        lambda m: MEMRISTOR_FLAGS.get(m.group(1), f"--set {m.group(1)}"), message)


def _assignment(text: str, option: str) -> tuple[str, str]:
    if "=" not in text:
        raise ImssaError(f"{option} needs FIELD=VALUE, got {text!r}")
    field, value = text.split("=", 1)
    return field.strip(), value


def _tile_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:x\s*(\d+))?\s*", text or "")
    if not match:
        raise ImssaError(f"--tile-size must be ROWS or ROWSxCOLS, e.g. 256 or 128x64, got {text!r}")
    rows = int(match.group(1))
    return rows, int(match.group(2) or rows)


def chip_memristors(args: argparse.Namespace) -> tuple[DeviceConfig | list[DeviceConfig], str | None]:
    """The memristor config (or, with --sweep where the verb has it, one per value) and the
    swept field."""
    fields: dict[str, Any] = {name: getattr(args, name) for name in MEMRISTOR_FLAGS
                              if getattr(args, name) is not None}
    if "prog_noise" in fields and args.memristor != "gaussian":
        raise ImssaError(f"--prog-noise applies to --memristor gaussian only, not "
                         f"{args.memristor!r}; use --set FIELD=VALUE for other memristor settings")
    for item in args.set or []:
        field, value = _assignment(item, "--set")
        fields[field] = parse_value(value)
    base = make_device(args.memristor, **fields).config
    if not getattr(args, "sweep", None):
        return base, None
    field, text = _assignment(args.sweep, "--sweep")
    try:
        return sweep_memristors(base, field, [parse_value(v) for v in text.split(",")
                                              if v.strip()]), field
    except ImssaError as err:
        raise ImssaError(f"--sweep {args.sweep}: {translate(str(err))}") from None


#: PeripheryConfig fields -> their options' names in the parsed arguments.
_PERIPHERY_ARGS = {**{f: f for f in ("dac_bits", "dac_range", "adc_bits", "adc_granularity",
                                     "calibration", "percentile", "output_noise", "state_bits",
                                     "state_clip")},
                   "read_noise_mode": "read_noise", "drift_compensation": "compensation"}
#: SimulationConfig fields of the run (data and batches), which only ``simulate`` takes.
_RUN_FIELDS = ("split", "limit", "data_dir", "calibration_samples", "batch_size", "device")


def chip_config(args: argparse.Namespace) -> SimulationConfig:
    """The SimulationConfig of :func:`add_chip_options`' options (and of the converters' and
    the run's where the verb has them; the others keep their defaults)."""
    rows, cols = _tile_size(args.tile_size)
    mapping = MappingConfig(tile_rows=rows, tile_cols=cols, encoding=args.encoding,
                            granularity=args.granularity, transition=args.transition,
                            transition_scale=args.transition_scale)
    periphery = PeripheryConfig(**{f: getattr(args, a) for f, a in _PERIPHERY_ARGS.items()
                                   if hasattr(args, a)})
    digital = tuple(p.strip() for item in args.digital or [] for p in item.split(",") if p.strip())
    return SimulationConfig(
        t_inference=args.t_inference, chips=args.chips, mapping=mapping, periphery=periphery,
        digital=digital, seed=args.seed, per_tensor=tuple(args.per_tensor or ()),
        **{f: getattr(args, f) for f in _RUN_FIELDS if hasattr(args, f)})


def _interrupted(out: Path) -> str:
    """What a Ctrl-C leaves behind, and what continues from it."""
    parts = parts_folder(out)
    done = len(list(parts.glob("s*_t*.json"))) if (parts / MANIFEST).is_file() else 0
    if not done:
        return "imssa simulate: interrupted before a point finished; nothing to continue from"
    return (f"imssa simulate: interrupted; {done} finished points are kept in {parts}: rerun "
            "the same command to continue from them (another model or other settings refuse "
            "them; --force starts over)")


def _command(args: argparse.Namespace) -> None:
    if args.device in DEVICES:
        raise ImssaError(f"--device is the torch device (cpu, cuda, auto); the memristor model "
                         f"is --memristor {args.device}")
    out = Path(args.out) if args.out else Path(args.run) / "simulation.nc"
    try:
        if args.plot:
            check_plot_path(args.plot)
        memristors, sweep = chip_memristors(args)
        ds = simulate(args.run, memristors, chip_config(args), out, sweep=sweep, force=args.force)
        print(f"wrote {out}")
        if args.plot:
            plot_accuracy(ds, args.plot)
            print(f"wrote {args.plot}")
    except ImssaError as err:
        raise ImssaError(translate(str(err))) from err
    except KeyboardInterrupt:
        print(_interrupted(out), file=sys.stderr)
        raise SystemExit(130) from None


def add_chip_options(p: argparse.ArgumentParser) -> dict[str, Any]:
    """The options that say which chips are programmed: memristor, times, chips, mapping, drift
    compensation, parts kept digital and the seed; ``imssa simulate`` and ``imssa analyze
    transition-error`` take the same ones, so one command's flags program the other's chips.
    Returns the argument groups (memristor, mapping, periphery) for a verb to add to."""
    sim, per = SimulationConfig, PeripheryConfig
    rows, cols = default(MappingConfig, "tile_rows"), default(MappingConfig, "tile_cols")
    p.add_argument("--memristor", default=DEFAULT_MEMRISTOR, choices=sorted(DEVICES),
                   help="memristive device model (default %(default)s)")
    p.add_argument("--t-inference", default=format_times(default(sim, "t_inference")),
                   help="times since programming, e.g. 0,1s,1h,1d,1y or 3600 (default "
                   "%(default)s)")
    p.add_argument("--chips", type=int, default=default(sim, "chips"),
                   help="chip instances per setting (default %(default)s)")
    g = p.add_argument_group("memristor (defaults: the memristor model's)")
    g.add_argument("--prog-noise", type=float, help="gaussian: programming-noise std relative "
                   "to g_max")
    g.add_argument("--n-devices", type=int, help="devices averaged per weight")
    g.add_argument("--verify-tol", type=float,
                   help="program-and-verify tolerance, a fraction of g_max")
    g.add_argument("--g-min", type=float, help="lowest conductance (µS)")
    g.add_argument("--g-max", type=float, help="highest conductance (µS)")
    g.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="any memristor-config field, e.g. --set drift_scale=0.5 (repeatable)")
    groups = {"memristor": g}
    g = groups["mapping"] = p.add_argument_group("mapping")
    g.add_argument("--tile-size", default=f"{rows}" if rows == cols else f"{rows}x{cols}",
                   help="crossbar tile ROWS[xCOLS] (default %(default)s)")
    g.add_argument("--encoding", default=default(MappingConfig, "encoding"),
                   choices=[e.value for e in Encoding],
                   help="signed weights on conductances (default %(default)s)")
    g.add_argument("--granularity", default=default(MappingConfig, "granularity"),
                   choices=MAPPING_GRANULARITIES,
                   help="one conductance scale per tensor or per output channel (default "
                   "%(default)s)")
    g.add_argument("--transition", default=default(MappingConfig, "transition"),
                   choices=TRANSITIONS, help="the state transition on the array: A_bar itself, "
                   "or A_bar - 1 with the state register accumulating (default %(default)s)")
    g.add_argument("--transition-scale", default=default(MappingConfig, "transition_scale"),
                   choices=TRANSITION_SCALES, help="A_bar's conductance scales: one per mode, or "
                   "split (diagonal and off-diagonal entries on columns of their own; complex "
                   "SSMs only); default: as --granularity")
    g.add_argument("--per-tensor", action="append", metavar="SEL:FIELD=V,...",
                   help="hardware settings of single tensors, e.g. "
                   "A:verify_tol=0.005,n_devices=4,adc_bits=10: memristor fields and "
                   f"{', '.join(PER_TENSOR_PERIPHERY)} (repeatable; later ones win)")
    g = groups["periphery"] = p.add_argument_group("periphery")
    g.add_argument("--compensation", default=default(per, "drift_compensation"),
                   choices=COMPENSATIONS, help="drift compensation (default %(default)s)")
    g.add_argument("--digital", action="append", metavar="PARTS",
                   help="parts kept digital, comma-separated: aliases A, B, C, D, encoder, "
                   "mix, decoder or paths such as blocks.0.ssm.A_bar, blocks.1.mix (repeatable)")
    p.add_argument("--seed", type=int, default=default(sim, "seed"),
                   help="seeds programming and noise (default %(default)s)")
    return groups


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``imssa simulate`` on the CLI's subparsers; returns the parser."""
    sim, per = SimulationConfig, PeripheryConfig
    p = subparsers.add_parser(
        "simulate", help="accuracy of a trained run on simulated crossbar chips over time",
        description="Program a trained S4D run onto --chips simulated memristive chips, drift "
        "them to each --t-inference and classify the test split on every chip. Writes an "
        "xarray NetCDF file (accuracy per time and chip). An interrupted run continues from "
        "<out>.parts/ when the same command is run again; a finished one is not recomputed "
        "(--force recomputes).")
    p.add_argument("run", help="run folder written by `imssa train`")
    groups = add_chip_options(p)
    groups["memristor"].add_argument(
        "--sweep", metavar="FIELD=V1,V2,...", help="one memristor-config field over several "
        "values, e.g. prog_noise=0.01,0.03 or read_noise_mode=per_step,per_inference")
    g = groups["periphery"]
    g.add_argument("--dac-bits", type=int, default=default(per, "dac_bits"),
                   help="input DAC bits (default: ideal)")
    g.add_argument("--dac-range", type=float, default=default(per, "dac_range"),
                   help="fixed DAC input range (default: calibrated per signal)")
    g.add_argument("--adc-bits", type=int, default=default(per, "adc_bits"),
                   help="ADC bits (default: ideal)")
    g.add_argument("--adc-granularity", default=default(per, "adc_granularity"),
                   choices=ADC_GRANULARITIES,
                   help="one ADC range per tensor or per output channel (default %(default)s)")
    g.add_argument("--calibration", default=default(per, "calibration"), choices=CALIBRATIONS,
                   help="converter ranges from max |v| or a percentile (default %(default)s)")
    g.add_argument("--percentile", type=float, default=default(per, "percentile"),
                   help="percentile of --calibration percentile (default %(default)s)")
    g.add_argument("--output-noise", type=float, default=default(per, "output_noise"),
                   help="column output noise std relative to the ADC range (default "
                   "%(default)s)")
    g.add_argument("--read-noise", default=default(per, "read_noise_mode"),
                   choices=READ_NOISE_MODES,
                   help="per_step (fresh every step) or per_inference (aihwkit); default: the "
                   "memristor's")
    g.add_argument("--state-bits", type=int, default=default(per, "state_bits"),
                   help="state register bits (default: full precision)")
    g.add_argument("--state-clip", type=float, default=default(per, "state_clip"),
                   help="state register bound (default: calibrated when --state-bits is set)")
    g = p.add_argument_group("run")
    g.add_argument("--split", default=default(sim, "split"), choices=SPLITS,
                   help="the split classified (default %(default)s)")
    g.add_argument("--limit", type=int, default=default(sim, "limit"),
                   help="use only this many samples of every split (default: all)")
    g.add_argument("--data-dir", default=default(sim, "data_dir"),
                   help="dataset folder (default: the run's)")
    g.add_argument("--calibration-samples", type=int, default=default(sim, "calibration_samples"),
                   help="training sequences that calibrate the converters (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=default(sim, "batch_size"),
                   help="sequences per forward pass (default %(default)s)")
    g.add_argument("--out", default=None, help="NetCDF file (default RUN/simulation.nc)")
    g.add_argument("--force", action="store_true",
                   help="recompute a finished or partly finished simulation, overwriting --out")
    g.add_argument("--plot", default=None, help="also plot accuracy vs time to this image")
    g.add_argument("--device", default=default(sim, "device"),
                   help="torch device: cpu, cuda, cuda:1 or auto (default %(default)s)")
    p.set_defaults(func=_command)
    return p
