"""``imssa report``'s tables and figures: of a merged sweep Dataset (:mod:`imssa.sweep.merge`),
and of ``imssa simulate`` results side by side.

A sweep's tables: every point (its axis values, the stages' accuracies, and the chips' accuracy
mean ± std over chips at each inference time), then, for each axis, the accuracy against that
axis, averaged over the other axes (± the std over chips and the other axes' points); without a
simulate stage, the quantized (else trained) accuracy against each axis, mean ± std over the
other axes (over the seeds when the other axis steps through the runs of three seeds). The
figure draws the latter: one panel per axis, one line per inference time.

Simulate results (:func:`compare`, :func:`plot_compare`): each file is a line, named by its
file name, of the accuracy (mean ± sample std over its chips) against its axis: the swept
memristor field when it has several settings (a line per inference time), else the time since
programming. Files of one axis share a panel of the figure, and files of the same axis values a
table, one row each (the sMNIST crossbar figure, ``results/crossbar-smnist/smnist.png``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imssa.devices import format_time
from imssa.files import atomic_write, check_figure_path

if TYPE_CHECKING:
    import xarray as xr


def _axes(ds: xr.Dataset) -> list[dict]:
    return json.loads(ds.attrs.get("axes", "[]"))


def _dims(ds: xr.Dataset) -> list[str]:
    return [a["dim"] for a in _axes(ds)]


def _columns(ds: xr.Dataset) -> list[str]:
    """The coordinates a point is shown by: each axis field (a zip group's fields, not its step)."""
    return [f for a in _axes(ds) for f in a["fields"]]


def _pct(mean: float, std: float | None = None) -> str:
    """A table cell of percentages. Callers scale the accuracies to per cent before averaging,
    as the tables of docs/results.md were computed: a mean of chips on 2,000 images is a multiple
    of 0.005 %, often halfway between two cells, and its rounding depends on that order."""
    if not np.isfinite(mean):
        return "     -"
    return f"{mean:6.2f}" + ("" if std is None else f" ± {std:5.2f}")


def _label(value: object) -> str:
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def _times(ds: xr.Dataset) -> list[str]:
    return [format_time(float(t)) for t in ds["t_inference"].values] if "t_inference" in ds else []


def point_table(ds: xr.Dataset) -> str:
    """One line per point: axis values, train / quantized / digital accuracy, chips per time."""
    dims, columns = _dims(ds), _columns(ds)
    flat = ds.stack(point=dims) if dims else ds.expand_dims("point")
    head = [*columns, "train %", "quant %", "digital %"]
    head += [f"chips @ {t} %" for t in _times(ds)]
    rows = []
    for i in range(flat.sizes["point"]):
        p = flat.isel(point=i)
        row = [_label(p[c].values.item()) for c in columns]
        row += [_pct(100 * float(p[v])) if v in p else "-" for v in
                ("train_accuracy", "quant_accuracy", "digital_accuracy")]
        if "accuracy" in p:
            acc = 100 * p["accuracy"]
            ddof = 1 if acc.sizes["chip"] > 1 else 0
            row += [_pct(float(acc.isel(t_inference=j).mean()), float(acc.isel(t_inference=j)
                                                                     .std(ddof=ddof)))
                    for j in range(acc.sizes["t_inference"])]
        if str(p["error"].values):
            row.append(f"FAILED: {p['error'].values}")
        rows.append(row)
    return _format([head, *rows])


def _format(rows: list[list[str]]) -> str:
    widths = [max(len(r[k]) for r in rows if k < len(r)) for k in range(len(rows[0]))]
    return "\n".join("  ".join(c.rjust(widths[k]) if k < len(widths) else c
                               for k, c in enumerate(r)) for r in rows)


def axis_table(ds: xr.Dataset, dim: str) -> str:
    """Accuracy on the chips against ``dim`` (mean ± std over chips and the other axes)."""
    acc = 100 * ds["accuracy"]
    others = [d for d in acc.dims if d not in (dim, "t_inference")]
    mean, std = acc.mean(others), acc.std(others)
    fields = next(a["fields"] for a in _axes(ds) if a["dim"] == dim)
    rows = [[" / ".join(fields), *[f"chips @ {t} %" for t in _times(ds)]]]
    for k in range(ds.sizes[dim]):
        label = " / ".join(_label(ds[f].values[k]) for f in fields)
        rows.append([label, *[_pct(float(mean[k, j]), float(std[k, j]))
                                      for j in range(acc.sizes["t_inference"])]])
    return _format(rows)


def scalar_table(ds: xr.Dataset, dim: str, var: str) -> str:
    """``var`` (a stage's accuracy, one number per point) against ``dim``: mean ± sample std over
    the other axes' points (over the seeds, where the other axis steps through runs)."""
    values = 100 * (ds[var].where(ds["error"] == "") if "error" in ds else ds[var])
    others = [d for d in values.dims if d != dim]
    n = int(np.prod([ds.sizes[d] for d in others])) if others else 1
    mean = values.mean(others) if others else values
    std = values.std(others, ddof=1) if n > 1 else None
    fields = next(a["fields"] for a in _axes(ds) if a["dim"] == dim)
    rows = [[" / ".join(fields), f"{var.replace('_', ' ')} %"]]
    for k in range(ds.sizes[dim]):
        label = " / ".join(_label(ds[f].values[k]) for f in fields)
        rows.append([label, _pct(float(mean[k]), None if std is None else float(std[k]))])
    return _format(rows)


def report(ds: xr.Dataset) -> str:
    """Every table of the module docstring, as text (without a simulate stage: the quantized, else
    the trained, accuracy against each axis of a grid of several axes)."""
    failed = int((ds["error"] != "").sum()) if "error" in ds else 0
    parts = [f"{ds.attrs.get('title', 'imssa sweep')}: {int(ds.attrs.get('points', 0))} points, "
             f"{failed} failed", point_table(ds)]
    if "accuracy" in ds:
        chips = ds.sizes["chip"]
        for dim in _dims(ds):
            parts.append(f"accuracy (%) against {dim}, mean ± std over {chips} chips and the "
                         "other axes:\n" + axis_table(ds, dim))
    elif len(_dims(ds)) > 1:
        var = "quant_accuracy" if "quant_accuracy" in ds else "train_accuracy"
        for dim in _dims(ds):
            parts.append(f"{var.replace('_', ' ')} (%) against {dim}, mean ± std over the other "
                         "axes:\n" + scalar_table(ds, dim, var))
    return "\n\n".join(parts)


def plot(ds: xr.Dataset, path: str | Path) -> None:
    """Accuracy against each axis (one panel each, a line per inference time), atomically."""
    check_figure_path(path, "--plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = _dims(ds) or [None]
    fig, axes = plt.subplots(1, len(dims), figsize=(4.5 * len(dims), 3.6), squeeze=False)
    var = "accuracy" if "accuracy" in ds else "quant_accuracy" if "quant_accuracy" in ds \
        else "train_accuracy"
    acc = 100 * ds[var]
    for ax, dim in zip(axes[0], dims):
        others = [d for d in acc.dims if d not in (dim, "t_inference")]
        mean, std = acc.mean(others), acc.std(others)
        x = ds[dim].values if dim is not None else np.zeros(1)
        labels = [_label(v) for v in x]
        pos = np.arange(len(x)) if x.dtype.kind in "OUS" else x
        times = range(acc.sizes["t_inference"]) if "t_inference" in acc.dims else [None]
        for j in times:
            sel = {} if j is None else {"t_inference": j}
            ax.errorbar(pos, np.atleast_1d(mean.isel(sel)), yerr=np.atleast_1d(std.isel(sel)),
                        marker="o", capsize=3, label=None if j is None else _times(ds)[j])
        if x.dtype.kind in "OUS" or len(x) <= 12:  # every value of a short axis marked
            ax.set_xticks(pos, labels)
        ax.set_xlabel(dim or "")
        ax.set_ylabel(f"{var.replace('_', ' ')} (%)")
        ax.grid(True, alpha=0.3)
        if len(times) > 1:
            ax.legend(title="t_inference", fontsize="small")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:], dpi=130))
    finally:
        plt.close(fig)


