"""Tests of imssa.ssm.scan: the reference scan, the state quantizer's STE, the Triton kernels.

The Triton kernels are checked against the reference on CPU in Triton's interpreter. The
interpreter must be switched on (TRITON_INTERPRET=1) before triton is first imported, so those
cases run once in a child process (this file run as a script) and the tests read its report.
On a CUDA machine the same cases also run compiled (tests marked ``gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from imssa.errors import ImssaError
from imssa.ssm.s4d import S4DLayer
from imssa.ssm.scan import StateQuant, scan_backend, ssm_scan, ssm_scan_reference

try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False

PARAMS = ("A_bar", "B_bar", "C", "D", "u")


# --- cases shared by the interpreter and the GPU runs ------------------------------------------
def _dyadic(shape, denom: int, lo: int, hi: int, g: torch.Generator) -> torch.Tensor:
    """Random multiples of 1/denom in [lo/denom, hi/denom]: products and sums stay exact."""
    return torch.randint(lo, hi + 1, shape, generator=g).float() / denom


def make_case(name: str, device: str = "cpu"):
    """(A_bar, B_bar, C, D, u, state_quant, exact) for a named case.

    ``exact`` cases use dyadic inputs and power-of-two scales, so every product and sum of the
    recurrence and of the output is exact in float32 whatever the order of operations: the
    quantized states, hence the outputs, must agree bit for bit, ties of round-half-to-even
    (frequent here) included.
    """
    g = torch.Generator().manual_seed(sum(map(ord, name)))
    B, L, H, N2 = (3, 17, 4, 8) if name != "odd_shapes" else (2, 5, 3, 5)
    C = torch.randn(H, N2, dtype=torch.cfloat, generator=g)
    D = torch.randn(H, generator=g)
    sq, exact = None, False
    if name in ("float", "odd_shapes", "quant_random"):
        A = torch.polar(0.5 + 0.49 * torch.rand(H, N2, generator=g),
                        3 * torch.rand(H, N2, generator=g))
        Bb = torch.randn(H, N2, dtype=torch.cfloat, generator=g)
        u = torch.randn(B, L, H, generator=g)
        if name == "quant_random":  # a non-power-of-two scale: rounding in z / scale
            sq = StateQuant(torch.full((H, 1), 0.0371), torch.zeros(H, 1), -64, 63)
    else:
        A = torch.complex(_dyadic((H, N2), 8, -6, 6, g), _dyadic((H, N2), 8, -5, 5, g))
        Bb = torch.complex(_dyadic((H, N2), 4, -4, 4, g), _dyadic((H, N2), 4, -4, 4, g))
        u = _dyadic((B, L, H), 4, -8, 8, g)
        C = torch.complex(_dyadic((H, N2), 8, -8, 8, g), _dyadic((H, N2), 8, -8, 8, g))
        D = _dyadic((H,), 8, -8, 8, g)
        exact = True
        if name == "quant_hn_sym":  # per-(h, n) scale, symmetric
            scale = 2.0 ** -torch.randint(3, 6, (H, N2), generator=g).float()
            sq = StateQuant(scale, torch.zeros(H, N2), -24, 24)
        elif name == "quant_h_asym":  # per-h scale, asymmetric zero point, unsigned range
            scale = 2.0 ** -torch.randint(3, 5, (H, 1), generator=g).float()
            sq = StateQuant(scale, torch.randint(20, 40, (H, 1), generator=g).float(), 0, 63)
        elif name == "quant_scalar":  # one scale for everything, 0-d tensors
            sq = StateQuant(torch.tensor(2.0 ** -4), torch.tensor(1.0), -16, 15)
    to = lambda t: t.to(device)  # noqa: E731
    if sq is not None:
        sq = StateQuant(to(sq.scale), to(sq.zero_point), sq.qmin, sq.qmax)
    return to(A), to(Bb), to(C), to(D), to(u), sq, exact


CASES = ("float", "odd_shapes", "quant_hn_sym", "quant_h_asym", "quant_scalar", "quant_random")


def _run(fn, case, scale_grad: bool = False):
    A, Bb, C, D, u, sq, _ = case
    leaves = [t.clone().requires_grad_() for t in (A, Bb, C, D, u)]
    if sq is not None and scale_grad:
        sq = StateQuant(sq.scale.clone().requires_grad_(), sq.zero_point.clone().requires_grad_(),
                        sq.qmin, sq.qmax)
    y = fn(*leaves, sq)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(7)).to(y.device)
    (y * w).sum().backward()
    extra = {}
    if sq is not None and scale_grad:
        extra = {"scale_grad": sq.scale.grad is not None or sq.zero_point.grad is not None}
    return y.detach(), [t.grad for t in leaves], extra


def _clip_fraction(case) -> float:
    """Fraction of reference pre-quantization values outside [lo, hi] (0 without quantization)."""
    A, Bb, C, D, u, sq, _ = case
    if sq is None:
        return 0.0
    lo, hi = sq.bounds()
    x = torch.zeros((u.shape[0], *A.shape), dtype=A.dtype, device=u.device)
    clipped = 0
    for k in range(u.shape[1]):
        z = A * x + Bb * u[:, k, :, None]
        clipped += int(((z.real < lo) | (z.real > hi) | (z.imag < lo) | (z.imag > hi)).sum())
        x = sq(z)
    return clipped / (2 * x.numel() * u.shape[1])


def compare_case(name: str, device: str) -> dict:
    """Errors of ssm_scan (which must dispatch to Triton) against the reference, for one case."""
    case = make_case(name, device)
    A, Bb, C, _, u, sq, exact = case
    backend = scan_backend(A, Bb, C, u)
    y, grads, extra = _run(ssm_scan, case, scale_grad=True)
    y_ref, grads_ref, _ = _run(ssm_scan_reference, case)
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))  # noqa: E731
    out = {"backend": backend, "exact": exact, "y": rel(y, y_ref),
           "y_mismatch": float(((y - y_ref).abs() > 1e-4 * y_ref.abs().max()).float().mean()),
           "clip_fraction": _clip_fraction(case), **extra}
    for p, a, b in zip(PARAMS, grads, grads_ref):
        out[p] = rel(a, b) if a is not None else float("nan")
        out[p + "_dtype"] = str(a.dtype) if a is not None else "none"
    # a call without gradients stores no states and gives the same y
    with torch.no_grad():
        out["y_nograd"] = rel(ssm_scan(*case[:5], sq), y_ref)
    return out


def _check_report(name: str, r: dict) -> None:
    assert r["backend"] == "triton", r
    if name == "quant_random":
        # rounding of z / scale may flip a level where z sits within float error of a boundary:
        # allow a few diverging outputs, no more
        assert r["y_mismatch"] < 0.02, r
    else:
        assert r["y"] <= (0.0 if r["exact"] else 1e-5), r
        for p in PARAMS:
            assert r[p] < 1e-4, (p, r)
    assert r["y_nograd"] == r["y"], r
    for p in ("A_bar", "B_bar", "C"):
        assert r[p + "_dtype"] == "torch.complex64", r
    if name.startswith("quant") and name != "quant_random":
        assert 0.01 < r["clip_fraction"] < 0.6, r  # clipping happens, but not everywhere
    assert not r.get("scale_grad", False), r


# --- the reference -----------------------------------------------------------------------------
def test_reference_matches_convolution():
    """Unquantized recurrence = causal convolution with the closed-form kernel K + D u."""
    torch.manual_seed(0)
    layer = S4DLayer(4, d_state=16).double()
    ssm = layer.discrete()
    u = torch.randn(2, 50, 4, dtype=torch.float64)
    K = ssm.kernel(50)  # (H L)
    L = u.shape[1]
    y_conv = torch.stack([(u[:, : k + 1].flip(1) * K[:, : k + 1].T).sum(1) for k in range(L)], 1)
    y_conv = y_conv + ssm.D * u
    y = ssm_scan_reference(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, u)
    torch.testing.assert_close(y, y_conv, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ssm_scan(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, u), y_conv,
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer(u), y_conv, rtol=1e-8, atol=1e-8)


def test_reference_matches_convolution_for_real_modes(monkeypatch):
    """S4D-Real: the reference scan (no factor 2) = the closed-form convolution; ssm_scan takes
    the reference for real tensors even when Triton is forced (the fused kernels are complex)."""
    from imssa.ssm.s4d_real import S4DRealLayer

    torch.manual_seed(0)
    layer = S4DRealLayer(4, d_state=8).double()
    ssm = layer.discrete()
    u = torch.randn(2, 50, 4, dtype=torch.float64)
    y = ssm_scan_reference(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, u)
    torch.testing.assert_close(y, layer(u, mode="conv"), rtol=1e-9, atol=1e-9)
    monkeypatch.setenv("IMSSA_SCAN", "triton")
    assert scan_backend(ssm.A_bar.float(), ssm.B_bar.float(), ssm.C.float(), u.float()) == \
        "reference"
    sq = StateQuant(torch.full((4, 1), 2.0 ** -6), torch.zeros(4, 1), -64, 63)
    yq = ssm_scan(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, u, sq)
    assert torch.isfinite(yq).all() and (yq - y).abs().max() < 0.5
    with pytest.raises(ImssaError, match="B_bar must be real like A_bar"):
        ssm_scan(ssm.A_bar, ssm.B_bar.cdouble(), ssm.C, ssm.D, u)


def test_reference_state_on_grid():
    """Quantized reference states lie exactly on the grid and inside [lo, hi]."""
    A, Bb, C, D, u, _, _ = make_case("float")
    sq = StateQuant(torch.full((4, 1), 0.0371), torch.full((4, 1), 3.0), -20, 20)
    x = torch.zeros((u.shape[0], *A.shape), dtype=A.dtype)
    lo, hi = sq.bounds()
    for k in range(u.shape[1]):
        x = sq(A * x + Bb * u[:, k, :, None])
        for v in (x.real, x.imag):
            q = v / sq.scale + sq.zero_point
            torch.testing.assert_close(q, q.round(), rtol=0, atol=1e-4)
            assert bool(((v >= lo) & (v <= hi)).all())


# --- the state quantizer -----------------------------------------------------------------------
def test_state_quant_ste_gradient():
    """STE: gradient 1 on the closed range [lo, hi], 0 where clipped; none to scale or zero."""
    scale = torch.tensor([[0.5]], requires_grad=True)
    zero = torch.tensor([[1.0]], requires_grad=True)
    sq = StateQuant(scale, zero, -4, 3)  # lo = -2.5, hi = 1.0
    re = torch.tensor([[-3.0, -2.5, -1.3, 0.0, 0.74, 1.0, 1.2, 5.0]], requires_grad=True)
    im = torch.tensor([[0.2, -9.0, 1.0, 0.9, -2.6, 0.3, -2.5, 0.25]], requires_grad=True)
    x = sq(torch.complex(re, im))
    x.real.sum().backward(retain_graph=True)
    torch.testing.assert_close(re.grad, torch.tensor([[0.0, 1, 1, 1, 1, 1, 0, 0]]))
    assert im.grad is None or bool((im.grad == 0).all())
    x.imag.sum().backward()
    torch.testing.assert_close(im.grad, torch.tensor([[1.0, 0, 1, 1, 0, 1, 1, 1]]))
    assert scale.grad is None and zero.grad is None
    # values: round half to even on the integer grid, then clip
    # re / 0.5 = -6, -5, -2.6, 0, 1.48, 2, 2.4, 10 ; + 1 -> clip to [-4, 3]
    re_expected = torch.tensor([[-2.5, -2.5, -1.5, 0, 0.5, 1, 1, 1]])
    torch.testing.assert_close(x.real.detach(), re_expected, rtol=0, atol=0)
    # im / 0.5 = 0.4, -18, 2, 1.8, -5.2, 0.6, -5, 0.5 -> 0, .., 2, 2, -5, 1, -5, 0 (tie to even)
    im_expected = torch.tensor([[0.0, -2.5, 1, 1, -2.5, 0.5, -2.5, 0]])
    torch.testing.assert_close(x.imag.detach(), im_expected, rtol=0, atol=0)


def test_state_quant_rejects_bad_range():
    with pytest.raises(ImssaError, match="qmin < qmax"):
        StateQuant(torch.tensor(1.0), torch.tensor(0.0), 3, 3)


# --- dispatch ----------------------------------------------------------------------------------
def test_dispatch(monkeypatch):
    A, Bb, C, D, u, _, _ = make_case("float")
    monkeypatch.delenv("IMSSA_SCAN", raising=False)
    assert scan_backend(A, Bb, C, u) == "reference"  # CPU tensors
    monkeypatch.setenv("IMSSA_SCAN", "reference")
    assert scan_backend(A, Bb, C, u) == "reference"
    monkeypatch.setenv("IMSSA_SCAN", "triton")
    assert scan_backend(A.cdouble(), Bb.cdouble(), C.cdouble(), u.double()) == "reference"
    if HAS_TRITON:
        assert scan_backend(A, Bb, C, u) == "triton"
    else:
        with pytest.raises(ImssaError, match="triton"):
            scan_backend(A, Bb, C, u)
    assert scan_backend(A, Bb, C, u[:, :0]) == "reference"  # empty sequence
    monkeypatch.setenv("IMSSA_SCAN", "fast")
    with pytest.raises(ImssaError, match="IMSSA_SCAN"):
        ssm_scan(A, Bb, C, D, u)


def stochastic_report(device: str) -> dict:
    """Stochastic state rounding through ssm_scan: with A_bar = 0 and one mode the state is
    Q(u[k]) and y = Re Q(u[k]). Returns the largest error of the mean (in steps) against the
    unrounded value, whether every value is its floor or ceil, and du against the reference."""
    B, L, H = 64, 64, 8
    step = 2.0 ** -3
    frac = torch.linspace(0.05, 0.95, H)  # fraction of a step above a grid point, per channel
    u = ((torch.arange(H) - 4 + frac) * step).expand(B, L, H).contiguous().to(device)
    A = torch.zeros(H, 1, dtype=torch.cfloat, device=device)
    Bb = torch.ones_like(A)
    C = torch.full_like(A, 0.5)  # y = 2 Re(C x) = Re x
    D = torch.zeros(H, device=device)
    sq = StateQuant(torch.full((H, 1), step, device=device), torch.zeros(H, 1, device=device),
                    -32, 31, stochastic=True)
    torch.manual_seed(0)
    case = (A, Bb, C, D, u, sq, False)
    y, grads, _ = _run(ssm_scan, case)
    _, grads_ref, _ = _run(ssm_scan_reference, case)
    q = y / step
    lo = torch.floor(u / step)
    mean = q.mean(dim=(0, 1))
    return {"backend": scan_backend(A, Bb, C, u),
            "mean_error_steps": float((mean - (u[0, 0] / step)).abs().max()),
            "floor_or_ceil": bool(((q == lo) | (q == lo + 1)).all()),
            "du_equal": bool(torch.equal(grads[4], grads_ref[4]))}


def _check_stochastic(r: dict) -> None:
    # the mean of 4096 Bernoulli draws has a std of at most 0.5 / 64 = 0.008 steps
    assert r["floor_or_ceil"] and r["mean_error_steps"] < 0.04 and r["du_equal"], r


def test_stochastic_rounding_reference_is_unbiased(monkeypatch):
    monkeypatch.setenv("IMSSA_SCAN", "reference")
    _check_stochastic(stochastic_report("cpu"))


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit for bit (signed zeros told apart), NaN at the same places (payloads aside)."""
    return bool(torch.equal(a.isnan(), b.isnan()) and torch.equal(
        a.nan_to_num(0.0).view(torch.int32), b.nan_to_num(0.0).view(torch.int32)))


