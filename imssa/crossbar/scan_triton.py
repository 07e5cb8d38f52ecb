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

Rounding is the loop's (round(v / step) half to even, saturation: the same values from a reciprocal
step and an FMA correction instead of a division, :mod:`~imssa.crossbar.scan_triton_ops`) and, for
the state columns and the digital parts of the state, so is the order of every sum: A's rows add to
B's currents with one FMA each, as torch's ``addcmul_`` does in its vectorized body (its scalar
tail, for sizes off its vector width, rounds the product first, so the loop itself is not one
rounding). With noiseless reads the state is then the loop's bit for bit in Triton's interpreter.
Compiled, the only FMAs are the explicit ones too (the launch's ``enable_fp_fusion=False``, pinned
by tests/test_crossbar_triton_compile.py; not yet rerun on a GPU). Triton's default contracts a
product and a sum into one FMA, and did so to ``(o0 - o2) / 2``, the polarity decode of two ADC
outputs o = q step: one rounding fewer than the loop's, which breaks exact ties of the state
register (in the ``quant8`` case 39 % of its inputs lie exactly on a half step), so the compiled
kernel had 79 % of outputs within tolerance there (the pair found offline, in the kernel's LLVM IR
compiled for sm_90). The output columns sum over modes and pieces in another order (so an ADC step
may rarely flip where a sum lies within float error of a boundary, and a digital C differs by
float32 rounding of its sum). The Gaussian draws n differ: counter-based Philox (Philox2x32-10 per
mode and draw for S <= 2 sensed columns, Philox4x32-10 for S = 4, two of those for S = 8;
Philox2x32-10 per output piece) and cuRAND's Box-Muller (:mod:`~imssa.crossbar.scan_triton_ops`),
with key = a seed drawn from the pass's generator + step * chips + chip and DRAWS * M + P counters
per (batch row, channel), so results are reproducible from the generator but are not the loop's
numbers.

Stage switches (RNG, CONV, MATH, IO; 1 by default) leave a stage out or do it twice for
``benchmarks/profile_kernel.py``; the default specialization compiles to the same code as
without them. GEN, QUANT and COLS 0 (``stages``, or ``IMSSA_CROSSBAR_KERNEL=previous``, the
default, for every launch) select the previous kernel's generator (Triton's ``tl.randn4x``), converter
arithmetic (IEEE division) and layout (a mode's S sensed columns as one (BB BN S) tensor, where
COLS 1 holds S <= 4 columns as (BB BN) tensors of their own: no conversions of layout through
shared memory, and their barriers, every step), to time them in one run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import triton
from torch import Tensor

from imssa.crossbar.periphery import PeripheryConfig, grid_step, levels
from imssa.crossbar.scan_triton_kernel import _crossbar_scan_kernel
from imssa.crossbar.tile import SensedArrays
from imssa.errors import ImssaError

_COUNTERS = 2**31  # Philox counters (int32) per chip and step
#: The profile's stage switches (``crossbar_scan(stages=)``): name -> the kernel's constexpr.
#: "gen", "quant", "cols" (1 by default): the normal generator, the converter arithmetic and a
#: mode's S <= 4 sensed columns as tensors of their own, 0 for the previous kernel's; "fast" (2
#: compiled, 0 in the interpreter): the generator's approximate instructions, 1 the sine and
#: cosine only (scan_triton_ops, scan_triton_kernel); to compare them in one run.
STAGES = {"rng": "RNG", "conv": "CONV", "math": "MATH", "io": "IO", "gen": "GEN", "quant": "QUANT",
          "fast": "FAST", "cols": "COLS"}
#: ``IMSSA_CROSSBAR_KERNEL``: which of the two kernels runs (unset: "previous"). "current" (the
#: cheaper generator, converter arithmetic and layout) runs the sMNIST job's recurrence 3.1x faster
#: on an H200 (1.44 s against 4.47 s, benchmarks/results/profile_kernel_nvidia-h200.json) but, compiled,
#: failed one equality test with the loop there (``quant8``: polarity_block, an 8-bit state
#: register, noiseless reads; 79 % of the outputs within tolerance, relative error 1.6 %, against
#: >= 99 % for the previous kernel). The cause, found offline (module docstring), is fixed by
#: compiling without contracted FMAs; it stays opt-in until the GPU test confirms the fix.
KERNELS = {"current": {}, "previous": {"gen": 0, "quant": 0, "cols": 0}}


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
            (twice)}; the outputs are then not the layer's (:data:`STAGES`). For benchmarks,
            {"gen" | "quant": 0}: the previous kernel's normal generator or converter arithmetic
            (the same outputs for "quant" and "cols", other draws for "gen"); {"cols": 0}: a
            mode's sensed columns in one (BB BN S) tensor; {"fast": 1}: the generator's
            exact log (compiled only); {"warps": n}: n warps a program instead of
            :func:`_launch_config`'s (the same outputs).

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

    choice = os.environ.get("IMSSA_CROSSBAR_KERNEL") or "previous"
    if choice not in KERNELS:
        raise ImssaError(f"IMSSA_CROSSBAR_KERNEL must be one of {', '.join(KERNELS)}, not {choice!r}")
    switches = {**KERNELS[choice], **(stages or {})}
    raw = u is not x  # digital parts read x, analog ones u
    x, u = x.contiguous(), u.contiguous()
    y = torch.empty((z, Bsz, L, H), dtype=x.dtype, device=x.device)
    draws = 2 if S == 8 else 1
    rows = max(1, (_COUNTERS - 1) // (H * (draws * M + P)))  # rows per launch: int32 counters
    starts = range(0, Bsz, rows)
    seeds = torch.randint(0, 2**62, (len(starts),), generator=generator, dtype=torch.int64,
                          device=x.device)
    BLOCK_B, BLOCK_N, num_warps = _launch_config(min(Bsz, rows), M)
    num_warps = switches.pop("warps", num_warps)  # the profile's launch variants
    fast = switches.pop("fast", 2 if x.is_cuda else 0)  # approximate instructions: compiled only
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
            DAC=dac_x, REG=reg, FAST=fast,
            BLOCK_B=BLOCK_B, BLOCK_N=BLOCK_N, BLOCK_P=triton.next_power_of_2(P),
            num_warps=num_warps, enable_fp_fusion=False,  # the module: no contracted FMAs
            **{STAGES[k]: v for k, v in switches.items()})
    return y
