"""``imssa demo``: the whole pipeline on the embedded dataset, in minutes on a CPU."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from imssa.cli.common import add_threads
from imssa.experiments.demo import run_demo
from imssa.experiments.train import check_device_name


def _demo(args: argparse.Namespace) -> None:
    check_device_name(args.device, "device")
    run_demo(Path(args.out), device=args.device)


def add_parser(sub: Any) -> None:
    defaults = inspect.signature(run_demo).parameters
    p = sub.add_parser("demo", help="the whole pipeline on the embedded dataset, in minutes on a "
                       "CPU", description="Train, evaluate, quantize, map and simulate an s4d-16 "
                       "on sdigits on PCM chips, all analog and with A_bar digital, beside the "
                       "all-analog recipe (a noise-aware real-mode S4D in the increment form); "
                       "the trained run is OUT/train, results and figure in OUT.")
    p.add_argument("--out", default=str(defaults["out"].default),
                   help="output folder, replaced if it holds an earlier demo (default: %(default)s)")
    p.add_argument("--device", default=defaults["device"].default,
                   help="torch device: cpu, cuda, cuda:N or auto (default: %(default)s)")
    add_threads(p)
    p.set_defaults(func=_demo)
