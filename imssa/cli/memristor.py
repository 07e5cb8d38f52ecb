"""``imssa memristor characterize``: conductance statistics of a memristive device model over
target conductance and time since programming."""

from __future__ import annotations

import argparse
import inspect
import math
from pathlib import Path
from typing import Any

from imssa.cli.common import Parser, add_threads, show
from imssa.devices import DEVICES, format_times
from imssa.errors import ImssaError

#: Default targets: these fractions of the device's conductance window [g_min, g_max].
TARGET_FRACTIONS = (0.02, 0.1, 0.25, 0.5, 0.75, 1.0)
DEFAULT_TIMES = (1.0, 3600.0, 86400.0, 365 * 86400.0)


def parse_conductances(text: str) -> list[float]:
    """``"1,5.5,25"`` -> [1.0, 5.5, 25.0] (µS); anything else raises one ImssaError."""
    values = []
    for item in text.split(","):
        try:
            values.append(float(item))
        except ValueError:
            values.append(math.nan)
        if not math.isfinite(values[-1]):
            raise ImssaError(f"--g-targets: cannot read {item.strip()!r} as a conductance (µS); "
                             "write numbers separated by commas, e.g. 1,5,25")
    return values


def _characterize(args: argparse.Namespace) -> None:
    from imssa.devices import make_device, parse_times
    from imssa.devices.characterize import characterize, plot_characterization
    from imssa.experiments.analyses import save_dataset
    from imssa.files import check_figure_path, check_writable

    fields = {k: v for k, v in (("g_min", args.g_min), ("g_max", args.g_max)) if v is not None}
    device = make_device(args.memristor, **fields)
    cfg = device.config
    g_targets = parse_conductances(args.g_targets) if args.g_targets else \
        [cfg.g_min + f * (cfg.g_max - cfg.g_min) for f in TARGET_FRACTIONS]
    outside = [g for g in g_targets if not cfg.g_min <= g <= cfg.g_max]
    if outside:
        raise ImssaError(f"--g-targets {', '.join(f'{g:g}' for g in outside)} µS lie outside the "
                         f"device's window [{cfg.g_min:g}, {cfg.g_max:g}] µS")
    times = parse_times(args.t_inference, "--t-inference")
    out = Path(args.out)
    if out.is_dir():
        raise ImssaError(f"--out {out} is a folder; name the NetCDF file, e.g. {out / 'c.nc'}")
    plot = check_figure_path(args.plot or out.with_suffix(".png"), "--plot")
    check_writable(out.parent, "--out folder")
    ds = characterize(device, g_targets, times, args.samples, args.seed)
    save_dataset(ds, out)
    plot_characterization(ds, plot)
    print(ds[["programmed_mean", "programmed_std"]].to_dataframe().to_string())
    print(ds["read_mean"].to_pandas().to_string())
    print(f"wrote {out} and {plot}")


def add_parser(sub: Any) -> None:
    from imssa.devices.characterize import characterize

    defaults = inspect.signature(characterize).parameters
    p = sub.add_parser("memristor", help="memristive device models: characterize their "
                       "conductance statistics")
    msub = p.add_subparsers(dest="memristor_command", required=True, metavar="VERB")
    p: Parser = msub.add_parser(
        "characterize", help="conductance distributions against target and time",
        description="Program, drift and read many devices per target conductance; writes the "
        "statistics as NetCDF and a figure.")
    p.add_argument("--memristor", default="pcm", choices=sorted(DEVICES),
                   help="memristive device model (default: pcm, aihwkit's PCM statistics)")
    p.add_argument("--g-min", type=float, default=None,
                   help="lowest conductance, µS (default: the model's)")
    p.add_argument("--g-max", type=float, default=None,
                   help="highest conductance, µS (default: the model's)")
    p.add_argument("--g-targets", default=None, help="comma-separated µS (default: "
                   f"{show(TARGET_FRACTIONS)} of the window [g_min, g_max])")
    times = format_times(DEFAULT_TIMES)
    p.add_argument("--t-inference", default=times,
                   help=f"times after programming, e.g. 0,1s,1h,1d,1y (default: {times})")
    p.add_argument("--samples", type=int, default=defaults["n_samples"].default,
                   help="devices per target (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults["seed"].default,
                   help="seed of every random draw (default: %(default)s)")
    p.add_argument("--out", default="characterization.nc", help="NetCDF file (default: "
                   "%(default)s)")
    p.add_argument("--plot", default=None, help="figure path (default: --out with .png)")
    add_threads(p)
    p.aliases.update(n_samples="--samples", g_targets="--g-targets",
                     t_inference_list="--t-inference")
    p.set_defaults(func=_characterize)
