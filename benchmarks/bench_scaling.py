"""Scaling of the crossbar inference: time and peak memory against chips, sequences, H, N and L,
each axis swept from one base point, in one run (issue 12, item 5).

What is timed is one forward pass of a converted model, ``model(u, mode="recurrent")``, what
``imssa simulate`` runs: on CUDA every SSM layer is one launch of the fused Triton recurrence
(``imssa.crossbar.scan_triton``), on the CPU the same code takes the step loop. The setting is
the sMNIST job's (``imssa.crossbar.library_peers.PeerJob``): PCM (aihwkit's PCMLikeNoiseModel
statistics, g_max 25 µS), 8-bit DACs and ADCs, a fresh read of every device at every step,
drifted to one day. Models are one-layer S4D classifiers with random weights (S4DConfig(d_model=H,
d_state=N)), converted on ``chips`` chips; speed does not depend on the weights. Inputs are
uniform in [0, 1) like sMNIST pixels, ``sequences`` x ``L`` steps, all in one forward (the batch).

Axes (each varied alone, the others at the base point):

    chips      independent chip instances (a leading dim of every analog tensor)
    sequences  sequences of one forward pass
    H          channels (d_model)
    N          state size per channel (d_state: N/2 complex modes)
    L          sequence length (steps)

Per point: convert (programming), calibrate (on ``CAL_SEQUENCES`` x min(L, ``CAL_STEPS``) steps:
ranges only need to be plausible for timing), set_time, one warm-up forward (Triton compiles any
new specialization; its peak memory is the point's memory), then timed forwards until at least
``--min-repeats`` and ``--target-s`` seconds (at most ``--max-repeats``), each synchronized.
Memory: CUDA ``torch.cuda.max_memory_allocated`` over the forward, total and above what was
allocated before it (model, arrays, input); CPU the resident set size, sampled every millisecond
by a thread, above the one before the forward (glibc's mmap threshold fixed at 1 MiB meanwhile,
so freed large buffers leave it: an estimate; :func:`mmap_threshold`). Per axis the log-log least-squares slope
of time (time ∝ x^slope) and of the working memory, over all points and over the upper half
(where fixed costs matter least).

CPU peer: on the CPU, for the base point's slice (or ``--peer-*``), imssa's CPU path against the
plain per-step PyTorch loop of ``imssa.crossbar.peers.PlainLoop`` (chips in a Python loop, as a
user would write it) with a read per sequence (the statistics imssa simulates) and with one read
per step shared by the batch (the naive form); the ratio plain / imssa from the same run (target:
imssa no slower, ratio >= 1).

Writes benchmarks/results/scaling_<device>.json (every point, the fits, device, versions, date,
command) and the plot beside it (.png).

    PYTHONPATH=. python benchmarks/bench_scaling.py              # GPU: the full sweep (~2 min)
    PYTHONPATH=. python benchmarks/bench_scaling.py --quick      # CPU: small sizes (< 2 min)
"""

from __future__ import annotations

import argparse
import ctypes
import math
import shlex
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from bench_crossbar import cpu_name, device_slug, make_sync, version
from torch import Tensor

from imssa.crossbar import calibrate, set_time
from imssa.crossbar.library_peers import PeerJob
from imssa.crossbar.peers import PlainLoop
from imssa.experiments.io import environment, write_json
from imssa.mapping import MappingConfig
from imssa.ssm import S4DConfig, S4DModel

AXES = ("chips", "sequences", "H", "N", "L")
CAL_SEQUENCES, CAL_STEPS = 4, 64
PEER_VARIANTS = ("blocks:per_sequence", "blocks:shared")


@dataclass(frozen=True)
class Point:
    """One configuration: chips, sequences (the batch), channels H, state size N, length L."""

    chips: int
    sequences: int
    H: int
    N: int
    L: int


