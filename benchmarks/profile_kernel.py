"""Profile of the fused crossbar kernel (imssa.crossbar.scan_triton) against the job's floor.

The job (issue 12): 10,000 sMNIST sequences x 784 steps x 10 chips of ``s4d-64`` on PCM
crossbars, 8-bit DACs and ADCs, a fresh read of every device at every step. This times the
recurrence of the SSM layer alone (one launch of the fused kernel per layer), on a slice of
the job (``--sequences``), extrapolated linearly in sequences and steps, and measures its
stages by leaving each out (0) or doing it twice (2), through the kernel's constexpr switches
(``crossbar_scan(stages=)``):

    rng    the normal draws (Philox and Box-Muller): 0 draws none (zeros), 2 draws twice
    conv   the converters: state ADC, register, state DAC, output ADC (0 none, 2 each twice)
    math   the arrays' products with their drives, the currents (0 none, 2 twice)
    io     the per-step load of u and store of y (0: u loaded once, y stored once at the end)

and the previous kernel beside it: "gen=0" (Triton's tl.randn4x), "quant=0" (IEEE division),
"cols=0" (a mode's sensed columns as one 3-d tensor), "previous" (all three: the kernel before
its cheaper normals, converters and layout; scan_triton_ops, scan_triton_kernel);
"fast=1" (the normals' exact log); "warps=1", "warps=2" (warps a program, default 4).

A stage's time is estimated twice: base - left out, and doubled - base (the two differ where
the compiler overlaps a stage with others, e.g. memory with arithmetic). "launch" is the kernel
on a sequence of one step (launch, setup and the arrays' loads). Beside them: the job's counted
FLOPs (products and variances of the arrays; a multiply-add counts 2), converter operations,
bytes to and from memory and normal numbers (used; Philox calls and Box-Muller pairs), with the
floor each gives at the device's peak rates, where known (operation counts of the generator and
converters are estimates, marked so).

    python benchmarks/profile_kernel.py                           # GPU: 1000 of the 10,000
    TRITON_INTERPRET=1 python benchmarks/profile_kernel.py --tiny  # CPU smoke run (interpreter)

Writes benchmarks/results/profile_kernel_<device>.json (device, versions, date, command).

``--stages``: the whole job instead, on a slice run as bench_crossbar.py runs it (convert,
calibrate, set_time, warm-ups, batches of ``--batch-size``): setup stages, then every part of
the forward timed with a device synchronize at each boundary (nested, exclusive seconds): the
encoder, the SSM (its input DAC, the fused kernel), GELU, the mix (DAC, array products of the
mean and the read-noise variance, normal draws, noise + ADC, piece sums), GLU, the decoder, and
the glue left in each (Python, residual, pooling); the same batches untimed beside it, and with
``--torch-profile`` the top ops of one batch. Writes profile_stages_<device>.json.

    python benchmarks/profile_kernel.py --stages --sequences 2000 --torch-profile   # GPU
    python benchmarks/profile_kernel.py --stages --tiny                             # CPU
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
from bench_crossbar import device_slug, make_sync, version

from imssa.crossbar import PeripheryConfig, calibrate, convert, set_time
from imssa.devices import PCMConfig, PCMDevice
from imssa.experiments.io import environment, write_json
from imssa.mapping import MappingConfig
from imssa.ssm import S4DConfig, S4DModel, preset

FULL_SEQUENCES, FULL_LENGTH, FULL_CHIPS = 10_000, 784, 10
G_MAX = 25.0  # µS
VARIANTS = [("base", {})] + [(f"{s}={v}", {s: v}) for s in ("rng", "conv", "math", "io")
                             for v in (0, 2)] + [
    ("gen=0", {"gen": 0}), ("quant=0", {"quant": 0}), ("cols=0", {"cols": 0}),
    ("previous", {"gen": 0, "quant": 0, "cols": 0}),
    ("fast=1", {"fast": 1}), ("warps=1", {"warps": 1}), ("warps=2", {"warps": 2})]
#: Peak rates (FP32 FLOP/s without tensor cores, HBM bytes/s) by device name, from NVIDIA's
#: datasheets (H100 SXM, H200 SXM); None elsewhere.
PEAKS = {"H200": (67e12, 4.8e12), "H100": (67e12, 3.35e12)}
OPS_PER_PHILOX = 70  # one Philox-4x32-10 call: 10 rounds of 2 multiply-highs, xors, key bumps
OPS_PER_BOX_MULLER = 20  # one pair of normals: log, sqrt, sin, cos (SFU) and the scaling
OPS_PER_CONVERSION = 10  # IEEE division, round half to even (floor, compares), clamp, multiply


def job_counts(H: int, M: int, pairs: int, S: int, P: int, layers: int, blocks: int,
               seqs: int = FULL_SEQUENCES, L: int = FULL_LENGTH, chips: int = FULL_CHIPS) -> dict:
    """Counted work of the full job in the kernel, per (sequence, step, chip) x channels x layers.

    Args: H channels, M modes (complex pairs or real), pairs 2 (complex) or 1, S sensed state
    columns per mode, P pieces of an output column, ``blocks`` programs per (chip, channel,
    layer) (batch blocks: each loads the arrays once).
    """
    n = seqs * L * chips * H * layers  # (sequence, step, chip, channel, layer)
    products = M * S * (1 + 2 * pairs)  # B's product + one FMA per row of A, per sensed column
    flops = {"state_mean": 2 * products - M * S, "state_var": 2 * products - M * S + M * S,
             "output_mean": 4 * pairs * M + 2, "output_var": 4 * pairs * M + 2 + P,
             "noise_apply": 3 * (M * S + P)}  # sqrt, multiply, add per sensed column
    draws = 2 if S == 8 else 1
    # tl.randn4x per mode and draw (S >= 2; the compiler drops a Box-Muller pair not used),
    # tl.randn per mode (S = 1) and per output piece: one Philox call and one pair each
    normals = {"used": M * S + P, "philox_calls": M * draws + P,
               "box_muller_pairs": (M * -(-S // 2) if S > 1 else M) + P}
    conversions = M * S + 2 * pairs * M + P  # state ADC, register and DAC per part, output ADC
    array_floats = 8 * M * S + 2 * M + 4 * M + 6 + 6 * M  # the packs of crossbar_scan
    out = {"per_channel_step": {"flops": flops, "normals": normals, "conversions": conversions},
           "flops": n * sum(flops.values()), "normals_used": n * normals["used"],
           "philox_calls": n * normals["philox_calls"],
           "box_muller_pairs": n * normals["box_muller_pairs"], "conversions": n * conversions,
           "bytes_io": n * 2 * 4,  # u read, y written (float32; u has the chip axis)
           "bytes_arrays": chips * H * layers * blocks * array_floats * 4}
    out["bytes"] = out["bytes_io"] + out["bytes_arrays"]
    out["rng_ops_estimate"] = (OPS_PER_PHILOX * out["philox_calls"]
                               + OPS_PER_BOX_MULLER * out["box_muller_pairs"])
    out["ops_estimate"] = (out["flops"] + out["rng_ops_estimate"]
                           + OPS_PER_CONVERSION * out["conversions"])
    return out


def floors(counts: dict, name: str) -> dict | None:
    peak = next((v for k, v in PEAKS.items() if k in name), None)
    if peak is None:
        return None
    flops, bw = peak
    return {"peak_fp32_flops": flops, "peak_bytes_per_s": bw,
            "flops_s": counts["flops"] / flops, "bytes_s": counts["bytes"] / bw,
            "rng_ops_estimate_s": counts["rng_ops_estimate"] / flops,
            "ops_estimate_s": counts["ops_estimate"] / flops}


def build(args, device: torch.device):
    """The converted model (calibrated, at --t-inference) and layer 0's SSM input (z, B, L, H)."""
    torch.manual_seed(0)
    cfg = (S4DConfig(d_model=4, d_state=4, n_layers=1) if args.tiny else preset(args.model))
    model = S4DModel(cfg).to(device).eval()
    pcm = PCMDevice(PCMConfig(g_max=G_MAX, read_noise_mode="per_step"))
    periphery = PeripheryConfig(dac_bits=8, adc_bits=8, read_noise_mode="per_step")
    mapping = MappingConfig(g_max=G_MAX, encoding=args.encoding)
    xbar = convert(model, mapping, pcm, periphery, chips=args.chips, seed=0)
    gen = torch.Generator(device=device).manual_seed(1)
    u = torch.randn(args.sequences, args.length, cfg.d_input, device=device, generator=gen)
    os.environ["IMSSA_CROSSBAR_SCAN"] = "torch"  # calibration runs the loop anyway
    calibrate(xbar, u[:args.calibration_sequences, :min(args.length, 64)])
    set_time(xbar, args.t_inference, gen)
    with torch.no_grad():
        x = xbar.encoder(u)
    return xbar, x