def fake_quant_report(device: str) -> dict:
    """The fused fake quantizer (IMSSA_FAKE_QUANT=triton, or auto on CUDA) against torch's ops
    (reference): grids per tensor (symmetric, asymmetric), per channel (H, 1), per mode (H, N)
    and a complex tensor per channel; ties, clipped values and a NaN. Per grid: whether values
    and gradients agree bit for bit and which paths ran."""
    from imssa.ssm.scan import ste_quantize

    saved = os.environ.get("IMSSA_FAKE_QUANT")
    try:
        return _fake_quant_cases(device, ste_quantize)
    finally:
        if saved is None:
            os.environ.pop("IMSSA_FAKE_QUANT", None)
        else:
            os.environ["IMSSA_FAKE_QUANT"] = saved


def _fake_quant_cases(device: str, ste_quantize) -> dict:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, grid, asym, complex_ in (("tensor", (), False, False), ("tensor_asym", (), True, False),
                                       ("channel", (7, 1), False, False),
                                       ("mode_asym", (7, 9), True, False),
                                       ("complex_channel", (7, 1), False, True)):
        qmin, qmax = (0, 63) if asym else (-31, 31)
        v = torch.randn(5, 7, 9, generator=g) * 2
        s = 0.02 + 0.05 * torch.rand(grid, generator=g)
        z = torch.randint(1, 5, grid, generator=g).float() if asym else torch.zeros(grid)
        v[0, 0, :3] = torch.tensor([float("nan"), 1.5, -2.5]) * s.flatten()[0]  # NaN, ties
        if complex_:
            v = torch.complex(v, torch.randn(v.shape, generator=g) * 2)
        w = torch.randn(v.shape, generator=g, dtype=v.dtype)
        runs = {}
        for backend in ("triton", "reference"):
            os.environ["IMSSA_FAKE_QUANT"] = "auto" if backend == "triton" and device == "cuda" \
                else backend
            x = v.to(device).requires_grad_(True)
            y = ste_quantize(x, s.to(device), z.to(device), qmin, qmax)
            path = str(y.grad_fn.next_functions if complex_ else type(y.grad_fn).__name__)
            (torch.view_as_real(y) if complex_ else y).nan_to_num().mul(
                torch.view_as_real(w.to(device)) if complex_ else w.to(device)).sum().backward()
            runs[backend] = (torch.view_as_real(y.detach()).cpu() if complex_ else y.detach().cpu(),
                             torch.view_as_real(x.grad).cpu() if complex_ else x.grad.cpu(), path)
        (ya, ga, fa), (yb, gb, fb) = runs["triton"], runs["reference"]
        out[name] = {"fused": "FakeQuant" in fa, "torch": "FakeQuant" not in fb,
                     "values": _same_bits(ya, yb), "grads": _same_bits(ga, gb),
                     "clipped": int((ga == 0).sum()), "nan": int(ya.isnan().sum())}
    return out


