"""Crossbar inference speed: the sMNIST test set through s4d-64 on PCM crossbars, many chips,
read noise at every step -- imssa against its peers (imssa.crossbar.peers, library_peers), same run.

The job (the project's target): 10,000 test sequences x 784 steps x 10 chip instances, PCM
(aihwkit's PCMLikeNoiseModel statistics), 8-bit DACs and ADCs, a fresh read of every device at
every recurrent step, drifted to ``--t-inference``. Weights are random (a fresh s4d-64); speed
does not depend on them. The peers are the tested implementations of ``imssa.crossbar.peers``
(tests/test_peers.py: on ideal devices and converters each equals imssa's model to 1e-6 in
float32; the plain loop equals it bit for bit with 8-bit converters). Contenders:

imssa          ``imssa.crossbar.convert`` over all chips at once (chips x batch vectorized, per-sensed-output
               read noise), the SSM mapped with ``--encoding`` (default "differential": the
               pairs the peers use), timed on ``--sequences`` sequences; extrapolated linearly
               to the full job where fewer sequences, chips or steps were run.
plain_pytorch  ``PlainLoop``: chips in a Python loop, every time step every layer a
               matrix-vector product with freshly read weights, imssa's converters on imssa's
               calibrated ranges. Variants layout:noise (``--plain-variants``): layouts "blocks"
               (A as 2x2 blocks per mode) and "dense" (A the (H N x H N) block-diagonal
               matrix); noise "shared" (one read per step for the batch, the literal naive form)
               and "per_sequence" (a read per sequence and step: independent inferences, the
               statistics imssa simulates). Timed over ``--plain-steps`` steps.
aihwkit        ``aihwkit_s4d`` (aihwkit 1.2.0 ``AnalogLinear``; PCMLikeNoiseModel programming,
               drift and 1/f read, a PCM read at every MVM, 8-bit DAC on imssa's ranges, 8-bit
               ADC on aihwkit's bound), programmed and drifted once per chip, on the CPU; A s
               and C s stepped per time step, the rest over all steps at once. Layouts of A
               (``--aihwkit-layouts``): "blockdiag" and "per_channel". Timed over
               ``--aihwkit-steps`` steps of one chip per batch size in ``--aihwkit-batch``.
lightning      ``lightning_s4d`` (aihwkit-lightning 2.1.0 ``AnalogLinear`` on ``--device``; its
               forward output noise ``--lightning-out-noise`` x the ADC range per column group,
               8-bit DAC and ADC on imssa's ranges), stepped like aihwkit. Timed over
               ``--lightning-steps`` steps at ``--lightning-batch``. Its Triton path is used
               when ``AIHWKIT_USE_TRITON=1`` (recorded).

Variant rows (``--variants``): imssa on other configurations, the fused kernel against the step
loop (``IMSSA_CROSSBAR_SCAN=torch``, timed on ``--variant-loop-sequences``): the real
increment-form model ``s4d-real-64x4`` (A_bar - 1 on the array, one scale per mode) and
``s4d-64`` with A_bar kept digital; ``s4d-64:previous-kernel`` and ``s4d-64:current-kernel`` are
the main row's model on the kernel before its cheaper normals and converters (the default) and on
the opt-in kernel with them (``IMSSA_CROSSBAR_KERNEL=previous`` / ``current``; fused only), for a
before/after ratio in one run. The main row runs the default kernel.

Reported: seconds for the full 10,000 x 784 x 10-chip job (setup = programming / calibration,
plus run), extrapolated where marked, and the ratio to imssa; the JSON keeps every raw timing,
the device, library versions, date and command.

    python benchmarks/bench_crossbar.py                                # GPU: the full job
    python benchmarks/bench_crossbar.py --device cpu --sequences 64 --chips 2 --batch-size 64
    python benchmarks/bench_crossbar.py --quick                        # CPU smoke run
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from imssa.crossbar import PeripheryConfig, calibrate, convert, set_time
from imssa.crossbar.library_peers import LINEAR_LAYOUTS, analog_layers
from imssa.crossbar.peers import PlainLoop
from imssa.devices import PCMConfig, PCMDevice
from imssa.experiments.io import environment, write_json
from imssa.mapping import MappingConfig
from imssa.ssm import S4DModel, preset

FULL_SEQUENCES = 10_000  # the sMNIST test set
FULL_LENGTH = 784
FULL_CHIPS = 10
G_MAX = 25.0  # µS, imssa's MappingConfig and aihwkit's PCMLikeNoiseModel default
DAC_BITS = ADC_BITS = 8
TARGET_S = 60.0  # the project's goal for the full job on one H100/H200
PLAIN_VARIANTS = ("blocks:shared", "blocks:per_sequence", "dense:shared", "dense:per_sequence")
LIBRARIES = {"aihwkit": "aihwkit", "lightning": "aihwkit-lightning"}  # row -> distribution
#: imssa on other configurations, fused against the loop: name -> (preset, mapping fields, digital
#: [, IMSSA_CROSSBAR_KERNEL: then the fused kernel only])
VARIANTS = {
    "s4d-real-64x4:increment": ("s4d-real-64x4", {"transition": "increment",
                                                  "transition_scale": "mode"}, ()),
    "s4d-64:digital-A": ("s4d-64", {}, ("A",)),
    "s4d-64:previous-kernel": ("s4d-64", {}, (), "previous"),
    "s4d-64:current-kernel": ("s4d-64", {}, (), "current"),
}


# --- helpers -------------------------------------------------------------------------------------
def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def make_sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def build_model(name: str, device: torch.device) -> S4DModel:
    torch.manual_seed(0)
    return S4DModel(preset(name)).to(device).eval()


def periphery() -> PeripheryConfig:
    return PeripheryConfig(dac_bits=DAC_BITS, adc_bits=ADC_BITS, read_noise_mode="per_step")


def pcm() -> PCMDevice:
    return PCMDevice(PCMConfig(g_max=G_MAX, read_noise_mode="per_step"))


def full_job(per_batch_s: float, batch: int, setup_per_chip_s: float, build_s: float = 0.0) -> dict:
    """Seconds for the 10-chip job from one chip's time per batch of 784 steps."""
    run = FULL_CHIPS * math.ceil(FULL_SEQUENCES / batch) * per_batch_s
    setup = FULL_CHIPS * setup_per_chip_s + build_s
    return {"full_setup_s": setup, "full_run_s": run, "full_total_s": setup + run}


