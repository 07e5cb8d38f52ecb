"""The integer model: :func:`convert` turns a prepared, calibrated model into one that stores
integer codes and multiplies and accumulates in int64, as an integer chip does.

Every quantized part is replaced: a dense layer keeps its weight and bias codes and computes
acc = sum_j (c_u,j - z_u)(c_w,ij - z_w) in int64 from its input's codes; the SSM keeps the codes
of A_bar, B_bar, C, D and runs the complex recurrence on the integer codes of the state,
requantizing the state every step; GELU (hard form) and GLU requantize their outputs. Between
parts, values travel as the graph's float tensors, exactly on their grids (code - z) * s. A
requantization multiplies an accumulator by its scale in float64 and rounds half to even: for the
power-of-two scales of an integer chip that is a rounding shift, and the integer model equals
the fake-quantized one bit for bit (the test of :mod:`imssa.quant`); the GLU gate's sigmoid is
evaluated in the model's dtype (a lookup table on a chip).

The integer model runs in ``recurrent`` mode (the deployed execution) and needs every tensor,
the state and every activation quantized with static ranges, the hard GELU, the Cartesian A_bar
grid and nearest rounding of the state, and complex modes (S4D; a real SSM is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.quant.modules import QuantGELU, QuantGLU, QuantLinear, QuantSSM, hard_gelu
from imssa.quant.prepare import quantizers
from imssa.quant.quantizer import FakeQuantizer
from imssa.ssm.model import S4DModel
from imssa.ssm.s4d import DiscreteSSM


@dataclass(frozen=True)
class Grid:
    """A quantization grid: value = (code - zero_point) * scale, codes in [qmin, qmax]."""

    scale: Tensor
    zero_point: Tensor
    qmin: int
    qmax: int

    @classmethod
    def of(cls, q: FakeQuantizer, v: Tensor | None = None) -> Grid:
        """The grid of a quantizer (a weight quantizer's from its tensor ``v``)."""
        if not q.enabled or (q.kind == "activation" and q.spec.dynamic):
            raise ImssaError(f"convert needs {q.name} quantized with a static range (QuantConfig "
                             f"spec of {q.name}: bits set, dynamic false)")
        if q.kind == "state" and q.spec.rounding != "nearest":
            raise ImssaError(f"convert: the integer model rounds the state to nearest; "
                             f"{q.name} has rounding {q.spec.rounding!r}")
        s, z = q.scale_zero_point(v)
        return cls(s.detach().double(), z.detach().double(), q.qmin, q.qmax)

    def codes(self, v: Tensor) -> Tensor:
        """Centered integer codes (code - zero_point), int64, of real values."""
        q = torch.clamp(torch.round(v.double() / self.scale) + self.zero_point, self.qmin,
                        self.qmax)
        return (q - self.zero_point).long()

    def requantize(self, acc: Tensor, scale: Tensor, dtype: torch.dtype) -> Tensor:
        """The value on this grid of an integer accumulator ``acc`` at ``scale``."""
        return (self.codes(acc.double() * scale).double() * self.scale).to(dtype)


def _complex_codes(grid: Grid, z: Tensor) -> tuple[Tensor, Tensor]:
    return grid.codes(z.real), grid.codes(z.imag)


class IntLinear(nn.Module):
    """A dense layer on integer codes: acc = (c_u - z_u) . (c_w - z_w) in int64, plus the bias.

    ``in_grid`` is the grid of its input: its own input quantizer's, or that of the activation
    before it (the mixing layer's input is the GELU output).
    """

    def __init__(self, part: QuantLinear, in_grid: Grid):
        super().__init__()
        w = part.float_tensors()
        self.in_grid = in_grid
        self.w_grid, self.b_grid = (Grid.of(part.q[k], w[k]) for k in ("weight", "bias"))
        self.register_buffer("weight_codes", self.w_grid.codes(w["weight"]))  # (out in)
        self.register_buffer("bias_codes", self.b_grid.codes(w["bias"]))  # (out)
        self.dtype = w["weight"].dtype

    def forward(self, u: Tensor) -> Tensor:
        acc = self.in_grid.codes(u) @ self.weight_codes.T  # (... out) int64
        scale = (self.in_grid.scale * self.w_grid.scale).reshape(-1)  # per output
        value = acc.double() * scale + self.bias_codes.double() * self.b_grid.scale
        return value.to(self.dtype)


class IntSSM(nn.Module):
    """The SSM on integer codes: x[k] = Q(A_bar x[k-1] + B_bar u[k]) with complex products on
    integer real and imaginary parts, y[k] = Q(2 Re(sum_n C x[k]) + D u[k])."""

    def __init__(self, part: QuantSSM):
        super().__init__()
        t = part.float_tensors()
        q = part.q
        if not isinstance(q["A_bar"], FakeQuantizer):
            raise ImssaError(f"convert supports the cartesian A_bar grid; {q['A_bar'].name} is "
                             "polar (QuantConfig.a_bar_form)")
        self.g = {k: Grid.of(q[k], t.get(k)) for k in ("input", "A_bar", "B_bar", "C", "D", "x",
                                                       "output")}
        for k in ("A_bar", "B_bar", "C"):
            re, im = _complex_codes(self.g[k], t[k])
            self.register_buffer(f"{k}_re", re)
            self.register_buffer(f"{k}_im", im)
        self.register_buffer("D_codes", self.g["D"].codes(t["D"]))
        self.dtype = t["D"].dtype

    def forward(self, u: Tensor, mode: str = "recurrent") -> Tensor:
        if mode != "recurrent":
            raise ImssaError(f"the integer model runs in recurrent mode only, got mode={mode!r}")
        g = self.g
        c_u = g["input"].codes(u)  # (B L H)
        s_ax = g["A_bar"].scale * g["x"].scale  # (H, 1) x (H, N/2) or ()
        s_bu = g["B_bar"].scale * g["input"].scale
        s_cx = g["C"].scale * g["x"].scale
        s_du = g["D"].scale * g["input"].scale
        xr = torch.zeros((u.shape[0], *self.A_bar_re.shape), dtype=torch.long, device=u.device)
        xi = torch.zeros_like(xr)
        ys = []
        for k in range(u.shape[-2]):
            uk = c_u[:, k, :, None]  # (B H 1)
            vr = (self.A_bar_re * xr - self.A_bar_im * xi) * s_ax + self.B_bar_re * uk * s_bu
            vi = (self.A_bar_re * xi + self.A_bar_im * xr) * s_ax + self.B_bar_im * uk * s_bu
            xr, xi = g["x"].codes(vr), g["x"].codes(vi)  # the state, requantized every step
            acc_y = 2 * (self.C_re * xr - self.C_im * xi) * s_cx  # (B H N/2)
            ys.append(acc_y.sum(-1) + self.D_codes * c_u[:, k] * s_du.reshape(-1))
        y = torch.stack(ys, dim=-2)  # (B L H) float64
        return g["output"].requantize(y, torch.ones((), dtype=torch.float64), self.dtype)

    def discrete(self) -> DiscreteSSM:
        g = self.g
        A, B, C = (torch.complex(getattr(self, f"{k}_re").double(),
                                 getattr(self, f"{k}_im").double()) * g[k].scale
                   for k in ("A_bar", "B_bar", "C"))
        return DiscreteSSM(A, B, C, self.D_codes.double() * g["D"].scale.reshape(-1))


class IntPointwise(nn.Module):
    """Hard GELU or GLU on on-grid values, requantized to the output grid."""

    def __init__(self, kind: str, out_grid: Grid, dtype: torch.dtype):
        super().__init__()
        self.kind, self.out_grid, self.dtype = kind, out_grid, dtype

    def forward(self, u: Tensor) -> Tensor:
        v = hard_gelu(u.double()) if self.kind == "gelu" else F.glu(u.to(self.dtype), dim=-1)
        return self.out_grid.requantize(v, torch.ones((), dtype=torch.float64), self.dtype)


def convert(model: S4DModel) -> S4DModel:
    """The integer model of a prepared, calibrated model, converted in place (module docstring).

    Raises:
        ImssaError: naming the first tensor or setting the integer model cannot take.
    """
    q = quantizers(model)
    if model.cfg.ssm != "complex":
        raise ImssaError(f"convert: the integer model runs complex SSMs only; this model has "
                         f"S4DConfig.ssm={model.cfg.ssm!r} (simulate a real SSM with its "
                         "fake-quantized model instead)")
    if not all(isinstance(b.activation, QuantGELU) and b.activation.hard
               and isinstance(b.glu, QuantGLU) for b in model.blocks):
        raise ImssaError("convert needs the hard GELU (QuantConfig.gelu) and every "
                         "blocks.*.glu.output quantized")

    def out(name: str) -> Grid:
        return Grid.of(q[name])

    with torch.no_grad():
        dtype = model.decoder.weight.dtype
        model.encoder = IntLinear(model.encoder, out("encoder.input"))
        for i, block in enumerate(model.blocks):
            p = f"blocks.{i}"
            block.mix = IntLinear(block.mix, out(f"{p}.activation.output"))
            block.ssm = IntSSM(block.ssm)
            block.activation = IntPointwise("gelu", out(f"{p}.activation.output"), dtype)
            block.glu = IntPointwise("glu", out(f"{p}.glu.output"), dtype)
        model.decoder = IntLinear(model.decoder, out("decoder.input"))
    return model
