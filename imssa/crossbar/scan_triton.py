"""A fused Triton kernel for the recurrent loop of one S4D layer on the crossbar.

:class:`~imssa.crossbar.AnalogSSM` runs the L steps of a layer as a Python loop of
about twenty PyTorch kernels per step over (chips, batch, H, N/2, S) tensors: launch- and
memory-bound. :func:`crossbar_scan` runs the whole loop in one launch. One program per (chip,
block of batch rows, channel h) keeps that channel's effective arrays (A, B, C, D weights and
read-noise variances, ADC steps, drift-compensation gains) and the state in registers; per step
it reads only the DAC'd input u[k] and writes only y[k]. A step computes what the step loop
computes (tile layouts in :mod:`imssa.mapping.roles`):

    state columns:  o = ADC(u W_B + DAC(s) W_A + sqrt(u^2 V_B + DAC(s)^2 V_A + (eta r)^2) n)
                    s = register(decode(o) alpha_AB)
    output columns: y = sum_pieces ADC(DAC(s) W_C + u W_D + sqrt(...) n) alpha_CD

with the same rounding (IEEE division, half to even, saturation) and, for the state columns, the
same order of the sums; the output columns sum over modes and pieces in another order (so an
ADC step may rarely flip where a sum lies within float error of a boundary). The Gaussian draws
n differ: Triton's Philox (``tl.randn4x``, 4 normals per mode
for the S <= 4 sensed columns, ``tl.randn`` per output piece) with key = a seed drawn from the
pass's generator + step * chips + chip and one counter per (batch row, channel, mode or piece),
so results are reproducible from the generator but are not the loop's numbers.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from imssa.crossbar.periphery import PeripheryConfig, grid_step, levels
from imssa.crossbar.tile import SensedArrays
from imssa.ssm.scan_triton import _quantize

# Arrays packed per (chip, channel) (constexpr, as globals a kernel reads must be). State columns,
# (N2, S) each: W_A (re in), W_A (im in), W_B, V_A (re in), V_A (im in), V_B, ADC step, output-noise var
_AB_ROWS = tl.constexpr(8)
_CD_ROWS = tl.constexpr(4)  # output columns, (N2,) each: W_C re, W_C im, V_C re, V_C im
_CH_VALUES = tl.constexpr(5)  # W_D, V_D, ADC step, output-noise variance, alpha_CD
_COUNTERS = 2**31  # Philox counters (int32) per chip and step


@triton.jit
def _register(v, step_s, clip, q_state, REG: tl.constexpr):
    """``periphery.register``: 0 pass, 1 clip to [-clip, clip], 2 round to state_bits."""
    if REG == 1:
        v = tl.minimum(tl.maximum(v, -clip), clip)
    if REG == 2:
        v = _quantize(v, step_s, 0.0, -q_state, q_state)
    return v


@triton.jit
def _crossbar_scan_kernel(
    u_ptr, y_ptr, seed_ptr,  # u: (z|1, B, L, H) DAC'd inputs; y: (z, B, L, H); seed: int64
    ab_ptr, alpha_ptr, cd_ptr, ch_ptr, scal_ptr,  # packed arrays (see crossbar_scan)
    Z, B, L, H, N2, P, M, NB, stride_uz, stride_yz,
    q_adc, q_dac, q_state,
    S: tl.constexpr, NOISE_AB: tl.constexpr, NOISE_CD: tl.constexpr, ADC: tl.constexpr,
    DAC: tl.constexpr, REG: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_P: tl.constexpr,
):
    pid = tl.program_id(0)
    h = pid % H  # neighbouring programs: neighbouring channels of the same rows
    c = pid // (H * NB)
    offs_b = (pid // H % NB) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_n = tl.arange(0, BLOCK_N)
    offs_s = tl.arange(0, S)
    offs_p = tl.arange(0, BLOCK_P)
    mask_b = offs_b < B
    mask_n = offs_n < N2
    mask_ns = mask_n[:, None] & (offs_s < S)[None, :]
    ch = (c * H + h).to(tl.int64)

    # state columns: (BN, S) per row of the pack; decode weights of the sensed columns
    ab = ab_ptr + ch * (_AB_ROWS * N2 * S) + offs_n[:, None] * S + offs_s[None, :]
    wa_r = tl.load(ab, mask=mask_ns, other=0.0)[None, :, :]
    wa_i = tl.load(ab + N2 * S, mask=mask_ns, other=0.0)[None, :, :]
    wb = tl.load(ab + 2 * N2 * S, mask=mask_ns, other=0.0)[None, :, :]
    if NOISE_AB:
        va_r = tl.load(ab + 3 * N2 * S, mask=mask_ns, other=0.0)[None, :, :]
        va_i = tl.load(ab + 4 * N2 * S, mask=mask_ns, other=0.0)[None, :, :]
        vb = tl.load(ab + 5 * N2 * S, mask=mask_ns, other=0.0)[None, :, :]
        nv_ab = tl.load(ab + 7 * N2 * S, mask=mask_ns, other=0.0)[None, :, :]
    step_ab = tl.load(ab + 6 * N2 * S, mask=mask_ns, other=1.0)[None, :, :]
    if S == 4:  # polarity: sensed (y_r, y_i, -y_r, -y_i) -> ((o0 - o2) / 2, (o1 - o3) / 2)
        dec_r = tl.where(offs_s == 0, 0.5, tl.where(offs_s == 2, -0.5, 0.0))[None, None, :]
        dec_i = tl.where(offs_s == 1, 0.5, tl.where(offs_s == 3, -0.5, 0.0))[None, None, :]
    else:  # differential: sensed (y_r, y_i)
        dec_r = tl.where(offs_s == 0, 1.0, 0.0)[None, None, :]
        dec_i = tl.where(offs_s == 1, 1.0, 0.0)[None, None, :]
    alpha_r = tl.load(alpha_ptr + ch * 2 * N2 + offs_n, mask=mask_n, other=0.0)[None, :]
    alpha_i = tl.load(alpha_ptr + ch * 2 * N2 + N2 + offs_n, mask=mask_n, other=0.0)[None, :]

    # output columns: modes (BN,) -> pieces (BP,) of C's columns; D drives piece 0
    cd = cd_ptr + ch * (_CD_ROWS * N2) + offs_n
    wc_r = tl.load(cd, mask=mask_n, other=0.0)[None, :]
    wc_i = tl.load(cd + N2, mask=mask_n, other=0.0)[None, :]
    if NOISE_CD:
        vc_r = tl.load(cd + 2 * N2, mask=mask_n, other=0.0)[None, :]
        vc_i = tl.load(cd + 3 * N2, mask=mask_n, other=0.0)[None, :]
    in_piece = ((offs_n // M)[:, None] == offs_p[None, :]) & mask_n[:, None]  # (BN BP)
    first = (offs_p == 0)[None, :]
    mask_p = (offs_p < P)[None, :]
    chv = ch_ptr + ch * _CH_VALUES
    w_d = tl.load(chv)
    v_d = tl.load(chv + 1)
    step_cd = tl.load(chv + 2)
    nv_cd = tl.load(chv + 3)
    alpha_cd = tl.load(chv + 4)
    step_x = tl.load(scal_ptr)  # DAC of the state
    step_s = tl.load(scal_ptr + 1)  # state register
    clip = tl.load(scal_ptr + 2)

    # Philox: key per (chip, step), counters per (row, channel) for N2 modes then P pieces
    seed = tl.load(seed_ptr)
    slot = (offs_b * H + h) * (N2 + P)
    ctr_ab = slot[:, None] + offs_n[None, :]  # (BB BN)
    ctr_cd = slot[:, None] + N2 + offs_p[None, :]  # (BB BP)

    u_row = c.to(tl.int64) * stride_uz + offs_b.to(tl.int64) * (L * H) + h
    y_row = c.to(tl.int64) * stride_yz + offs_b.to(tl.int64) * (L * H) + h
    sd_r = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)  # DAC(s[k-1]); the zero state maps to 0
    sd_i = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    u_cur = tl.load(u_ptr + u_row, mask=mask_b, other=0.0)
    k = 0
    while k < L:  # a while loop: Triton 3.6's interpreter cannot range() over a runtime int
        # prefetch the next input (a step condition enters a mask as a tensor for the interpreter)
        u_nxt = tl.load(u_ptr + u_row + H, mask=mask_b & (offs_b * 0 + k + 1 < L), other=0.0)
        key = seed + k * Z + c
        u2 = u_cur[:, None]  # (BB 1)
        u3 = u2[:, :, None]  # (BB 1 1)

        # state columns: B's currents, then A's, on the same columns (tile.sense's order)
        o = u3 * wb + sd_r[:, :, None] * wa_r + sd_i[:, :, None] * wa_i  # (BB BN S)
        if NOISE_AB:  # periphery.sense: o + sqrt(var) n, then the ADC
            var = (u3 * u3 * vb + (sd_r * sd_r)[:, :, None] * va_r
                   + (sd_i * sd_i)[:, :, None] * va_i + nv_ab)
            n0, n1, n2, n3 = tl.randn4x(key, ctr_ab)
            noise = tl.where(offs_s == 0, n0[:, :, None], n1[:, :, None])
            if S == 4:
                noise = tl.where(offs_s == 2, n2[:, :, None], noise)
                noise = tl.where(offs_s == 3, n3[:, :, None], noise)
            o = o + tl.sqrt(var) * noise
        if ADC:
            o = _quantize(o, step_ab, 0.0, -q_adc, q_adc)
        s_r = _register(tl.sum(o * dec_r, axis=2) * alpha_r, step_s, clip, q_state, REG)
        s_i = _register(tl.sum(o * dec_i, axis=2) * alpha_i, step_s, clip, q_state, REG)
        if DAC:
            sd_r = _quantize(s_r, step_x, 0.0, -q_dac, q_dac)
            sd_i = _quantize(s_i, step_x, 0.0, -q_dac, q_dac)
        else:
            sd_r = s_r
            sd_i = s_i

        # output columns: C's currents per piece, D's added to the first piece
        mean_c = tl.sum(tl.where(in_piece[None, :, :],
                                 (sd_r * wc_r + sd_i * wc_i)[:, :, None], 0.0), axis=1)
        o_c = mean_c + tl.where(first, u2 * w_d, 0.0)  # (BB BP)
        if NOISE_CD:
            var_c = tl.sum(tl.where(in_piece[None, :, :],
                                    (sd_r * sd_r * vc_r + sd_i * sd_i * vc_i)[:, :, None], 0.0),
                           axis=1)
            var_c = var_c + tl.where(first, u2 * u2 * v_d, 0.0) + nv_cd
            o_c = o_c + tl.sqrt(var_c) * tl.randn(key, ctr_cd)
        if ADC:
            o_c = _quantize(o_c, step_cd, 0.0, -q_adc, q_adc)
        y = tl.sum(tl.where(mask_p, o_c, 0.0), axis=1) * alpha_cd
        tl.store(y_ptr + y_row, y, mask=mask_b)

        u_row += H
        y_row += H
        u_cur = u_nxt
        k += 1


def _launch_config(B: int, N2: int) -> tuple[int, int, int]:
    """(BLOCK_B, BLOCK_N, num_warps): about 128 (row, mode) pairs per program, 32 per warp.

    Not tuned on a GPU; the state-column work per pair (S columns, their draws and ADCs) is
    several times that of the digital scan's mode, hence more warps than its kernel uses.
    """
    BLOCK_N = triton.next_power_of_2(N2)
    BLOCK_B = max(1, min(triton.next_power_of_2(B), 128 // BLOCK_N))
    num_warps = max(1, min(4, BLOCK_B * BLOCK_N // 32))
    return BLOCK_B, BLOCK_N, num_warps


def _adc(r: Tensor | None, cfg: PeripheryConfig, shape: tuple[int, ...],
         ref: Tensor) -> tuple[Tensor, Tensor]:
    """ADC steps and output-noise variances of a column group (``periphery.sense``), broadcast
    to ``shape``; zeros where unused."""
    step = var = torch.zeros((), dtype=ref.dtype, device=ref.device)
    if r is not None:
        if cfg.adc_bits is not None:
            step = grid_step(r, cfg.adc_bits)
        if cfg.output_noise > 0:
            var = (cfg.output_noise * r).square()
    return torch.broadcast_to(step, shape), torch.broadcast_to(var, shape)


def crossbar_scan(u: Tensor, A: SensedArrays, B: SensedArrays, C: SensedArrays, D: SensedArrays,
                  alpha_ab: Tensor | None, alpha_cd: Tensor | None,
                  ranges: dict[str, Tensor | None], cfg: PeripheryConfig,
                  generator: torch.Generator | None) -> Tensor:
    """The recurrence of one all-analog S4D layer, as ``AnalogSSM``'s loop computes it, in one
    launch.

    Args:
        u: (z|1, B, L, H) float32 DAC outputs of the layer input, on CUDA (or CPU in Triton's
            interpreter).
        A, B, C, D: the effective arrays of the layer's tiles (z chips; layouts in
            :mod:`imssa.crossbar.tile`).
        alpha_ab, alpha_cd: drift-compensation gains broadcasting against the decoded state
            (z, 1, H, N2, 2) and output (z, 1, H); None for none.
        ranges: converter ranges "state", "output" (ADCs), "x" (state DAC), "register", None
            where not needed (``AnalogSSM.range``).
        cfg: the periphery.
        generator: source of the kernel's seeds.

    Returns:
        y (z, B, L, H).
    """
    z, _, H, N2, S = A.W.shape
    P, K = C.W.shape[2:]
    _, Bsz, L, _ = u.shape
    dev = u.device
    noise_ab = A.V is not None or B.V is not None or cfg.output_noise > 0
    noise_cd = C.V is not None or D.V is not None or cfg.output_noise > 0

    def var(arrays: SensedArrays) -> Tensor:
        return arrays.V if arrays.V is not None else torch.zeros_like(arrays.W)

    step_ab, nv_ab = _adc(ranges["state"], cfg, (z, H, N2, S), u)
    ab = torch.stack([A.W[:, 0], A.W[:, 1], B.W, var(A)[:, 0], var(A)[:, 1], var(B), step_ab,
                      nv_ab], 2).contiguous()  # (z H 8 N2 S)
    ones = torch.ones((), dtype=u.dtype, device=dev)
    alpha = torch.broadcast_to(alpha_ab if alpha_ab is not None else ones, (z, 1, H, N2, 2))
    alpha = alpha[:, 0].movedim(-1, 2).contiguous()  # (z H 2 N2)

    def modes(W: Tensor) -> Tensor:  # (z H P K) mode-major columns -> (z H 2 N2) re/im
        return W.flatten(-2)[..., :2 * N2].unflatten(-1, (N2, 2)).movedim(-1, 2)

    cd = torch.cat([modes(C.W), modes(var(C))], 2).contiguous()  # (z H 4 N2)
    step_cd, nv_cd = _adc(ranges["output"], cfg, (H, 1), u)
    a_cd = torch.broadcast_to(alpha_cd if alpha_cd is not None else ones, (z, 1, H))[:, 0]
    chv = torch.stack(torch.broadcast_tensors(D.W, var(D), step_cd[:, 0], nv_cd[:, 0], a_cd),
                      -1).contiguous()  # (z H 5)
    reg = 2 if cfg.state_bits is not None else 1 if cfg.state_clip is not None else 0
    step_x = grid_step(ranges["x"], cfg.dac_bits) if cfg.dac_bits is not None else ones
    step_s = grid_step(ranges["register"], cfg.state_bits) if reg == 2 else ones
    clip = torch.tensor(cfg.state_clip or 0.0, dtype=u.dtype, device=dev)
    scal = torch.stack([step_x, step_s, clip])  # state DAC step, register step, state clip

    def q(bits: int | None) -> float:
        return float(levels(bits)) if bits is not None else 1.0

    u = u.contiguous()
    y = torch.empty((z, Bsz, L, H), dtype=u.dtype, device=dev)
    rows = max(1, (_COUNTERS - 1) // (H * (N2 + P)))  # rows per launch: int32 Philox counters
    starts = range(0, Bsz, rows)
    seeds = torch.randint(0, 2**62, (len(starts),), generator=generator, dtype=torch.int64,
                          device=dev)
    BLOCK_B, BLOCK_N, num_warps = _launch_config(min(Bsz, rows), N2)
    for i, b0 in enumerate(starts):
        u_i, y_i = u[:, b0:b0 + rows], y[:, b0:b0 + rows]
        NB = triton.cdiv(u_i.shape[1], BLOCK_B)
        _crossbar_scan_kernel[(z * NB * H,)](
            u_i, y_i, seeds[i:], ab, alpha, cd, chv, scal,
            z, u_i.shape[1], L, H, N2, P, K // 2, NB, u.stride(0) if u.shape[0] > 1 else 0,
            y.stride(0), q(cfg.adc_bits), q(cfg.dac_bits), q(cfg.state_bits),
            S=S, NOISE_AB=noise_ab, NOISE_CD=noise_cd, ADC=cfg.adc_bits is not None,
            DAC=cfg.dac_bits is not None, REG=reg,
            BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_P=triton.next_power_of_2(P),
            num_warps=num_warps)
    return y