# --- imssa ---------------------------------------------------------------------------------------
def run_imssa(model: S4DModel, u: Tensor, args, device: torch.device,
              mapping: dict | None = None, digital: tuple[str, ...] = ()
              ) -> tuple[dict, dict[str, Tensor]]:
    """imssa's converted model over all chips at once; its row and its calibrated ranges.
    ``mapping``: MappingConfig fields beside the window and encoding; ``digital``: parts kept
    digital."""
    sync = make_sync(device)
    sync()
    t0 = time.perf_counter()
    xbar = convert(model, MappingConfig(g_max=G_MAX, encoding=args.encoding, **(mapping or {})),
                   pcm(), periphery(), chips=args.chips, seed=0, digital=digital)
    sync()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranges = calibrate(xbar, u[:args.calibration_sequences])
    sync()
    t_cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    set_time(xbar, args.t_inference, torch.Generator(device=device).manual_seed(1))
    sync()
    t_time = time.perf_counter() - t0
    # Warm-up (allocator, kernels) at the batch's size: the fused kernel's specialization
    # depends on it (BLOCK_B), so a smaller warm-up left its compilation in the first timed batch.
    t0 = time.perf_counter()
    xbar(u[:min(args.batch_size, len(u)), :min(32, u.shape[1])], mode="recurrent")
    sync()
    t_warm = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = []
    sync()
    t0 = time.perf_counter()
    for ub in u.split(args.batch_size):
        tb = time.perf_counter()
        logits = xbar(ub, mode="recurrent")
        sync()
        batches.append(time.perf_counter() - tb)
    t_run = time.perf_counter() - t0
    assert logits.shape == (args.chips, ub.shape[0], model.cfg.n_classes)
    n_seq, L = u.shape[0], u.shape[1]
    rate = n_seq * args.chips / t_run  # sequence x chip per second at length L
    # Setup scales with chips (programming), the run with sequences x chips x steps.
    setup_full = (t_build + t_time) * FULL_CHIPS / args.chips + t_cal + t_warm
    run_full = FULL_SEQUENCES * FULL_CHIPS / rate * FULL_LENGTH / L
    extrapolated = (n_seq, args.chips, L) != (FULL_SEQUENCES, FULL_CHIPS, FULL_LENGTH)
    return {
        "implementation": "imssa", "layout": args.encoding, "noise": "per_sequence",
        "device": str(device),
        "measured": f"{n_seq} seq x {args.chips} chips x {L} steps, batch {args.batch_size}",
        "sequences": n_seq, "chips": args.chips, "length": L, "batch_size": args.batch_size,
        "build_s": t_build, "calibrate_s": t_cal, "set_time_s": t_time, "warmup_s": t_warm,
        "setup_s": t_build + t_cal + t_time + t_warm, "run_s": t_run, "batch_s": batches,
        "sequence_chips_per_s": rate, "sequence_chip_steps_per_s": rate * L,
        "full_setup_s": setup_full, "full_run_s": run_full, "full_total_s": setup_full + run_full,
        "peak_memory_gb": (torch.cuda.max_memory_allocated(device) / 2**30
                           if device.type == "cuda" else None),
        "extrapolated": extrapolated,
        "extrapolation": ("measured directly" if not extrapolated else
                          "run: full = 10000 x 10 / (sequence x chips per second) x 784 / length;"
                          " build + set_time scaled by 10 / chips; calibration and the warm-up "
                          "(compilation) once"),
    }, ranges