def _check_fake_quant(report: dict) -> None:
    for grid, r in report.items():
        assert r["fused"] and r["torch"], (grid, r)
        assert r["values"] and r["grads"], (grid, r)
        assert r["clipped"] > 1 and r["nan"] == 1, (grid, r)


def test_shape_errors():
    A, Bb, C, D, u, _, _ = make_case("float")
    with pytest.raises(ImssaError, match="C must"):
        ssm_scan(A, Bb, C[:, :3], D, u)
    with pytest.raises(ImssaError, match="u must"):
        ssm_scan(A, Bb, C, D, u[..., :2])


# --- Triton, in the interpreter (CPU) ----------------------------------------------------------
@pytest.fixture(scope="module")
def interpreter_report():
    env = dict(os.environ, TRITON_INTERPRET="1", IMSSA_SCAN="triton", IMSSA_FAKE_QUANT="reference")
    proc = subprocess.run([sys.executable, __file__, "--interpret"], env=env, capture_output=True,
                          text=True, timeout=900)  # minutes on a loaded 2-core machine
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("name", CASES)
def test_triton_interpreter_matches_reference(interpreter_report, name):
    _check_report(name, interpreter_report[name])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_interpreter_stochastic_rounding_is_unbiased(interpreter_report):
    assert interpreter_report["stochastic"]["backend"] == "triton"
    _check_stochastic(interpreter_report["stochastic"])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