def timed(fn, sync, repeats: int) -> list[float]:
    fn()  # warm-up: compilation of this specialization
    sync()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="s4d-64")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--sequences", type=int, default=1000, help="slice of the 10,000 timed")
    p.add_argument("--length", type=int, default=FULL_LENGTH)
    p.add_argument("--chips", type=int, default=FULL_CHIPS)
    p.add_argument("--encoding", default="differential", choices=["differential", "polarity_block"])
    p.add_argument("--calibration-sequences", type=int, default=16)
    p.add_argument("--t-inference", type=float, default=86400.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tiny", action="store_true",
                   help="H = 4, N = 4, 4 sequences x 8 steps x 2 chips (CPU, TRITON_INTERPRET=1)")
    p.add_argument("--out", type=Path, default=None)
    add_stage_args(p)
    args = p.parse_args(argv)
    if args.stages:
        return stage_breakdown(args)
    if args.tiny:
        args.sequences, args.length, args.chips = 4, 8, 2
        args.calibration_sequences, args.repeats = 2, 1
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("on CPU the kernel runs in Triton's interpreter: set TRITON_INTERPRET=1")
    sync = make_sync(device)
    xbar, x = build(args, device)
    ssm = xbar.blocks[0].ssm
    layers = len(xbar.blocks)
    from imssa.crossbar.scan_triton import _launch_config

    A, C = ssm.parts["A_bar"].now.W, ssm.parts["C"].now.W
    pairs, H, M, S = A.shape[1], *A.shape[2:]
    P = C.shape[2]
    BLOCK_B, BLOCK_N, num_warps = _launch_config(args.sequences, M)
    blocks = math.ceil(args.sequences / BLOCK_B)
    # the job: every layer's SSM (all alike in the presets), scaled from layer 0's slice
    scale = (FULL_SEQUENCES / args.sequences) * (FULL_LENGTH / args.length) * layers

    def run(stages: dict, xs: torch.Tensor = x):
        def fn():
            xbar.chips.noise = torch.Generator(device=device).manual_seed(5)
            return ssm.fused(xs, stages)
        return fn

    rows = []
    for name, stages in VARIANTS:
        if "fast" in stages and device.type != "cuda":  # approximate instructions: compiled only
            continue
        t = timed(run(stages), sync, args.repeats)
        rows.append({"variant": name, "stages": stages, "times_s": t, "best_s": min(t),
                     "full_job_s": min(t) * scale * FULL_CHIPS / args.chips})
        print(f"{name:<8} {min(t):9.4f} s  (job {rows[-1]['full_job_s']:8.2f} s)", flush=True)
    t_launch = min(timed(run({}, x[:, :, :1].contiguous()), sync, args.repeats))
    base = rows[0]["full_job_s"]
    stage_rows = {}
    for s in ("rng", "conv", "math", "io"):
        t0, t2 = (next(r["full_job_s"] for r in rows if r["variant"] == f"{s}={v}") for v in (0, 2))
        stage_rows[s] = {"left_out_saves_s": base - t0, "doubled_adds_s": t2 - base,
                         "share_left_out": (base - t0) / base, "share_doubled": (t2 - base) / base}
    counts = job_counts(H, M, pairs, S, P, layers, blocks)
    env = environment(device)
    fl = floors(counts, env["device_name"])
    props = torch.cuda.get_device_properties(device) if device.type == "cuda" else None
    launch = {"programs": args.chips * blocks * H, "BLOCK_B": BLOCK_B, "BLOCK_N": BLOCK_N,
              "num_warps": num_warps, "sms": props.multi_processor_count if props else None,
              "one_step_s": t_launch}

    print(f"\n{args.model if not args.tiny else 'tiny'} SSM recurrence, {args.encoding}, S = {S} "
          f"sensed columns x {M} modes x {H} channels x {layers} layer(s); measured "
          f"{args.sequences} seq x {args.length} steps x {args.chips} chips on "
          f"{env['device_name']}; job = 10,000 x 784 x 10")
    print(f"{'stage':<8}{'left out saves s':>18}{'doubled adds s':>16}{'share':>8}")
    for s, r in stage_rows.items():
        print(f"{s:<8}{r['left_out_saves_s']:>18.2f}{r['doubled_adds_s']:>16.2f}"
              f"{r['share_doubled']:>8.0%}")
    print(f"{'all':<8}{base:>18.2f}   (launch + setup of one layer: {t_launch * 1e3:.2f} ms, "
          f"{launch['programs']} programs of {num_warps} warps)")
    print(f"counted: {counts['flops']:.2e} FLOP, {counts['conversions']:.2e} conversions, "
          f"{counts['normals_used']:.2e} normals ({counts['philox_calls']:.2e} Philox calls, "
          f"{counts['box_muller_pairs']:.2e} Box-Muller pairs), {counts['bytes'] / 1e9:.1f} GB")
    if fl is not None:
        print(f"floor at peak: FLOP {fl['flops_s']:.2f} s, bytes {fl['bytes_s']:.2f} s, normals "
              f"(estimate) {fl['rng_ops_estimate_s']:.2f} s, all ops (estimate) "
              f"{fl['ops_estimate_s']:.2f} s")

    slug = device_slug(env["device_name"])
    out = args.out or Path("benchmarks/results") / (
        f"profile_kernel_{slug}{'_tiny' if args.tiny else ''}.json")
    write_json({
        "benchmark": "crossbar_kernel_profile", "model": args.model, "tiny": args.tiny,
        "job": {"sequences": FULL_SEQUENCES, "length": FULL_LENGTH, "chips": FULL_CHIPS},
        "measured": {"sequences": args.sequences, "length": args.length, "chips": args.chips,
                     "repeats": args.repeats},
        "setting": {"encoding": args.encoding, "device_model": "PCM, read every step",
                    "dac_bits": 8, "adc_bits": 8, "t_inference_s": args.t_inference},
        "shape": {"H": H, "modes": M, "pairs": pairs, "S": S, "pieces": P, "layers": layers},
        "extrapolation": "full = best slice time x 10000 / sequences x 784 / length x layers "
                         "x 10 / chips",
        "variants": rows, "stages": stage_rows, "launch": launch, "counts": counts,
        "floors": fl, "versions": {d: version(d) for d in ("torch", "triton")},
        "command": "python " + shlex.join(sys.argv),
        "interpreter": os.environ.get("TRITON_INTERPRET") == "1", **env,
    }, out)
    print(f"wrote {out}")