# --- plain per-step PyTorch loop ---------------------------------------------------------------
def run_plain(model: S4DModel, u: Tensor, ranges: dict[str, Tensor], variant: str, args,
              device: torch.device) -> dict:
    layout, noise = variant.split(":")
    sync = make_sync(device)
    batch = min(args.batch_size, u.shape[0])
    ub = u[:batch]
    setup, per_step = [], []
    for c in range(args.chips):  # chips in a Python loop, as a user would
        gen = torch.Generator(device=device).manual_seed(100 + c)
        sync()
        t0 = time.perf_counter()
        loop = PlainLoop(model, MappingConfig(g_max=G_MAX), pcm(), periphery(), ranges,
                         args.t_inference, gen, layout=layout, noise=noise)
        sync()
        setup.append(time.perf_counter() - t0)
        st = loop.init_state(batch, ub)
        for k in range(min(2, ub.shape[1])):  # warm-up
            loop.step(ub[:, k], st)
        steps = min(args.plain_steps, ub.shape[1])
        sync()
        t0 = time.perf_counter()
        for k in range(steps):
            loop.step(ub[:, k], st)
        sync()
        per_step.append((time.perf_counter() - t0) / steps)
        assert loop.finish(st).shape == (batch, model.cfg.n_classes)
        del loop, st
    step_s = statistics.median(per_step)
    return {
        "implementation": "plain_pytorch", "layout": layout, "noise": noise,
        "device": str(device),
        "measured": f"{steps} steps x {args.chips} chips, batch {batch}",
        "batch_size": batch, "chips": args.chips, "timed_steps_per_chip": steps,
        "setup_s_per_chip": setup, "step_s_per_chip": per_step, "step_s": step_s,
        **full_job(FULL_LENGTH * step_s, batch, statistics.median(setup)),
        "extrapolated": True,
        "extrapolation": (f"run: 10 chips x ceil(10000 / {batch}) batches x 784 steps x median "
                          "seconds per step (one chip, one batch); setup: 10 x median per chip; "
                          "the final decoder read (once per sequence) is not counted"),
    }


