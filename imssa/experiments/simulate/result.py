"""The result of a sweep: the xarray Dataset, its NetCDF file, a text summary and a plot."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imssa.cost import UNITS
from imssa.devices import format_time
from imssa.errors import ImssaError
from imssa.experiments.io import atomic_write, environment
from imssa.experiments.simulate.points import Setting, sweep_coordinate

if TYPE_CHECKING:
    import xarray as xr


def build_dataset(accuracy: np.ndarray, seconds: np.ndarray, times: Sequence[float],
                  settings: Sequence[Setting], *, sweep: str | None, keep_setting: bool,
                  record_json: str, fingerprint: str, run: str, digital_accuracy: float,
                  n_samples: int, device: torch.device, cost_json: str = "[]",
                  architecture_json: str = "{}") -> xr.Dataset:
    """accuracy (setting, t_inference, chip) and seconds (setting, t_inference) as a Dataset.

    ``keep_setting`` False drops the setting dimension (a single memristor, not a list). The
    swept field, if any, is a coordinate along ``setting``; attrs hold the record (configs as
    JSON; its ``model`` is the run's preset name), its fingerprint, the run folder,
    ``architecture`` (the S4DConfig the model was built with, overrides applied, as JSON), the
    digital model's accuracy, the environment and ``cost``: per setting, the chips' hardware
    cost (:meth:`imssa.cost.CostReport.to_dict`), whose figures (energy and latency per
    inference, devices, conversions, ...) are also data variables ``cost_<name>`` along
    ``setting``, with their units (:data:`imssa.cost.UNITS`; NaN for a setting without them).
    """
    import xarray as xr

    dims = ("setting", "t_inference", "chip")
    coords: dict[str, Any] = {
        "setting": np.arange(len(settings)),
        "t_inference": ("t_inference", np.asarray(times, dtype=np.float64),
                        {"units": "s", "long_name": "time since programming"}),
        "chip": np.arange(accuracy.shape[-1]),
    }
    if sweep is not None:
        coords[sweep] = ("setting", sweep_coordinate(settings, sweep),
                         {"long_name": f"memristor config field {sweep}"})
    ds = xr.Dataset(
        {"accuracy": (dims, accuracy, {"units": "1", "long_name": "classification accuracy"}),
         "seconds": (dims[:2], seconds, {"units": "s", "long_name": "wall time of the point"}),
         **cost_variables(json.loads(cost_json), len(settings))},
        coords=coords,
        attrs={"title": "imssa crossbar simulation", "config": record_json,
               "fingerprint": fingerprint, "run": run, "architecture": architecture_json,
               "digital_accuracy": float(digital_accuracy), "n_samples": int(n_samples),
               "sweep": sweep or "", "cost": cost_json,
               **{f"env_{k}": str(v) for k, v in environment(device).items()}})
    return ds if keep_setting else ds.squeeze("setting", drop=True)


def cost_variables(costs: Sequence[dict[str, Any] | None], n_settings: int
                   ) -> dict[str, tuple]:
    """``cost_<name>`` (setting,) variables of every :data:`imssa.cost.UNITS` figure."""
    totals = [(c or {}).get("totals", {}) for c in costs] + [{}] * (n_settings - len(costs))
    return {f"cost_{name}": ("setting", np.array([t.get(name, np.nan) for t in totals],
                                                 dtype=np.float64),
                             {"units": units, "long_name": long_name})
            for name, (units, long_name) in UNITS.items()}


def write_dataset(ds: xr.Dataset, out: str | Path) -> None:
    """The Dataset as NetCDF (scipy engine, no netCDF4 library needed), atomically."""
    atomic_write(out, lambda tmp: ds.to_netcdf(tmp, engine="scipy"))


def read_dataset(out: str | Path) -> xr.Dataset:
    """A NetCDF result, loaded into memory (the file is closed)."""
    import xarray as xr

    try:
        with xr.open_dataset(out, engine="scipy") as ds:
            return ds.load()
    except (OSError, ValueError, TypeError) as err:
        raise ImssaError(f"`out` {out} exists and is not a readable NetCDF file ({err}); choose "
                         "another `out`, or pass `force=True` to overwrite it") from None


def check_out(out: str | Path) -> Path:
    """``out`` as a Path, refused when it is a folder (or under a file)."""
    path = Path(out)
    if path.is_dir():
        raise ImssaError(f"`out` {out} is a folder; name the NetCDF file, e.g. {path / 'sim.nc'}")
    if any(p.exists() and not p.is_dir() for p in path.parents):
        raise ImssaError(f"`out` {out}: a folder on the way is a file")
    return path


def check_plot_path(path: str | Path) -> str:
    """The image format of ``path`` (its extension; none means png), checked to be one that
    matplotlib writes, and the path checked not to be a folder."""
    from matplotlib.backend_bases import FigureCanvasBase

    if Path(path).is_dir():
        raise ImssaError(f"plot path {path} is a folder; name the image file, e.g. "
                         f"{Path(path) / 'accuracy.png'}")
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise ImssaError(f"plot path {path}: unknown image format {fmt!r}; use one of "
                         f"{', '.join(sorted(formats))}")
    return fmt


def _label(ds: xr.Dataset, sweep: str, s: int) -> str:
    value = ds[sweep].values[s]
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


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
        label = "" if s is None else (f"{sweep}={_label(ds, sweep, s)}" if sweep else str(s))
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
    fmt = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = 100 * ds["accuracy"]
    mean, std = acc.mean("chip"), acc.std("chip")
    sweep = ds.attrs.get("sweep") or ""
    fig, ax = plt.subplots(figsize=(6, 4))
    if "setting" in acc.dims and sweep and acc.sizes["t_inference"] == 1:
        x = [_label(ds, sweep, s) for s in range(acc.sizes["setting"])] \
            if ds[sweep].dtype.kind in "OUS" else ds[sweep].values
        ax.errorbar(x, mean.isel(t_inference=0), yerr=std.isel(t_inference=0), marker="o",
                    capsize=3)
        ax.set_xlabel(sweep)
        ax.set_title(f"t_inference = {format_time(float(ds['t_inference'][0]))}")
    else:
        t = ds["t_inference"].values
        settings = range(acc.sizes["setting"]) if "setting" in acc.dims else [None]
        for s in settings:
            sel = {} if s is None else {"setting": s}
            label = None if s is None else (f"{sweep} = {_label(ds, sweep, s)}" if sweep
                                            else f"setting {s}")
            ax.errorbar(t, mean.isel(sel), yerr=std.isel(sel), marker="o", capsize=3,
                        label=label)
        ax.set_xscale("symlog", linthresh=1.0)  # t = 0 stays on the axis
        ax.set_xticks(t, [format_time(float(v)) for v in t])
        ax.minorticks_off()
        ax.set_xlabel("time since programming")
        if len(settings) > 1:
            ax.legend()
    if "digital_accuracy" in ds.attrs:
        ax.axhline(100 * ds.attrs["digital_accuracy"], color="gray", linestyle="--",
                   label="digital")
    ax.set_ylabel(f"accuracy (%), mean ± std over {acc.sizes['chip']} chips")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=150))
    finally:
        plt.close(fig)
