"""The points of a sweep as one xarray Dataset, combined with ``xr.combine_by_coords``.

Every axis is a dimension with its values as a coordinate (with units); a zip group is one
dimension indexed by its step, its fields coordinates along it. Variables (per point, plus
``t_inference`` and ``chip`` for simulated points):

- ``accuracy`` (..., t_inference, chip): on the simulated chips; ``digital_accuracy``: the float
  model in recurrent mode on the simulated split; ``train_accuracy``: the trained model's test
  accuracy; ``quant_accuracy``: the PTQ / QAT model's (digital, recurrent);
- ``crossbar_<count>``: simulate's crossbar counts (:func:`imssa.crossbar.crossbar_cost`);
  ``cost_<figure>``: the figures of ``imssa.cost.estimate`` per inference on one chip, with
  their units, where that module exists (:func:`imssa.sweep.tasks.cost_figures`);
- ``seconds`` (..., t_inference): wall time; ``error``: "" or why the point failed (its
  numbers are NaN; a rerun retries it).

The attrs hold the spec's TOML, the axes and the full configs of the first point (every other
point's are these with its axis values), and the NetCDF engine the file was written with:
NetCDF4 through h5netcdf where it is installed, else NetCDF3 through scipy.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from imssa.errors import ImssaError
from imssa.experiments.io import atomic_write, read_json
from imssa.sweep.run import Paths
from imssa.sweep.spec import Axis, Point, Spec

if TYPE_CHECKING:
    import xarray as xr

#: Units of config fields by name (others are dimensionless, "1"; fields ending in bits: "bit").
FIELD_UNITS = {"t_inference": "s", "g_min": "uS", "g_max": "uS", "t_read": "s",
               "prog_coeff_g_max_reference": "uS"}
SCALARS = ("train_accuracy", "quant_accuracy", "digital_accuracy")


def units(path: str) -> str:
    """The units of the config field ``path`` (dotted)."""
    name = path.rsplit(".", 1)[-1]
    return "bit" if name.endswith("bits") else FIELD_UNITS.get(name, "1")


def _coordinate(values: list[Any]) -> np.ndarray:
    """An axis's values as a coordinate array: numbers as numbers, anything else as text."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    return np.asarray([_text(v) for v in values])


def _text(value: Any) -> str:
    """A non-numeric axis value as coordinate text: None "none", a list "A,B" ("none" if empty)."""
    if isinstance(value, list):
        return ",".join(map(_text, value)) or "none"
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _axis_coords(axis: Axis) -> dict[str, np.ndarray]:
    return {f: _coordinate([step[k] for step in axis.values]) for k, f in enumerate(axis.fields)}


def _point_dataset(spec: Spec, point: Point, result: dict[str, Any],
                   coords: list[dict[str, np.ndarray]], names: dict[str, set[str]]) -> xr.Dataset:
    """One point as a Dataset of length 1 along every axis (NaN where it failed)."""
    import xarray as xr

    dims = tuple(a.dim for a in spec.axes)
    lead = (1,) * len(dims)
    c: dict[str, Any] = {}
    for axis, i, values in zip(spec.axes, point.index, coords):
        if len(axis.fields) == 1:
            c[axis.dim] = (axis.dim, values[axis.dim][i:i + 1], {"units": units(axis.dim)})
        else:
            c[axis.dim] = (axis.dim, [i], {"units": "1", "long_name": f"step of zip group "
                                           f"{axis.dim}: {', '.join(axis.fields)}"})
            for f in axis.fields:
                c[f] = (axis.dim, values[f][i:i + 1], {"units": units(f)})
    variables: dict[str, Any] = {"error": (dims, np.full(lead, result.get("error", ""),
                                                         dtype=object))}
    for name in SCALARS:
        value = result.get(name)
        variables[name] = (dims, np.full(lead, np.nan if value is None else value), {"units": "1"})
    sim = point.config.simulation
    if sim is not None:
        times, chips = list(sim.t_inference), sim.chips
        acc = np.asarray(result.get("accuracy", np.full((len(times), chips), np.nan)), dtype=float)
        secs = np.asarray(result.get("seconds", np.full(len(times), np.nan)), dtype=float)
        c["t_inference"] = ("t_inference", np.asarray(times, dtype=float),
                            {"units": "s", "long_name": "time since programming"})
        c["chip"] = ("chip", np.arange(chips), {"units": "1"})
        variables["accuracy"] = (dims + ("t_inference", "chip"), acc.reshape(lead + acc.shape),
                                 {"units": "1", "long_name": "accuracy on the simulated chips"})
        variables["seconds"] = (dims + ("t_inference",), secs.reshape(lead + secs.shape),
                                {"units": "s"})
    crossbar = result.get("crossbar", {})
    for name in sorted(names["crossbar"]):
        variables[f"crossbar_{name}"] = (dims, np.full(lead, crossbar.get(name, np.nan)),
                                         {"units": "1"})
    cost = result.get("cost", {})
    for name in sorted(names["cost"]):
        value, unit = cost.get(name, (np.nan, names["cost_units"].get(name, "1")))
        variables[f"cost_{name}"] = (dims, np.full(lead, value), {"units": unit})
    return xr.Dataset(variables, coords=c)