# --- aihwkit and aihwkit-lightning ---------------------------------------------------------------
def run_library(library: str, model: S4DModel, ranges: dict[str, Tensor], layout: str,
                batch: int, steps: int, args, device: torch.device) -> dict:
    """One chip of a library peer: build (and for aihwkit program and drift), then the forward
    of a batch over ``steps`` steps; extrapolated linearly to 784 steps and the full job."""
    from imssa.crossbar import library_peers as peers

    sync = make_sync(device)
    ub = torch.randn(batch, steps, model.cfg.d_input, device=device,
                     generator=torch.Generator(device=device).manual_seed(2))
    sync()
    t0 = time.perf_counter()
    if library == "aihwkit":
        net = peers.aihwkit_s4d(model, periphery(), ranges, layout=layout, pcm_g_max=G_MAX)
    else:
        noise = dict.fromkeys(peers.adc_groups(ranges), args.lightning_out_noise)
        net = peers.lightning_s4d(model, periphery(), ranges, layout=layout, out_noise=noise)
    sync()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    if library == "aihwkit":
        peers.program_aihwkit(net, args.t_inference)  # once per chip
    t_program = time.perf_counter() - t0
    with torch.no_grad():
        net(ub[:, :2])  # warm-up
        sync()
        t0 = time.perf_counter()
        logits = net(ub)
        sync()
        t_forward = time.perf_counter() - t0
    assert logits.shape == (batch, model.cfg.n_classes)
    return {
        "implementation": library, "layout": layout, "noise": "per_sequence",
        "device": str(device), library: version(LIBRARIES[library]),
        "triton": os.environ.get("AIHWKIT_USE_TRITON") if library == "lightning" else None,
        "threads": torch.get_num_threads(),
        "measured": f"{steps} steps x 1 chip, batch {batch}",
        "batch_size": batch, "chips": 1, "timed_steps": steps,
        "analog_layers": len(analog_layers(net)),
        "build_s": t_build, "program_drift_s_per_chip": t_program, "forward_s": t_forward,
        "step_s": t_forward / steps,
        **full_job(t_forward * FULL_LENGTH / steps, batch, t_program, t_build),
        "extrapolated": True,
        "extrapolation": (f"run: 10 chips x ceil(10000 / {batch}) batches x forward seconds "
                          f"over {steps} steps x 784 / {steps}; setup: build once + 10 x "
                          "program-and-drift of one chip"),
    }


# --- main ------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="s4d-64")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chips", type=int, default=FULL_CHIPS)
    p.add_argument("--sequences", type=int, default=None,
                   help="sequences through imssa (default: 10000 on CUDA, 64 on CPU)")
    p.add_argument("--length", type=int, default=FULL_LENGTH,
                   help="sequence length actually run (extrapolated to 784)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="imssa and plain-loop batch (default: 1000 on CUDA, 64 on CPU)")
    p.add_argument("--encoding", default="differential", choices=["differential",
                                                                   "polarity_block"],
                   help="imssa's SSM encoding (the peers hold differential pairs)")
    p.add_argument("--calibration-sequences", type=int, default=16)
    p.add_argument("--t-inference", type=float, default=86400.0, help="s after programming")
    p.add_argument("--plain-steps", type=int, default=20, help="timed steps per chip")
    p.add_argument("--plain-variants", nargs="+", choices=PLAIN_VARIANTS,
                   default=["blocks:shared", "blocks:per_sequence", "dense:shared"],
                   help="layout:noise of the plain loop (see PlainLoop)")
    p.add_argument("--skip-plain", action="store_true")
    p.add_argument("--aihwkit-steps", type=int, default=5)
    p.add_argument("--aihwkit-batch", type=int, nargs="+", default=[64],
                   help="batch sizes tried (aihwkit on CPU is fastest per sequence at 64-256)")
    p.add_argument("--aihwkit-layouts", nargs="+", default=list(LINEAR_LAYOUTS),
                   choices=LINEAR_LAYOUTS)
    p.add_argument("--skip-aihwkit", action="store_true")
    p.add_argument("--lightning-steps", type=int, default=20)
    p.add_argument("--lightning-batch", type=int, default=None,
                   help="default: 1000 on CUDA, 64 on CPU")
    p.add_argument("--lightning-layouts", nargs="+", default=["blockdiag"],
                   choices=LINEAR_LAYOUTS)
    p.add_argument("--lightning-out-noise", type=float, default=0.04,
                   help="lightning's output noise std, relative to each column group's ADC range")
    p.add_argument("--skip-lightning", action="store_true")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                   help="imssa rows of other configurations, fused kernel and step loop")
    p.add_argument("--variant-loop-sequences", type=int, default=None,
                   help="sequences through the variants' step loop (default: 1000 on CUDA, "
                        "--sequences on CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke run")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: benchmarks/results/crossbar_<device>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.sequences, args.chips, args.length = 4, 2, 32
        args.batch_size = args.batch_size or 4
        args.calibration_sequences = 2
        args.plain_steps, args.aihwkit_steps, args.aihwkit_batch = 3, 2, [2]
        args.aihwkit_layouts = ["per_channel"]
        args.lightning_steps, args.lightning_batch = 3, args.lightning_batch or 2
        args.plain_variants = ["blocks:shared", "blocks:per_sequence"]
        args.variant_loop_sequences = args.variant_loop_sequences or 2
    return args


