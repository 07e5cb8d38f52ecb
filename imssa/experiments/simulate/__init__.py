"""Accuracy of a trained run on simulated crossbar chips, over inference time and memristor
settings.

``simulate`` programs ``chips`` chip instances per memristor setting once, drifts them to every
inference time, and classifies a data split on each. The result is an xarray Dataset, accuracy
(setting, t_inference, chip), written to NetCDF.

Modules:
    config: :class:`SimulationConfig` and inference times as text.
    points: the sweep's settings x times, and the seeds that make each point reproducible.
    chips: the per-point evaluation, the one place that drives the crossbar engine.
    parts: the resumable store of finished points and the content fingerprint guarding it.
    result: the Dataset, its NetCDF file, the summary table and the plot.
    run: :func:`simulate`, which puts them together.

Sweeps are resumable: every finished (setting, time) point is written at once to a sidecar
folder ``<out>.parts/``; a rerun of the same simulation (same model content, data and
settings) skips those points, and the NetCDF file appears atomically only when the sweep is
complete (then the folder is removed). A resumed sweep gives the same numbers as an
uninterrupted one. The command line is :mod:`imssa.cli.simulate`.
"""

from imssa.devices import TIME_UNITS, format_time, format_times, parse_times
from imssa.experiments.simulate.config import DEFAULT_MEMRISTOR, SPLITS, WINDOWS, SimulationConfig
from imssa.experiments.simulate.points import sweep_memristors
from imssa.experiments.simulate.result import check_plot_path, plot_accuracy, summary_table
from imssa.experiments.simulate.run import simulate

__all__ = ["DEFAULT_MEMRISTOR", "SPLITS", "TIME_UNITS", "WINDOWS", "SimulationConfig",
           "check_plot_path", "format_time", "format_times", "parse_times", "plot_accuracy",
           "simulate", "summary_table", "sweep_memristors"]
