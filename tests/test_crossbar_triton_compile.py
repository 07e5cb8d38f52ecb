"""The fused crossbar kernel compiled for an H100/H200 (sm_90) on a machine without a GPU.

The interpreter tests (test_crossbar_triton.py) run the kernel's Python; these compile what a
CUDA launch compiles (the same constexprs, the compiled-only approximate instructions, the
launch's options) through Triton's NVIDIA backend to PTX, so an error that only compilation
finds fails here, in CI. They also pin the launch's ``enable_fp_fusion=False``: with Triton's
default, the polarity decode ``(o0 - o2) / 2`` of two ADC outputs became one FMA, a rounding
fewer than the step loop's, and broke the state register's exact ties (scan_triton's docstring).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
try:
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    import imssa.crossbar.scan_triton as scan_triton
    from imssa.crossbar.scan_triton_kernel import _crossbar_scan_kernel
    _PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    HAS_NVIDIA = "nvidia" in triton.backends.backends and (
        _PTXAS.is_file() or "TRITON_PTXAS_PATH" in os.environ)
except ImportError:  # a Triton without its NVIDIA backend
    HAS_NVIDIA = False

import test_crossbar_triton as cases  # noqa: E402  (the cases of the interpreter tests)

pytestmark = pytest.mark.skipif(not HAS_NVIDIA, reason="needs Triton's NVIDIA backend and ptxas")
H200 = (90, 32)  # compute capability 9.0, warp size 32
_DTYPES = {torch.float32: "*fp32", torch.int64: "*i64", torch.int32: "*i32"}


class _Captured(Exception):
    """Raised by the stand-in kernel: the launch's arguments, nothing run."""


def _launch(name: str, monkeypatch, kernel: str, stages: dict | None = None) -> tuple[tuple, dict]:
    """The arguments and keywords of layer 0's kernel launch for case ``name`` (CPU tensors);
    ``stages``: the profile's switches, launched as ``profile_kernel.py`` launches them."""
    seen: dict = {}

    class Stand:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                seen.update(args=args, kwargs=kwargs)
                raise _Captured
            return launch

    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "triton")  # restored after the test (_layer0 sets it)
    monkeypatch.setattr(scan_triton, "_crossbar_scan_kernel", Stand())
    monkeypatch.setattr("imssa.crossbar.ssm.scan_backend", lambda *_: "triton")
    monkeypatch.setenv("IMSSA_CROSSBAR_KERNEL", kernel)
    xbar, _, u = cases._crossbar(name, "cpu")
    with pytest.raises(_Captured):
        if stages is None:
            cases._layer0(xbar, xbar.encoder(u), "triton", 4)
        else:
            xbar.blocks[0].ssm.fused(xbar.encoder(u), stages)
    return seen["args"], seen["kwargs"]


def _profile_variants() -> list:
    """``benchmarks/profile_kernel.py``'s stage variants (name, switches)."""
    folder = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, folder)
    try:
        return importlib.import_module("profile_kernel").VARIANTS
    finally:
        sys.path.remove(folder)


def _ptx(args: tuple, kwargs: dict, **options) -> str:
    """PTX for sm_90 of the kernel with these launch arguments; ``options`` override the
    launch's compile options (its ``num_warps``, ``enable_fp_fusion``)."""
    fn = _crossbar_scan_kernel
    kwargs = dict(kwargs)
    opts = {k: kwargs.pop(k) for k in ("num_warps", "enable_fp_fusion") if k in kwargs}
    kwargs.setdefault("FAST", 2)  # what a CUDA launch picks (CPU tensors here: 0)
    signature, constexprs = {}, {}
    for i, name in enumerate(fn.arg_names):
        value = args[i] if i < len(args) else kwargs.get(name, fn.params[i].default)
        if isinstance(value, torch.Tensor):
            signature[name] = _DTYPES[value.dtype]
        elif isinstance(value, bool) or i >= len(args):
            signature[name], constexprs[(i,)] = "constexpr", value
        elif isinstance(value, int):
            signature[name] = "i32" if abs(value) < 2**31 else "i64"
        else:
            signature[name] = "fp32"
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                              target=GPUTarget("cuda", *H200), options={**opts, **options})
    return compiled.asm["ptx"]


def _fmas(ptx: str) -> int:
    return len(re.findall(r"\bfma\.rn\.f32\b", ptx))


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["current", "previous"])
@pytest.mark.parametrize("name", ["quant8", "diff_column_per_column", "pol_pieces_global",
                                  "read_noise", "complex-increment-split-pol-dig0"])
def test_kernel_compiles_for_sm90(monkeypatch, name, kernel):
    """Every kind of case (noiseless, per-column ADCs, pieces, read noise, split increment form
    with a digital part) compiles for sm_90 as launched, approximate instructions included."""
    args, kwargs = _launch(name, monkeypatch, kernel)
    ptx = _ptx(args, kwargs)
    assert ".target sm_90" in ptx and "_crossbar_scan_kernel" in ptx


@pytest.mark.slow
@pytest.mark.parametrize("variant", _profile_variants() if HAS_NVIDIA else [],
                         ids=lambda v: v[0])
def test_profile_variants_compile_for_sm90(monkeypatch, variant):
    """Every variant the kernel profile times on the GPU (stages left out or doubled, the
    previous kernel's parts, the approximate instructions, launch widths) compiles."""
    args, kwargs = _launch("read_noise", monkeypatch, "current", dict(variant[1]))
    assert ".target sm_90" in _ptx(args, kwargs)


@pytest.mark.slow
def test_launch_contracts_no_multiply_adds(monkeypatch):
    """The launch compiles without contracted FMAs: its PTX has the FMAs of the kernel source
    only, where Triton's default would contract more (the decode of the ``quant8`` case)."""
    args, kwargs = _launch("quant8", monkeypatch, "current")
    assert kwargs.get("enable_fp_fusion") is False
    explicit = _fmas(_ptx(args, kwargs, enable_fp_fusion=False))
    assert _fmas(_ptx(args, kwargs)) == explicit
    assert _fmas(_ptx(args, kwargs, enable_fp_fusion=True)) > explicit