def variant_rows(u: Tensor, args, device: torch.device) -> list[dict]:
    """imssa on each of ``args.variants``: the backend ``auto`` picks (the fused kernel on CUDA),
    then the step loop on ``--variant-loop-sequences``, both extrapolated to the full job."""
    from imssa.crossbar import scan_backend

    loop_n = args.variant_loop_sequences or (1000 if device.type == "cuda" else len(u))
    before = os.environ.get("IMSSA_CROSSBAR_SCAN")
    rows = []
    try:
        for name in args.variants:
            preset_name, mapping, digital, *kernel = VARIANTS[name]
            model = build_model(preset_name, device)
            runs = (("auto", len(u)), ("torch", min(loop_n, len(u))))
            for backend, n in runs[:1] if kernel else runs:
                os.environ["IMSSA_CROSSBAR_SCAN"] = backend
                if kernel:
                    os.environ["IMSSA_CROSSBAR_KERNEL"] = kernel[0]
                else:
                    os.environ.pop("IMSSA_CROSSBAR_KERNEL", None)
                row, _ = run_imssa(model, u[:n], args, device, mapping, digital)
                row.update(variant=name, model=preset_name, backend=scan_backend(u))
                rows.append(row)
                print(f"variant {name} ({row['backend']}): {row['run_s']:.2f} s for "
                      f"{row['measured']}", flush=True)
    finally:
        os.environ.pop("IMSSA_CROSSBAR_KERNEL", None)
        if before is None:
            os.environ.pop("IMSSA_CROSSBAR_SCAN", None)
        else:
            os.environ["IMSSA_CROSSBAR_SCAN"] = before
    return rows


