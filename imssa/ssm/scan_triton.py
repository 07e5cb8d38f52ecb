"""Fused Triton kernels for the recurrent scan of a diagonal SSM, with their own backward.

The same recurrence as :func:`imssa.ssm.scan.ssm_scan_reference`,

    z[k] = A_bar x[k-1] + B_bar u[k],  x[k] = Q(z[k]),  y[k] = 2 Re(sum_n C x[k])   (+ D u[k]),

run as one Triton program per (batch element b, block of BLOCK_H channels) that holds the
BLOCK_H x N/2 complex modes as re/im float32 tiles in registers and loops over the L steps.
A per-step PyTorch loop launches about ten kernels per step and is launch-bound; here a whole
sequence is one launch forward and one backward.

Forward stores every state x[k] (B, L, H, N/2), re and im, when a gradient is needed: that is
B*L*H*N/2*8 bytes, 3.3 GB at B=256, L=784, H=64, N/2=32 (6.6 GB at B=512), affordable on an 80 GB
GPU and cheaper than recomputing chunks from checkpoints (one write and one read of every state
costs about 2 ms per such batch on an H100). Without a gradient nothing is stored.

Backward runs the reverse recurrence. With G(w) = dL/dRe w + i dL/dIm w (PyTorch's convention
for the gradient of a real loss with respect to a complex tensor) and m[k] the straight-through
mask of Q (1 where lo <= z[k] <= hi, separately for re and im, 0 where clipped):

    G(x[k]) = 2 gy[k] conj(C) + conj(A_bar) G(z[k+1]),   G(z[k]) = m[k] * G(x[k])
    G(A_bar) = sum_{b,k} G(z[k]) conj(x[k-1]),  G(B_bar) = sum_{b,k} G(z[k]) u[k]
    G(C)     = sum_{b,k} 2 gy[k] conj(x[k]),    dL/du[k] = sum_n Re(conj(B_bar) G(z[k]))

z[k] (needed only for the mask) is recomputed from the stored x[k-1] with the same fused
multiply-adds as forward, so it is bitwise the z forward quantized. Each program sums its
parameter gradients over k in registers and writes one partial per b; torch sums over b
(deterministic, no atomics). The skip term D u and its gradients are left to torch autograd.

The same file holds the fused fake quantizer of a float32 tensor on one grid (per-tensor
activation points, the big tensors of recurrent QAT): one kernel forward, one backward.

Quantization matches torch bit for bit: z / scale with IEEE division (``div_rn``), round half to
even (torch.round) from floor, clamp to [qmin, qmax], (q - zero) * scale. Stochastic rounding
(floor(z / scale + U)) draws U with Philox (``tl.rand``) keyed by a seed taken from torch's RNG
per call plus the step, at one offset per (b, channel, mode, re/im): the same law as the
reference, other numbers. Backward needs no draws: the mask depends on z only.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor


@triton.jit
def _round_half_even(v):
    """torch.round: nearest integer, ties to even; exact for every float32."""
    r = tl.floor(v)
    d = v - r  # exact: the fraction of a float32 is a float32
    odd = (r - 2.0 * tl.floor(r * 0.5)) != 0.0
    up = (d > 0.5) | ((d == 0.5) & odd)
    return tl.where(up, r + 1.0, r)


@triton.jit
def _step(xr, xi, ar, ai, br, bi, u):
    """z = A x + B u on re/im tiles; explicit FMAs so forward and backward round identically."""
    ub = u[:, None]  # (BH 1)
    zr = tl.fma(ar, xr, tl.fma(-ai, xi, br * ub))
    zi = tl.fma(ar, xi, tl.fma(ai, xr, bi * ub))
    return zr, zi


@triton.jit
def _quantize(z, s, zp, qmin, qmax):
    """(clamp(round(z / s) + zp, qmin, qmax) - zp) * s, as torch computes it (NaN stays NaN)."""
    q = _round_half_even(tl.math.div_rn(z, s)) + zp
    q = tl.clamp(q, qmin, qmax, propagate_nan=tl.PropagateNan.ALL)
    return (q - zp) * s


@triton.jit
def _quantize_stochastic(z, s, zp, qmin, qmax, seed, offset):
    q = tl.floor(tl.math.div_rn(z, s) + tl.rand(seed, offset)) + zp
    q = tl.clamp(q, qmin, qmax, propagate_nan=tl.PropagateNan.ALL)
    return (q - zp) * s


@triton.jit
def _load_abc(a_ptr, b_ptr, c_ptr, hn, HN, mask):
    """Real and imaginary planes of A_bar, B_bar, C for the (channel, mode) block ``hn``."""
    ar = tl.load(a_ptr + hn, mask=mask, other=0.0)
    ai = tl.load(a_ptr + HN + hn, mask=mask, other=0.0)
    br = tl.load(b_ptr + hn, mask=mask, other=0.0)
    bi = tl.load(b_ptr + HN + hn, mask=mask, other=0.0)
    cr = tl.load(c_ptr + hn, mask=mask, other=0.0)
    ci = tl.load(c_ptr + HN + hn, mask=mask, other=0.0)
    return ar, ai, br, bi, cr, ci


@triton.jit
def _ssm_scan_fwd_kernel(
    u_ptr, y_ptr, xr_ptr, xi_ptr,  # u, y: (B L H); xr, xi: (B L H N2)
    a_ptr, b_ptr, c_ptr, q_ptr,  # a, b, c: (2 H N2) re/im planes; q: (4 H N2) scale/zero/lo/hi
    L, H, N2, qmin, qmax, seed,
    QUANT: tl.constexpr, STOCH: tl.constexpr, STORE: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)  # (BH)
    offs_n = tl.arange(0, BLOCK_N)  # (BN)
    mask_h = offs_h < H
    mask = mask_h[:, None] & (offs_n < N2)[None, :]  # (BH BN)
    hn = offs_h[:, None] * N2 + offs_n[None, :]  # (BH BN)
    HN = H * N2
    ar, ai, br, bi, cr, ci = _load_abc(a_ptr, b_ptr, c_ptr, hn, HN, mask)
    if QUANT:
        s = tl.load(q_ptr + hn, mask=mask, other=1.0)
        zp = tl.load(q_ptr + HN + hn, mask=mask, other=0.0)

    row = pid_b * L * H  # offset of u[b, 0, 0]
    draw = (pid_b * HN + hn) * 2  # Philox offsets of the re/im draws of (b, h, n), every step
    xr = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    xi = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    u_cur = tl.load(u_ptr + row + offs_h, mask=mask_h, other=0.0)
    k = 0
    while k < L:  # a while loop: Triton 3.6's interpreter cannot range() over a runtime int
        # prefetch the next input so its latency hides behind this step's arithmetic
        # (a step condition enters a mask as a tensor: offs_h * 0 + k; the interpreter needs it)
        u_nxt = tl.load(u_ptr + row + H + offs_h, mask=mask_h & (offs_h * 0 + k + 1 < L),
                        other=0.0)
        xr, xi = _step(xr, xi, ar, ai, br, bi, u_cur)
        if QUANT:
            if STOCH:
                xr = _quantize_stochastic(xr, s, zp, qmin, qmax, seed + k, draw)
                xi = _quantize_stochastic(xi, s, zp, qmin, qmax, seed + k, draw + 1)
            else:
                xr = _quantize(xr, s, zp, qmin, qmax)
                xi = _quantize(xi, s, zp, qmin, qmax)
        y = 2.0 * tl.sum(cr * xr - ci * xi, axis=1)  # (BH)
        tl.store(y_ptr + row + offs_h, y, mask=mask_h)
        if STORE:
            tl.store(xr_ptr + row * N2 + hn, xr, mask=mask)
            tl.store(xi_ptr + row * N2 + hn, xi, mask=mask)
        row += H
        u_cur = u_nxt
        k += 1


@triton.jit
def _ssm_scan_bwd_kernel(
    u_ptr, gy_ptr, gu_ptr, xr_ptr, xi_ptr,  # u, gy, gu: (B L H); xr, xi: (B L H N2)
    a_ptr, b_ptr, c_ptr, q_ptr, g_ptr,  # g: (6 B H N2) partial grads of A re/im, B re/im, C re/im
    B, L, H, N2,
    QUANT: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_n = tl.arange(0, BLOCK_N)
    mask_h = offs_h < H
    mask = mask_h[:, None] & (offs_n < N2)[None, :]
    hn = offs_h[:, None] * N2 + offs_n[None, :]
    HN = H * N2
    ar, ai, br, bi, cr, ci = _load_abc(a_ptr, b_ptr, c_ptr, hn, HN, mask)
    if QUANT:
        lo = tl.load(q_ptr + 2 * HN + hn, mask=mask, other=0.0)
        hi = tl.load(q_ptr + 3 * HN + hn, mask=mask, other=0.0)

    zero = tl.zeros((BLOCK_H, BLOCK_N), dtype=tl.float32)
    gzr = zero  # G(z[k+1])
    gzi = zero
    gAr = zero
    gAi = zero
    gBr = zero
    gBi = zero
    gCr = zero
    gCi = zero

    row = pid_b * L * H + (L - 1) * H  # offset of u[b, L-1, 0]
    xr_cur = tl.load(xr_ptr + row * N2 + hn, mask=mask, other=0.0)  # x[k]
    xi_cur = tl.load(xi_ptr + row * N2 + hn, mask=mask, other=0.0)
    m_prv = mask & (hn * 0 + L >= 2)
    xr_prv = tl.load(xr_ptr + (row - H) * N2 + hn, mask=m_prv, other=0.0)  # x[k-1]
    xi_prv = tl.load(xi_ptr + (row - H) * N2 + hn, mask=m_prv, other=0.0)
    u_cur = tl.load(u_ptr + row + offs_h, mask=mask_h, other=0.0)
    gy_cur = tl.load(gy_ptr + row + offs_h, mask=mask_h, other=0.0)
    k = L - 1
    while k >= 0:
        # prefetch step k-1's inputs and the state x[k-2]
        m_prev = mask_h & (offs_h * 0 + k >= 1)
        u_nxt = tl.load(u_ptr + row - H + offs_h, mask=m_prev, other=0.0)
        gy_nxt = tl.load(gy_ptr + row - H + offs_h, mask=m_prev, other=0.0)
        m_pp = mask & (hn * 0 + k >= 2)
        xr_pp = tl.load(xr_ptr + (row - 2 * H) * N2 + hn, mask=m_pp, other=0.0)
        xi_pp = tl.load(xi_ptr + (row - 2 * H) * N2 + hn, mask=m_pp, other=0.0)

        g2 = 2.0 * gy_cur[:, None]  # (BH 1)
        gxr = g2 * cr + (ar * gzr + ai * gzi)  # G(x[k]) = 2 gy conj(C) + conj(A) G(z[k+1])
        gxi = (ar * gzi - ai * gzr) - g2 * ci
        gCr += g2 * xr_cur
        gCi -= g2 * xi_cur
        if QUANT:
            zr, zi = _step(xr_prv, xi_prv, ar, ai, br, bi, u_cur)
            gzr = tl.where((zr >= lo) & (zr <= hi), gxr, 0.0)
            gzi = tl.where((zi >= lo) & (zi <= hi), gxi, 0.0)
        else:
            gzr = gxr
            gzi = gxi
        gAr += gzr * xr_prv + gzi * xi_prv
        gAi += gzi * xr_prv - gzr * xi_prv
        ub = u_cur[:, None]
        gBr += gzr * ub
        gBi += gzi * ub
        gu = tl.sum(br * gzr + bi * gzi, axis=1)  # (BH)
        tl.store(gu_ptr + row + offs_h, gu, mask=mask_h)

        row -= H
        xr_cur = xr_prv
        xi_cur = xi_prv
        xr_prv = xr_pp
        xi_prv = xi_pp
        u_cur = u_nxt
        gy_cur = gy_nxt
        k -= 1

    BHN = B * HN
    g = g_ptr + pid_b * HN + hn
    tl.store(g, gAr, mask=mask)
    tl.store(g + BHN, gAi, mask=mask)
    tl.store(g + 2 * BHN, gBr, mask=mask)
    tl.store(g + 3 * BHN, gBi, mask=mask)
    tl.store(g + 4 * BHN, gCr, mask=mask)
    tl.store(g + 5 * BHN, gCi, mask=mask)


@triton.jit
def _grid_params(sz_ptr, offs, G, d1, d2, d3, s0, s1, s2, s3, SCALAR: tl.constexpr):
    """Scale and zero point of each element of a contiguous tensor of shape (d0, d1, d2, d3):
    ``sz`` holds the scales, then the zero points, of the grid tensor (G values each), whose
    strides broadcast against the tensor are s0..s3 (0 on a broadcast dim)."""
    if SCALAR:
        g = offs * 0
    else:
        i3 = offs % d3
        rest = offs // d3
        i2 = rest % d2
        rest = rest // d2
        g = (rest // d1) * s0 + (rest % d1) * s1 + i2 * s2 + i3 * s3
    return tl.load(sz_ptr + g), tl.load(sz_ptr + G + g)


@triton.jit
def _fake_quant_fwd_kernel(v_ptr, out_ptr, sz_ptr, n, G, d1, d2, d3, s0, s1, s2, s3, qmin, qmax,
                           SCALAR: tl.constexpr, BLOCK: tl.constexpr):
    """out = the quantize-dequantize of v on its grid."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    v = tl.load(v_ptr + offs, mask=m, other=0.0)
    s, zp = _grid_params(sz_ptr, tl.where(m, offs, 0), G, d1, d2, d3, s0, s1, s2, s3, SCALAR)
    tl.store(out_ptr + offs, _quantize(v, s, zp, qmin, qmax), mask=m)


