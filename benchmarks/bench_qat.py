"""Recurrent-mode QAT speed: seconds per sMNIST epoch of ``s4d-64`` W4A6 (A_bar, x at 8 bits), in
the same run:

- ``old``: the eager update with torch's fake-quantizer ops (``IMSSA_FAKE_QUANT=reference``), the
  path of imssa before the fused quantizers and the graph;
- ``eager``: the eager update with the fused Triton fake quantizers;
- ``graphed``: that update replayed from a CUDA graph (``imssa.quant.TrainStep``), the new path;
- ``plain`` (``--reference-steps`` > 0): the plain per-step PyTorch loop (``IMSSA_SCAN=reference``).

Each update is a full QAT step: fake-quantized recurrent forward over L steps (the fused Triton
scan on CUDA), backward through every step, AdamW (fused and capturable on every path). An epoch
is 54,000 training sequences; by default its time is extrapolated from the median update,
``--full-epoch`` also times one real epoch of each path but ``plain`` on sMNIST-shaped random data
(shuffled batches drawn by index on the device, as ``imssa quantize qat`` does; the last, partial
batch runs eagerly). All paths start from the same model and batch, and the run reports how far
their parameters are apart after the same updates (0 when the replay and the fused quantizers
compute what the old path computes). On a CPU all paths but ``plain`` are the eager update.

    PYTHONPATH=. python benchmarks/bench_qat.py --batch-size 64 --full-epoch      # GPU
    PYTHONPATH=. python benchmarks/bench_qat.py --batch-size 8 --length 32 --steps 3   # CPU, small
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from imssa.experiments.io import environment, write_json
from imssa.quant import TrainStep, calibrate, make_config, prepare
from imssa.ssm import S4DModel, preset

TRAIN_SEQUENCES = 54_000
PATHS = ("old", "eager", "graphed", "plain")  # the module docstring says what each is


def build(batch: int, length: int, path: str, device: torch.device):
    """A fresh calibrated QAT model (seed 0), its update and one batch."""
    os.environ["IMSSA_SCAN"] = "reference" if path == "plain" else "auto"
    os.environ["IMSSA_FAKE_QUANT"] = "reference" if path in ("old", "plain") else "auto"
    torch.manual_seed(0)
    model = prepare(S4DModel(preset("s4d-64")).to(device),
                    make_config("W4A6", a_bits=8, x_bits=8, a_bar_form="polar",
                                overrides={"x": {"granularity": "mode"}}))
    u = torch.randn(batch, length, 1, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    calibrate(model, [u])
    cuda = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-3, device=device) if cuda
                            else 1e-3, fused=cuda, capturable=cuda)
    model.train()
    step = TrainStep(model, lambda v: model(v, mode="recurrent"), opt,
                     graph=path == "graphed" and cuda)
    return model, step, u, y


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_path(batch: int, length: int, path: str, steps: int, full_epoch: bool,
              device: torch.device) -> dict:
    model, step, u, y = build(batch, length, path, device)
    sync(device)
    t0 = time.perf_counter()
    step(u, y)  # compiles the Triton kernels; records the graph on the graphed path
    sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(u, y)
        sync(device)
        times.append(time.perf_counter() - t0)
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).cpu()
    row = {"path": path, "batch_size": batch, "first_update_s": first,
           "s_per_update": statistics.median(times),
           "epoch_s_extrapolated": statistics.median(times) * math.ceil(TRAIN_SEQUENCES / batch)}
    if full_epoch:
        row["epoch_s_measured"] = one_epoch(step, batch, length, device)
    return row | {"_params": params}


def one_epoch(step: TrainStep, batch: int, length: int, device: torch.device) -> float:
    """Seconds of one epoch of TRAIN_SEQUENCES random sMNIST-shaped sequences."""
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.rand(TRAIN_SEQUENCES, length, 1, device=device, generator=g)
    labels = torch.randint(0, 10, (TRAIN_SEQUENCES,), device=device, generator=g)
    order = torch.randperm(TRAIN_SEQUENCES, device=device, generator=g)
    total = torch.zeros((), device=device)
    sync(device)
    t0 = time.perf_counter()
    for k in range(math.ceil(TRAIN_SEQUENCES / batch)):
        idx = order[k * batch:(k + 1) * batch]
        total += step(x[idx], labels[idx]) * len(idx)
    sync(device)
    return time.perf_counter() - t0


def ratio(got: dict, key: str, a: str, b: str) -> float | None:
    """Epoch time of path a over path b (None where either failed)."""
    return got[a][key] / got[b][key] if key in got[a] and key in got[b] else None


def diff(params: dict, a: str, b: str) -> float | None:
    """Largest parameter difference of paths a and b after the same updates."""
    if params.get(a) is None or params.get(b) is None:
        return None
    return float((params[a] - params[b]).abs().max())


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[64])
    p.add_argument("--length", type=int, default=784, help="sequence length L (784: sMNIST)")
    p.add_argument("--steps", type=int, default=20, help="timed updates of the eager and graphed "
                   "paths")
    p.add_argument("--reference-steps", type=int, default=0,
                   help="timed updates of the plain per-step loop (0: skip it; ~1 s each on a GPU)")
    p.add_argument("--full-epoch", action="store_true", help="also time one real epoch per path "
                   "(not the plain loop)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for batch in args.batch_size:
        plan = [(path, args.steps, args.full_epoch) for path in PATHS[:3]]
        if args.reference_steps > 0:
            plan.append(("plain", args.reference_steps, False))
        got, params = {}, {}
        for path, steps, full in plan:
            try:  # a failing path (e.g. a graph that cannot be recorded) leaves the others' rows
                got[path] = time_path(batch, args.length, path, steps, full, device)
            except Exception as err:  # noqa: BLE001  (reported in the table and the JSON)
                traceback.print_exc()
                got[path] = {"path": path, "error": f"{type(err).__name__}: {err}"}
            params[path] = got[path].pop("_params", None)
        key = "epoch_s_measured" if args.full_epoch else "epoch_s_extrapolated"
        rows.append({"batch_size": batch, "paths": got, "epoch_key": key,
                     "speedup_graphed_over_old": ratio(got, key, "old", "graphed"),
                     "speedup_graphed_over_eager": ratio(got, key, "eager", "graphed"),
                     "max_param_diff_eager_vs_graphed": diff(params, "eager", "graphed"),
                     "max_param_diff_old_vs_eager": diff(params, "old", "eager"),
                     "graph_used": device.type == "cuda"})
    print(f"\ns4d-64 W4A6 (A_bar, x 8 bits) recurrent QAT on {device}, L = {args.length}; "
          f"epoch = {TRAIN_SEQUENCES} sequences")
    print(f"{'batch':>6}{'path':>9}{'s/update':>10}{'epoch s (extrap.)':>19}"
          f"{'epoch s (measured)':>20}")
    for r in rows:
        for path, t in r["paths"].items():
            if "error" in t:
                print(f"{r['batch_size']:>6}{path:>9}  failed: {t['error']}")
                continue
            measured = f"{t['epoch_s_measured']:.2f}" if "epoch_s_measured" in t else "-"
            print(f"{r['batch_size']:>6}{path:>9}{t['s_per_update'] * 1e3:>8.2f}ms"
                  f"{t['epoch_s_extrapolated']:>19.2f}{measured:>20}")
        def fmt(x: float | None, spec: str) -> str:
            return "n/a" if x is None else format(x, spec)

        print(f"{'':>6} speed-up of graphed over old {fmt(r['speedup_graphed_over_old'], '.2f')}x, "
              f"over eager {fmt(r['speedup_graphed_over_eager'], '.2f')}x ({r['epoch_key']}); max "
              f"|parameter difference| after the same updates: eager vs graphed "
              f"{fmt(r['max_param_diff_eager_vs_graphed'], '.3g')}, old vs eager "
              f"{fmt(r['max_param_diff_old_vs_eager'], '.3g')}")
    env = environment(device)
    slug = env["device_name"].replace(" ", "_").replace("/", "_") or "cpu"
    write_json({"benchmark": "qat_epoch", "model": "s4d-64", "quant": "W4A6, A_bar and x 8 bit, "
                "polar A_bar, x per mode", "length": args.length, "rows": rows,
                "triton": triton_version(), "command": "python " + shlex.join(sys.argv), **env},
               Path(args.out) / f"qat_s4d-64_{slug}.json")


if __name__ == "__main__":
    main()
