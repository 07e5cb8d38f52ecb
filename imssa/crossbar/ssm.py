"""The analog SSM: one S4D layer's recurrence on crossbars, a drop-in for ``blocks.i.ssm``.

Per step k, vectorized over chips (z) and sequences (B), state as real pairs (z, B, H, N/2, 2)
for complex modes, (z, B, H, N, 1) for real ones (S4D-Real):

    state columns:  s[k] = register(decode(ADC(A_bar DAC(s[k-1]) + B_bar DAC(u[k]))) * alpha)
    output columns: y[k] = sum_pieces ADC(C DAC(s[k]) + D DAC(u[k])) * alpha

In the increment form (``MappingConfig.transition="increment"``) the array holds A_bar - 1 and
the register is a digital accumulator that adds its own content:
s[k] = register(s[k-1] + decode(ADC((A_bar - 1) DAC(s[k-1]) + B_bar DAC(u[k]))) * alpha).

A_bar and B_bar drive the same state columns, so their currents add before the ADC; C and D
likewise share the output columns (D on the first piece when C's columns span several tiles).
The state is held in a digital register (optional clipping and quantization) and fed back
through the DACs. Converter ranges (``AnalogSSM.ranges``, full names ``blocks.i.ssm.<key>``):
"input" (DAC of u), "state" (ADC of the state columns), "register" (the state register), "x"
(DAC of the state fed back), "output" (ADC of the output columns).

Tensors kept digital (``digital=("A",)`` keeps A_bar) are computed exactly from the register
value (B_bar and D from the raw input). On float32 CUDA tensors every layer, whatever its form,
scale, mode kind, digital parts and converter bits, runs as one launch of the fused Triton
kernel (:mod:`imssa.crossbar.scan_triton`; :func:`scan_backend`); the step loop below is the
reference (``IMSSA_CROSSBAR_SCAN=torch``), and runs calibration passes and streaming steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from imssa.crossbar.chips import AnalogPart, ChipSet
from imssa.crossbar.tile import AnalogTile, SensedArrays
from imssa.errors import ImssaError
from imssa.mapping import SSM_A_SPLIT, MappedTensor
from imssa.names import SSM_TENSORS
from imssa.ssm import DiscreteSSM, check_mode
from imssa.ssm.scan import choose_backend

SCAN_BACKENDS: tuple[str, str, str] = ("auto", "triton", "torch")
#: Real-pair state and its DAC'd copy, (z|1, *batch, H, N/2, 2) each ((.., H, N, 1) for real
#: modes): an AnalogSSM's state.
State = tuple[Tensor, Tensor]


def scan_backend(x: Tensor) -> str:
    """"triton" or "torch": what runs the recurrent loop of a layer in a forward pass, for the
    layer input x. "triton" is one launch of the fused kernel (same arithmetic, its own random
    draws), "torch" the step loop. The environment variable ``IMSSA_CROSSBAR_SCAN`` chooses:

    - unset or ``auto``: Triton for float32 tensors on CUDA when triton imports, else torch;
    - ``triton``: Triton for float32 tensors, also on CPU in Triton's interpreter (set
      ``TRITON_INTERPRET=1`` before triton is first imported; for tests);
    - ``torch``: always the loop.
    """
    backend = choose_backend("IMSSA_CROSSBAR_SCAN", SCAN_BACKENDS,
                             x.dtype == torch.float32 and x.numel() > 0, x.is_cuda)
    if backend == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ImssaError("IMSSA_CROSSBAR_SCAN=triton needs CUDA tensors, or TRITON_INTERPRET=1 "
                         "to run the kernel in Triton's interpreter on CPU")
    return backend


class _Step(NamedTuple):
    """What every step of one pass reads: effective arrays, gains, the digital tensors."""

    arrays: dict[str, SensedArrays]
    alpha_state: Tensor | None
    alpha_output: Tensor | None
    A: tuple[Tensor, ...]  # A_bar: (re, im) (H N2) of complex modes, (A_bar,) (H N) of real
    B: tuple[Tensor, ...]
    C: tuple[Tensor, ...]  # 2 C (re, im) of complex modes, (C,) of real ones


def _parts(t: Tensor, factor: float = 1.0) -> tuple[Tensor, ...]:
    return (factor * t.real, factor * t.imag) if t.is_complex() else (t,)


class AnalogSSM(AnalogPart):
    """One S4D layer's discrete SSM on crossbars, with the SSM module interface.

    Args:
        path: the module path, "blocks.i.ssm".
        ssm: the discrete tensors (those kept digital are used exactly).
        tensors: the mapped tensors of the analog ones, by field ("A_bar", "B_bar", "C", "D").
        chips: the converted model's chip set (programming draws from its generator, in the
            order A_bar, B_bar, C, D).
        entry: whether this is the first analog module of the graph (no chip axis on its input).
    """

    CONVERTERS = {"input": "dac", "state": "adc", "register": "register", "x": "dac",
                  "output": "adc"}

    def __init__(self, path: str, ssm: DiscreteSSM, tensors: dict[str, MappedTensor],
                 chips: ChipSet, entry: bool) -> None:
        super().__init__(path, chips, entry)
        self.exact = DiscreteSSM(*(t.detach() for t in (ssm.A_bar, ssm.B_bar, ssm.C, ssm.D)))
        self.real = not torch.is_complex(self.exact.A_bar)
        self.pairs = 1 if self.real else 2  # real numbers per mode of the state
        self.parts: dict[str, AnalogTile | None] = {
            k: chips.tile(tensors[k]) if k in tensors else None for k in SSM_TENSORS}
        tA = self.parts["A_bar"]
        #: the increment form: the array holds A_bar - 1, the register adds its content
        self.increment = tA is not None and tA.tensor.offset != 0.0
        #: A_bar's diagonal and off-diagonal entries on columns of their own
        self.split = tA is not None and tA.role is SSM_A_SPLIT

    def tiles(self) -> list[AnalogTile]:
        return [t for t in self.parts.values() if t is not None]

    def _present(self, *keys: str) -> list[AnalogTile]:
        return [t for t in (self.parts[k] for k in keys) if t is not None]

    def groups(self) -> dict[str, list[AnalogTile]]:
        return {"state": self._present("A_bar", "B_bar"), "output": self._present("C", "D")}

    def served(self) -> dict[str, list[AnalogTile]]:
        return {"input": self._present("B_bar", "D"), "x": self._present("A_bar", "C"),
                **self.groups()}

    def discrete(self) -> DiscreteSSM:
        """The exact discrete tensors the chips were programmed to hold."""
        return self.exact

    # --- the SSM interface -----------------------------------------------------------------
    def init_state(self, batch: int | tuple[int, ...]) -> State:
        """A zero state; the DAC maps it to zero."""
        batch = (batch,) if isinstance(batch, int) else tuple(batch)
        A = self.exact.A_bar
        s = torch.zeros((1, *batch, *A.shape, self.pairs), dtype=A.real.dtype, device=A.device)
        return s, s

    @torch.no_grad()
    def step(self, u: Tensor, state: State) -> tuple[Tensor, State]:
        """One streaming step. u: (chips or 1, *batch, H) ((*batch, H) for the entry module)
        -> y (chips, *batch, H) and the new state."""
        u = self.begin(u)
        p = self.parts
        ud = self.dac("input", u) if (p["B_bar"] is not None or p["D"] is not None) else u
        y, s, s_d = self._advance(self._prepare(), u, ud, *state)
        return y, (s, s_d)

    @torch.no_grad()
    def forward(self, u: Tensor, mode: str = "recurrent") -> Tensor:
        """u: (chips or 1, B, L, H) ((B, L, H) for the entry module) -> y (chips, B, L, H)."""
        check_mode(mode)
        if mode != "recurrent":
            raise ImssaError(f"{self.path} is an analog SSM, which runs step by step: call the "
                             "model with mode='recurrent'")
        if not self.chips.calibrating and scan_backend(u) == "triton":
            return self.fused(u)
        x = self.begin(u)
        ctx = self._prepare()
        p = self.parts
        ud = self.dac("input", x) if (p["B_bar"] is not None or p["D"] is not None) else x
        _, B, L, H = x.shape
        s = s_d = x.new_zeros(1, B, H, self.exact.A_bar.shape[1], self.pairs)
        ys = []
        for k in range(L):
            y, s, s_d = self._advance(ctx, x[:, :, k], ud[:, :, k], s, s_d)
            ys.append(y)
        return torch.stack(ys, -2)

    @torch.no_grad()
    def fused(self, u: Tensor, stages: Mapping[str, int] | None = None) -> Tensor:
        """The whole recurrence in one launch of the fused kernel, whatever :func:`scan_backend`
        says: its arrays, converters and flags from this layer's parts (the loop's converters,
        in the same places). u as :meth:`forward`'s (float32, on CUDA or in Triton's
        interpreter); ``stages``: the profile's switches (``scan_triton.crossbar_scan``)."""
        from imssa.crossbar.scan_triton import crossbar_scan

        x = self.begin(u)
        ctx = self._prepare()
        tA, tB, tC, tD = self.parts.values()
        ud = self.dac("input", x) if (tB is not None or tD is not None) else x
        used = {"state": tA or tB, "output": tC or tD, "x": tA or tC, "register": True}
        ranges = {k: self.range(k, x) if on else None for k, on in used.items()}
        converters = {k: self.converter(k) for k in ("state", "output", "x")}
        arrays = dict(ctx.arrays)
        if tA is not None and tB is not None:  # B_bar drives A_bar's (diagonal) state columns
            W, V = arrays["B_bar"]
            arrays["B_bar"] = SensedArrays(tA.role.widen(W), None if V is None else tA.role.widen(V))
        return crossbar_scan(x, ud, arrays, (ctx.A, ctx.B, ctx.C, self.exact.D), ctx.alpha_state,
                             ctx.alpha_output, ranges,
                             converters | {"register": self.chips.periphery}, self.chips.noise,
                             split=self.split, increment=self.increment, stages=stages)

    # --- one step ----------------------------------------------------------------------------
    def _prepare(self) -> _Step:
        exact = self.exact
        arrays = {k: self.arrays(t) for k, t in self.parts.items() if t is not None}
        return _Step(arrays, self.gain("state"), self.gain("output"), _parts(exact.A_bar),
                     _parts(exact.B_bar), _parts(exact.C, 1.0 if self.real else 2.0))

    def _advance(self, ctx: _Step, uk: Tensor, udk: Tensor, s: Tensor,
                 s_d: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Step k: u[k] (z|1, B, H) and its DAC output, state s[k-1] and DAC(s[k-1]) ->
        y[k], s[k], DAC(s[k])."""
        tA, tB, tC, tD = self.parts.values()
        arrays = ctx.arrays
        # state columns: s[k] = A s[k-1] + B u[k]
        mean: Tensor | None = None
        var: Tensor | None = None
        if tB is not None:
            mean, var = tB.sense(udk, arrays["B_bar"])
        if tA is not None:  # A's currents add to B's on the same state columns
            mean, var = tA.sense(s_d, arrays["A_bar"], (mean, var))
        s_new = None
        if mean is not None:
            state_tile = tA if tA is not None else tB
            assert state_tile is not None
            s_new = state_tile.decode(self.adc("state", state_tile, mean, var, self.steps(mean)))
            if ctx.alpha_state is not None:
                s_new = s_new * ctx.alpha_state
        digital = []
        if tA is None:
            if self.real:
                digital.append(ctx.A[0].unsqueeze(-1) * s)
            else:
                (A_r, A_i), s_r, s_i = ctx.A, s[..., 0], s[..., 1]
                digital.append(torch.stack([A_r * s_r - A_i * s_i, A_i * s_r + A_r * s_i], -1))
        if tB is None:
            digital.append(torch.stack([B * uk[..., None] for B in ctx.B], -1))
        for d in digital:
            s_new = d if s_new is None else s_new + d
        assert s_new is not None
        s = self.register("register", s + s_new if self.increment else s_new)
        if tA is not None or tC is not None:
            s_d = self.dac("x", s, self.steps(s))
        # output columns: y[k] = C s[k] + D u[k]
        mean = var = None
        for t, key, v in ((tC, "C", s_d), (tD, "D", udk)):
            if t is None:
                continue
            m_t, v_t = t.sense(v, arrays[key])
            if mean is None:
                mean, var = m_t, v_t
                continue
            mean[..., :1] += m_t  # D drives the first piece of C's output columns
            if v_t is not None:
                var = torch.zeros_like(mean) if var is None else var
                var[..., :1] += v_t
        y: Tensor | None = None
        if mean is not None:
            out_tile = tC if tC is not None else tD
            assert out_tile is not None
            y = self.adc("output", out_tile, mean, var, self.steps(mean)).sum(-1)
            if ctx.alpha_output is not None:
                y = y * ctx.alpha_output
        if tC is None:
            if self.real:
                yc = (ctx.C[0] * s[..., 0]).sum(-1)
            else:
                C_r, C_i = ctx.C
                yc = (C_r * s[..., 0] - C_i * s[..., 1]).sum(-1)
            y = yc if y is None else y + yc
        if tD is None:
            D = self.exact.D
            y = D * uk if y is None else y + D * uk
        assert y is not None
        return y, s, s_d
