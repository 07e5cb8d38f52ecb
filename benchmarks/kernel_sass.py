"""Static instruction counts of the fused crossbar kernel, without a GPU.

Compiles the specialization of ``imssa.crossbar.scan_triton`` that the sMNIST job launches (the
``s4d-64`` SSM layer of ``benchmarks/profile_kernel.py``'s build, on the CPU) for sm_90 with
Triton's own ptxas, disassembles it with its nvdisasm, and counts the SASS instructions of the
step loop (the largest backward branch) by opcode. A count is not a time (latencies, issue
rates, occupancy), but it shows what a change of the kernel's code removes, before a GPU run:

    PYTHONPATH=. python benchmarks/kernel_sass.py                      # this kernel, compiled
    PYTHONPATH=. python benchmarks/kernel_sass.py --kw GEN=0 QUANT=0 COLS=0   # the previous one

``--kw`` sets the kernel's constexprs (``FAST`` is 2 when compiled for CUDA; the CPU build
passes 0, so it is set here) or ``num_warps``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile

import torch

os.environ.pop("TRITON_INTERPRET", None)  # compile, whatever the shell says

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import imssa.crossbar.scan_triton as scan  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.profile_kernel import build  # noqa: E402


def captured_launch(encoding: str) -> tuple[tuple, dict]:
    """The arguments of the job's kernel launch (layer 0, a small slice, on the CPU)."""
    calls = []

    class Capture:
        def __getitem__(self, grid):
            return lambda *args, **kw: calls.append((args, kw))

    args = argparse.Namespace(tiny=False, model="s4d-64", encoding=encoding, chips=2, sequences=4,
                              length=8, calibration_sequences=2, t_inference=86400.0)
    xbar, x = build(args, torch.device("cpu"))
    kernel, scan._crossbar_scan_kernel = scan._crossbar_scan_kernel, Capture()
    try:
        xbar.blocks[0].ssm.fused(x)
    finally:
        scan._crossbar_scan_kernel = kernel
    return calls[0]


def signature_type(v) -> str:
    if isinstance(v, torch.Tensor):
        return {torch.float32: "*fp32", torch.int64: "*i64"}[v.dtype]
    if isinstance(v, int):
        return "i32" if -2**31 <= v < 2**31 else "i64"
    return "fp32"


def loop_body(sass: str) -> list[str]:
    """Opcodes between the label of the largest backward branch and the branch."""
    lines = sass.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines)
              if (m := re.match(r"\s*\.(L_x_\d+):", line))}
    loops = [(labels[m.group(1)], i) for i, line in enumerate(lines)
             if (m := re.search(r"BRA\s+`\(\.(L_x_\d+)\)", line))
             and m.group(1) in labels and labels[m.group(1)] < i]
    lo, hi = max(loops, key=lambda t: t[1] - t[0])
    ops = (re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
           for line in lines[lo:hi + 1])
    return [m.group(1) for m in ops if m]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoding", default="differential", choices=["differential", "polarity_block"])
    p.add_argument("--kw", nargs="*", default=[], help="KEY=INT constexprs or num_warps")
    p.add_argument("--dump", help="write the SASS here")
    a = p.parse_args(argv)
    args, kw = captured_launch(a.encoding)
    kw = {**kw, "FAST": 2, **{k: int(v) for k, v in (s.split("=") for s in a.kw)}}
    num_warps = kw.pop("num_warps")
    kernel = scan._crossbar_scan_kernel
    sig, constexprs = {}, {}
    for i, (name, param) in enumerate(zip(kernel.arg_names, kernel.params)):
        if param.is_constexpr:
            constexprs[name] = kw.get(name, param.default)
            sig[name] = "constexpr"
        else:
            sig[name] = signature_type(args[i])
    compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs),
                              target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps})
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        sass = subprocess.run([nvdisasm, "-c", f.name], capture_output=True, text=True,
                              check=True).stdout
    if a.dump:
        with open(a.dump, "w") as f:
            f.write(sass)
    body = loop_body(sass)
    kinds = collections.Counter(body)
    print({k: v for k, v in constexprs.items() if k.isupper()}, f"num_warps={num_warps}")
    print(f"step loop: {len(body)} SASS instructions, {kinds['BAR']} barriers, "
          f"{kinds['LDS'] + kinds['STS']} shared-memory accesses")
    print(" ".join(f"{k}:{v}" for k, v in kinds.most_common()))


if __name__ == "__main__":
    main()
