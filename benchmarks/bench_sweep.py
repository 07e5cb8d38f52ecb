"""Scheduling overhead of ``imssa sweep``: a simulate grid on Dask against the same points one
after another in one process.

The grid is one model (trained once here, or a given run) on ``--points`` simulations that differ
by their seed. Reported: points per second one after another (timed on the first
``--serial-points``) and on the cluster (after it started), the speed-up, and the scheduling
overhead: the share of the workers' time not spent inside point tasks (1 - sum of task seconds /
(workers x wall seconds)); issue 10's target is under 5 % at >= 100 points.

    python benchmarks/bench_sweep.py --points 24 --workers 2                      # CPU, small
    python benchmarks/bench_sweep.py --points 256 --workers-per-gpu 2 --task smnist \\
        --run results/foundation/smnist-s4d-64-seed0 --chips 10 --limit 1000 \\
        --data-dir ../shared/data                                                # a GPU host
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from imssa.experiments.io import environment, write_json
from imssa.sweep import parse_spec
from imssa.sweep.cluster import connect, dashboard
from imssa.sweep.run import Paths, execute, plan
from imssa.sweep.tasks import point_task, train_task


def spec_text(args: argparse.Namespace) -> str:
    train = f'run = "{args.run}"' if args.run else (
        f'task = "{args.task}"\nmodel = "{args.model}"\nepochs = {args.epochs}\n'
        f'limit = {args.train_limit}')
    data = f'data_dir = "{args.data_dir}"\n' if args.data_dir else ""
    return (f'name = "bench"\n[train]\n{train}\n[simulate]\nt_inference = "{args.t_inference}"\n'
            f"chips = {args.chips}\nlimit = {args.limit}\n{data}"
            f'[simulate.memristor]\nkind = "{args.memristor}"\n'
            f'[axes]\n"simulate.seed" = {list(range(args.points))}\n')


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=24)
    p.add_argument("--serial-points", type=int, default=8,
                   help="points timed one after another (their rate stands for all)")
    p.add_argument("--workers", type=int, default=None, help="CPU workers (default: cores)")
    p.add_argument("--workers-per-gpu", type=int, default=1)
    p.add_argument("--run", default=None, help="a finished run to simulate (default: train one)")
    p.add_argument("--task", default="sdigits")
    p.add_argument("--model", default="s4d-16")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-limit", type=int, default=200)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--memristor", default="pcm")
    p.add_argument("--t-inference", default="1s,1d")
    p.add_argument("--chips", type=int, default=4)
    p.add_argument("--limit", type=int, default=64, help="test samples per point")
    p.add_argument("--out", default=None, help="folder (default: a temporary one)")
    p.add_argument("--results", default="benchmarks/results")
    args = p.parse_args(argv)

    spec = parse_spec(spec_text(args), "bench")
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_sweep_"))
    paths = Paths(root / "dask")
    first = spec.points[0].config
    trained = train_task(first, str(paths.train(first.train_key())),
                         str(paths.log("train", first.train_key())), 1)

    serial = spec.points[:args.serial_points]
    t0 = time.perf_counter()
    for n, point in enumerate(serial):
        point_task(point.config, trained, None, point.config.point_key(),
                   str(root / "serial" / f"{n}.json"), str(root / "serial" / "log"), 1)
    serial_rate = len(serial) / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    with connect(workers=args.workers, workers_per_gpu=args.workers_per_gpu) as client:
        client.wait_for_workers(1)
        workers = len(client.scheduler_info()["workers"])
        startup = time.perf_counter() - t0
        print(f"{workers} workers in {startup:.1f} s; dashboard: {dashboard(client)}")
        work = plan(spec, paths.root)
        t0 = time.perf_counter()
        done, failed = execute(spec, work, paths.root, client)
        wall = time.perf_counter() - t0
    busy = sum(json.loads(paths.point(k).read_text())["task_seconds"] for k in work.pending)
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "points": len(work.pending), "failed": failed, "workers": workers,
        "cluster_startup_s": startup, "sweep_wall_s": wall,
        "points_per_s_serial": serial_rate, "points_per_s_dask": done / wall,
        "speedup": done / wall / serial_rate,
        "scheduling_overhead": 1 - busy / (workers * wall),
        "spec": spec.text, **{f"env_{k}": v for k, v in environment(
            json.loads(paths.point(first.point_key()).read_text()).get("device", "cpu")).items()},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "spec"}, indent=2))
    name = result["env_device_name"].replace(" ", "_").lower()
    write_json(result, Path(args.results) / f"sweep_{name}_{len(work.pending)}pt.json")
    return result


if __name__ == "__main__":
    main()