# --- the whole-job stage breakdown (--stages) ------------------------------------------------------
#: --stages --tiny: a CPU slice of the job (s4d-64 still; the SSM runs the step loop there)
STAGE_CPU_SLICE = {"sequences": 8, "batch_size": 8, "length": 128, "chips": 2}


class StageTimer:
    """Nested wall-clock timers with a device synchronize at every boundary, so each stage's
    GPU work is charged to it: exclusive seconds per path ("forward/blocks.0.mix/products")."""

    def __init__(self, sync) -> None:
        self.sync, self.on = sync, True
        self.stack: list[list] = []  # [path, start, seconds of the children]
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def enter(self, name: str) -> None:
        if not self.on:
            return
        self.sync()
        path = f"{self.stack[-1][0]}/{name}" if self.stack else name
        self.stack.append([path, time.perf_counter(), 0.0])

    def exit(self) -> None:
        if not self.on:
            return
        self.sync()
        path, t0, children = self.stack.pop()
        dt = time.perf_counter() - t0
        self.seconds[path] = self.seconds.get(path, 0.0) + dt - children
        self.calls[path] = self.calls.get(path, 0) + 1
        if self.stack:
            self.stack[-1][2] += dt

    def wrap(self, name: str, fn):
        def timed_fn(*a, **k):
            self.enter(name)
            try:
                return fn(*a, **k)
            finally:
                self.exit()
        return timed_fn


