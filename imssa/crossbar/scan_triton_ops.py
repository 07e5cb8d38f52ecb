"""Device functions of the fused crossbar kernel (:mod:`imssa.crossbar.scan_triton_kernel`):
the converters (ADC, DAC, state register), the normal draws of the reads, and the sums over
sensed columns. Each takes the profile's stage switches (RNG, CONV: 1 as is, 0 left out, 2
twice) so that ``benchmarks/profile_kernel.py`` can time a stage by leaving it out or doubling
it; the default specialization compiles to the same code as without them.
"""

from __future__ import annotations

import triton
import triton.language as tl

from imssa.ssm.scan_triton import _quantize


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

