"""Accuracy of a trained run on simulated crossbar chips, over inference time and device settings.

``simulate`` programs ``chips`` chip instances per device setting once, drifts them to every
inference time, and classifies a data split on each (:class:`~imssa.crossbar.CrossbarS4D`).
The result is an xarray Dataset, accuracy (setting, t_inference, chip), written to NetCDF.

Sweeps are resumable: every finished (setting, time) point is written at once to a sidecar
folder ``<out>.parts/``; a rerun with the same configuration skips those points, and the NetCDF
file appears atomically only when the sweep is complete (then the folder is removed). Each
point draws its noise from a generator seeded by (seed, setting, time), and the chips of a
setting from one seeded by (seed, setting), so a resumed sweep gives the same numbers as an
uninterrupted one.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from imssa.crossbar import DIGITAL_PARTS, CrossbarS4D, PeripheryConfig
from imssa.data import Split, load_task
from imssa.devices import DEVICES, Device, DeviceConfig, check_time, device_from_config
from imssa.errors import ImssaError
from imssa.experiments.io import atomic_write, environment, parse_value, read_json, write_json
from imssa.mapping import MappingConfig

if TYPE_CHECKING:
    import xarray as xr

#: Seconds per unit of :func:`parse_times` ("y" is 365 days).
TIME_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
                                "w": 604800.0, "y": 365 * 86400.0}
SPLITS = ("test", "val")
_TIME = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)$")


def parse_times(text: str) -> list[float]:
    """Times like "1s,1h,1d,1y,3600" -> seconds [1, 3600, 86400, 31536000, 3600].

    Units: s, m or min, h, d, w, y (365 d); a bare number is seconds. Each time must be >= 0.
    """
    times = []
    for item in str(text).split(","):
        token = item.strip().lower()
        match = _TIME.match(token)
        if token.startswith("-"):
            raise ImssaError(f"--t-inference: times must be >= 0 s, got {item.strip()!r}")
        if not match or match.group(2) not in ("", *TIME_UNITS):
            raise ImssaError(f"--t-inference: cannot read {item.strip()!r} as a time; write a "
                             f"number with an optional unit ({', '.join(TIME_UNITS)}), e.g. "
                             "'1s,1h,1d,1y' or '3600'")
        t = float(match.group(1)) * TIME_UNITS[match.group(2) or "s"]
        times.append(check_time(t, "--t-inference"))
    return times


def format_time(t: float) -> str:
    """Seconds as the largest whole unit: 3600 -> '1 h', 90 -> '90 s', 31536000 -> '1 y'."""
    for unit in ("y", "d", "h", "min", "s"):
        n = t / TIME_UNITS[unit]
        if n >= 1 and float(n).is_integer():
            return f"{int(n)} {unit}"
    return f"{t:g} s"


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """One simulation sweep (the device settings are passed beside it).

    Attributes:
        t_inference: times since programming (s), each >= 0.
        chips: chip instances per setting.
        mapping: weight -> conductance mapping; None uses the device's conductance window with
            the MappingConfig defaults (256 x 256 tiles, polarity blocks).
        periphery: DACs, ADCs, noise, state register, drift compensation.
        digital: parts kept digital (see ``imssa.crossbar.DIGITAL_PARTS``).
        split: "test" or "val".
        limit: first ``limit`` samples of the split (and of the training pool); None = all.
        calibration_samples: training sequences used to calibrate converter ranges.
        batch_size: sequences per forward pass (memory ~ chips x batch x length x width).
        seed: seeds programming (per setting) and noise (per setting and time).
        data_dir: dataset folder; None uses the run's.
        torch_device: "auto", "cpu", "cuda", ...
    """

    t_inference: tuple[float, ...] = (1.0, 3600.0, 86400.0, 365 * 86400.0)
    chips: int = 25
    mapping: MappingConfig | None = None
    periphery: PeripheryConfig = dataclasses.field(default_factory=PeripheryConfig)
    digital: tuple[str, ...] = ()
    split: str = "test"
    limit: int | None = None
    calibration_samples: int = 64
    batch_size: int = 256
    seed: int = 0
    data_dir: str | None = None
    torch_device: str = "auto"

    def __post_init__(self) -> None:
        times = tuple(self.t_inference) if isinstance(self.t_inference, (list, tuple)) \
            else (self.t_inference,)
        if not times:
            raise ImssaError("SimulationConfig.t_inference needs at least one time (s)")
        object.__setattr__(self, "t_inference",
                           tuple(check_time(t, "SimulationConfig.t_inference") for t in times))
        object.__setattr__(self, "digital", tuple(self.digital))
        unknown = [p for p in self.digital if p not in DIGITAL_PARTS]
        if unknown:
            raise ImssaError(f"SimulationConfig.digital: unknown parts {unknown}; choose from "
                             f"{', '.join(DIGITAL_PARTS)}")
        for name in ("chips", "calibration_samples", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImssaError(f"SimulationConfig.{name} must be an integer >= 1, got {value!r}")
        if self.limit is not None and (isinstance(self.limit, bool)
                                       or not isinstance(self.limit, int) or self.limit < 1):
            raise ImssaError(f"SimulationConfig.limit must be None or an integer >= 1, "
                             f"got {self.limit!r}")
        if self.split not in SPLITS:
            raise ImssaError(f"SimulationConfig.split must be one of {SPLITS}, got {self.split!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ImssaError(f"SimulationConfig.seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["t_inference"] = list(self.t_inference)
        d["digital"] = list(self.digital)
        d["mapping"] = None if self.mapping is None else self.mapping.to_dict()
        d["periphery"] = self.periphery.to_dict()
        return d


def sweep_devices(base: DeviceConfig, field: str, values: Sequence[Any]) -> list[DeviceConfig]:
    """Copies of ``base`` with ``field`` set to each value (validated by the config)."""
    names = {f.name for f in dataclasses.fields(base)}
    if field not in names:
        raise ImssaError(f"{type(base).__name__} has no field {field!r}; it has "
                         f"{', '.join(sorted(names))}")
    if not values:
        raise ImssaError(f"a sweep over {field!r} needs at least one value")
    return [dataclasses.replace(base, **{field: v}) for v in values]


def _as_device(d: Device | DeviceConfig) -> Device:
    if isinstance(d, Device):
        return d
    if isinstance(d, DeviceConfig):
        return device_from_config(d)
    raise ImssaError(f"devices must be Device or DeviceConfig objects, got {type(d).__name__}")


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (numpy's SeedSequence: well mixed, reproducible)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _generator(device: torch.device, *parts: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(_seed(*parts))


@torch.no_grad()
def _evaluate_point(xbar: CrossbarS4D, t_inference: float, split: Split,
                    generator: torch.Generator, batch_size: int,
                    device: torch.device) -> list[float]:
    """Accuracy of every chip of ``xbar`` at one inference time, (chips,) as a list."""
    xbar.set_time(t_inference, generator)
    correct = torch.zeros(xbar.n_chips, dtype=torch.long, device=device)
    n = len(split.y)
    for i in tqdm(range(0, n, batch_size), desc=f"t = {format_time(t_inference)}", leave=False):
        x = split.x[i:i + batch_size].to(device)
        y = split.y[i:i + batch_size].to(device)
        correct += (xbar(x, generator).argmax(-1) == y).sum(dim=1)
    return [c / n for c in correct.tolist()]


def simulate(run: str | Path, device: Device | DeviceConfig | Sequence[Device | DeviceConfig],
             config: SimulationConfig | None = None, out: str | Path | None = None, *,
             sweep: str | None = None) -> xr.Dataset:
    """Accuracy of a trained run on simulated chips, per setting, inference time and chip.

    Args:
        run: a training run folder (``imssa train --out RUN``).
        device: one device (or its config), or a list of them: one ``setting`` each.
        config: times, chips, mapping, periphery, data and seeds.
        out: NetCDF path; written atomically when the sweep is complete, with partial results
            in ``<out>.parts/`` until then (a rerun resumes). None keeps results in memory.
        sweep: the device-config field that varies over the list (e.g. "prog_noise"); it
            becomes a coordinate along ``setting``.

    Returns:
        Dataset with ``accuracy`` (t_inference, chip), or (setting, t_inference, chip) for a
        list of devices, and ``seconds`` per point; coords t_inference (s), chip, setting;
        attrs: configs as JSON strings, the digital model's accuracy, the environment.
    """
    from imssa.experiments.train import accuracy, load_run, resolve_device

    config = config if config is not None else SimulationConfig()
    is_list = isinstance(device, (list, tuple))
    devices = [_as_device(d) for d in device] if isinstance(device, (list, tuple)) \
        else [_as_device(device)]  # type: ignore[arg-type]
    if not devices:
        raise ImssaError("simulate needs at least one device")
    if sweep is not None:
        missing = [i for i, d in enumerate(devices) if not hasattr(d.config, sweep)]
        if missing:
            raise ImssaError(f"sweep={sweep!r} is not a field of every device config "
                             f"(settings {missing})")
    mappings = [config.mapping if config.mapping is not None
                else MappingConfig(g_min=d.config.g_min, g_max=d.config.g_max) for d in devices]
    dev = resolve_device(config.torch_device)
    train_cfg, model = load_run(run, dev)
    data = load_task(train_cfg.task, config.data_dir or train_cfg.data_dir,
                     val_fraction=train_cfg.val_fraction, seed=train_cfg.seed, limit=config.limit)
    split = data.test if config.split == "test" else data.val
    if len(split.y) == 0:
        raise ImssaError(f"the {config.split} split of {train_cfg.task} is empty; use another "
                         "split or a larger --limit")
    calibration = data.train.x[:config.calibration_samples].to(dev)

    record = {"run": str(Path(run).resolve()), "task": train_cfg.task, "model": train_cfg.model,
              "simulation": config.to_dict(), "devices": [d.config.to_dict() for d in devices],
              "device_names": [repr(d) for d in devices],
              "mappings": [m.to_dict() for m in mappings], "sweep": sweep,
              "torch_device": dev.type}
    record_json = json.dumps(record, sort_keys=True)
    fingerprint = hashlib.sha256(record_json.encode()).hexdigest()
    parts = None if out is None else Path(str(out) + ".parts")
    if parts is not None:
        manifest = parts / "manifest.json"
        if manifest.exists() and read_json(manifest).get("fingerprint") != fingerprint:
            raise ImssaError(f"{parts} holds partial results of a different simulation; delete "
                             "it, or rerun with the same settings, or choose another --out")
        if not manifest.exists():
            write_json({"fingerprint": fingerprint, "record": record}, manifest)

    def cached(name: str, compute: Any) -> dict:
        path = None if parts is None else parts / f"{name}.json"
        if path is not None and path.exists():
            return read_json(path)
        result = compute()
        if path is not None:
            write_json(result, path)
        return result

    recurrent = functools.partial(model, mode="recurrent")
    digital = cached("digital", lambda: {"accuracy": accuracy(recurrent, split, dev,
                                                              config.batch_size)})
    times = config.t_inference
    acc = np.zeros((len(devices), len(times), config.chips))
    seconds = np.zeros((len(devices), len(times)))
    with tqdm(total=len(devices) * len(times), desc="simulate") as bar:
        for s, (d, mapping) in enumerate(zip(devices, mappings)):
            xbar: CrossbarS4D | None = None

            def build(s: int = s, d: Device = d, mapping: MappingConfig = mapping) -> CrossbarS4D:
                xb = CrossbarS4D(model, mapping, d, config.periphery, n_chips=config.chips,
                                 seed=_generator(dev, config.seed, s), digital=config.digital)
                if config.periphery.needs_calibration:
                    xb.calibrate(calibration.split(config.batch_size))
                return xb

            for j, t in enumerate(times):
                def point(s: int = s, j: int = j, t: float = t) -> dict:
                    nonlocal xbar
                    xbar = xbar if xbar is not None else build()
                    t0 = time.perf_counter()
                    result = _evaluate_point(xbar, t, split, _generator(dev, config.seed, s, j),
                                             config.batch_size, dev)
                    return {"accuracy": result, "seconds": time.perf_counter() - t0}

                result = cached(f"s{s}_t{j}", point)
                acc[s, j] = result["accuracy"]
                seconds[s, j] = result["seconds"]
                bar.update()
    ds = _dataset(acc, seconds, times, devices, sweep, is_list, record_json, digital["accuracy"],
                  len(split.y), dev)
    if out is not None:
        atomic_write(out, lambda tmp: ds.to_netcdf(tmp, engine="scipy"))
        assert parts is not None
        shutil.rmtree(parts, ignore_errors=True)
    print(summary_table(ds))
    return ds


def _dataset(acc: np.ndarray, seconds: np.ndarray, times: tuple[float, ...],
             devices: list[Device], sweep: str | None, is_list: bool, record_json: str,
             digital_accuracy: float, n_samples: int, dev: torch.device) -> xr.Dataset:
    import xarray as xr

    dims = ("setting", "t_inference", "chip")
    coords: dict[str, Any] = {
        "setting": np.arange(len(devices)),
        "t_inference": ("t_inference", np.asarray(times, dtype=np.float64),
                        {"units": "s", "long_name": "time since programming"}),
        "chip": np.arange(acc.shape[-1]),
    }
    if sweep is not None:
        values = [getattr(d.config, sweep) for d in devices]
        coords[sweep] = ("setting", np.asarray(values, dtype=np.float64),
                         {"long_name": f"device config field {sweep}"})
    ds = xr.Dataset(
        {"accuracy": (dims, acc, {"units": "1", "long_name": "classification accuracy"}),
         "seconds": (dims[:2], seconds, {"units": "s", "long_name": "wall time of the point"})},
        coords=coords,
        attrs={"title": "imssa crossbar simulation", "config": record_json,
               "digital_accuracy": float(digital_accuracy), "n_samples": int(n_samples),
               "sweep": sweep or "",
               **{f"env_{k}": str(v) for k, v in environment(dev).items()}})
    if not is_list:
        ds = ds.squeeze("setting", drop=True)
    return ds


def summary_table(ds: xr.Dataset) -> str:
    """Mean ± std of the accuracy over chips, per (setting and) inference time, as text."""
    acc = ds["accuracy"]
    n_chips = acc.sizes["chip"]
    mean, std = acc.mean("chip"), acc.std("chip", ddof=1 if n_chips > 1 else 0)
    sweep = ds.attrs.get("sweep") or ""
    settings = range(acc.sizes["setting"]) if "setting" in acc.dims else [None]
    width = 0 if settings == [None] else 18
    head = f"{'setting':<{width}}" if width else ""
    lines = [f"{head}{'t_inference':>12}   accuracy (mean ± std over {n_chips} chips)"]
    for s in settings:
        sel = {} if s is None else {"setting": s}
        label = "" if s is None else (f"{sweep}={float(ds[sweep][s]):g}" if sweep else str(s))
        for j, t in enumerate(ds["t_inference"].values):
            m = float(mean.isel({"t_inference": j, **sel}))
            d = float(std.isel({"t_inference": j, **sel}))
            lines.append(f"{label:<{width}}{format_time(float(t)):>12}   "
                         f"{100 * m:6.2f} ± {100 * d:.2f} %")
    if "digital_accuracy" in ds.attrs:
        lines.append(f"digital model (recurrent, float): {100 * ds.attrs['digital_accuracy']:.2f} %")
    return "\n".join(lines)


def plot_accuracy(ds: xr.Dataset, path: str | Path) -> None:
    """Accuracy (mean ± std over chips) vs time since programming, one line per setting; or vs
    the swept parameter when there is a sweep and one time. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = 100 * ds["accuracy"]
    mean, std = acc.mean("chip"), acc.std("chip")
    sweep = ds.attrs.get("sweep") or ""
    fig, ax = plt.subplots(figsize=(6, 4))
    if "setting" in acc.dims and sweep and acc.sizes["t_inference"] == 1:
        x = ds[sweep].values
        ax.errorbar(x, mean.isel(t_inference=0), yerr=std.isel(t_inference=0), marker="o",
                    capsize=3)
        ax.set_xlabel(sweep)
        ax.set_title(f"t_inference = {format_time(float(ds['t_inference'][0]))}")
    else:
        t = ds["t_inference"].values
        settings = range(acc.sizes["setting"]) if "setting" in acc.dims else [None]
        for s in settings:
            sel = {} if s is None else {"setting": s}
            label = None if s is None else (f"{sweep} = {float(ds[sweep][s]):g}" if sweep
                                            else f"setting {s}")
            ax.errorbar(t, mean.isel(sel), yerr=std.isel(sel), marker="o", capsize=3,
                        label=label)
        ax.set_xscale("symlog", linthresh=1.0)  # t = 0 stays on the axis
        ax.set_xlabel("time since programming (s)")
        if len(settings) > 1:
            ax.legend()
    if "digital_accuracy" in ds.attrs:
        ax.axhline(100 * ds.attrs["digital_accuracy"], color="gray", linestyle="--",
                   label="digital")
    ax.set_ylabel(f"accuracy (%), mean ± std over {acc.sizes['chip']} chips")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fmt = Path(path).suffix.lstrip(".") or "png"
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150))
    finally:
        plt.close(fig)


