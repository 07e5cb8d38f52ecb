"""Recurrent-mode QAT speed: seconds per sMNIST epoch of ``s4d-64`` W4A6 (A_bar, x at 8 bits),
imssa's fused scan against the plain per-step PyTorch loop, in the same run.

Each step is a full QAT update (fake-quantized recurrent forward over 784 steps, backward
through every step, AdamW). An epoch is 54,000 training sequences; its time is extrapolated
from the measured steps, since the plain loop would take many minutes per epoch.

    PYTHONPATH=. python benchmarks/bench_qat.py --batch-size 64 128
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from imssa.experiments.io import environment, write_json
from imssa.quant import calibrate, make_config, prepare
from imssa.ssm import S4DModel, preset

TRAIN_SEQUENCES = 54_000


def seconds_per_step(batch: int, backend: str, steps: int, device: torch.device) -> float:
    os.environ["IMSSA_SCAN"] = backend
    torch.manual_seed(0)
    qmodel = prepare(S4DModel(preset("s4d-64")).to(device),
                     make_config("W4A6", a_bits=8, x_bits=8, a_bar_form="polar",
                                 overrides={"x": {"granularity": "mode"}}))
    u = torch.randn(batch, 784, 1, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    calibrate(qmodel, [u])
    opt = torch.optim.AdamW(qmodel.parameters(), lr=1e-3)
    qmodel.train()

    def step():
        loss = F.cross_entropy(qmodel(u, mode="recurrent"), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up: compilation, allocator
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[64, 128])
    p.add_argument("--steps", type=int, default=20, help="timed steps of the fused scan")
    p.add_argument("--reference-steps", type=int, default=3, help="timed steps of the plain loop")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for batch in args.batch_size:
        fused = seconds_per_step(batch, "auto", args.steps, device)
        plain = seconds_per_step(batch, "reference", args.reference_steps, device)
        epoch_steps = -(-TRAIN_SEQUENCES // batch)
        rows.append({"batch_size": batch, "imssa_s_per_step": fused, "plain_s_per_step": plain,
                     "imssa_s_per_epoch": fused * epoch_steps,
                     "plain_s_per_epoch": plain * epoch_steps, "speedup": plain / fused})
    print(f"\ns4d-64 W4A6 (A_bar, x 8 bits) recurrent QAT on {device}; epoch = {TRAIN_SEQUENCES} seq")
    print(f"{'batch':>6}{'imssa s/epoch':>15}{'plain loop s/epoch':>20}{'speed-up':>10}")
    for r in rows:
        print(f"{r['batch_size']:>6}{r['imssa_s_per_epoch']:>15.1f}{r['plain_s_per_epoch']:>20.1f}"
              f"{r['speedup']:>10.1f}")
    env = environment(device)
    slug = env["device_name"].replace(" ", "_").replace("/", "_")
    write_json({"benchmark": "qat_epoch", "rows": rows, "command": "python " + shlex.join(sys.argv),
                **env}, Path(args.out) / f"qat_s4d-64_{slug}.json")


if __name__ == "__main__":
    main()
