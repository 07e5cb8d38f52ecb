"""``imssa report RESULT.nc [RESULT.nc ...]``: the tables (and ``--plot``, a figure) of a sweep's
Dataset, or of ``imssa simulate`` results side by side."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from imssa.cli.common import Parser
from imssa.errors import ImssaError


def _labels(paths: list[str]) -> list[str]:
    """Each result's name in the tables and legends: its file name without .nc, or the path as
    given where two share a file name."""
    stems = [Path(p).stem for p in paths]
    return [s if stems.count(s) == 1 else p for s, p in zip(stems, paths)]


def _report(args: argparse.Namespace) -> None:
    from imssa.files import check_figure_path
    from imssa.sweep.merge import read
    from imssa.sweep.report import compare, is_simulation, is_sweep, plot, plot_compare, report

    if args.plot:
        check_figure_path(args.plot, "--plot")
    results = dict(zip(_labels(args.result), map(read, args.result)))
    for label, ds in results.items():
        if not is_sweep(ds) and not is_simulation(ds):
            raise ImssaError(f"result {label} is neither a sweep's result (`imssa sweep`) nor a "
                             "simulation's (`imssa simulate --out`)")
    sweeps = {k: ds for k, ds in results.items() if is_sweep(ds)}
    simulations = {k: ds for k, ds in results.items() if not is_sweep(ds)}
    if args.plot and (len(sweeps) > 1 or sweeps and simulations):
        raise ImssaError("--plot draws one sweep's result, or simulate results side by side; "
                         f"got {len(sweeps)} sweep and {len(simulations)} simulate result(s)")
    print("\n\n".join([*map(report, sweeps.values()),
                       *([compare(simulations)] if simulations else [])]))
    if args.plot:
        if sweeps:
            plot(next(iter(sweeps.values())), args.plot)
        else:
            plot_compare(simulations, args.plot)
        print(f"wrote {args.plot}")


def add_parser(sub: Any) -> None:
    p: Parser = sub.add_parser(
        "report", help="tables and a figure of sweep or simulate results",
        description="Print the tables of a sweep's NetCDF result (every point; accuracy mean "
        "± std over chips against each axis), or of `imssa simulate` results side by side (a "
        "row per file: accuracy mean ± std over chips against the swept field or the time "
        "since programming), and, with --plot, draw them.")
    p.add_argument("result", nargs="+", help="a sweep result, OUT/<spec name>.nc of `imssa "
                   "sweep`, or NetCDF files of `imssa simulate --out`")
    p.add_argument("--plot", default=None, help="also draw accuracy against each axis to this "
                   "image (png, pdf, svg, ...): one panel per axis, a line per simulate result")
    p.set_defaults(func=_report)