def library_rows(model: S4DModel, ranges: dict[str, Tensor], args, device: torch.device
                 ) -> tuple[list[dict], list[str]]:
    """The aihwkit (CPU; the peer copies the model there) and lightning (the model's device) rows;
    a library that is absent is skipped."""
    cpu = torch.device("cpu")
    jobs = []
    if not args.skip_aihwkit:
        jobs += [("aihwkit", layout, batch, args.aihwkit_steps, cpu)
                 for layout in args.aihwkit_layouts for batch in args.aihwkit_batch]
    if not args.skip_lightning:
        batch = args.lightning_batch or (1000 if device.type == "cuda" else 64)
        jobs += [("lightning", layout, batch, args.lightning_steps, device)
                 for layout in args.lightning_layouts]
    rows, skipped = [], []
    for library, layout, batch, steps, dev in jobs:
        if version(LIBRARIES[library]) is None:
            why = f"{library}: {LIBRARIES[library]} is not installed; skipped"
            if why not in skipped:
                print(why, file=sys.stderr)
                skipped.append(why)
            continue
        rows.append(run_library(library, model, ranges, layout, batch,
                                min(steps, args.length), args, dev))
        print(f"{library} {layout} batch {batch}: {rows[-1]['step_s'] * 1e3:.2f} ms/step",
              flush=True)
    return rows, skipped


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.sequences is None:
        args.sequences = FULL_SEQUENCES if cuda else 64
    if args.batch_size is None:
        args.batch_size = 1000 if cuda else 64
    model = build_model(args.model, device)
    torch.manual_seed(0)
    u = torch.randn(args.sequences, args.length, model.cfg.d_input, device=device)

    rows, skipped = [], []
    imssa_row, ranges = run_imssa(model, u, args, device)
    rows.append(imssa_row)
    print(f"imssa: {imssa_row['run_s']:.2f} s for {imssa_row['measured']}", flush=True)
    ranges = {k: v for k, v in ranges.items() if v.numel() == 1}
    if not args.skip_plain:
        for variant in args.plain_variants:
            hn = model.cfg.d_model * model.cfg.d_state
            if variant == "dense:per_sequence" and args.batch_size * hn * hn > 2**31:
                why = (f"plain {variant}: a read per sequence of the dense A is batch x "
                       f"{hn}^2 = {args.batch_size * hn * hn:.2e} numbers per step; skipped")
                print(why, file=sys.stderr)
                skipped.append(why)
                continue
            rows.append(run_plain(model, u, ranges, variant, args, device))
            print(f"plain {variant}: {rows[-1]['step_s'] * 1e3:.2f} ms/step", flush=True)
    more, why = library_rows(model, ranges, args, device)
    rows += more
    skipped += why
    variants = variant_rows(u, args, device)

    base = imssa_row["full_total_s"]
    for r in rows:
        r["ratio_vs_imssa"] = r["full_total_s"] / base
    # Fastest row per implementation: over all variants, and over those drawing an independent
    # read per sequence (the statistics imssa simulates).
    ratios: dict[str, float] = {}
    for r in rows[1:]:
        for key in (f"{r['implementation']}_over_imssa",
                    f"{r['implementation']}_per_sequence_noise_over_imssa"):
            if key.endswith("per_sequence_noise_over_imssa") and r["noise"] != "per_sequence":
                continue
            ratios[key] = min(ratios.get(key, math.inf), r["ratio_vs_imssa"])

    env = environment(device)
    name = env["device_name"] if cuda else cpu_name()
    print(f"\n{args.model} on PCM crossbars, {DAC_BITS}-bit DAC/ADC, read noise every step; job = "
          f"{FULL_SEQUENCES} seq x {FULL_LENGTH} steps x {FULL_CHIPS} chips; {name}, "
          f"{torch.get_num_threads()} CPU threads; * = extrapolated")
    print(f"{'implementation':<15}{'layout':<15}{'read noise':<14}{'device':<7}{'measured':<42}"
          f"{'setup s':>9}{'run s':>12}{'total s':>12}{'vs imssa':>10}")
    for r in rows:
        mark = "*" if r["extrapolated"] else " "
        print(f"{r['implementation']:<15}{r['layout']:<15}{r['noise']:<14}{r['device']:<7}"
              f"{r['measured']:<42}{r['full_setup_s']:>9.1f}{r['full_run_s']:>11.1f}{mark}"
              f"{r['full_total_s']:>11.1f}{mark}{r['ratio_vs_imssa']:>9.1f}x")
    for k, v in ratios.items():
        print(f"ratio {k} (fastest variant): {v:.2f}")
    if variants:
        print(f"\n{'variant':<26}{'backend':<9}{'measured':<42}{'run s':>12}{'total s':>12}")
        for r in variants:
            mark = "*" if r["extrapolated"] else " "
            print(f"{r['variant']:<26}{r['backend']:<9}{r['measured']:<42}"
                  f"{r['full_run_s']:>11.1f}{mark}{r['full_total_s']:>11.1f}{mark}")

    result = {
        "benchmark": "crossbar_inference_speed",
        "job": {"sequences": FULL_SEQUENCES, "length": FULL_LENGTH, "chips": FULL_CHIPS},
        "target_s": TARGET_S,
        "imssa_full_job_s": base,
        "imssa_meets_target": (base <= TARGET_S) if cuda else None,
        "note": ("measured on an H100/H200-class GPU" if cuda else
                 "CPU measurement at reduced size, extrapolated; the target is one H100/H200 -- "
                 "GPU numbers are pending (run with --device cuda there)"),
        "gpu_pending": not cuda,
        "model": args.model, "weights": "random initialization (speed does not depend on them)",
        "device_model": "PCM (aihwkit PCMLikeNoiseModel statistics), g_max 25 uS",
        "g_max_uS": G_MAX, "dac_bits": DAC_BITS, "adc_bits": ADC_BITS, "encoding": args.encoding,
        "read_noise": "a fresh read every recurrent step", "t_inference_s": args.t_inference,
        "sizes": {"sequences": args.sequences, "length": args.length, "chips": args.chips,
                  "batch_size": args.batch_size, "calibration_sequences":
                  args.calibration_sequences, "plain_steps": args.plain_steps,
                  "aihwkit_steps": args.aihwkit_steps, "aihwkit_batch": args.aihwkit_batch,
                  "lightning_steps": args.lightning_steps,
                  "lightning_batch": args.lightning_batch},
        "lightning_out_noise": args.lightning_out_noise,
        "quick": args.quick, "threads": torch.get_num_threads(),
        "results": rows, "variants": variants, "variant_loop_sequences":
        args.variant_loop_sequences, "skipped": skipped, "ratios_fastest_variant": ratios,
        "versions": {d: version(d) for d in ("torch", "triton", *LIBRARIES.values())},
        "aihwkit": version("aihwkit"), "command": "python " + shlex.join(sys.argv),
        **env, "device_name": name,
    }
    out = args.out or Path("benchmarks/results") / (
        f"crossbar_{device_slug(name)}{'_quick' if args.quick else ''}.json")
    write_json(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