def test_triton_interpreter_fake_quantizer_is_torchs_bit_for_bit(interpreter_report):
    _check_fake_quant(interpreter_report["fake_quant"])


# --- Triton, compiled on CUDA ------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
def test_triton_cuda_fake_quantizer_is_torchs_bit_for_bit(monkeypatch):
    monkeypatch.delenv("IMSSA_FAKE_QUANT", raising=False)
    _check_fake_quant(fake_quant_report("cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
@pytest.mark.parametrize("name", CASES)
def test_triton_cuda_matches_reference(monkeypatch, name):
    monkeypatch.delenv("IMSSA_SCAN", raising=False)
    _check_report(name, compare_case(name, "cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
def test_triton_cuda_stochastic_rounding_is_unbiased(monkeypatch):
    monkeypatch.delenv("IMSSA_SCAN", raising=False)
    r = stochastic_report("cuda")
    assert r["backend"] == "triton"
    _check_stochastic(r)


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
def test_triton_cuda_s4d_shape(monkeypatch):
    """The s4d-64 layer's real parameters, a longer sequence, quantized: outputs and gradients."""
    monkeypatch.delenv("IMSSA_SCAN", raising=False)
    torch.manual_seed(0)
    ssm = S4DLayer(64, d_state=64).cuda().discrete()
    u = torch.randn(8, 300, 64, device="cuda")
    for sq in (None, StateQuant(torch.full((64, 1), 2.0 ** -6, device="cuda"),
                                torch.zeros(64, 1, device="cuda"), -128, 127)):
        case = (ssm.A_bar.detach(), ssm.B_bar.detach(), ssm.C.detach(), ssm.D.detach(), u, sq,
                False)
        y, grads, _ = _run(ssm_scan, case)
        y_ref, grads_ref, _ = _run(ssm_scan_reference, case)
        scale = y_ref.abs().max()
        mismatch = ((y - y_ref).abs() > 1e-4 * scale).float().mean().item()
        assert mismatch < (1e-6 if sq is None else 0.01), mismatch
        if sq is None:
            for p, a, b in zip(PARAMS, grads, grads_ref):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()),
                                           msg=lambda m, p=p: f"{p}: {m}")


if __name__ == "__main__" and sys.argv[1:] == ["--interpret"]:
    # the child process of interpreter_report: TRITON_INTERPRET=1 is already in the environment
    report = {name: compare_case(name, "cpu") for name in CASES}
    report["stochastic"] = stochastic_report("cpu")
    report["fake_quant"] = fake_quant_report("cpu")
    print(json.dumps(report))
