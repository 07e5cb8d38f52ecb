"""A fused Triton kernel for the recurrent loop of one S4D layer on the crossbar, every
configuration of it.

:class:`~imssa.crossbar.AnalogSSM` runs the L steps of a layer as a Python loop of
about twenty PyTorch kernels per step over (chips, batch, H, modes, S) tensors: launch- and
memory-bound. :func:`crossbar_scan` runs the whole loop in one launch. One program per (chip,
block of batch rows, channel h) keeps that channel's effective arrays (A, B, C, D weights and
read-noise variances, ADC steps, drift-compensation gains), the exact tensors of the parts kept
digital, the register state and its DAC'd copy in registers; per step it reads only u[k] and
writes only y[k]. A step computes what the step loop computes (tile layouts in
:mod:`imssa.mapping.roles`), with s the register, s_d = DAC(s):

    state columns:  o = ADC(u_d W_B + s_d W_A + sqrt(u_d^2 V_B + s_d^2 V_A + (eta r)^2) n)
                    s' = decode(o) alpha_AB  [+ A_bar s] [+ B_bar u]   (digital A, B: exact)
                    s = register(s' or, in the increment form (array holds A_bar - 1), s + s')
    output columns: y = sum_pieces ADC(s_d W_C + u_d W_D + sqrt(...) n) alpha_CD
                        [+ sum_n 2 Re(C s)] [+ D u]                        (digital C, D: exact)

u_d is the DAC'd input (analog B, D), u the raw one (digital B, D). One kernel source covers
every case; constexpr flags select which parts are analog (A_ON .. D_ON), the form
(INCREMENT), real or complex modes (PAIRS 1 or 2), the encoding (POL: polarity-doubled sensed
columns) and the split transition scale (SPLIT: a_r and a_i on columns of their own, summed
after their ADCs), so Triton compiles one specialization per configuration and the Python side
only packs arrays and picks flags. S sensed state columns per mode = (2 if POL) x (2 if SPLIT)
x PAIRS; B's columns are widened onto a split A's (``Role.widen``).

Rounding is the loop's (IEEE division, half to even, saturation) and, for the state columns
and the digital parts of the state, so is the order of every sum: A's rows add to B's currents
with one FMA each, as torch's ``addcmul_`` does in its vectorized body (its scalar tail, for
sizes off its vector width, rounds the product first, so the loop itself is not one rounding).
With noiseless reads the state is then the loop's bit for bit in Triton's interpreter, and
compiled code may contract other multiply-adds into FMAs (Triton 3.9's default). The output
columns sum over modes and pieces in another order (so an ADC step may rarely flip where a sum
lies within float error of a boundary, and a digital C differs by float32 rounding of its sum).
The Gaussian draws n differ: Triton's Philox (``tl.randn4x`` per mode and draw, one draw for
S <= 4 sensed columns, two for S = 8; ``tl.randn`` for S = 1 and per output piece) with key = a
seed drawn from the pass's generator + step * chips + chip and DRAWS * M + P counters per (batch
row, channel), so results are reproducible from the generator but are not the loop's numbers.

Stage switches (RNG, CONV, MATH, IO; 1 by default) leave a stage out or do it twice for
``benchmarks/profile_kernel.py``; the default specialization compiles to the same code as
without them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import triton
import triton.language as tl
from torch import Tensor

from imssa.crossbar.periphery import PeripheryConfig, grid_step, levels
from imssa.crossbar.tile import SensedArrays
from imssa.ssm.scan_triton import _quantize

# Arrays packed per (chip, channel) (constexpr, as globals a kernel reads must be). State columns,
# (M, S) each: W_A (re in), W_A (im in), W_B, V_A (re in), V_A (im in), V_B, ADC step, output-noise var
_AB_ROWS = tl.constexpr(8)
_CD_ROWS = tl.constexpr(4)  # output columns, (M,) each: W_C re, W_C im, V_C re, V_C im
_CH_VALUES = tl.constexpr(6)  # W_D, V_D, ADC step, output-noise variance, alpha_CD, exact D
_DIG_ROWS = tl.constexpr(6)  # exact digital tensors per channel, (M,) each: A re, im, B re, im, C re, im
_COUNTERS = 2**31  # Philox counters (int32) per chip and step
#: The profile's stage switches (``crossbar_scan(stages=)``): name -> the kernel's constexpr.
STAGES = {"rng": "RNG", "conv": "CONV", "math": "MATH", "io": "IO"}


@triton.jit
def _convert(v, step, q, CONV: tl.constexpr):
    """A converter's transfer (round to the grid of ``step``, saturate at +-q steps); CONV: 1 as
    is, 0 left out, 2 twice (the same value: a converter is idempotent) for the profile."""
    if CONV >= 1:
        v = _quantize(v, step, 0.0, -q, q)
    if CONV == 2:
        v = _quantize(v, step, 0.0, -q, q)
    return v


@triton.jit
def _register(v, step_s, clip, q_state, REG: tl.constexpr, CONV: tl.constexpr):
    """``periphery.register``: 0 pass, 1 clip to [-clip, clip], 2 round to state_bits."""
    if REG == 1:
        v = tl.minimum(tl.maximum(v, -clip), clip)
    if REG == 2:
        v = _convert(v, step_s, q_state, CONV)
    return v


@triton.jit
def _randn4(key, ctr, RNG: tl.constexpr):
    """``tl.randn4x``: four normals per counter, from one Philox call and both outputs of two
    Box-Muller pairs. RNG 2 (the profile): drawn twice, their sum over sqrt 2 (from the key of
    the next chip)."""
    n0, n1, n2, n3 = tl.randn4x(key, ctr)
    if RNG == 2:
        m0, m1, m2, m3 = tl.randn4x(key + 1, ctr)
        n0 = (n0 + m0) * 0.7071067811865476
        n1 = (n1 + m1) * 0.7071067811865476
        n2 = (n2 + m2) * 0.7071067811865476
        n3 = (n3 + m3) * 0.7071067811865476
    return n0, n1, n2, n3


@triton.jit
def _normal(key, ctr, RNG: tl.constexpr):
    """``tl.randn``: one normal per counter; RNG as :func:`_normals`."""
    if RNG == 0:
        n = tl.zeros(ctr.shape, dtype=tl.float32)
    else:
        n = tl.randn(key, ctr)
        if RNG == 2:
            n = (n + tl.randn(key + 1, ctr)) * 0.7071067811865476
    return n


@triton.jit
def _normals(key, ctr, offs_s, M, S: tl.constexpr, RNG: tl.constexpr):
    """N(0, 1) draws for the sensed state columns (BB BN S), counters ctr (BB BN) (and ctr + M
    for S = 8). One Philox call per mode serves up to 4 columns (S = 1: ``tl.randn``); the
    compiler drops the Box-Muller pair a mode does not use. RNG (the profile): 1 as is, 0 left
    out (zeros), 2 drawn twice."""
    if RNG == 0:
        n = tl.where(offs_s == 0, tl.zeros(ctr.shape, dtype=tl.float32)[:, :, None], 0.0)
    elif S == 1:
        n = _normal(key, ctr, RNG)[:, :, None]
    else:
        n0, n1, n2, n3 = _randn4(key, ctr, RNG)
        n = tl.where(offs_s == 0, n0[:, :, None], n1[:, :, None])
        if S >= 4:
            n = tl.where(offs_s == 2, n2[:, :, None], n)
            n = tl.where(offs_s == 3, n3[:, :, None], n)
        if S == 8:
            n4, n5, n6, n7 = _randn4(key, ctr + M, RNG)
            n = tl.where(offs_s == 4, n4[:, :, None], n)
            n = tl.where(offs_s == 5, n5[:, :, None], n)
            n = tl.where(offs_s == 6, n6[:, :, None], n)
            n = tl.where(offs_s == 7, n7[:, :, None], n)
    return n


@triton.jit
def _state_mean(u3, sd_r, sd_i, wa_r, wa_i, wb, A_ON: tl.constexpr, B_ON: tl.constexpr,
                PAIRS: tl.constexpr):
    """The state columns' currents (BB BN S): B's, then A's rows added as the loop's addcmul_
    does (one FMA each)."""
    if B_ON:
        o = u3 * wb
        if A_ON:
            o = tl.fma(sd_r[:, :, None], wa_r, o)
    else:
        o = sd_r[:, :, None] * wa_r
    if A_ON and PAIRS == 2:
        o = tl.fma(sd_i[:, :, None], wa_i, o)
    return o


@triton.jit
def _decoded(o, offs_s, J: tl.constexpr, S: tl.constexpr, POL: tl.constexpr):
    """Decoded output J of the sensed columns o (BB BN S), as ``Role.decode``: column J, or
    (o_J - o_{J+S/2}) / 2 for polarity-doubled columns. Picking a column sums exact zeros."""
    y = tl.sum(tl.where(offs_s[None, None, :] == J, o, 0.0), axis=2)
    if POL:
        y = (y - tl.sum(tl.where(offs_s[None, None, :] == J + S // 2, o, 0.0), axis=2)) * 0.5
    return y


@triton.jit
def _crossbar_scan_kernel(
    u_ptr, ur_ptr, y_ptr, seed_ptr,  # u: (z|1, B, L, H) DAC'd, ur: raw inputs; y: (z, B, L, H)
    ab_ptr, alpha_ptr, cd_ptr, ch_ptr, dig_ptr, scal_ptr,  # packed arrays (see crossbar_scan)
    Z, B, L, H, M, P, MP, NB, stride_uz, stride_urz, stride_yz, nudge,
    q_ab, q_cd, q_x, q_state,
    A_ON: tl.constexpr, B_ON: tl.constexpr, C_ON: tl.constexpr, D_ON: tl.constexpr,
    INCREMENT: tl.constexpr, PAIRS: tl.constexpr, POL: tl.constexpr, SPLIT: tl.constexpr,
    S: tl.constexpr, DRAWS: tl.constexpr, STATE_ON: tl.constexpr, OUT_ON: tl.constexpr,
    RAW: tl.constexpr,
    NOISE_AB: tl.constexpr, NOISE_CD: tl.constexpr, ADC_AB: tl.constexpr, ADC_CD: tl.constexpr,
    DAC: tl.constexpr, REG: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr,
    RNG: tl.constexpr = 1, CONV: tl.constexpr = 1, MATH: tl.constexpr = 1, IO: tl.constexpr = 1,
):
    # RNG, CONV, MATH, IO: stages of the profile (benchmarks/profile_kernel.py), 1 as is, 0 left
    # out, 2 done twice: the normal draws, the converters, the arrays' products with their drives
    # (the currents), the per-step load of u and store of y. nudge: a runtime 0 the doubled
    # stages add so that the compiler cannot merge them with the first.
    zero = nudge.to(tl.float32)
    pid = tl.program_id(0)
    h = pid % H  # neighbouring programs: neighbouring channels of the same rows
    c = pid // (H * NB)
    offs_b = (pid // H % NB) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_n = tl.arange(0, BLOCK_N)
    offs_s = tl.arange(0, S)
    offs_p = tl.arange(0, BLOCK_P)
    mask_b = offs_b < B
    mask_n = offs_n < M
    mask_ns = mask_n[:, None] & (offs_s < S)[None, :]
    ch = (c * H + h).to(tl.int64)

    # state columns: (BN, S) per row of the pack
    ab = ab_ptr + ch * (_AB_ROWS * M * S) + offs_n[:, None] * S + offs_s[None, :]
    wa_r = 0.0  # placeholders of digital parts, for _state_mean's signature
    wa_i = 0.0
    wb = 0.0
    if A_ON:
        wa_r = tl.load(ab, mask=mask_ns, other=0.0)[None, :, :]
        if PAIRS == 2:
            wa_i = tl.load(ab + M * S, mask=mask_ns, other=0.0)[None, :, :]
    if B_ON:
        wb = tl.load(ab + 2 * M * S, mask=mask_ns, other=0.0)[None, :, :]
    if NOISE_AB:
        if A_ON:
            va_r = tl.load(ab + 3 * M * S, mask=mask_ns, other=0.0)[None, :, :]
            if PAIRS == 2:
                va_i = tl.load(ab + 4 * M * S, mask=mask_ns, other=0.0)[None, :, :]
        if B_ON:
            vb = tl.load(ab + 5 * M * S, mask=mask_ns, other=0.0)[None, :, :]
        nv_ab = tl.load(ab + 7 * M * S, mask=mask_ns, other=0.0)[None, :, :]
    if ADC_AB:
        step_ab = tl.load(ab + 6 * M * S, mask=mask_ns, other=1.0)[None, :, :]
    alpha_r = tl.load(alpha_ptr + ch * 2 * M + offs_n, mask=mask_n, other=0.0)[None, :]
    alpha_i = tl.load(alpha_ptr + ch * 2 * M + M + offs_n, mask=mask_n, other=0.0)[None, :]

    # output columns: modes (BN,) -> pieces (BP,) of C's columns; D drives piece 0
    cd = cd_ptr + ch * (_CD_ROWS * M) + offs_n
    if C_ON:
        wc_r = tl.load(cd, mask=mask_n, other=0.0)[None, :]
        if PAIRS == 2:
            wc_i = tl.load(cd + M, mask=mask_n, other=0.0)[None, :]
        if NOISE_CD:
            vc_r = tl.load(cd + 2 * M, mask=mask_n, other=0.0)[None, :]
            if PAIRS == 2:
                vc_i = tl.load(cd + 3 * M, mask=mask_n, other=0.0)[None, :]
    in_piece = ((offs_n // MP)[:, None] == offs_p[None, :]) & mask_n[:, None]  # (BN BP)
    first = (offs_p == 0)[None, :]
    mask_p = (offs_p < P)[None, :]
    chv = ch_ptr + ch * _CH_VALUES
    w_d = tl.load(chv)
    v_d = tl.load(chv + 1)
    step_cd = tl.load(chv + 2)
    nv_cd = tl.load(chv + 3)
    alpha_cd = tl.load(chv + 4)
    d_exact = tl.load(chv + 5)

    # the exact tensors of digital parts
    dig = dig_ptr + h.to(tl.int64) * (_DIG_ROWS * M) + offs_n
    if not A_ON:
        a_r = tl.load(dig, mask=mask_n, other=0.0)[None, :]
        a_i = tl.load(dig + M, mask=mask_n, other=0.0)[None, :]
    if not B_ON:
        b_r = tl.load(dig + 2 * M, mask=mask_n, other=0.0)[None, :]
        b_i = tl.load(dig + 3 * M, mask=mask_n, other=0.0)[None, :]
    if not C_ON:
        c_r = tl.load(dig + 4 * M, mask=mask_n, other=0.0)[None, :]
        c_i = tl.load(dig + 5 * M, mask=mask_n, other=0.0)[None, :]
    step_x = tl.load(scal_ptr)  # DAC of the state
    step_s = tl.load(scal_ptr + 1)  # state register
    clip = tl.load(scal_ptr + 2)

    # Philox: key per (chip, step), counters per (row, channel): DRAWS x M modes, then P pieces
    seed = tl.load(seed_ptr)
    slot = (offs_b * H + h) * (DRAWS * M + P)
    ctr_ab = slot[:, None] + offs_n[None, :]  # (BB BN)
    ctr_cd = slot[:, None] + DRAWS * M + offs_p[None, :]  # (BB BP)

    u_row = c.to(tl.int64) * stride_uz + offs_b.to(tl.int64) * (L * H) + h
    ur_row = c.to(tl.int64) * stride_urz + offs_b.to(tl.int64) * (L * H) + h
    y_row = c.to(tl.int64) * stride_yz + offs_b.to(tl.int64) * (L * H) + h
    x_r = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)  # register s[k-1]
    x_i = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    sd_r = x_r  # DAC(s[k-1]); the zero state maps to 0
    sd_i = x_i
    u_cur = tl.load(u_ptr + u_row, mask=mask_b, other=0.0)
    if RAW:  # a second input stream: the raw input of digital parts beside DAC'd analog ones
        r_cur = tl.load(ur_ptr + ur_row, mask=mask_b, other=0.0)
    else:
        r_cur = u_cur
    y_sum = tl.zeros((BLOCK_B,), dtype=tl.float32)  # IO = 0: the outputs, stored once at the end
    k = 0
    while k < L:  # a while loop: Triton 3.6's interpreter cannot range() over a runtime int
        # prefetch the next input (a step condition enters a mask as a tensor for the interpreter)
        more = mask_b & (offs_b * 0 + k + 1 < L)
        if IO >= 1:
            u_nxt = tl.load(u_ptr + u_row + H, mask=more, other=0.0)
            if IO == 2:
                u_nxt = tl.fma(tl.load(u_ptr + u_row + H + nudge, mask=more, other=0.0), zero,
                               u_nxt)
        else:
            u_nxt = u_cur
        if RAW:
            r_nxt = tl.load(ur_ptr + ur_row + H, mask=more, other=0.0)
        else:
            r_nxt = u_nxt
        key = seed + k * Z + c
        u2 = u_cur[:, None]  # (BB 1)
        u3 = u2[:, :, None]  # (BB 1 1)
        r2 = r_cur[:, None]

        # state columns: B's currents, then A's, on the same columns (tile.sense's order)
        s_r = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
        s_i = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
        if STATE_ON:
            if MATH == 0:
                o = tl.zeros((BLOCK_B, BLOCK_N, S), dtype=tl.float32)
            else:
                o = _state_mean(u3, sd_r, sd_i, wa_r, wa_i, wb, A_ON, B_ON, PAIRS)  # (BB BN S)
            if MATH == 2:
                o = tl.fma(_state_mean(u3 + zero, sd_r + zero, sd_i + zero, wa_r, wa_i, wb, A_ON,
                                       B_ON, PAIRS), zero, o)
            if NOISE_AB:  # periphery.sense: o + sqrt(var) n, then the ADC
                if B_ON:
                    var = u3 * u3 * vb
                    if A_ON:
                        var = tl.fma((sd_r * sd_r)[:, :, None], va_r, var)
                else:
                    var = (sd_r * sd_r)[:, :, None] * va_r
                if A_ON and PAIRS == 2:
                    var = tl.fma((sd_i * sd_i)[:, :, None], va_i, var)
                var = var + nv_ab
                o = o + tl.sqrt(var) * _normals(key, ctr_ab, offs_s, M, S, RNG)
            if ADC_AB:
                o = _convert(o, step_ab, q_ab, CONV)
            s_r = _decoded(o, offs_s, 0, S, POL)
            if PAIRS == 2:
                s_i = _decoded(o, offs_s, 1, S, POL)
            if SPLIT:  # the diagonal part's outputs plus the off-diagonal part's
                s_r = s_r + _decoded(o, offs_s, 2, S, POL)
                s_i = s_i + _decoded(o, offs_s, 3, S, POL)
            s_r = s_r * alpha_r
            s_i = s_i * alpha_i
        if not A_ON:  # A_bar s, exactly, from the register
            if PAIRS == 2:
                s_r = s_r + (a_r * x_r - a_i * x_i)
                s_i = s_i + (a_i * x_r + a_r * x_i)
            else:
                s_r = s_r + a_r * x_r
        if not B_ON:  # B_bar u, exactly, from the raw input
            s_r = s_r + b_r * r2
            if PAIRS == 2:
                s_i = s_i + b_i * r2
        if INCREMENT:  # the accumulator adds its own content
            s_r = x_r + s_r
            s_i = x_i + s_i
        x_r = _register(s_r, step_s, clip, q_state, REG, CONV)
        if PAIRS == 2:
            x_i = _register(s_i, step_s, clip, q_state, REG, CONV)
        if DAC:
            sd_r = _convert(x_r, step_x, q_x, CONV)
            if PAIRS == 2:
                sd_i = _convert(x_i, step_x, q_x, CONV)
        else:
            sd_r = x_r
            sd_i = x_i

        # output columns: C's currents per piece, D's added to the first piece
        y = tl.zeros((BLOCK_B,), dtype=tl.float32)
        if OUT_ON:
            o_c = tl.zeros((BLOCK_B, BLOCK_P), dtype=tl.float32)
            if C_ON and MATH >= 1:
                cur = sd_r * wc_r
                if PAIRS == 2:
                    cur = cur + sd_i * wc_i
                if MATH == 2:
                    cur2 = (sd_r + zero) * wc_r
                    if PAIRS == 2:
                        cur2 = cur2 + (sd_i + zero) * wc_i
                    cur = tl.fma(cur2, zero, cur)
                o_c = tl.sum(tl.where(in_piece[None, :, :], cur[:, :, None], 0.0), axis=1)
            if D_ON and MATH >= 1:
                o_c = o_c + tl.where(first, u2 * w_d, 0.0)  # (BB BP)
            if NOISE_CD:
                var_c = tl.zeros((BLOCK_B, BLOCK_P), dtype=tl.float32)
                if C_ON:
                    v_cur = sd_r * sd_r * vc_r
                    if PAIRS == 2:
                        v_cur = v_cur + sd_i * sd_i * vc_i
                    var_c = tl.sum(tl.where(in_piece[None, :, :], v_cur[:, :, None], 0.0), axis=1)
                if D_ON:
                    var_c = var_c + tl.where(first, u2 * u2 * v_d, 0.0)
                var_c = var_c + nv_cd
                o_c = o_c + tl.sqrt(var_c) * _normal(key, ctr_cd, RNG)
            if ADC_CD:
                o_c = _convert(o_c, step_cd, q_cd, CONV)
            y = tl.sum(tl.where(mask_p, o_c, 0.0), axis=1) * alpha_cd
        if not C_ON:  # sum_n 2 Re(C s) (complex; C s real), exactly, from the register
            if PAIRS == 2:
                y = y + tl.sum(c_r * x_r - c_i * x_i, axis=1)
            else:
                y = y + tl.sum(c_r * x_r, axis=1)
        if not D_ON:
            y = y + d_exact * r_cur
        if IO >= 1:
            tl.store(y_ptr + y_row, y, mask=mask_b)
            if IO == 2:
                tl.store(y_ptr + y_row + nudge, y, mask=mask_b)
        else:
            y_sum += y

        u_row += H
        ur_row += H
        y_row += H
        u_cur = u_nxt
        r_cur = r_nxt
        k += 1
    if IO == 0:
        tl.store(y_ptr + y_row - H, y_sum, mask=mask_b)


def _launch_config(B: int, M: int) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_N, num_warps): about 128 (row, mode) pairs per program, 32 per warp.

    Not tuned on a GPU; the state-column work per pair (S columns, their draws and ADCs) is
    several times that of the digital scan's mode, hence more warps than its kernel uses.
    """
    BLOCK_N = triton.next_power_of_2(M)
    BLOCK_B = max(1, min(triton.next_power_of_2(B), 128 // BLOCK_N))
    num_warps = max(1, min(4, BLOCK_B * BLOCK_N // 32))
    return BLOCK_B, BLOCK_N, num_warps


def _adc(r: Tensor | None, cfg: PeripheryConfig, shape: tuple[int, ...],
         ref: Tensor) -> tuple[Tensor, Tensor]:
    """ADC steps and output-noise variances of a column group (``periphery.sense``), broadcast
    to ``shape``; zeros where unused."""
    step = var = ref.new_zeros(())
    if r is not None:
        if cfg.adc_bits is not None:
            step = grid_step(r, cfg.adc_bits)
        if cfg.output_noise > 0:
            var = (cfg.output_noise * r).square()
    return torch.broadcast_to(step, shape), torch.broadcast_to(var, shape)


def _pack(planes: list[Tensor | None], shape: tuple[int, ...], dim: int, ref: Tensor) -> Tensor:
    """Planes broadcast to ``shape`` (zeros for None, absent parts), stacked at ``dim``."""
    zero = ref.new_zeros(())
    return torch.stack([torch.broadcast_to(zero if p is None else p, shape) for p in planes],
                       dim).contiguous()


def _q(bits: int | None) -> float:
    return float(levels(bits)) if bits is not None else 1.0


def crossbar_scan(x: Tensor, u: Tensor, arrays: dict[str, SensedArrays],
                  exact: tuple[tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...], Tensor],
                  alpha_ab: Tensor | None, alpha_cd: Tensor | None,
                  ranges: dict[str, Tensor | None], converters: dict[str, PeripheryConfig],
                  generator: torch.Generator | None, *, split: bool = False,
                  increment: bool = False, stages: Mapping[str, int] | None = None) -> Tensor:
    """The recurrence of one S4D layer on the crossbar, as ``AnalogSSM``'s loop computes it, in
    one launch, for any configuration.

    Args:
        x: (z|1, B, L, H) float32 layer input (what digital B_bar and D multiply), on CUDA (or
            CPU in Triton's interpreter).
        u: its DAC outputs (what analog B_bar and D are driven by); ``x`` itself where the DAC
            is ideal or unused.
        arrays: the effective arrays of the analog tensors by field ("A_bar", "B_bar", "C",
            "D"; z chips; layouts in :mod:`imssa.crossbar.tile`), B_bar's widened onto A_bar's
            sensed columns (``Role.widen``) where both are analog. A field not given is digital.
        exact: the exact tensors for the digital parts: A_bar and B_bar as (re, im) planes (H,
            M) of complex modes or (values,) of real ones, C likewise (with the factor 2 of
            complex modes), D (H,).
        alpha_ab, alpha_cd: drift-compensation gains broadcasting against the decoded state
            (z, 1, H, M, pairs) and output (z, 1, H); None for none.
        ranges: converter ranges "state", "output" (ADCs), "x" (state DAC), "register", None
            where not needed (``AnalogSSM.range``).
        converters: the periphery of each of those converters (``AnalogPart.converter``).
        generator: source of the kernel's seeds.
        split: A_bar's transition scale is "split" (its diagonal and off-diagonal entries on
            columns of their own).
        increment: the increment form (the array holds A_bar - 1, the register accumulates).
        stages: for the profile only, {"rng" | "conv" | "math" | "io": 0 (left out) or 2
            (twice)}; the outputs are then not the layer's (:data:`STAGES`).

    Returns:
        y (z, B, L, H).
    """
    A, B, C, D = (arrays.get(k) for k in ("A_bar", "B_bar", "C", "D"))
    A_parts, B_parts, C_parts, D_exact = exact
    pairs = len(A_parts)
    H, M = A_parts[0].shape
    z = next(a.W.shape[0] for a in (A, B, C, D) if a is not None)
    _, Bsz, L, _ = x.shape
    state_tile = A if A is not None else B
    out_tile = C if C is not None else D
    S = state_tile.W.shape[-1] if state_tile is not None else 1
    P, K = C.W.shape[2:] if C is not None else (1, pairs * M)
    cfg_ab, cfg_cd, cfg_x, cfg_reg = (converters[k] for k in ("state", "output", "x", "register"))

    def var(t: SensedArrays | None) -> Tensor | None:
        return None if t is None or t.V is None else t.V

    # state columns (z H 8 M S)
    step_ab, nv_ab = _adc(ranges["state"], cfg_ab, (z, H, M, S), x)

    def rows_in(W: Tensor | None) -> list[Tensor | None]:  # (z p H M S) -> re in, im in
        if W is None:
            return [None, None]
        return [W[:, 0], W[:, 1] if pairs == 2 else None]

    ab = _pack([*rows_in(A.W if A is not None else None), B.W if B is not None else None,
                *rows_in(var(A)), var(B), step_ab, nv_ab], (z, H, M, S), 2, x)
    ones = x.new_ones(())
    alpha = torch.broadcast_to(alpha_ab if alpha_ab is not None else ones, (z, 1, H, M, 2))
    alpha = alpha[:, 0].movedim(-1, 2).contiguous()  # (z H 2 M)

    def modes(W: Tensor | None) -> list[Tensor | None]:  # (z H P K) mode-major -> re, im (z H M)
        if W is None:
            return [None, None]
        W = W.flatten(-2)[..., :pairs * M].unflatten(-1, (M, pairs))
        return [W[..., 0], W[..., 1] if pairs == 2 else None]

    cd = _pack([*modes(C.W if C is not None else None), *modes(var(C))], (z, H, M), 2, x)  # (z H 4 M)
    step_cd, nv_cd = _adc(ranges["output"], cfg_cd, (H, 1), x)
    a_cd = torch.broadcast_to(alpha_cd if alpha_cd is not None else ones, (z, 1, H))[:, 0]
    chv = _pack([D.W if D is not None else None, var(D), step_cd[:, 0], nv_cd[:, 0], a_cd, D_exact], (z, H), 2, x)

    def planes(parts: tuple[Tensor, ...]) -> list[Tensor | None]:
        return [parts[0], parts[1] if pairs == 2 else None]

    dig = _pack([*planes(A_parts), *planes(B_parts), *planes(C_parts)], (H, M), 1, x)  # (H 6 M)
    reg = 2 if cfg_reg.state_bits is not None else 1 if cfg_reg.state_clip is not None else 0
    dac_x = cfg_x.dac_bits is not None and (A is not None or C is not None)
    step_x = grid_step(ranges["x"], cfg_x.dac_bits) if dac_x else ones
    step_s = grid_step(ranges["register"], cfg_reg.state_bits) if reg == 2 else ones
    clip = x.new_tensor(cfg_reg.state_clip or 0.0)
    scal = torch.stack([step_x, step_s, clip])  # state DAC step, register step, state clip

    raw = u is not x  # digital parts read x, analog ones u
    x, u = x.contiguous(), u.contiguous()
    y = torch.empty((z, Bsz, L, H), dtype=x.dtype, device=x.device)
    draws = 2 if S == 8 else 1
    rows = max(1, (_COUNTERS - 1) // (H * (draws * M + P)))  # rows per launch: int32 counters
    starts = range(0, Bsz, rows)
    seeds = torch.randint(0, 2**62, (len(starts),), generator=generator, dtype=torch.int64,
                          device=x.device)
    BLOCK_B, BLOCK_N, num_warps = _launch_config(min(Bsz, rows), M)
    for i, b0 in enumerate(starts):
        u_i, x_i, y_i = u[:, b0:b0 + rows], x[:, b0:b0 + rows], y[:, b0:b0 + rows]
        NB = triton.cdiv(u_i.shape[1], BLOCK_B)
        _crossbar_scan_kernel[(z * NB * H,)](
            u_i, x_i, y_i, seeds[i:], ab, alpha, cd, chv, dig, scal,
            z, u_i.shape[1], L, H, M, P, K // pairs, NB,
            u.stride(0) if u.shape[0] > 1 else 0, x.stride(0) if x.shape[0] > 1 else 0,
            y.stride(0), 0, _q(cfg_ab.adc_bits), _q(cfg_cd.adc_bits), _q(cfg_x.dac_bits),
            _q(cfg_reg.state_bits),
            A_ON=A is not None, B_ON=B is not None, C_ON=C is not None, D_ON=D is not None,
            INCREMENT=increment, PAIRS=pairs, POL=S == 2 * pairs * (2 if split else 1),
            SPLIT=split, S=S, DRAWS=draws, STATE_ON=state_tile is not None,
            OUT_ON=out_tile is not None, RAW=raw,
            NOISE_AB=state_tile is not None and (var(A) is not None or var(B) is not None
                                                 or cfg_ab.output_noise > 0),
            NOISE_CD=out_tile is not None and (var(C) is not None or var(D) is not None
                                               or cfg_cd.output_noise > 0),
            ADC_AB=state_tile is not None and cfg_ab.adc_bits is not None,
            ADC_CD=out_tile is not None and cfg_cd.adc_bits is not None,
            DAC=dac_x, REG=reg,
            BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_P=triton.next_power_of_2(P),
            num_warps=num_warps, **{STAGES[k]: v for k, v in (stages or {}).items()})
    return y
