"""Device functions of the fused crossbar kernel (:mod:`imssa.crossbar.scan_triton_kernel`):
the converters (ADC, DAC, state register), the normal draws of the reads, and the sums over
sensed columns.

Converters (QUANT 1, the default): round(v / step) clamped to +-q steps, times step, as the
step loop's ``torch.round(v / step).clamp(-q, q) * step``, bit for bit, in about 8 instructions
instead of about 25 (QUANT 0: an IEEE division and a rounding from floor and compares):

- the quotient from the reciprocal r = RN(1 / step) (computed once, before the step loop), one
  product and one FMA correction (Markstein's: q0 = v r, e = v - q0 step exactly, q = q0 + e r),
  which is the correctly rounded v / step (0 mismatches in 2.4e8 pairs, random and within an ulp
  of a half step, checked against IEEE division with exact FMAs; the test repeats a slice); a
  quotient that is not finite (step 0, overflow) is kept as v r, which saturates as v / step;
- clamped before rounding (the bounds are integers, so the order does not matter), then rounded
  half to even by adding and subtracting 1.5 * 2^23 (exact in round-to-nearest for |x| < 2^22,
  and q <= 2^16).

Normals (GEN 1, the default): counter-based, one Philox call per counter as Triton's, but
Random123's Philox2x32-10 (two 32-bit words, half of Philox4x32-10's multiplies) where a
counter needs at most two normals (S <= 2 sensed columns of a mode, an output piece), and
Philox4x32-10 (``tl.randint4x``) for four; then cuRAND's Box-Muller (``_curand_box_muller``):
u = (x + 1/2) 2^-32 in (0, 1], r = sqrt(-2 log u) (|n| <= 6.66, where Triton's clips u at 1e-7:
|n| <= 5.68), angle t = 2 pi (y + 1/2) 2^-32 - pi, n = (r cos t, r sin t). Compiled (FAST 2,
the default on CUDA), the sine, cosine and log are the GPU's approximate instructions
(``__sinf``, ``__cosf``, ``__logf``: absolute errors about 2^-21 on [-pi, pi] and on u in [0.5,
1], as cuRAND's ``__sincosf`` and, in older releases, its ``__logf``): n moves by at most
about 3e-6 through the angle, and r by at most 3.6e-7 / r through the log (8.5e-4 at r = 0;
r^2 = -2 log u is clamped at 0, as the approximate log of u near 1 may exceed 0), far below a
read-noise ADC step. FAST 1 keeps the exact log; in Triton's interpreter
(FAST 0) all three are numpy's. GEN 0: Triton's ``tl.randn4x`` / ``tl.randn`` (Philox4x32-10
per counter; accurate sin, cos, log). GEN 1 draws other numbers than GEN 0 from the same seeds
and counters.

Each takes the profile's stage switches (RNG, CONV: 1 as is, 0 left out, 2 twice) so that
``benchmarks/profile_kernel.py`` can time a stage by leaving it out or doubling it; the default
specialization compiles to the same code as without them. GEN and QUANT 0 are the kernel before
these changes, for the benchmarks' same-run comparison.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.extra import libdevice

from imssa.ssm.scan_triton import _round_half_even

_M2x32 = tl.constexpr(0xD256D193)  # Philox2x32's round multiplier (Random123)
_W32 = tl.constexpr(0x9E3779B9)  # its key increment per round (golden ratio)
_HALF_EVEN = tl.constexpr(12582912.0)  # 1.5 * 2^23: (x + it) - it rounds x half to even
_INV_2_32 = tl.constexpr(2.3283064365386963e-10)  # 2^-32
_ANGLE = tl.constexpr(1.4629180792671596e-09)  # 2 pi 2^-32


@triton.jit
def _quotient(v, step, rstep, q, QUANT: tl.constexpr):
    """round(v / step) clamped to [-q, q] (a float of an integer); rstep = RN(1 / step)."""
    if QUANT == 0:
        return tl.clamp(_round_half_even(tl.math.div_rn(v, step)), -q, q,
                        propagate_nan=tl.PropagateNan.ALL)
    q0 = v * rstep
    q1 = tl.fma(tl.fma(-q0, step, v), rstep, q0)  # the correctly rounded v / step
    q1 = tl.where(tl.abs(q0) < float("inf"), q1, q0)  # not finite: saturates (or NaN) as v / step
    q1 = tl.clamp(q1, -q, q, propagate_nan=tl.PropagateNan.ALL)
    return (q1 + _HALF_EVEN) - _HALF_EVEN


@triton.jit
def _convert(v, step, rstep, q, CONV: tl.constexpr, QUANT: tl.constexpr):
    """A converter's transfer (round to the grid of ``step``, saturate at +-q steps; rstep =
    RN(1 / step)); CONV: 1 as is, 0 left out, 2 twice (the same value: a converter is
    idempotent) for the profile."""
    if CONV >= 1:
        v = _quotient(v, step, rstep, q, QUANT) * step
    if CONV == 2:
        v = _quotient(v, step, rstep, q, QUANT) * step
    return v


@triton.jit
def _register(v, step_s, rstep_s, clip, q_state, REG: tl.constexpr, CONV: tl.constexpr,
              QUANT: tl.constexpr):
    """``periphery.register``: 0 pass, 1 clip to [-clip, clip], 2 round to state_bits."""
    if REG == 1:
        v = tl.minimum(tl.maximum(v, -clip), clip)
    if REG == 2:
        v = _convert(v, step_s, rstep_s, q_state, CONV, QUANT)
    return v


@triton.jit
def _philox2x32(c0, c1, k):
    """Random123's Philox2x32-10 of the counter (c0, c1) under the key k (uint32 each): two
    uint32 words (Salmon et al., SC 2011; its known-answer vectors: tests)."""
    for _ in tl.static_range(10):
        hi = tl.math.umulhi(_M2x32, c0)
        c0, c1 = hi ^ c1 ^ k, tl.mul(_M2x32, c0, sanitize_overflow=False)
        k = tl.add(k, _W32, sanitize_overflow=False)
    return c0, c1


@triton.jit
def _box_muller(x0, x1, FAST: tl.constexpr):
    """cuRAND's Box-Muller of two uint32 words: two independent N(0, 1); FAST 1, 2: the GPU's
    approximate sine and cosine, 2 also its log (see the module)."""
    u = x0.to(tl.float32) * _INV_2_32 + 0.5 * _INV_2_32  # (0, 1]
    t = x1.to(tl.float32) * _ANGLE + (0.5 * _ANGLE - 3.141592653589793)  # (-pi, pi)
    if FAST == 2:  # approximate: may exceed 0 by its error near u = 1
        r = tl.sqrt(tl.maximum(-2.0 * libdevice.fast_logf(u), 0.0))
    else:
        r = tl.sqrt(-2.0 * tl.log(u))
    if FAST >= 1:
        return r * libdevice.fast_cosf(t), r * libdevice.fast_sinf(t)
    return r * tl.cos(t), r * tl.sin(t)


@triton.jit
def _gauss2(key, ctr, GEN: tl.constexpr, FAST: tl.constexpr):
    """Two N(0, 1) per counter ctr (int32) of the 64-bit key: GEN 1 Philox2x32-10 (the key's low
    word its key, its high word the counter's second word), GEN 0 ``tl.randn4x``'s first two."""
    if GEN == 0:
        n0, n1, _, _ = tl.randn4x(key, ctr)  # the compiler drops the unused pair
    else:
        x0, x1 = _philox2x32(ctr.to(tl.uint32), (key >> 32).to(tl.uint32), key.to(tl.uint32))
        n0, n1 = _box_muller(x0, x1, FAST)
    return n0, n1


@triton.jit
def _gauss4(key, ctr, GEN: tl.constexpr, FAST: tl.constexpr):
    """Four N(0, 1) per counter: one Philox4x32-10 call, two Box-Muller pairs (GEN as
    :func:`_gauss2`)."""
    if GEN == 0:
        n0, n1, n2, n3 = tl.randn4x(key, ctr)
    else:
        x0, x1, x2, x3 = tl.randint4x(key, ctr)
        n0, n1 = _box_muller(x0, x1, FAST)
        n2, n3 = _box_muller(x2, x3, FAST)
    return n0, n1, n2, n3


@triton.jit
def _gauss_cols(key, ctr, S: tl.constexpr, GEN: tl.constexpr, FAST: tl.constexpr):
    """N(0, 1) for up to 4 sensed columns a mode, one Philox call per counter: two (S <= 2; the
    last two repeat them, for the signature) or four."""
    if S <= 2:
        n0, n1 = _gauss2(key, ctr, GEN, FAST)
        n2 = n0
        n3 = n1
    else:
        n0, n1, n2, n3 = _gauss4(key, ctr, GEN, FAST)
    return n0, n1, n2, n3


@triton.jit
def _draw(key, ctr, offs_s, M, S: tl.constexpr, GEN: tl.constexpr, FAST: tl.constexpr):
    """N(0, 1) for the sensed state columns as one (BB BN S) tensor, counters ctr (BB BN) (and
    ctr + M for S = 8)."""
    n0, n1, n2, n3 = _gauss_cols(key, ctr, S, GEN, FAST)
    n = tl.where(offs_s == 0, n0[:, :, None], n1[:, :, None])
    if S >= 4:
        n = tl.where(offs_s == 2, n2[:, :, None], n)
        n = tl.where(offs_s == 3, n3[:, :, None], n)
    if S == 8:
        n4, n5, n6, n7 = _gauss4(key, ctr + M, GEN, FAST)
        n = tl.where(offs_s == 4, n4[:, :, None], n)
        n = tl.where(offs_s == 5, n5[:, :, None], n)
        n = tl.where(offs_s == 6, n6[:, :, None], n)
        n = tl.where(offs_s == 7, n7[:, :, None], n)
    return n


@triton.jit
def _normals(key, ctr, offs_s, M, S: tl.constexpr, RNG: tl.constexpr, GEN: tl.constexpr,
             FAST: tl.constexpr):
    """:func:`_draw`'s normals; RNG (the profile): 1 as is, 0 left out (zeros), 2 drawn twice
    (the second from the key of the next chip), their sum over sqrt 2."""
    if RNG == 0:
        n = tl.where(offs_s == 0, tl.zeros(ctr.shape, dtype=tl.float32)[:, :, None], 0.0)
    else:
        n = _draw(key, ctr, offs_s, M, S, GEN, FAST)
        if RNG == 2:
            n = (n + _draw(key + 1, ctr, offs_s, M, S, GEN, FAST)) * 0.7071067811865476
    return n


@triton.jit
def _column_normals(key, ctr, S: tl.constexpr, RNG: tl.constexpr, GEN: tl.constexpr,
                    FAST: tl.constexpr):
    """:func:`_gauss_cols`'s normals, (BB BN) each, for a mode's S <= 4 sensed columns as tensors
    of their own (an output piece: the first, S = 1); RNG as :func:`_normals`."""
    if RNG == 0:
        n0 = tl.zeros(ctr.shape, dtype=tl.float32)
        n1 = n0
        n2 = n0
        n3 = n0
    else:
        n0, n1, n2, n3 = _gauss_cols(key, ctr, S, GEN, FAST)
        if RNG == 2:
            m0, m1, m2, m3 = _gauss_cols(key + 1, ctr, S, GEN, FAST)
            n0 = (n0 + m0) * 0.7071067811865476
            n1 = (n1 + m1) * 0.7071067811865476
            n2 = (n2 + m2) * 0.7071067811865476
            n3 = (n3 + m3) * 0.7071067811865476
    return n0, n1, n2, n3


@triton.jit
def _column_arrays(col, MS, mask_n):
    """One sensed state column of each mode, (1 BN) per row of the pack (zeros where a part is
    digital or noiseless): W_A re in, W_A im in, W_B, V_A re in, V_A im in, V_B, output-noise
    variance, ADC step and its reciprocal."""
    wa_r = tl.load(col, mask=mask_n, other=0.0)[None, :]
    wa_i = tl.load(col + MS, mask=mask_n, other=0.0)[None, :]
    wb = tl.load(col + 2 * MS, mask=mask_n, other=0.0)[None, :]
    va_r = tl.load(col + 3 * MS, mask=mask_n, other=0.0)[None, :]
    va_i = tl.load(col + 4 * MS, mask=mask_n, other=0.0)[None, :]
    vb = tl.load(col + 5 * MS, mask=mask_n, other=0.0)[None, :]
    step = tl.load(col + 6 * MS, mask=mask_n, other=1.0)[None, :]
    nv = tl.load(col + 7 * MS, mask=mask_n, other=0.0)[None, :]
    return wa_r, wa_i, wb, va_r, va_i, vb, nv, step, tl.math.div_rn(1.0, step)


@triton.jit
def _sensed(u, sd_r, sd_i, wa_r, wa_i, wb, va_r, va_i, vb, nv, n, zero, A_ON: tl.constexpr,
            B_ON: tl.constexpr, PAIRS: tl.constexpr, NOISE: tl.constexpr, MATH: tl.constexpr):
    """The sensed state columns before their ADC (``periphery.sense``): the currents
    (:func:`_state_mean`) plus sqrt(var) n, var = u^2 V_B + s_d^2 V_A + output-noise variance
    (that order). Any shape: (BB BN) tensors of one column, or (BB BN S) of a mode's S columns
    (u, sd_r, sd_i then broadcast to it). MATH (the profile): 1 as is, 0 no currents, 2 the
    currents twice (``zero``: a runtime 0)."""
    if MATH == 0:
        o = tl.zeros_like(_state_mean(u, sd_r, sd_i, wa_r, wa_i, wb, A_ON, B_ON, PAIRS))
    else:
        o = _state_mean(u, sd_r, sd_i, wa_r, wa_i, wb, A_ON, B_ON, PAIRS)
    if MATH == 2:
        o = tl.fma(_state_mean(u + zero, sd_r + zero, sd_i + zero, wa_r, wa_i, wb, A_ON, B_ON,
                               PAIRS), zero, o)
    if NOISE:
        if B_ON:
            var = u * u * vb
            if A_ON:
                var = tl.fma(sd_r * sd_r, va_r, var)
        else:
            var = (sd_r * sd_r) * va_r
        if A_ON and PAIRS == 2:
            var = tl.fma(sd_i * sd_i, va_i, var)
        o = o + tl.sqrt(var + nv) * n
    return o


@triton.jit
def _column(u, sd_r, sd_i, arrays, n, zero, q, A_ON: tl.constexpr, B_ON: tl.constexpr,
            PAIRS: tl.constexpr, NOISE: tl.constexpr, ADC: tl.constexpr, MATH: tl.constexpr,
            CONV: tl.constexpr, QUANT: tl.constexpr):
    """One sensed state column (BB BN) after its ADC; ``arrays``: :func:`_column_arrays`'."""
    wa_r, wa_i, wb, va_r, va_i, vb, nv, step, rstep = arrays
    o = _sensed(u, sd_r, sd_i, wa_r, wa_i, wb, va_r, va_i, vb, nv, n, zero, A_ON, B_ON, PAIRS,
                NOISE, MATH)
    if ADC:
        o = _convert(o, step, rstep, q, CONV, QUANT)
    return o


@triton.jit
def _state_mean(u, sd_r, sd_i, wa_r, wa_i, wb, A_ON: tl.constexpr, B_ON: tl.constexpr,
                PAIRS: tl.constexpr):
    """The state columns' currents (shapes as :func:`_sensed`): B's, then A's rows added as the
    loop's addcmul_ does (one FMA each)."""
    if B_ON:
        o = u * wb
        if A_ON:
            o = tl.fma(sd_r, wa_r, o)
    else:
        o = sd_r * wa_r
    if A_ON and PAIRS == 2:
        o = tl.fma(sd_i, wa_i, o)
    return o


@triton.jit
def _decoded(o, offs_s, J: tl.constexpr, S: tl.constexpr, POL: tl.constexpr):
    """Decoded output J of the sensed columns o (BB BN S), as ``Role.decode``: column J, or
    (o_J - o_{J+S/2}) / 2 for polarity-doubled columns. Picking a column sums exact zeros."""
    y = tl.sum(tl.where(offs_s[None, None, :] == J, o, 0.0), axis=2)
    if POL:
        y = (y - tl.sum(tl.where(offs_s[None, None, :] == J + S // 2, o, 0.0), axis=2)) * 0.5
    return y