@triton.jit
def _fake_quant_bwd_kernel(v_ptr, g_ptr, gv_ptr, sz_ptr, n, G, d1, d2, d3, s0, s1, s2, s3, qmin,
                           qmax, SCALAR: tl.constexpr, BLOCK: tl.constexpr):
    """gv = g where (qmin - zp) s <= v <= (qmax - zp) s, else 0: the gradient of torch.clamp."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    v = tl.load(v_ptr + offs, mask=m, other=0.0)
    g = tl.load(g_ptr + offs, mask=m, other=0.0)
    s, zp = _grid_params(sz_ptr, tl.where(m, offs, 0), G, d1, d2, d3, s0, s1, s2, s3, SCALAR)
    inside = (v >= (qmin - zp) * s) & (v <= (qmax - zp) * s)
    tl.store(gv_ptr + offs, tl.where(inside, g, 0.0), mask=m)


_FQ_BLOCK = 1024  # elements per program of the fake-quantization kernels
FQ_MAX_DIMS = 4  # dims of a tensor the fused fake quantizer takes


class _FakeQuantFunction(torch.autograd.Function):
    """Fake quantization of a contiguous float32 tensor, one kernel each way."""

    @staticmethod
    def forward(ctx, v: Tensor, sz: Tensor, layout: tuple[int, ...], qmin: float,
                qmax: float) -> Tensor:
        out = torch.empty_like(v)
        n = v.numel()
        _fake_quant_fwd_kernel[(triton.cdiv(n, _FQ_BLOCK),)](
            v, out, sz, n, *layout, qmin, qmax, SCALAR=not any(layout[4:]), BLOCK=_FQ_BLOCK)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(v, sz)
            ctx.args = (layout, qmin, qmax)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        v, sz = ctx.saved_tensors
        layout, qmin, qmax = ctx.args
        g = g.contiguous()
        gv = torch.empty_like(v)
        n = v.numel()
        _fake_quant_bwd_kernel[(triton.cdiv(n, _FQ_BLOCK),)](
            v, g, gv, sz, n, *layout, qmin, qmax, SCALAR=not any(layout[4:]), BLOCK=_FQ_BLOCK)
        return gv, None, None, None, None


def fake_quantize_triton(v: Tensor, scale: Tensor, zero_point: Tensor, qmin: int,
                         qmax: int) -> Tensor:
    """:func:`imssa.ssm.scan.ste_quantize` of a contiguous float32 ``v`` of at most 4 dims, its
    float32 scale and zero point broadcastable to it (constants, no gradient), by one kernel
    forward and one backward instead of about thirteen and four: the same values and gradients
    bit for bit (the arithmetic of :func:`_quantize`, the mask of torch.clamp's gradient)."""
    s, zp = torch.broadcast_tensors(scale.detach(), zero_point.detach())
    sz = torch.stack((s, zp)).contiguous()  # (2, *grid)
    pad = FQ_MAX_DIMS - v.ndim
    dims = (1,) * pad + tuple(v.shape)
    strides = (0,) * pad + sz[0].expand(v.shape).stride()
    layout = (s.numel(), *dims[1:], *strides)  # G, d1, d2, d3, s0..s3
    return _FakeQuantFunction.apply(v, sz, layout, float(qmin), float(qmax))


def _launch_config(H: int, N2: int) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_N, num_warps): tiles of about 128 modes, 64 per warp.

    Measured on an H100 at H=64, N/2=32, L=784 (fwd+bwd, B=64 / 256): tiles of 32 to 256 modes
    with 1 to 4 warps lie within about 20 % of each other; 4 channels on 2 warps is among the best.
    """
    BLOCK_N = triton.next_power_of_2(N2)
    BLOCK_H = max(1, min(triton.next_power_of_2(H), 128 // BLOCK_N))
    num_warps = max(1, min(4, BLOCK_H * BLOCK_N // 64))
    return BLOCK_H, BLOCK_N, num_warps


def _planes(z: Tensor) -> Tensor:
    """(H, N2) complex -> (2, H, N2) float32 re/im planes, contiguous."""
    return torch.stack((z.real, z.imag)).contiguous()


class _SSMScanFunction(torch.autograd.Function):
    """y (B, L, H) = 2 Re(sum_n C x[k]) of the scan, without the skip term D u."""

    @staticmethod
    def forward(ctx, A_bar: Tensor, B_bar: Tensor, C: Tensor, u: Tensor, qpack: Tensor | None,
                qmin: int, qmax: int, stochastic: bool) -> Tensor:
        Bsz, L, H = u.shape
        N2 = A_bar.shape[-1]
        u = u.contiguous()
        a, b, c = _planes(A_bar), _planes(B_bar), _planes(C)
        store = any(ctx.needs_input_grad[:4])
        y = torch.empty_like(u)
        if store:
            xr = torch.empty((Bsz, L, H, N2), dtype=torch.float32, device=u.device)
            xi = torch.empty_like(xr)
        else:
            xr = xi = y  # never written: STORE is off
        quant = qpack is not None
        stoch = quant and stochastic
        # a Philox key per call from torch's RNG (so torch.manual_seed reproduces the draws)
        seed = int(torch.randint(0, 2**31 - 1 - L, ())) if stoch else 0
        BLOCK_H, BLOCK_N, num_warps = _launch_config(H, N2)
        grid = (Bsz, triton.cdiv(H, BLOCK_H))
        _ssm_scan_fwd_kernel[grid](
            u, y, xr, xi, a, b, c, qpack if quant else a, L, H, N2, float(qmin), float(qmax),
            seed, QUANT=quant, STOCH=stoch, STORE=store, BLOCK_H=BLOCK_H, BLOCK_N=BLOCK_N,
            num_warps=num_warps)
        if store:
            ctx.save_for_backward(u, xr, xi, a, b, c, qpack)
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        u, xr, xi, a, b, c, qpack = ctx.saved_tensors
        Bsz, L, H = u.shape
        N2 = a.shape[-1]
        gy = gy.contiguous().to(torch.float32)
        gu = torch.empty_like(u)
        gpart = torch.empty((6, Bsz, H, N2), dtype=torch.float32, device=u.device)
        quant = qpack is not None
        BLOCK_H, BLOCK_N, num_warps = _launch_config(H, N2)
        grid = (Bsz, triton.cdiv(H, BLOCK_H))
        _ssm_scan_bwd_kernel[grid](
            u, gy, gu, xr, xi, a, b, c, qpack if quant else a, gpart, Bsz, L, H, N2,
            QUANT=quant, BLOCK_H=BLOCK_H, BLOCK_N=BLOCK_N, num_warps=num_warps)
        g = gpart.sum(dim=1)  # (6 H N2)
        need = ctx.needs_input_grad
        gA = torch.complex(g[0], g[1]) if need[0] else None
        gB = torch.complex(g[2], g[3]) if need[1] else None
        gC = torch.complex(g[4], g[5]) if need[2] else None
        return gA, gB, gC, (gu if need[3] else None), None, None, None, None


def ssm_scan_triton(A_bar: Tensor, B_bar: Tensor, C: Tensor, D: Tensor, u: Tensor,
                    scale: Tensor | None = None, zero_point: Tensor | None = None,
                    qmin: int = 0, qmax: int = 0, stochastic: bool = False) -> Tensor:
    """The scan by the fused kernels. Shapes as :func:`imssa.ssm.scan.ssm_scan`, float32/complex64.

    scale, zero_point: (H, N/2) float32 state quantization (None: no quantization); they are
    constants here (no gradient). stochastic: stochastic instead of nearest rounding.
    """
    qpack = None
    if scale is not None:
        s = scale.detach().to(torch.float32)
        zp = zero_point.detach().to(torch.float32)
        lo = (qmin - zp) * s  # as StateQuant computes its clip range
        hi = (qmax - zp) * s
        qpack = torch.stack((s, zp, lo, hi)).contiguous()  # (4 H N2)
    y = _SSMScanFunction.apply(A_bar, B_bar, C, u, qpack, qmin, qmax, stochastic)
    return y + D * u
