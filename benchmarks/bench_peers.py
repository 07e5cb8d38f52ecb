"""Same-run peers: imssa against aihwkit-lightning on the GPU and against aihwkit on the CPU, each
pair on the same slice of the sMNIST crossbar job, in one process.

The job (``imssa.crossbar.library_peers.PeerJob``): ``s4d-64`` on PCM (aihwkit's PCMLikeNoiseModel
statistics, g_max 25 µS), 8-bit DACs and ADCs, a fresh read at every recurrent step, drifted to
one day. A slice is ``sequences`` x ``length`` steps x ``chips`` chips; both contenders of a
pair run the same input tensor. Weights are a fresh ``s4d-64`` (speed does not depend on them),
inputs uniform in [0, 1) like sMNIST pixels. Pairs:

GPU  imssa (``convert`` over all chips at once; the fused Triton recurrence when every part is
     analog) against aihwkit-lightning 2.1.0 (``PeerJob.lightning``: its ``AnalogLinear`` layers,
     8-bit DAC and ADC on imssa's calibrated ranges, its forward output noise per column group,
     encoder, B u, D u, mix and decoder over all steps at once, A s and C s stepped per time
     step as a user would write it; chips in a Python loop). ``--lightning-triton`` adds its
     Triton path (``AIHWKIT_USE_TRITON=1``; Triton 3.6 also needs
     ``TRITON_ALLOW_NON_CONSTEXPR_GLOBALS=1``, set here), timed over ``--triton-steps`` steps and
     extrapolated to the slice.
CPU  imssa (the step loop on the CPU) against aihwkit 1.2.0 (``PeerJob.aihwkit``: its C++ tiles,
     PCM programming, drift and a PCM read at every MVM), both at ``--threads`` torch threads.

Reported per row: setup (imssa: convert + calibrate + set_time; peers: build, and for aihwkit
programming and drift, per chip) and run seconds for the slice; per pair the ratios
peer / imssa of run and of setup + run. JSON to benchmarks/results/peers_<device>.json.

    PYTHONPATH=. python benchmarks/bench_peers.py                       # GPU host: both pairs
    PYTHONPATH=. python benchmarks/bench_peers.py --skip-gpu --threads 1   # the CPU pair only
    PYTHONPATH=. python benchmarks/bench_peers.py --quick                  # smoke run
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from bench_crossbar import LIBRARIES, device_slug, version
from torch import Tensor

from imssa.crossbar import calibrate, set_time
from imssa.crossbar.library_peers import LINEAR_LAYOUTS, PeerJob, analog_layers
from imssa.experiments.io import environment, write_json
from imssa.ssm import S4DModel, preset


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_imssa(job: PeerJob, model: S4DModel, u: Tensor, chips: int, batch: int,
              calibration: int) -> tuple[dict, dict[str, Tensor]]:
    """imssa on the slice: its row and its calibrated converter ranges (scalars, for the peers)."""
    device = u.device
    sync(device)
    t0 = time.perf_counter()
    xbar = job.imssa(model, chips)
    ranges = calibrate(xbar, u[:calibration])
    set_time(xbar, job.t_inference, torch.Generator(device=device).manual_seed(1))
    sync(device)
    setup = time.perf_counter() - t0
    with torch.no_grad():
        xbar(u[:2, :min(32, u.shape[1])], mode="recurrent")  # warm-up: kernels, allocator
        sync(device)
        t0 = time.perf_counter()
        for ub in u.split(batch):
            logits = xbar(ub, mode="recurrent")
        sync(device)
    run = time.perf_counter() - t0
    assert logits.shape == (chips, ub.shape[0], model.cfg.n_classes)
    row = {"implementation": "imssa", "device": str(device), "setup_s": setup, "run_s": run,
           "extrapolated": False}
    return row, {k: v for k, v in ranges.items() if v.numel() == 1}


def run_peer(peer: str, job: PeerJob, model: S4DModel, ranges: dict[str, Tensor], u: Tensor,
             chips: int, batch: int, layout: str, steps: int | None = None) -> dict:
    """A library peer on the slice, chips in a Python loop; ``steps`` < length times that many
    steps of every batch and extrapolates linearly to the slice's length."""
    device = u.device
    L = u.shape[1]
    steps = L if steps is None else min(steps, L)
    setup = run = 0.0
    for chip in range(chips):
        torch.manual_seed(100 + chip)  # both libraries draw from torch's global generator
        sync(device)
        t0 = time.perf_counter()
        net = (job.aihwkit(model, ranges, layout) if peer == "aihwkit"
               else job.lightning(model, ranges, layout))
        sync(device)
        setup += time.perf_counter() - t0
        with torch.no_grad():
            if chip == 0:
                net(u[:2, :2])  # warm-up (lightning's Triton path compiles here)
            sync(device)
            t0 = time.perf_counter()
            for ub in u.split(batch):
                logits = net(ub[:, :steps])
            sync(device)
        run += time.perf_counter() - t0
        assert logits.shape == (ub.shape[0], model.cfg.n_classes)
    triton = peer == "lightning" and bool(os.environ.get("AIHWKIT_USE_TRITON"))
    return {"implementation": peer + ("_triton" if triton else ""), "device": str(device),
            "layout": layout, "version": version(LIBRARIES[peer]),
            "analog_layers": len(analog_layers(net)), "timed_steps": steps,
            "setup_s": setup, "run_s": run * L / steps, "extrapolated": steps < L}


