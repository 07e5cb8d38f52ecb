"""Result files of the analyses: the Dataset as NetCDF and its figure as PNG, both atomic."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import xarray as xr

from imssa.experiments.io import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_dataset(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` as NetCDF (scipy engine, NETCDF3_64BIT) atomically."""
    atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="scipy"))


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> None:
    """Write a matplotlib figure as PNG (Agg) atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # render with Agg whatever pyplot's backend is
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def save_outputs(ds: xr.Dataset, out: str | Path | None, plot: str | Path | None,
                 plotter: Callable[[xr.Dataset], Figure]) -> None:
    """The Dataset to ``out`` and ``plotter(ds)`` to ``plot``, each where a path is given."""
    if out is not None:
        save_dataset(ds, out)
    if plot is not None:
        save_figure(plotter(ds), plot)