def is_sweep(ds: xr.Dataset) -> bool:
    """Whether ``ds`` is a merged sweep (its attrs list the axes), not one simulate result."""
    return "axes" in ds.attrs


def is_simulation(ds: xr.Dataset) -> bool:
    """Whether ``ds`` is an ``imssa simulate`` result: accuracy over t_inference and chip."""
    return not is_sweep(ds) and "accuracy" in ds and \
        {"t_inference", "chip"} <= set(ds["accuracy"].dims)


@dataclass(frozen=True)
class Curve:
    """One line of a comparison: accuracy (%, mean and sample std over ``chips``)
    against ``axis`` at ``x``, whose table headings are ``ticks``."""

    label: str
    axis: str
    x: np.ndarray
    ticks: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    chips: int
    digital: float


def curves(results: Mapping[str, xr.Dataset]) -> Iterator[Curve]:
    """The lines of simulate results by label (module docstring)."""
    for label, ds in results.items():
        acc = 100 * ds["accuracy"]
        chips = acc.sizes["chip"]
        mean, std = acc.mean("chip"), acc.std("chip", ddof=1 if chips > 1 else 0)
        digital = 100 * float(ds.attrs.get("digital_accuracy", np.nan))
        times = ds["t_inference"].values
        sweep = ds.attrs.get("sweep") or "setting"
        if "setting" in acc.dims and acc.sizes["setting"] > 1:
            x = ds[sweep].values
            for j, t in enumerate(times):
                name = label if len(times) == 1 else f"{label} @ {format_time(float(t))}"
                yield Curve(name, sweep, x, tuple(_label(v) for v in x),
                            mean.isel(t_inference=j).values, std.isel(t_inference=j).values,
                            chips, digital)
        else:
            sel = {"setting": 0} if "setting" in acc.dims else {}
            if sel and ds.attrs.get("sweep"):
                label = f"{label} ({sweep} = {_label(ds[sweep].values[0])})"
            yield Curve(label, "t_inference", times, tuple(format_time(float(t)) for t in times),
                        mean.isel(sel).values, std.isel(sel).values, chips, digital)