def pair(name: str, job: PeerJob, model: S4DModel, u: Tensor, args, peers: list[tuple]) -> dict:
    """imssa and its peers on one slice u; rows with their ratios to imssa."""
    base, ranges = run_imssa(job, model, u, args.chips, args.batch or u.shape[0],
                             args.calibration_sequences)
    rows = [base]
    print(f"[{name}] imssa: setup {base['setup_s']:.2f} s, run {base['run_s']:.2f} s", flush=True)
    for peer, layout, env, steps in peers:
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            row = run_peer(peer, job, model, ranges, u, args.chips, args.batch or u.shape[0],
                           layout, steps)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        row["run_over_imssa"] = row["run_s"] / base["run_s"]
        row["total_over_imssa"] = ((row["setup_s"] + row["run_s"])
                                   / (base["setup_s"] + base["run_s"]))
        rows.append(row)
        print(f"[{name}] {row['implementation']} {layout}: setup {row['setup_s']:.2f} s, run "
              f"{row['run_s']:.2f} s{'*' if row['extrapolated'] else ''} "
              f"({row['run_over_imssa']:.1f}x imssa)", flush=True)
    L, S = u.shape[1], u.shape[0]
    return {"pair": name, "slice": {"sequences": S, "length": L, "chips": args.chips,
                                    "batch": args.batch or S}, "rows": rows}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpu-sequences", type=int, default=1000)
    p.add_argument("--cpu-sequences", type=int, default=64)
    p.add_argument("--length", type=int, default=784)
    p.add_argument("--chips", type=int, default=1)
    p.add_argument("--batch", type=int, default=None, help="default: the whole slice at once")
    p.add_argument("--calibration-sequences", type=int, default=16)
    p.add_argument("--lightning-layout", default="blockdiag", choices=LINEAR_LAYOUTS,
                   help="lightning's layout of A: one block-diagonal layer, or one per channel")
    p.add_argument("--lightning-device", default="cuda", help="cpu: a smoke run of the GPU pair")
    p.add_argument("--aihwkit-layout", default="per_channel", choices=LINEAR_LAYOUTS,
                   help="aihwkit's layout of A (per_channel: 15x faster than blockdiag on a CPU)")
    p.add_argument("--lightning-triton", action="store_true",
                   help="also time lightning's Triton path (slow: ~0.27 s a step on an H200)")
    p.add_argument("--triton-steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    p.add_argument("--skip-gpu", action="store_true")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--quick", action="store_true", help="tiny slices: a smoke run")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.gpu_sequences, args.cpu_sequences, args.length = 8, 4, 16
        args.calibration_sequences, args.triton_steps = 2, 4
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    job = PeerJob()
    pairs, skipped = [], []
    plan = []
    gpu = torch.device(args.lightning_device)
    if args.skip_gpu or (gpu.type == "cuda" and not torch.cuda.is_available()):
        skipped.append("gpu pair: " + ("--skip-gpu" if args.skip_gpu else "no CUDA device"))
    elif version(LIBRARIES["lightning"]) is None:
        skipped.append("gpu pair: aihwkit-lightning is not installed")
    else:
        peers = [("lightning", args.lightning_layout, {}, None)]
        if args.lightning_triton:
            peers.append(("lightning", args.lightning_layout, {"AIHWKIT_USE_TRITON": "1",
                                                     "TRITON_ALLOW_NON_CONSTEXPR_GLOBALS": "1"},
                          args.triton_steps))
        plan.append(("gpu", gpu, args.gpu_sequences, peers))
    if args.skip_cpu:
        skipped.append("cpu pair: --skip-cpu")
    elif version(LIBRARIES["aihwkit"]) is None:
        skipped.append("cpu pair: aihwkit is not installed")
    else:
        plan.append(("cpu", torch.device("cpu"), args.cpu_sequences,
                     [("aihwkit", args.aihwkit_layout, {}, None)]))
    for why in skipped:
        print(why, file=sys.stderr)
    for name, device, sequences, peers in plan:
        torch.manual_seed(0)
        model = S4DModel(preset("s4d-64")).to(device).eval()
        u = torch.rand(sequences, args.length, model.cfg.d_input, device=device,
                       generator=torch.Generator(device=device).manual_seed(2))
        pairs.append(pair(name, job, model, u, args, peers))

    print(f"\ns4d-64 on PCM, {job.dac_bits}-bit DAC/ADC, a read every step; "
          f"{torch.get_num_threads()} CPU threads; * = extrapolated from fewer steps")
    print(f"{'pair':<5}{'slice (seq x steps x chips)':<29}{'implementation':<18}{'setup s':>9}"
          f"{'run s':>10}{'run / imssa':>13}{'total / imssa':>15}")
    ratios = {}
    for pr in pairs:
        sl = pr["slice"]
        text = f"{sl['sequences']} x {sl['length']} x {sl['chips']}"
        for r in pr["rows"]:
            mark = "*" if r["extrapolated"] else " "
            run_ratio = f"{r['run_over_imssa']:.1f}x" if "run_over_imssa" in r else "1.0x"
            tot_ratio = f"{r['total_over_imssa']:.1f}x" if "total_over_imssa" in r else "1.0x"
            print(f"{pr['pair']:<5}{text:<29}{r['implementation']:<18}{r['setup_s']:>9.2f}"
                  f"{r['run_s']:>9.2f}{mark}{run_ratio:>13}{tot_ratio:>15}")
            if "run_over_imssa" in r:
                ratios[f"{r['implementation']}_over_imssa_{pr['pair']}"] = {
                    "run": r["run_over_imssa"], "total": r["total_over_imssa"]}
    device = plan[0][1] if plan else torch.device("cpu")
    env = environment(device)
    result = {"benchmark": "same_run_peers", "job": {
                  "model": "s4d-64", "device_model": "PCM (PCMLikeNoiseModel statistics)",
                  "g_max_uS": job.g_max, "dac_bits": job.dac_bits, "adc_bits": job.adc_bits,
                  "read_noise": "a fresh read every recurrent step (lightning: output noise "
                  f"{job.lightning_out_noise} x ADC range per column group instead)",
                  "t_inference_s": job.t_inference},
              "pairs": pairs, "ratios": ratios, "skipped": skipped, "quick": args.quick,
              "versions": {d: version(d) for d in ("torch", "triton", *LIBRARIES.values())},
              "cpu_threads": torch.get_num_threads(),
              "command": "python " + shlex.join(sys.argv), **env}
    slug = device_slug(env["device_name"]) or "cpu"
    out = args.out or Path("benchmarks/results") / (
        f"peers_{slug}{'_quick' if args.quick else ''}.json")
    write_json(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
