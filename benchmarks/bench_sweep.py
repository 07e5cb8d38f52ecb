"""Throughput of ``imssa sweep``: a simulate grid on Dask against the same points one after
another in one process, with the GPU's utilization during each (issue 10's performance section).

The grid is one model (trained once here, or a given run) on ``--points`` simulations that differ
by their seed. Reported:

- ``points_per_s_serial``: points one after another in this process, timed on
  ``--serial-points`` points after one untimed warm-up point (CUDA context, Triton compilation,
  data caches: ``serial_warmup_s``), so the baseline is a warm process;
- ``points_per_s_dask``: all ``--points`` on the cluster, from submission to the last result
  (every worker's own warm-up included; the cluster's start, ``cluster_startup_s``, is not:
  ``points_per_s_dask_with_startup`` includes it); ``speedup`` is the ratio to the serial rate;
- ``scheduling_overhead``: the share of the workers' time not spent inside point tasks,
  1 - (sum of task seconds) / (workers x wall seconds); issue 10's target is under 5 % at >= 100
  points;
- where ``nvidia-smi`` exists, the GPUs' utilization (``utilization.gpu``: the share of the
  driver's sample period in which a kernel ran) sampled every ``--sample-ms`` during the serial
  points and during the sweep: ``gpu_serial`` and ``gpu_dask`` hold the mean over the samples and
  GPUs, the share of samples at >= 50 %, the samples taken and the most memory used (MiB).

    PYTHONPATH=$PWD python benchmarks/bench_sweep.py --points 24 --workers 2      # CPU, small
    PYTHONPATH=$PWD python benchmarks/bench_sweep.py --points 200 --serial-points 6 \\
        --workers-per-gpu 12 --run results/foundation/fsdd-s4d-64-seed0 --data-dir .data \\
        --chips 10 --limit 300                                        # the 16-core GPU host

(``PYTHONPATH``: the Dask workers import imssa from this checkout too.)
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from imssa.experiments.io import environment, write_json
from imssa.sweep import parse_spec
from imssa.sweep.cluster import connect, dashboard, visible_gpus
from imssa.sweep.run import Paths, execute, plan
from imssa.sweep.tasks import point_task, train_task

#: A sample counts as busy at this utilization.gpu (%) or above.
BUSY_PCT = 50.0


class GpuSampler:
    """``nvidia-smi``'s utilization.gpu (%) and memory.used (MiB) of ``gpus`` every
    ``interval_ms``, read by a background thread into ``samples`` (perf_counter time, GPU, %,
    MiB); a no-op where nvidia-smi is missing or there are no GPUs."""

    def __init__(self, gpus: list[str], interval_ms: int = 200) -> None:
        self.samples: list[tuple[float, str, float, float]] = []
        exe = shutil.which("nvidia-smi")
        self.command = None if exe is None or not gpus else [
            exe, "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
            "-i", ",".join(gpus), "-lms", str(interval_ms)]
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if self.command is not None:
            self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((time.perf_counter(), parts[0], float(parts[1]),
                                     float(parts[2])))
            except (IndexError, ValueError):  # "[N/A]" or a message line
                continue

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def window(self, t0: float, t1: float) -> dict[str, Any] | None:
        """Mean utilization (%), share of busy samples, sample count and peak memory over the
        samples taken in [t0, t1] (all GPUs together); None without samples."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if not inside:
            return None
        util = [s[2] for s in inside]
        return {"util_mean_pct": sum(util) / len(util),
                "busy_fraction": sum(u >= BUSY_PCT for u in util) / len(util),
                "samples": len(inside), "gpus": sorted({s[1] for s in inside}),
                "memory_max_mib": max(s[3] for s in inside)}