def instrument(xbar, timer: StageTimer) -> list:
    """Time the converted model's parts (forward hooks on the graph's modules) and, inside them,
    the converters, array products, normal draws and the fused kernel (the module-level functions
    the analog modules call, patched). Returns the undo list for :func:`uninstrument`."""
    import imssa.crossbar.chips as chips_mod
    import imssa.crossbar.periphery as periphery_mod
    from imssa.crossbar.tile import AnalogTile

    undo = []

    def patch(obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr)
        undo.append((obj, attr, fn))
        setattr(obj, attr, timer.wrap(name, fn))

    patch(chips_mod, "dac", "DAC")
    patch(chips_mod, "sense", "noise + ADC")
    patch(chips_mod, "register", "state register")
    patch(periphery_mod, "randn_like", "normal draws")
    patch(AnalogTile, "sense", "array products (mean, variance)")
    patch(AnalogTile, "decode", "decode (piece sums)")
    try:
        import imssa.crossbar.scan_triton as scan_mod
        patch(scan_mod, "crossbar_scan", "fused SSM kernel")
    except ImportError:  # no triton: the SSM runs the step loop
        pass
    names = ["encoder", "decoder"] + [f"blocks.{i}.{m}" for i in range(len(xbar.blocks))
                                      for m in ("ssm", "activation", "mix", "glu")]
    for name in names:
        mod = xbar.get_submodule(name)
        undo.append(mod.register_forward_pre_hook(lambda m, a, n=name: timer.enter(n)))
        undo.append(mod.register_forward_hook(lambda m, a, o: timer.exit()))
    return undo