def _result(paths: Paths, key: str) -> dict[str, Any]:
    file, error = paths.point(key), paths.error(key)
    if file.is_file():
        return read_json(file)
    if error.is_file():
        return {"error": read_json(error).get("error", "failed")}
    return {"error": "not computed (the sweep was interrupted before this point)"}


def merge(spec: Spec, out: str | Path) -> xr.Dataset:
    """The sweep's Dataset from the point files in ``out`` (see the module docstring)."""
    import xarray as xr

    paths = Paths(Path(out))
    results = {}
    for p in spec.points:
        key = p.config.point_key()
        if key not in results:
            results[key] = _result(paths, key)
    names: dict[str, Any] = {"crossbar": set(), "cost": set(), "cost_units": {}}
    for r in results.values():
        names["crossbar"] |= set(r.get("crossbar", {}))
        names["cost"] |= set(r.get("cost", {}))
        names["cost_units"] |= {k: u for k, (_, u) in r.get("cost", {}).items()}
    coords = [_axis_coords(a) for a in spec.axes]
    parts = [_point_dataset(spec, p, results[p.config.point_key()], coords, names)
             for p in spec.points]
    ds = parts[0] if not spec.axes else xr.combine_by_coords(parts, combine_attrs="override")
    ds["error"] = ds["error"].astype(str)
    first = spec.points[0].config.to_dict()
    ds.attrs = {"title": f"imssa sweep {spec.name}", "spec": spec.text,
                "axes": json.dumps([{"dim": a.dim, "fields": list(a.fields)} for a in spec.axes]),
                **{f"config_{k}": json.dumps(v) for k, v in first.items()},
                "points": len(spec.points),
                "failed_points": int((ds["error"] != "").sum())}
    return ds


def netcdf_engine() -> str:
    """h5netcdf (NetCDF4) where installed, else scipy (NetCDF3)."""
    return "h5netcdf" if importlib.util.find_spec("h5netcdf") and importlib.util.find_spec(
        "h5py") else "scipy"


def write(ds: xr.Dataset, path: str | Path) -> str:
    """``ds`` as NetCDF, atomically; returns the engine (also in the file's attrs)."""
    engine = netcdf_engine()
    ds.attrs["netcdf_engine"] = engine
    atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine=engine))
    return engine


def read(path: str | Path) -> xr.Dataset:
    """A sweep's NetCDF file, loaded (the file is closed)."""
    import xarray as xr

    if not Path(path).is_file():
        raise ImssaError(f"result {path}: no such file; `imssa sweep SPEC --out DIR` writes "
                         "DIR/<spec name>.nc")
    try:
        with xr.open_dataset(path) as ds:
            return ds.load()
    except (OSError, ValueError, TypeError) as err:
        raise ImssaError(f"result {path} is not a readable NetCDF file ({err})") from None
