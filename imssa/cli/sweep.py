"""``imssa sweep SPEC.toml --out DIR``: a sweep of :mod:`imssa.sweep` on Dask distributed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from imssa.cli.common import Parser, positive_int


def _sweep(args: argparse.Namespace) -> None:
    from imssa.sweep import load_spec, sweep
    from imssa.sweep.run import describe, plan

    spec = load_spec(args.spec)  # the whole spec is checked before any work
    if args.dry_run:
        print(describe(spec, plan(spec, args.out), args.out))
        return
    _, failed = sweep(spec, args.out, scheduler=args.scheduler, threads=args.task_threads,
                      **({} if args.scheduler else {"workers": args.workers,
                                                    "workers_per_gpu": args.workers_per_gpu}))
    if failed:
        print(f"imssa sweep: {failed} points failed (their errors are in {args.out}/points/"
              "*.error.json and the Dataset's `error`); rerun the same command to retry them",
              file=sys.stderr)
        raise SystemExit(1)


def add_parser(sub: Any) -> None:
    p: Parser = sub.add_parser(
        "sweep", help="run a grid of train -> quantize -> simulate points on Dask",
        description="Run the grid of a sweep spec (TOML: base configs of every stage, product "
        "and zip axes over any of their fields; see sweeps/demo.toml) on a Dask cluster: one "
        "training per unique training config, one quantization per unique quantization, one "
        "task per point. Finished work in --out is reused, failed points are recorded and "
        "retried by a rerun. Writes OUT/<spec name>.nc, one xarray Dataset of every point.")
    p.add_argument("spec", help="the sweep spec, a TOML file")
    p.add_argument("--out", required=True, help="sweep folder (trainings, points, logs, result)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the spec, list the points and the work they need, run nothing")
    g = p.add_argument_group("cluster")
    g.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="join a running Dask cluster (tcp://host:8786); default: a LocalCluster "
                   "on this machine")
    g.add_argument("--workers", type=positive_int, default=None,
                   help="LocalCluster worker processes without GPUs (default: one per core)")
    g.add_argument("--workers-per-gpu", type=positive_int, default=1,
                   help="LocalCluster workers per GPU, each pinned by CUDA_VISIBLE_DEVICES "
                   "(several points share a GPU; default %(default)s)")
    g.add_argument("--task-threads", type=positive_int, default=1,
                   help="torch CPU threads of each task (default %(default)s)")
    p.aliases.update(workers_per_gpu="--workers-per-gpu", scheduler="--scheduler")
    p.set_defaults(func=_sweep, interrupted="interrupted; every finished training, quantization "
                   "and point is kept in --out: rerun the same command to continue from them")
