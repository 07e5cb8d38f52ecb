"""``imssa report RESULT.nc``: the tables (and ``--plot``, a figure) of a sweep's Dataset."""

from __future__ import annotations

import argparse
from typing import Any

from imssa.cli.common import Parser


def _report(args: argparse.Namespace) -> None:
    from imssa.files import check_figure_path
    from imssa.sweep.merge import read
    from imssa.sweep.report import plot, report

    if args.plot:
        check_figure_path(args.plot, "--plot")
    ds = read(args.result)
    print(report(ds))
    if args.plot:
        plot(ds, args.plot)
        print(f"wrote {args.plot}")


def add_parser(sub: Any) -> None:
    p: Parser = sub.add_parser(
        "report", help="tables and a figure of a sweep's result",
        description="Print the tables of a sweep's NetCDF result (every point; accuracy mean "
        "± std over chips against each axis) and, with --plot, draw them.")
    p.add_argument("result", help="a sweep result, OUT/<spec name>.nc of `imssa sweep`")
    p.add_argument("--plot", default=None, help="also draw accuracy against each axis to this "
                   "image (png, pdf, svg, ...)")
    p.set_defaults(func=_report)