def compare(results: Mapping[str, xr.Dataset]) -> str:
    """Tables of simulate results by label: one per axis and its values, a row per line."""
    groups: dict[tuple[str, tuple[str, ...]], list[Curve]] = {}
    for c in curves(results):
        groups.setdefault((c.axis, c.ticks), []).append(c)
    parts = []
    for (axis, ticks), group in groups.items():
        chips = sorted({c.chips for c in group})
        title = "time since programming" if axis == "t_inference" else axis
        rows = [["result", *ticks, "digital %"]]
        rows += [[c.label, *(_pct(float(m), float(d)) for m, d in zip(c.mean, c.std)),
                  _pct(c.digital)] for c in group]
        parts.append(f"accuracy (%) against {title}, mean ± std over "
                     f"{' / '.join(map(str, chips))} chips:\n" + _format(rows))
    return "\n\n".join(parts)


def _scale(ax: object, axis: str, values: np.ndarray) -> None:
    """Log-like x scale for a positive axis spanning a decade or more (symlog when 0 is on it),
    every value marked; categories at their positions."""
    positive = values[values > 0]
    if positive.size and values.min() >= 0 and positive.max() >= 10 * positive.min():
        if values.min() > 0:
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=float(positive.min()))
    labels = [format_time(float(v)) if axis == "t_inference" else _label(v) for v in values]
    ax.set_xticks(values, labels, fontsize="small")
    ax.minorticks_off()


def plot_compare(results: Mapping[str, xr.Dataset], path: str | Path) -> None:
    """Simulate results by label: one panel per axis, a line per result (mean ± sample std over
    chips), atomically."""
    check_figure_path(path, "--plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[Curve]] = {}
    for c in curves(results):
        panels.setdefault(c.axis, []).append(c)
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (axis, group) in zip(axes[0], panels.items()):
        categorical = any(c.x.dtype.kind in "OUS" for c in group)
        names = list(dict.fromkeys(t for c in group for t in c.ticks))
        markers = itertools.cycle("osx^vD*P")
        for c in group:
            x = np.array([names.index(t) for t in c.ticks]) if categorical else c.x
            ax.errorbar(x, c.mean, yerr=c.std, marker=next(markers), capsize=3,
                        label=c.label)
        if categorical:
            ax.set_xticks(range(len(names)), names, fontsize="small")
        else:
            _scale(ax, axis, np.unique(np.concatenate([c.x for c in group]).astype(float)))
        ax.set_xlabel("time since programming" if axis == "t_inference" else axis)
        ax.set_ylabel("accuracy (%), mean ± std over chips")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:], dpi=120))
    finally:
        plt.close(fig)