def spec_text(args: argparse.Namespace) -> str:
    train = f'run = "{args.run}"' if args.run else (
        f'task = "{args.task}"\nmodel = "{args.model}"\nepochs = {args.epochs}\n'
        f'limit = {args.train_limit}')
    data = f'data_dir = "{args.data_dir}"\n' if args.data_dir else ""
    return (f'name = "bench"\n[train]\n{train}\n[simulate]\nt_inference = "{args.t_inference}"\n'
            f"chips = {args.chips}\nlimit = {args.limit}\n{data}"
            f'[simulate.memristor]\nkind = "{args.memristor}"\n'
            f'[axes]\n"simulate.seed" = {list(range(args.points))}\n')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=24)
    p.add_argument("--serial-points", type=int, default=8,
                   help="points timed one after another, after one untimed warm-up point "
                   "(their rate stands for all)")
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
    p.add_argument("--sample-ms", type=int, default=200, help="nvidia-smi's sampling interval")
    p.add_argument("--out", default=None, help="folder (default: a temporary one)")
    p.add_argument("--results", default="benchmarks/results")
    args = p.parse_args(argv)
    if min(args.points, args.serial_points, args.workers_per_gpu, args.sample_ms) < 1:
        p.error("--points, --serial-points, --workers-per-gpu and --sample-ms must be >= 1")
    if args.serial_points + 1 > args.points:
        p.error("--serial-points + 1 (the warm-up) must not exceed --points")
    return args


def _serial(spec: Any, trained: dict, root: Path, n: int) -> tuple[float, float, float, float]:
    """The first point untimed (warm-up), then ``n`` more one after another in this process:
    (warm-up seconds, start and end of the timed points, their rate in points per second)."""
    def run(k: int) -> None:
        config = spec.points[k].config
        point_task(config, trained, None, config.point_key(), str(root / "serial" / f"{k}.json"),
                   str(root / "serial" / "log"), 1)

    t0 = time.perf_counter()
    run(0)
    t1 = time.perf_counter()
    for k in range(1, n + 1):
        run(k)
    t2 = time.perf_counter()
    return t1 - t0, t1, t2, n / (t2 - t1)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    spec = parse_spec(spec_text(args), "bench")
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_sweep_"))
    paths = Paths(root / "dask")
    first = spec.points[0].config
    trained = train_task(first, str(paths.train(first.train_key())),
                         str(paths.log("train", first.train_key())), 1)
    gpus = visible_gpus()
    with GpuSampler(gpus, args.sample_ms) as sampler:
        warmup, s0, s1, serial_rate = _serial(spec, trained, root, args.serial_points)
        print(f"serial: warm-up point {warmup:.1f} s, then {serial_rate:.3f} points/s")
        t0 = time.perf_counter()
        with connect(workers=args.workers, workers_per_gpu=args.workers_per_gpu) as client:
            client.wait_for_workers(1)
            workers = len(client.scheduler_info()["workers"])
            startup = time.perf_counter() - t0
            print(f"{workers} workers in {startup:.1f} s; dashboard: {dashboard(client)}")
            work = plan(spec, paths.root)
            d0 = time.perf_counter()
            done, failed = execute(spec, work, paths.root, client)
            d1 = time.perf_counter()
    wall = d1 - d0
    files = [paths.point(k) for k in work.pending if paths.point(k).is_file()]
    busy = sum(json.loads(f.read_text())["task_seconds"] for f in files)
    device = json.loads(files[0].read_text()).get("device", "cpu") if files else "cpu"
    result = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "points": len(work.pending), "failed": failed, "workers": workers,
        "workers_per_gpu": args.workers_per_gpu if gpus else None, "gpus": len(gpus),
        "cluster_startup_s": startup, "sweep_wall_s": wall,
        "serial_points": args.serial_points, "serial_warmup_s": warmup,
        "points_per_s_serial": serial_rate, "points_per_s_dask": done / wall,
        "points_per_s_dask_with_startup": done / (wall + startup),
        "speedup": done / wall / serial_rate,
        "scheduling_overhead": 1 - busy / (workers * wall),
        "gpu_serial": sampler.window(s0, s1), "gpu_dask": sampler.window(d0, d1),
        "gpu_sampler": sampler.command and " ".join(sampler.command),
        "spec": spec.text, **{f"env_{k}": v for k, v in environment(device).items()},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "spec"}, indent=2))
    name = result["env_device_name"].replace(" ", "_").lower()
    per_gpu = f"_{args.workers_per_gpu}wpg" if gpus else ""
    write_json(result, Path(args.results) / f"sweep_{name}_{len(work.pending)}pt{per_gpu}.json")
    return result


if __name__ == "__main__":
    main()