def uninstrument(undo: list) -> None:
    for u in reversed(undo):
        if isinstance(u, tuple):
            setattr(*u)
        else:
            u.remove()


def stage_rows(seconds: dict[str, float], calls: dict[str, int], scale: float) -> list[dict]:
    total = sum(seconds.values())
    return [{"stage": k, "seconds": v, "calls": calls[k], "share": v / total,
             "full_job_s": v * scale} for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])]


def summaries(seconds: dict[str, float], scale: float) -> dict[str, dict[str, float]]:
    """Job seconds by graph part (inclusive: "encoder", "blocks.0.mix", ...; "glue" is the
    forward's own ops: residual adds, mean pooling, Python) and by kind of work over all parts (the
    innermost timer: "DAC", "normal draws", ...; "<part> (own ops)" where a part's own code ran:
    GELU, GLU, the step loop's Python and digital ops)."""
    part: dict[str, float] = {}
    kind: dict[str, float] = {}
    for path, v in seconds.items():
        names = path.split("/")
        p = names[1] if len(names) > 1 else "glue"
        part[p] = part.get(p, 0.0) + v * scale
        k = (names[-1] if len(names) > 2 else f"{p} (own ops)" if len(names) == 2
             else "forward (own ops: residual adds, mean pooling, Python)")
        kind[k] = kind.get(k, 0.0) + v * scale
    return {"by_part": dict(sorted(part.items(), key=lambda kv: -kv[1])),
            "by_kind": dict(sorted(kind.items(), key=lambda kv: -kv[1]))}