#: mode -> (base point, values per axis). Full: the H200 (estimated 1.5-2 minutes of GPU time
#: with compilation, from the 2026-11-24 job rate; --time-limit-s bounds it); quick: 2 CPU
#: cores, small sizes (the CPU runs the step loop: at the small end a step's time is mostly
#: Python and launch overhead, so slopes are flatter there).
SWEEPS: dict[str, tuple[Point, dict[str, list[int]]]] = {
    "full": (Point(chips=10, sequences=100, H=64, N=64, L=784),
             {"chips": [1, 3, 10, 30, 100], "sequences": [10, 30, 100, 300, 1000],
              "H": [16, 32, 64, 128, 256, 512], "N": [8, 16, 32, 64, 128, 256],
              "L": [100, 300, 784, 3000, 10000, 16000]}),
    "quick": (Point(chips=4, sequences=16, H=32, N=16, L=128),
              {"chips": [1, 2, 4, 8, 16, 32], "sequences": [1, 4, 16, 64, 128],
               "H": [16, 32, 64, 128, 256], "N": [4, 8, 16, 32, 64], "L": [32, 128, 512, 1024]}),
}


# --- memory ----------------------------------------------------------------------------------------
def mmap_threshold(nbytes: int) -> None:
    """glibc: a fixed mmap threshold (above it a buffer is mapped on allocation and unmapped on
    free), after giving free heap pages back: 1 MiB while memory is measured, so freed large
    buffers leave the resident set; 32 MiB (glibc's own ceiling of its moving threshold, where
    it settles in a long run) while timing, so page faults do not slow the CPU path."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        libc.mallopt(-3, nbytes)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakRSS:
    """The peak resident set size while the block runs, sampled every millisecond."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def measured_memory(fn, device: torch.device) -> dict:
    """Run fn once; its peak memory (MiB) in total and above what was held before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_mib": peak / 2**20, "working_mib": (peak - before) / 2**20,
                "memory": "torch.cuda.max_memory_allocated"}
    mmap_threshold(1 << 20)
    with PeakRSS() as m:
        fn()
    mmap_threshold(32 << 20)
    return {"peak_mib": m.peak / 2**20, "working_mib": (m.peak - m.base) / 2**20,
            "memory": "resident set size, sampled every 1 ms (estimate)"}


# --- one point -------------------------------------------------------------------------------------
def converted(p: Point, job: PeerJob, device: torch.device
              ) -> tuple[S4DModel, S4DModel, dict, dict[str, Tensor]]:
    """A random-weight model of H, N, its conversion on p.chips chips (calibrated, drifted), the
    setup seconds and the calibrated ranges."""
    sync = make_sync(device)
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_model=p.H, d_state=p.N)).to(device).eval()
    u_cal = torch.rand(CAL_SEQUENCES, min(p.L, CAL_STEPS), 1, device=device,
                       generator=torch.Generator(device=device).manual_seed(3))
    setup = {}
    sync()
    t0 = time.perf_counter()
    xbar = job.imssa(model, p.chips)
    sync()
    setup["convert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ranges = calibrate(xbar, u_cal)
    sync()
    setup["calibrate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    set_time(xbar, job.t_inference, torch.Generator(device=device).manual_seed(1))
    sync()
    setup["set_time_s"] = time.perf_counter() - t0
    return model, xbar, setup, ranges


def plan(base: Point, values: dict[str, list[int]], axes: list[str]
         ) -> list[tuple[Point, list[str]]]:
    """The distinct points of the sweep (the base point once, on every axis), cheapest first by
    an estimate of the work (chips x sequences x L x H x (N + 2 H): the SSM and the mix), so a
    time limit drops the most expensive points."""
    points: dict[Point, list[str]] = {}
    for axis in axes:
        for v in values[axis]:
            points.setdefault(replace(base, **{axis: v}), []).append(axis)
    return sorted(points.items(),
                  key=lambda kv: kv[0].chips * kv[0].sequences * kv[0].L * kv[0].H
                  * (kv[0].N + 2 * kv[0].H))


def timed(fn, sync, min_repeats: int, max_repeats: int, target_s: float) -> list[float]:
    out: list[float] = []
    while len(out) < min_repeats or (sum(out) < target_s and len(out) < max_repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t0)
    return out


def run_point(p: Point, job: PeerJob, device: torch.device, args,
              cache: dict) -> dict:
    """Time and memory of one forward pass at point p (converted models cached by H, N and
    chips: the sequences and L axes reuse the base point's)."""
    key = (p.H, p.N, p.chips)
    if key not in cache:
        cache[key] = converted(p, job, device)
        setup = cache[key][2]
    else:
        setup = {}
    xbar = cache[key][1]
    sync = make_sync(device)
    u = torch.rand(p.sequences, p.L, 1, device=device,
                   generator=torch.Generator(device=device).manual_seed(2))

    def forward() -> Tensor:
        return xbar(u, mode="recurrent")

    t0 = time.perf_counter()
    mem = measured_memory(forward, device)  # the warm-up: compiles new specializations
    warm = time.perf_counter() - t0
    times = timed(forward, sync, args.min_repeats, args.max_repeats, args.target_s)
    return {**asdict(p), **setup, "warmup_s": warm, "times_s": times, "median_s": statistics.median(times),
            "min_s": min(times), **mem,
            "sequence_chip_steps_per_s": p.chips * p.sequences * p.L / min(times)}


# --- fits and output -------------------------------------------------------------------------------
def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None for fewer than two usable points)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(a for a, _ in pts) / len(pts)
    my = sum(b for _, b in pts) / len(pts)
    sxx = sum((a - mx) ** 2 for a, _ in pts)
    return sum((a - mx) * (b - my) for a, b in pts) / sxx if sxx > 0 else None