# --- command line -------------------------------------------------------------------------------


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


def _simulate_command(args: argparse.Namespace) -> None:
    from imssa.devices import make_device

    fields: dict[str, Any] = {}
    for name, value in (("n_devices", args.n_devices), ("verify_tol", args.verify_tol),
                        ("g_min", args.g_min), ("g_max", args.g_max)):
        if value is not None:
            fields[name] = value
    if args.prog_noise is not None:
        if args.device != "gaussian":
            raise ImssaError(f"--prog-noise applies to --device gaussian only, not "
                             f"{args.device!r}; use --set FIELD=VALUE for other device settings")
        fields["prog_noise"] = args.prog_noise
    for item in args.set or []:
        field, value = _assignment(item, "--set")
        fields[field] = parse_value(value)
    base = make_device(args.device, **fields).config
    sweep = None
    devices: DeviceConfig | list[DeviceConfig] = base
    if args.sweep:
        sweep, values = _assignment(args.sweep, "--sweep")
        devices = sweep_devices(base, sweep, [parse_value(v) for v in values.split(",") if v.strip()])
    rows, cols = _tile_size(args.tile_size)
    mapping: MappingConfig | None = MappingConfig(
        g_min=base.g_min, g_max=base.g_max, tile_rows=rows, tile_cols=cols,
        encoding=args.encoding, granularity=args.granularity)
    if sweep in ("g_min", "g_max"):
        mapping = None  # each setting maps onto its own window
    periphery = PeripheryConfig(
        dac_bits=args.dac_bits, dac_range=args.dac_range, adc_bits=args.adc_bits,
        adc_granularity=args.adc_granularity, calibration=args.calibration,
        percentile=args.percentile, output_noise=args.output_noise,
        read_noise_mode=args.read_noise, state_bits=args.state_bits,
        state_clip=args.state_clip, drift_compensation=args.compensation)
    digital = [p.strip() for item in args.digital or [] for p in item.split(",") if p.strip()]
    config = SimulationConfig(
        t_inference=tuple(parse_times(args.t_inference)), chips=args.chips, mapping=mapping,
        periphery=periphery, digital=tuple(digital), split=args.split, limit=args.limit,
        calibration_samples=args.calibration_samples, batch_size=args.batch_size,
        seed=args.seed, data_dir=args.data_dir, torch_device=args.torch_device)
    out = Path(args.out) if args.out else Path(args.run) / "simulation.nc"
    ds = simulate(args.run, devices, config, out, sweep=sweep)
    print(f"wrote {out}")
    if args.plot:
        plot_accuracy(ds, args.plot)
        print(f"wrote {args.plot}")


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``imssa simulate`` on the CLI's subparsers; returns the parser."""
    p = subparsers.add_parser(
        "simulate", help="accuracy of a trained run on simulated crossbar chips over time",
        description="Program a trained S4D run onto --chips simulated memristive chips, drift "
        "them to each --t-inference and classify the test split on every chip. Writes an "
        "xarray NetCDF file (accuracy per time and chip); an interrupted sweep resumes from "
        "<out>.parts/ when rerun with the same arguments.")
    p.add_argument("run", help="run folder written by `imssa train`")
    p.add_argument("--device", default="pcm", choices=sorted(DEVICES),
                   help="device model (default pcm, aihwkit's PCM statistics)")
    p.add_argument("--t-inference", default="1s,1h,1d,1y",
                   help="times since programming, e.g. 0,1s,1h,1d,1y or 3600 (default 1s,1h,1d,1y)")
    p.add_argument("--chips", type=int, default=25, help="chip instances (default 25)")
    g = p.add_argument_group("device")
    g.add_argument("--prog-noise", type=float, default=None,
                   help="gaussian device: programming-noise std relative to g_max")
    g.add_argument("--n-devices", type=int, default=None, help="devices averaged per weight")
    g.add_argument("--verify-tol", type=float, default=None,
                   help="program-and-verify tolerance, a fraction of g_max")
    g.add_argument("--g-min", type=float, default=None, help="lowest conductance (µS)")
    g.add_argument("--g-max", type=float, default=None, help="highest conductance (µS)")
    g.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="any device-config field, e.g. --set drift_scale=0.5 (repeatable)")
    g.add_argument("--sweep", metavar="FIELD=V1,V2,...",
                   help="one device-config field over several values, e.g. prog_noise=0.01,0.03")
    g = p.add_argument_group("mapping")
    g.add_argument("--tile-size", default="256", help="crossbar tile ROWS[xCOLS] (default 256)")
    g.add_argument("--encoding", default="polarity_block",
                   help="polarity_block (default) or differential")
    g.add_argument("--granularity", default="tensor", help="w_max per tensor (default) or column")
    g = p.add_argument_group("periphery")
    g.add_argument("--dac-bits", type=int, default=None, help="input DAC bits (default ideal)")
    g.add_argument("--dac-range", type=float, default=None,
                   help="fixed DAC input range (default: calibrated per signal)")
    g.add_argument("--adc-bits", type=int, default=None, help="ADC bits (default ideal)")
    g.add_argument("--adc-granularity", default="tensor", help="ADC range per tensor or column")
    g.add_argument("--calibration", default="maxabs", help="maxabs (default) or percentile")
    g.add_argument("--percentile", type=float, default=99.99)
    g.add_argument("--output-noise", type=float, default=0.0,
                   help="column output noise std relative to the ADC range")
    g.add_argument("--read-noise", default=None,
                   help="per_step (fresh every step) or per_inference (aihwkit); default: the "
                   "device's (per_step)")
    g.add_argument("--state-bits", type=int, default=None, help="state register bits")
    g.add_argument("--state-clip", type=float, default=None, help="state register bound")
    g.add_argument("--compensation", default="none",
                   help="drift compensation: none (default), global or per_column")
    g.add_argument("--digital", action="append", metavar="PARTS",
                   help=f"parts kept digital, comma-separated, from {','.join(DIGITAL_PARTS)}")
    g = p.add_argument_group("run")
    g.add_argument("--split", default="test", help="test (default) or val")
    g.add_argument("--limit", type=int, default=None, help="use only this many samples")
    g.add_argument("--data-dir", default=None, help="dataset folder (default: the run's)")
    g.add_argument("--calibration-samples", type=int, default=64)
    g.add_argument("--batch-size", type=int, default=256)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default=None, help="NetCDF file (default RUN/simulation.nc)")
    g.add_argument("--plot", default=None, help="also plot accuracy vs time to this image")
    g.add_argument("--torch-device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.set_defaults(func=_simulate_command)
    return p


__all__ = ["SPLITS", "TIME_UNITS", "SimulationConfig", "add_simulate_parser", "format_time",
           "parse_times", "plot_accuracy", "simulate", "summary_table", "sweep_devices"]