def torch_profile(xbar, ub, sync, top: int = 20) -> list[dict]:
    """One forward under torch.profiler: the ops with the most device (else CPU) time."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if ub.is_cuda else [])
    with profile(activities=acts) as prof:
        xbar(ub, mode="recurrent")
        sync()
    rows = []
    for e in prof.key_averages():
        dev = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        rows.append({"op": e.key, "calls": e.count, "self_device_s": dev / 1e6,
                     "self_cpu_s": e.self_cpu_time_total / 1e6})
    rows.sort(key=lambda r: -(r["self_device_s"] if ub.is_cuda else r["self_cpu_s"]))
    return rows[:top]


def add_stage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stages", action="store_true",
                   help="whole-job breakdown instead of the kernel profile: setup (programming, "
                        "calibration, drift), compilation, and per part of the forward (encoder, "
                        "SSM kernel, mix, decoder, converters, draws, glue) on --sequences, "
                        "scaled to the job")
    p.add_argument("--batch-size", type=int, default=None,
                   help="--stages: sequences per forward (default: bench_crossbar's, 1000 on "
                        "CUDA, 8 on CPU); with --tiny: 8 seq x 128 steps x 2 chips of the model")
    p.add_argument("--torch-profile", action="store_true",
                   help="--stages: also one forward under torch.profiler (top ops)")


def stage_breakdown(args) -> None:
    """Where the job's time goes outside the SSM recurrence: a slice of the job run as
    bench_crossbar.py runs it (convert, calibrate, set_time, warm-up, batches), every part timed."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    if args.tiny:
        for k, v in STAGE_CPU_SLICE.items():
            setattr(args, k, v)
        args.calibration_sequences = 2
    args.batch_size = args.batch_size or min(args.sequences, 1000 if cuda else 8)
    sync = make_sync(device)
    setup = {}

    def clock(name: str, fn):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        setup[name] = time.perf_counter() - t0
        return out

    torch.manual_seed(0)
    model = S4DModel(preset(args.model)).to(device).eval()
    u = torch.randn(args.sequences, args.length, model.cfg.d_input, device=device,
                    generator=torch.Generator(device=device).manual_seed(1))
    pcm = PCMDevice(PCMConfig(g_max=G_MAX, read_noise_mode="per_step"))
    periphery = PeripheryConfig(dac_bits=8, adc_bits=8, read_noise_mode="per_step")
    mapping = MappingConfig(g_max=G_MAX, encoding=args.encoding)
    xbar = clock("convert (programming)", lambda: convert(model, mapping, pcm, periphery,
                                                          chips=args.chips, seed=0))
    clock("calibrate (step loop)", lambda: calibrate(xbar, u[:args.calibration_sequences]))
    clock("set_time (drift)", lambda: set_time(
        xbar, args.t_inference, torch.Generator(device=device).manual_seed(2)))
    clock("warm-up, 2 seq x 32 steps (bench_crossbar's before this session)",
          lambda: xbar(u[:2, :32], mode="recurrent"))
    batches = list(u.split(args.batch_size))
    clock("warm-up, a batch x 32 steps (the kernel's BLOCK_B of the batch)",
          lambda: xbar(batches[0][:, :32], mode="recurrent"))
    clock("first batch (allocator growth)", lambda: xbar(batches[0], mode="recurrent"))
    plain = []  # steady state without the timers
    for ub in batches:
        sync()
        t0 = time.perf_counter()
        xbar(ub, mode="recurrent")
        sync()
        plain.append(time.perf_counter() - t0)
    timer = StageTimer(sync)
    undo = instrument(xbar, timer)
    try:
        for ub in batches:
            timer.enter("forward")
            xbar(ub, mode="recurrent")
            timer.exit()
    finally:
        uninstrument(undo)
    profile_rows = None
    if args.torch_profile:
        try:  # CUPTI may be missing on a host; the timings above stand without it
            profile_rows = torch_profile(xbar, batches[0], sync)
        except RuntimeError as e:
            print(f"torch.profiler failed ({e}); no op table", file=sys.stderr)
    scale = (FULL_SEQUENCES / args.sequences) * (FULL_LENGTH / args.length) * (
        FULL_CHIPS / args.chips)
    rows = stage_rows(timer.seconds, timer.calls, scale)
    summary = summaries(timer.seconds, scale)
    timed = sum(timer.seconds.values())
    run_plain = sum(plain)
    env = environment(device)
    name = env["device_name"]
    print(f"\n{args.model}, {args.encoding}, PCM 8-bit, read every step; slice {args.sequences} seq "
          f"x {args.length} steps x {args.chips} chips, batch {args.batch_size}, on {name}; "
          f"job = 10,000 x 784 x 10 (scale x{scale:.1f}); glue = the stage's own Python and "
          f"digital ops")
    print(f"{'setup stage':<68}{'s':>9}")
    for k, v in setup.items():
        print(f"{k:<68}{v:>9.3f}")
    print(f"\n{'forward stage (exclusive)':<60}{'calls':>7}{'slice s':>10}{'share':>7}{'job s':>9}")
    for r in rows:
        print(f"{r['stage']:<60}{r['calls']:>7}{r['seconds']:>10.4f}{r['share']:>7.1%}"
              f"{r['full_job_s']:>9.2f}")
    print(f"{'all (timed, synchronized at every stage)':<60}{'':>7}{timed:>10.4f}{'':>7}"
          f"{timed * scale:>9.2f}")
    print(f"{'all (untimed run of the same batches)':<60}{'':>7}{run_plain:>10.4f}{'':>7}"
          f"{run_plain * scale:>9.2f}")
    for title, d in (("by part of the graph (inclusive)", summary["by_part"]),
                     ("by kind of work, over all parts", summary["by_kind"])):
        print(f"\njob seconds {title}")
        for k, v in d.items():
            print(f"  {k:<58}{v:>9.2f}  {v / (timed * scale):>6.1%}")
    if profile_rows:
        key = "self_device_s" if cuda else "self_cpu_s"
        print(f"\ntorch.profiler, one batch: top ops by {key}")
        for r in profile_rows[:15]:
            print(f"{r['op'][:60]:<60}{r['calls']:>7}{r[key]:>10.4f}")
    slug = device_slug(name)
    out = args.out or Path("benchmarks/results") / (
        f"profile_stages_{slug}{'_tiny' if args.tiny else ''}.json")
    write_json({
        "benchmark": "crossbar_job_stages", "model": args.model,
        "job": {"sequences": FULL_SEQUENCES, "length": FULL_LENGTH, "chips": FULL_CHIPS},
        "measured": {"sequences": args.sequences, "length": args.length, "chips": args.chips,
                     "batch_size": args.batch_size,
                     "calibration_sequences": args.calibration_sequences},
        "setting": {"encoding": args.encoding, "device_model": "PCM, read every step",
                    "dac_bits": 8, "adc_bits": 8, "t_inference_s": args.t_inference},
        "extrapolation": "job = slice seconds x 10000 / sequences x 784 / length x 10 / chips "
                         "(setup is not scaled)",
        "setup_s": setup, "stages": rows, **summary, "timed_total_s": timed, "untimed_run_s": run_plain,
        "untimed_batch_s": plain, "torch_profile": profile_rows,
        "versions": {d: version(d) for d in ("torch", "triton")},
        "command": "python " + shlex.join(sys.argv), **env,
    }, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
