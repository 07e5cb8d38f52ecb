"""Tests of the fused crossbar kernel's device functions (imssa.crossbar.scan_triton_ops): the
normal generator (GEN 1: Philox2x32-10 or Philox4x32-10, then cuRAND's Box-Muller) and the
converters' arithmetic (QUANT 1: a reciprocal step with one FMA correction, rounding by adding
1.5 * 2^23).

- Philox2x32-10 equals Random123's known-answer vectors, bit for bit.
- Its normals (two per counter, and four per Philox4x32-10 counter), 2^21 of each, match N(0, 1):
  mean, variance, skewness and kurtosis within 5 standard errors, a Kolmogorov-Smirnov test, and
  no correlation between a pair's two draws, their squares, or neighbouring counters.
- The converter equals the step loop's ``torch.round(v / step).clamp(-q, q) * step`` bit for bit
  (NaN where it is NaN) on values within an ulp of every half step of 8-bit grids, random
  values, zeros, infinities, NaN and a zero step.

They run in Triton's interpreter on the CPU (a child process: TRITON_INTERPRET=1 must be set
before triton is imported), and compiled on a CUDA machine (tests marked ``gpu``; there the
normals' sine, cosine and log are the GPU's approximate instructions, FAST 2, and with the exact
log, FAST 1).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

try:
    import triton
    import triton.language as tl

    from imssa.crossbar.scan_triton_ops import _convert, _gauss2, _gauss4, _philox2x32

    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False

#: Random123's kat_vectors for philox2x32 10: (ctr0, ctr1, key) -> (out0, out1)
KAT = [((0x00000000, 0x00000000, 0x00000000), (0xFF1DAE59, 0x6CD10DF2)),
       ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0x2C3F628B, 0xAB4FD7AD)),
       ((0x243F6A88, 0x85A308D3, 0x13198A2E), (0xDD7CE038, 0xF62A4C12))]
DRAWS = 2**21  # normals per generator
BLOCK = 2**15  # counters per program
SEED = 0x2F3A_0000_1234_5678  # a key with both words nonzero


def _i32(x: int) -> int:
    return x - 2**32 if x >= 2**31 else x


if HAS_TRITON:
    @triton.jit
    def _philox_kernel(c0_ptr, c1_ptr, k_ptr, out_ptr, N, BLOCK_K: tl.constexpr):
        o = tl.arange(0, BLOCK_K)
        m = o < N
        c0 = tl.load(c0_ptr + o, mask=m, other=0).to(tl.uint32, bitcast=True)
        c1 = tl.load(c1_ptr + o, mask=m, other=0).to(tl.uint32, bitcast=True)
        k = tl.load(k_ptr + o, mask=m, other=0).to(tl.uint32, bitcast=True)
        x0, x1 = _philox2x32(c0, c1, k)
        tl.store(out_ptr + 2 * o, x0.to(tl.int32, bitcast=True), mask=m)
        tl.store(out_ptr + 2 * o + 1, x1.to(tl.int32, bitcast=True), mask=m)

    @triton.jit
    def _normals_kernel(seed_ptr, out_ptr, FOUR: tl.constexpr, FAST: tl.constexpr,
                        BLOCK_C: tl.constexpr):
        ctr = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)  # int32, as the kernel's
        key = tl.load(seed_ptr)  # int64, as the kernel's
        if FOUR:
            n0, n1, n2, n3 = _gauss4(key, ctr, 1, FAST)
            tl.store(out_ptr + 4 * ctr, n0)
            tl.store(out_ptr + 4 * ctr + 1, n1)
            tl.store(out_ptr + 4 * ctr + 2, n2)
            tl.store(out_ptr + 4 * ctr + 3, n3)
        else:
            n0, n1 = _gauss2(key, ctr, 1, FAST)
            tl.store(out_ptr + 2 * ctr, n0)
            tl.store(out_ptr + 2 * ctr + 1, n1)

    @triton.jit
    def _convert_kernel(v_ptr, step_ptr, out_ptr, q, N, BLOCK_V: tl.constexpr):
        o = tl.program_id(0) * BLOCK_V + tl.arange(0, BLOCK_V)
        m = o < N
        v = tl.load(v_ptr + o, mask=m, other=0.0)
        step = tl.load(step_ptr + o, mask=m, other=1.0)
        rstep = tl.math.div_rn(1.0, step)  # as the kernel: once per program
        tl.store(out_ptr + o, _convert(v, step, rstep, q, 1, 1), mask=m)


def philox_kat(device: str) -> dict:
    c0, c1, k = (torch.tensor([_i32(c[i]) for c, _ in KAT], dtype=torch.int32, device=device)
                 for i in range(3))
    out = torch.empty(2 * len(KAT), dtype=torch.int32, device=device)
    _philox_kernel[(1,)](c0, c1, k, out, len(KAT), BLOCK_K=4)
    got = [[v % 2**32 for v in out[2 * i:2 * i + 2].tolist()] for i in range(len(KAT))]
    return {"equal": got == [list(e) for _, e in KAT], "got": got}


def normal_stats(device: str, four: bool, fast: int) -> dict:
    """Moments, KS test and correlations of DRAWS normals (float64 statistics); ``fast`` the
    kernel's FAST (approximate sine and cosine, and log)."""
    from scipy import stats

    per = 4 if four else 2
    seed = torch.tensor([SEED], dtype=torch.int64, device=device)
    out = torch.empty(DRAWS, dtype=torch.float32, device=device)
    _normals_kernel[(DRAWS // per // BLOCK,)](seed, out, FOUR=four, FAST=fast,
                                              BLOCK_C=BLOCK)
    n = out.double().cpu().numpy()
    z = (n - n.mean()) / n.std()
    pairs = n.reshape(-1, 2)  # a Box-Muller pair's two draws
    m = len(n)
    return {
        "finite": bool(np.isfinite(n).all()), "max_abs": float(np.abs(n).max()),
        # z scores of mean, variance, skewness, excess kurtosis (standard errors of N(0, 1))
        "mean_z": float(n.mean() / math.sqrt(1 / m)),
        "var_z": float((n.var() - 1) / math.sqrt(2 / m)),
        "skew_z": float((z**3).mean() / math.sqrt(6 / m)),
        "kurt_z": float(((z**4).mean() - 3) / math.sqrt(24 / m)),
        "ks_p": float(stats.kstest(n, "norm").pvalue),
        "corr_pair": float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1] * math.sqrt(m / 2)),
        "corr_pair_sq": float(np.corrcoef(pairs[:, 0]**2, pairs[:, 1]**2)[0, 1] * math.sqrt(m / 2)),
        "corr_next": float(np.corrcoef(n[:-per], n[per:])[0, 1] * math.sqrt(m)),
    }


