"""The fused Triton kernel of one S4D layer's recurrence on the crossbar (what it computes,
its rounding and its draws: :mod:`imssa.crossbar.scan_triton`, which packs its arrays and
launches it; its device functions: :mod:`imssa.crossbar.scan_triton_ops`)."""

from __future__ import annotations

import triton
import triton.language as tl

from imssa.crossbar.scan_triton_ops import (
    _column,
    _column_arrays,
    _column_normals,
    _convert,
    _decoded,
    _normals,
    _register,
    _sensed,
)

# Arrays packed per (chip, channel) (constexpr, as globals a kernel reads must be). State columns,
# (M, S) each: W_A (re in), W_A (im in), W_B, V_A (re in), V_A (im in), V_B, ADC step, output-noise var
_AB_ROWS = tl.constexpr(8)
_CD_ROWS = tl.constexpr(4)  # output columns, (M,) each: W_C re, W_C im, V_C re, V_C im
_CH_VALUES = tl.constexpr(6)  # W_D, V_D, ADC step, output-noise variance, alpha_CD, exact D
_DIG_ROWS = tl.constexpr(6)  # exact digital tensors per channel, (M,) each: A re, im, B re, im, C re, im


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
    FAST: tl.constexpr = 0,
    RNG: tl.constexpr = 1, CONV: tl.constexpr = 1, MATH: tl.constexpr = 1, IO: tl.constexpr = 1,
    GEN: tl.constexpr = 1, QUANT: tl.constexpr = 1, COLS: tl.constexpr = 1,
):
    # RNG, CONV, MATH, IO: stages of the profile (benchmarks/profile_kernel.py), 1 as is, 0 left
    # out, 2 done twice: the normal draws, the converters, the arrays' products with their drives
    # (the currents), the per-step load of u and store of y. nudge: a runtime 0 the doubled
    # stages add so that the compiler cannot merge them with the first. GEN, QUANT: the normal
    # generator and the converters' arithmetic, 1 this kernel's, 0 the previous kernel's (for a
    # same-run comparison; scan_triton_ops). FAST: the draws' approximate instructions (compiled
    # only): 1 sine and cosine, 2 also the log; 0 in Triton's interpreter. COLS: S <= 4 sensed
    # columns a mode as (BB BN) tensors of their own (1), or as one (BB BN S) tensor, whose
    # conversions between layouts cost shared-memory round trips and barriers every step (0,
    # the previous kernel's; S = 8 always).
    COLUMNS: tl.constexpr = COLS == 1 and S <= 4
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
    wa_r = 0.0  # placeholders of digital or noiseless parts, for _sensed's signature
    wa_i = 0.0
    wb = 0.0
    va_r = 0.0
    va_i = 0.0
    vb = 0.0
    nv_ab = 0.0
    col = ab_ptr + ch * (_AB_ROWS * M * S) + offs_n * S  # COLUMNS: (1 BN) per column and row
    if COLUMNS:
        A0 = _column_arrays(col, M * S, mask_n)
        if S >= 2:
            A1 = _column_arrays(col + 1, M * S, mask_n)
        if S == 4:
            A2 = _column_arrays(col + 2, M * S, mask_n)
            A3 = _column_arrays(col + 3, M * S, mask_n)
    elif A_ON:
        wa_r = tl.load(ab, mask=mask_ns, other=0.0)[None, :, :]
        if PAIRS == 2:
            wa_i = tl.load(ab + M * S, mask=mask_ns, other=0.0)[None, :, :]
    if B_ON and not COLUMNS:
        wb = tl.load(ab + 2 * M * S, mask=mask_ns, other=0.0)[None, :, :]
    if NOISE_AB and not COLUMNS:
        if A_ON:
            va_r = tl.load(ab + 3 * M * S, mask=mask_ns, other=0.0)[None, :, :]
            if PAIRS == 2:
                va_i = tl.load(ab + 4 * M * S, mask=mask_ns, other=0.0)[None, :, :]
        if B_ON:
            vb = tl.load(ab + 5 * M * S, mask=mask_ns, other=0.0)[None, :, :]
        nv_ab = tl.load(ab + 7 * M * S, mask=mask_ns, other=0.0)[None, :, :]
    if ADC_AB and not COLUMNS:
        step_ab = tl.load(ab + 6 * M * S, mask=mask_ns, other=1.0)[None, :, :]
        rstep_ab = tl.math.div_rn(1.0, step_ab)  # reciprocal steps, once (scan_triton_ops)
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
    rstep_cd = tl.math.div_rn(1.0, step_cd)
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
    rstep_x = tl.math.div_rn(1.0, step_x)
    rstep_s = tl.math.div_rn(1.0, step_s)

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
        if STATE_ON and COLUMNS:  # a mode's S <= 4 sensed columns, (BB BN) each
            n0 = 0.0
            n1 = 0.0
            n2 = 0.0
            n3 = 0.0
            if NOISE_AB:
                n0, n1, n2, n3 = _column_normals(key, ctr_ab, S, RNG, GEN, FAST)
            o0 = _column(u2, sd_r, sd_i, A0, n0, zero, q_ab, A_ON, B_ON, PAIRS, NOISE_AB, ADC_AB,
                         MATH, CONV, QUANT)
            if S >= 2:
                o1 = _column(u2, sd_r, sd_i, A1, n1, zero, q_ab, A_ON, B_ON, PAIRS, NOISE_AB,
                             ADC_AB, MATH, CONV, QUANT)
            if S == 4:
                o2 = _column(u2, sd_r, sd_i, A2, n2, zero, q_ab, A_ON, B_ON, PAIRS, NOISE_AB,
                             ADC_AB, MATH, CONV, QUANT)
                o3 = _column(u2, sd_r, sd_i, A3, n3, zero, q_ab, A_ON, B_ON, PAIRS, NOISE_AB,
                             ADC_AB, MATH, CONV, QUANT)
            # Role.decode, as _decoded: columns (re, im), polarity-doubled (o_J - o_J+S/2) / 2,
            # a split scale's diagonal part plus its off-diagonal part
            if S == 1:
                s_r = o0
            elif S == 2 and PAIRS == 2:
                s_r = o0
                s_i = o1
            elif S == 2:
                s_r = (o0 - o1) * 0.5
            elif POL:
                s_r = (o0 - o2) * 0.5
                s_i = (o1 - o3) * 0.5
            else:
                s_r = o0 + o2
                s_i = o1 + o3
        if STATE_ON and not COLUMNS:
            n = 0.0
            if NOISE_AB:
                n = _normals(key, ctr_ab, offs_s, M, S, RNG, GEN, FAST)
            o = _sensed(u3, sd_r[:, :, None], sd_i[:, :, None], wa_r, wa_i, wb, va_r, va_i, vb,
                        nv_ab, n, zero, A_ON, B_ON, PAIRS, NOISE_AB, MATH)  # (BB BN S)
            if ADC_AB:
                o = _convert(o, step_ab, rstep_ab, q_ab, CONV, QUANT)
            s_r = _decoded(o, offs_s, 0, S, POL)
            if PAIRS == 2:
                s_i = _decoded(o, offs_s, 1, S, POL)
            if SPLIT:  # the diagonal part's outputs plus the off-diagonal part's
                s_r = s_r + _decoded(o, offs_s, 2, S, POL)
                s_i = s_i + _decoded(o, offs_s, 3, S, POL)
        if STATE_ON:
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
        x_r = _register(s_r, step_s, rstep_s, clip, q_state, REG, CONV, QUANT)
        if PAIRS == 2:
            x_i = _register(s_i, step_s, rstep_s, clip, q_state, REG, CONV, QUANT)
        if DAC:
            sd_r = _convert(x_r, step_x, rstep_x, q_x, CONV, QUANT)
            if PAIRS == 2:
                sd_i = _convert(x_i, step_x, rstep_x, q_x, CONV, QUANT)
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
                n_cd, _, _, _ = _column_normals(key, ctr_cd, 1, RNG, GEN, FAST)
                o_c = o_c + tl.sqrt(var_c) * n_cd
            if ADC_CD:
                o_c = _convert(o_c, step_cd, rstep_cd, q_cd, CONV, QUANT)
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
