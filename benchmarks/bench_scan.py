"""Time the recurrent SSM scan, forward and forward + backward: reference loop vs Triton kernel.

The default shape is the s4d-64 model on sequential MNIST: H = 64 channels, N/2 = 32 complex
modes, L = 784 steps, batches of 64, 256 and 512, each with and without an 8-bit state quantizer.
Prints a table and writes JSON (device, versions, date, command, timings) to
benchmarks/results/scan_<device>.json. The epoch column is the scan's share of one QAT epoch of
60,000 sequences: ceil(60000 / B) x (forward + backward).

    python benchmarks/bench_scan.py                      # on a CUDA machine
    python benchmarks/bench_scan.py --quick              # tiny shapes; runs on CPU too (the
                                                         # Triton kernels in the interpreter)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EPOCH_SEQUENCES = 60_000


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256, 512])
    p.add_argument("--length", type=int, default=784, help="sequence length L")
    p.add_argument("--heads", type=int, default=64, help="channels H")
    p.add_argument("--modes", type=int, default=32, help="complex modes N/2 per channel")
    p.add_argument("--backends", nargs="+", default=["reference", "triton"],
                   choices=["reference", "triton"])
    p.add_argument("--quant", nargs="+", default=["none", "int8"], choices=["none", "int8"])
    p.add_argument("--repeats", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--reference-repeats", type=int, default=2,
                   help="timed runs of the (slow) reference loop")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--quick", action="store_true",
                   help="tiny shapes (B=2, L=16, H=4, N/2=8), one run: a smoke test")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: results/...)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.length, args.heads, args.modes = [2], 16, 4, 8
        args.repeats = args.reference_repeats = 1
    return args


def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main(argv=None) -> None:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and "triton" in args.backends:
        # Triton needs a GPU; on CPU its interpreter stands in (set before triton is imported).
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from imssa.ssm.s4d import S4DLayer
    from imssa.ssm.scan import StateQuant, scan_backend, ssm_scan

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
        args.backends = [b for b in args.backends if b != "triton"]
        print("triton is not installed: timing the reference only", file=sys.stderr)

    dev = torch.device("cuda" if cuda else "cpu")
    device_name = torch.cuda.get_device_name(dev) if cuda else (platform.processor() or "cpu")
    H, N2, L = args.heads, args.modes, args.length
    torch.manual_seed(0)
    ssm = S4DLayer(H, d_state=2 * N2).to(dev).discrete()
    params = [t.detach() for t in (ssm.A_bar, ssm.B_bar, ssm.C, ssm.D)]
    quantizers = {"none": None,
                  "int8": StateQuant(torch.full((H, 1), 2.0 ** -6, device=dev),
                                     torch.zeros(H, 1, device=dev), -128, 127)}

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return 1e3 * (time.perf_counter() - t0)

    rows = []
    for B in args.batch:
        u = torch.randn(B, L, H, device=dev)
        gy = torch.randn(B, L, H, device=dev)
        for qname in args.quant:
            sq = quantizers[qname]
            for backend in args.backends:
                os.environ["IMSSA_SCAN"] = backend
                leaves = [t.clone().requires_grad_() for t in (*params, u)]
                assert scan_backend(leaves[0], leaves[1], leaves[2], leaves[4]) == backend

                def fwd(leaves=leaves, sq=sq):
                    with torch.no_grad():
                        ssm_scan(*leaves, sq)

                def fwd_bwd(leaves=leaves, sq=sq, gy=gy):
                    ssm_scan(*leaves, sq).backward(gy)

                n = args.repeats if backend == "triton" else args.reference_repeats
                row = {"backend": backend, "batch": B, "quant": qname}
                try:
                    for _ in range(args.warmup):  # compiles both kernel variants
                        fwd_bwd()
                        fwd()
                    if cuda:
                        torch.cuda.reset_peak_memory_stats(dev)
                    t_fb = [timed(fwd_bwd) for _ in range(n)]
                    t_f = [timed(fwd) for _ in range(n)]
                    row.update(fwd_ms=statistics.median(t_f), fwd_bwd_ms=statistics.median(t_fb))
                    row["epoch_s"] = math.ceil(EPOCH_SEQUENCES / B) * row["fwd_bwd_ms"] / 1e3
                    if cuda:
                        row["peak_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 2**30
                except torch.OutOfMemoryError:
                    row["error"] = "out of memory"
                del leaves
                if cuda:
                    torch.cuda.empty_cache()
                rows.append(row)
                print(_format_row(row), flush=True)
    os.environ.pop("IMSSA_SCAN", None)

    for B in args.batch:
        for qname in args.quant:
            t = {r["backend"]: r.get("fwd_bwd_ms") for r in rows
                 if r["batch"] == B and r["quant"] == qname}
            if t.get("reference") and t.get("triton"):
                print(f"B={B:4d} quant={qname:5s} speed-up fwd+bwd: "
                      f"{t['reference'] / t['triton']:.1f}x")

    result = {
        "benchmark": "ssm_scan forward and forward+backward",
        "device": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1" and not cuda,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "shape": {"H": H, "N2": N2, "L": L},
        "quantizers": {"int8": "per-h scale 2^-6, zero 0, [-128, 127]"},
        "timing": "median wall time over repeats after warmup, CUDA synchronized; ms",
        "epoch_sequences": EPOCH_SEQUENCES,
        "results": rows,
    }
    out = args.out or ROOT / "benchmarks" / "results" / (
        f"scan_{device_slug(device_name)}{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)  # never a half-written result file
    print(f"wrote {out}")


def _format_row(r: dict) -> str:
    head = f"{r['backend']:9s} B={r['batch']:4d} quant={r['quant']:5s}"
    if "error" in r:
        return f"{head}  {r['error']}"
    mem = f"  peak {r['peak_mem_gb']:6.2f} GB" if "peak_mem_gb" in r else ""
    return (f"{head}  fwd {r['fwd_ms']:9.2f} ms  fwd+bwd {r['fwd_bwd_ms']:9.2f} ms  "
            f"epoch {r['epoch_s']:8.1f} s{mem}")


if __name__ == "__main__":
    main()