def convert_cases(device: str) -> dict:
    """The converter against torch's on hard values of 8-bit grids."""
    g = torch.Generator().manual_seed(0)
    q = 127.0
    steps = torch.rand(64, generator=g) * 2.0 ** torch.randint(-12, 2, (64,), generator=g).float()
    k = torch.arange(-130, 131).float() + 0.5  # every half step, and beyond the saturation
    tie = (k[None, :].double() * steps[:, None].double()).float()  # (64, 261) nearest floats
    up, down = torch.tensor(math.inf), torch.tensor(-math.inf)
    near = [tie]  # and one and two ulps either side
    for t in (up, down):
        near += [torch.nextafter(tie, t), torch.nextafter(torch.nextafter(tie, t), t)]
    rand = (torch.rand(64, 4096, generator=g) - 0.5) * 300 * steps[:, None]
    v = torch.cat([*near, rand], 1)
    s = steps[:, None].expand_as(v)
    special = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, 1e38, -1e38, 1.0, 0.0])
    special_step = torch.tensor([1e-3] * 7 + [0.0, 0.0])  # a zero step: 0 (v != 0) or NaN
    v = torch.cat([v.flatten(), special]).to(device)
    s = torch.cat([s.flatten(), special_step]).to(device)
    out = torch.empty_like(v)
    _convert_kernel[(triton.cdiv(v.numel(), 2**16),)](v, s, out, q, v.numel(), BLOCK_V=2**16)
    ref = torch.round(v / s).clamp(-q, q) * s
    same = (out == ref) | (out.isnan() & ref.isnan())
    return {"values": v.numel(), "mismatches": int((~same).sum()),
            "first": [(float(a), float(b), float(c), float(d)) for a, b, c, d in
                      zip(v[~same][:3], s[~same][:3], out[~same][:3], ref[~same][:3])]}


def report(device: str) -> dict:
    """Interpreter: numpy's sine, cosine, log; CUDA: the approximate ones (FAST 2, the
    default) and the exact log (FAST 1)."""
    out = {"kat": philox_kat(device), "convert": convert_cases(device)}
    for fast in (2, 1) if device == "cuda" else (0,):
        out |= {f"two-fast{fast}": normal_stats(device, False, fast),
                f"four-fast{fast}": normal_stats(device, True, fast)}
    return out


def _check(r: dict) -> None:
    assert r["kat"]["equal"], r["kat"]
    for key in (k for k in r if k.startswith(("two", "four"))):
        s = r[key]
        assert s["finite"] and s["max_abs"] < 6.7, s  # u >= 2^-33: |n| <= sqrt(66 ln 2)
        for z in ("mean_z", "var_z", "skew_z", "kurt_z", "corr_pair", "corr_pair_sq", "corr_next"):
            assert abs(s[z]) < 5.0, (z, s)
        assert s["ks_p"] > 1e-3, s
    assert r["convert"]["mismatches"] == 0, r["convert"]


@pytest.fixture(scope="module")
def interpreter_report():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, __file__, "--interpret"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_generator_and_converter_interpreter(interpreter_report):
    _check(interpreter_report)


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
def test_generator_and_converter_cuda():
    """Compiled: the approximate sine and cosine keep the statistics; FMAs keep the converter
    exact."""
    _check(report("cuda"))


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    print(json.dumps(report("cpu")))