def fits(rows: list[dict]) -> dict:
    """Per axis: slopes of time (min over repeats) and of the working memory, all points and the
    upper half (at least two points)."""
    out = {}
    for axis in AXES:
        pts = sorted((r for r in rows if r["axis"] == axis), key=lambda r: r[axis])
        xs = [r[axis] for r in pts]
        upper = pts[len(pts) // 2:] if len(pts) >= 4 else pts
        out[axis] = {
            "values": xs,
            "time_slope": slope(xs, [r["min_s"] for r in pts]),
            "time_slope_upper": slope([r[axis] for r in upper], [r["min_s"] for r in upper]),
            "upper_values": [r[axis] for r in upper],
            "memory_slope": slope(xs, [r["working_mib"] for r in pts]),
            "memory_slope_upper": slope([r[axis] for r in upper],
                                        [r["working_mib"] for r in upper]),
        }
    return out


def plot(rows: list[dict], fit: dict, base: Point, title: str, path: Path) -> None:
    """Time (top) and working memory (bottom) against each axis, log-log, with the fitted
    slope; dashed: slope 1 through the base point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    axes_ = [a for a in AXES if any(r["axis"] == a for r in rows)]
    fig, axes = plt.subplots(2, len(axes_), figsize=(3.6 * len(axes_), 6.5), squeeze=False)
    for j, axis in enumerate(axes_):
        pts = sorted((r for r in rows if r["axis"] == axis), key=lambda r: r[axis])
        xs = [r[axis] for r in pts]
        for i, (key, label, sl) in enumerate((("min_s", "time (s)", "time_slope"),
                                              ("working_mib", "working memory (MiB)",
                                               "memory_slope"))):
            ax = axes[i][j]
            ys = [max(r[key], 1e-9) for r in pts]
            s = fit[axis][sl]
            ax.loglog(xs, ys, "o-", label=None if s is None else f"slope {s:.2f}")
            b = getattr(base, axis)
            yb = next((y for x, y in zip(xs, ys) if x == b), None)
            if yb is not None:
                ax.loglog([xs[0], xs[-1]], [yb * xs[0] / b, yb * xs[-1] / b], "--", color="grey",
                          lw=0.8, label="slope 1")
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(f"{axis} (base {b})")
            if j == 0:
                ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- the CPU peer ----------------------------------------------------------------------------------
def cpu_peer(p: Point, job: PeerJob, args) -> dict:
    """imssa's CPU path against PlainLoop (chips in a Python loop) on one slice, same run."""
    cpu = torch.device("cpu")
    model, xbar, setup, ranges = converted(p, job, cpu)
    ranges = {k: v for k, v in ranges.items() if v.numel() == 1}  # PlainLoop: per-tensor ranges
    u = torch.rand(p.sequences, p.L, 1, generator=torch.Generator().manual_seed(2))
    nothing = make_sync(cpu)
    xbar(u[:, :2], mode="recurrent")  # warm-up
    t_imssa = timed(lambda: xbar(u, mode="recurrent"), nothing, args.min_repeats,
                    args.max_repeats, args.target_s)
    rows = [{"implementation": "imssa", "variant": "step loop (CPU path)", "times_s": t_imssa,
             "run_s": min(t_imssa), **setup}]
    for variant in args.peer_variants:
        layout, noise = variant.split(":")
        loops = []
        t0 = time.perf_counter()
        for c in range(p.chips):
            gen = torch.Generator().manual_seed(100 + c)
            loops.append(PlainLoop(model, MappingConfig(g_max=job.g_max), job.device(),
                                   job.periphery(), ranges, job.t_inference, gen,
                                   layout=layout, noise=noise))
        build = time.perf_counter() - t0
        loops[0](u[:, :2])  # warm-up

        def plain(loops=loops):
            return [loop(u) for loop in loops]

        t = timed(plain, nothing, args.min_repeats, args.max_repeats, args.target_s)
        rows.append({"implementation": "plain_pytorch", "variant": variant, "times_s": t,
                     "run_s": min(t), "build_s": build,
                     "ratio_plain_over_imssa": min(t) / min(t_imssa)})
    return {"slice": asdict(p), "threads": torch.get_num_threads(), "rows": rows}


# --- main ------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="the CPU sweep of small sizes (< 2 min)")
    p.add_argument("--axes", nargs="+", default=list(AXES), choices=AXES)
    p.add_argument("--min-repeats", type=int, default=3)
    p.add_argument("--max-repeats", type=int, default=20)
    p.add_argument("--target-s", type=float, default=None,
                   help="repeat a point until its timed seconds reach this (default 0.5; quick 0.3)")
    p.add_argument("--peer-variants", nargs="*", default=list(PEER_VARIANTS),
                   choices=PEER_VARIANTS, help="PlainLoop layout:noise rows of the CPU peer")
    p.add_argument("--peer-slice", type=int, nargs=3, metavar=("CHIPS", "SEQUENCES", "L"),
                   default=None, help="the CPU peer's slice (default: the quick base point's; "
                                      "H and N are the base point's)")
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--time-limit-s", type=float, default=110.0,
                   help="start no new point after this many seconds of the sweep (skipped points "
                        "are listed in the JSON); the CPU peer runs after it")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; quick: 1, the CPU being shared)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default benchmarks/results/scaling_<device>.json; the mode is in it)")
    args = p.parse_args(argv)
    args.target_s = args.target_s if args.target_s is not None else (0.3 if args.quick else 0.5)
    if args.quick and args.threads is None:
        args.threads = 1
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    mode = "quick" if args.quick else "full"
    base, values = SWEEPS[mode]
    job = PeerJob()
    t_start = time.perf_counter()
    rows: list[dict] = []
    skipped: list[dict] = []
    cache: dict = {}
    for p, axes in plan(base, values, args.axes):
        if time.perf_counter() - t_start > args.time_limit_s:
            skipped += [{"axis": a, **asdict(p)} for a in axes]
            print(f"skipped {asdict(p)}: past --time-limit-s {args.time_limit_s:g}", flush=True)
            continue
        row = run_point(p, job, device, args, cache)
        rows += [{**row, "axis": a} for a in axes]
        print(f"{'+'.join(axes):<32}{asdict(p)!s:<58}{row['min_s']:9.4f} s{row['working_mib']:10.1f} "
              f"MiB  (warm-up {row['warmup_s']:.2f} s, {len(row['times_s'])} repeats)", flush=True)
    cache.clear()
    fit = fits(rows)
    peer_point = (replace(SWEEPS["quick"][0], H=base.H, N=base.N) if args.peer_slice is None else
                  replace(base, chips=args.peer_slice[0], sequences=args.peer_slice[1],
                          L=args.peer_slice[2]))
    peer = None if args.skip_peer else cpu_peer(peer_point, job, args)
    wall = time.perf_counter() - t_start

    env = environment(device)
    name = env["device_name"] if device.type == "cuda" else cpu_name()
    print(f"\ncrossbar inference scaling on {name} ({mode}); base point {asdict(base)}; PCM, "
          f"8-bit DAC/ADC, a read every step; time ∝ x^slope (log-log least squares)")
    print(f"{'axis':<10}{'values':<36}{'time slope':>11}{'upper half':>11}{'mem slope':>10}"
          f"{'upper half':>11}")

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    for axis in args.axes:
        f = fit[axis]
        vals = ",".join(str(v) for v in f["values"])
        print(f"{axis:<10}{vals:<36}{fmt(f['time_slope']):>11}{fmt(f['time_slope_upper']):>11}"
              f"{fmt(f['memory_slope']):>10}{fmt(f['memory_slope_upper']):>11}")
    if peer is not None:
        s = peer["slice"]
        print(f"\nCPU, {peer['threads']} threads, slice {s['chips']} chips x {s['sequences']} seq "
              f"x {s['L']} steps (H {s['H']}, N {s['N']}):")
        for r in peer["rows"]:
            ratio = r.get("ratio_plain_over_imssa")
            print(f"  {r['implementation']:<14}{r['variant']:<22}{r['run_s']:9.4f} s"
                  + (f"   plain / imssa = {ratio:.2f}" if ratio is not None else ""))
    print(f"wall time {wall:.1f} s")

    slug = device_slug(name)
    out = args.out or Path("benchmarks/results") / f"scaling_{slug}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json({
        "benchmark": "crossbar_scaling", "mode": mode, "base": asdict(base),
        "axes": {a: values[a] for a in args.axes},
        "setting": {"device_model": "PCM (aihwkit PCMLikeNoiseModel statistics)",
                    "g_max_uS": job.g_max, "dac_bits": job.dac_bits, "adc_bits": job.adc_bits,
                    "read_noise": "a fresh read every recurrent step",
                    "t_inference_s": job.t_inference, "encoding": MappingConfig().encoding,
                    "weights": "random initialization", "inputs": "uniform [0, 1)",
                    "calibration": f"{CAL_SEQUENCES} sequences x min(L, {CAL_STEPS}) steps"},
        "path": ("fused Triton recurrence (one launch per SSM layer)" if device.type == "cuda"
                 else "the step loop (the CPU path)"),
        "repeats": {"min": args.min_repeats, "max": args.max_repeats, "target_s": args.target_s},
        "points": rows, "skipped": skipped, "time_limit_s": args.time_limit_s, "fits": fit,
        "cpu_peer": peer, "wall_s": wall,
        "versions": {d: version(d) for d in ("torch", "triton", "matplotlib")},
        "command": "python " + shlex.join(sys.argv), **env, "device_name": name,
    }, out)
    png = out.with_suffix(".png")
    plot(rows, fit, base, f"imssa crossbar inference (s4d, PCM, 8-bit, a read every step) on {name}:"
         f" one forward; base point {asdict(base)}", png)
    print(f"wrote {out} and {png}")


if __name__ == "__main__":
    main()
