"""Uniform fake quantization with a straight-through estimator, and the quantizer modules.

Arithmetic (that of :func:`imssa.ssm.scan.ste_quantize`, the one straight-through quantizer of the
package, so state and tensors share one grid convention): code q = clamp(round(v / s) + z, qmin,
qmax), value (q - z) * s, with ``torch.round`` (round half to even) everywhere. Symmetric grids are
signed and narrow, [-(2^(b-1)-1), 2^(b-1)-1] with z = 0, so that the grid is symmetric around zero;
asymmetric grids are [0, 2^b-1] with an integer zero point, and their range is widened to contain 0
so that zero is exact. Complex tensors quantize real and imaginary parts with one shared scale and
zero point. Ranges come from :mod:`imssa.quant.observer`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.quant.observer import RangeObserver, group_view, padded_shape, percentile, tensor_range
from imssa.quant.spec import QuantSpec
from imssa.ssm.scan import StateQuant, ste_quantize

EPS_SCALE = 1e-30  # smallest scale, so an all-zero tensor quantizes to zeros instead of NaN
RHO_MIN = 1e-6  # smallest decay -ln|A_bar| on the polar grid: |A_bar| <= exp(-1e-6) < 1 in fp32
RHO_MAX = 50.0  # largest decay: |A_bar| >= exp(-50), keeps ln(rho) finite for A_bar = 0


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer code range: narrow signed for symmetric, unsigned for asymmetric grids."""
    if symmetric:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


fake_quantize = ste_quantize  # quantize-dequantize a real or complex tensor (the STE of scan.py)


def qparams(lo: Tensor, hi: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero point of the grid that covers [lo, hi].

    Symmetric: s = max(-lo, hi) / qmax, z = 0. Asymmetric: the range is widened to contain 0,
    s = (hi - lo) / (qmax - qmin), z = qmin - round(lo / s), clamped to the code range.
    """
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = torch.maximum(-lo, hi).clamp_min(EPS_SCALE) / qmax
        return scale, torch.zeros_like(scale)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)
    scale = ((hi - lo) / (qmax - qmin)).clamp_min(EPS_SCALE)
    zero_point = torch.clamp(qmin - torch.round(lo / scale), qmin, qmax)
    return scale, zero_point


# --- quantizer modules -------------------------------------------------------------------------
class Quantizer(nn.Module):
    """What every quantizer module has: its tensor's path, its spec, its kind and whether its
    range is set (``has_range``) and fixed (``frozen``); both flags travel in the state dict."""

    def __init__(self, name: str, spec: QuantSpec, kind: str):
        super().__init__()
        self.name, self.spec, self.kind = name, spec, kind
        self.has_range = False
        self.frozen = False
        self.observer: RangeObserver | None = None

    @property
    def enabled(self) -> bool:
        return self.spec.bits is not None

    @property
    def calibrated(self) -> bool:
        """Whether :func:`imssa.quant.calibrate` sets this quantizer's range."""
        return (self.kind in ("activation", "state") and self.enabled and not self.spec.dynamic
                and not self.frozen)

    def extra_repr(self) -> str:
        return f"{self.name}: {self.spec}"

    def get_extra_state(self) -> dict[str, Any]:
        return {"has_range": self.has_range, "frozen": self.frozen}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.has_range, self.frozen = bool(state["has_range"]), bool(state["frozen"])


class FakeQuantizer(Quantizer):
    """One quantization point: its spec, its range and the fake-quant operation.

    ``kind`` decides where the range comes from: ``weight`` (dense and SSM tensors) from the
    tensor itself at every call until :meth:`freeze`; ``activation`` from calibration (static),
    from each input sample (``dynamic``) or from ``bound``; ``state`` from calibration or
    ``bound``, handed to the scan as a :class:`StateQuant`.

    While :func:`imssa.quant.calibrate` runs, ``observer`` holds a :class:`RangeObserver`: the
    quantizer then feeds it its input and passes the input through unchanged.

    Args:
        name: the tensor's imssa.names path (``"blocks.0.ssm.input"``), for messages.
        spec: the QuantSpec.
        kind: ``weight``, ``activation`` or ``state``.
        channel_shape: the group shape of ``granularity="channel"``, right-aligned to the tensor
            (``(H,)`` for activations, ``(rows, 1)`` for weights, ``(H, 1)`` for SSM tensors).
        mode_shape: the group shape of ``granularity="mode"`` (the state: ``(H, N/2)``).
    """

    lo: Tensor
    hi: Tensor

    def __init__(self, name: str, spec: QuantSpec, kind: str, channel_shape: tuple[int, ...],
                 mode_shape: tuple[int, ...] | None = None):
        super().__init__(name, spec, kind)
        if spec.granularity == "tensor":
            self.group_shape: tuple[int, ...] = ()
        elif spec.granularity == "channel":
            self.group_shape = tuple(channel_shape)
        else:
            if mode_shape is None:
                raise ImssaError(f"{name}: granularity 'mode' exists only for the state x")
            self.group_shape = tuple(mode_shape)
        self.register_buffer("lo", torch.zeros(self.group_shape))
        self.register_buffer("hi", torch.zeros(self.group_shape))
        if spec.bound is not None:
            self.lo.fill_(-spec.bound)
            self.hi.fill_(spec.bound)
            self.has_range = self.frozen = True

    @property
    def qmin(self) -> int:
        return qrange(self.spec.bits or 2, self.spec.symmetric)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.spec.bits or 2, self.spec.symmetric)[1]

    def set_range(self, lo: Tensor | float, hi: Tensor | float) -> None:
        """Fix the range (broadcast to the group shape) and freeze it."""
        self.lo.copy_(torch.as_tensor(lo, dtype=self.lo.dtype).expand(self.group_shape))
        self.hi.copy_(torch.as_tensor(hi, dtype=self.hi.dtype).expand(self.group_shape))
        self.has_range = self.frozen = True

    def range_of(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """The range the spec takes from ``v`` (one per group, or per sample when dynamic)."""
        per_sample = self.kind == "activation" and self.spec.dynamic
        return tensor_range(v, self.spec, self.group_shape, per_sample=per_sample)

    def freeze(self, v: Tensor | None = None) -> None:
        """Fix the range: a weight's from its current value ``v``; others keep their calibration."""
        if self.kind == "weight" and not self.frozen:
            if v is None:
                raise ImssaError(f"{self.name}: freezing a weight's range needs the weight")
            lo, hi = self.range_of(v)
            self.lo.copy_(lo.reshape(self.group_shape))
            self.hi.copy_(hi.reshape(self.group_shape))
            self.has_range = True
        self.frozen = True

    def unfreeze(self) -> None:
        """Let a weight's range follow the weight again and calibration change the others.

        Ranges given by a spec's ``bound`` stay fixed.
        """
        if self.spec.bound is None:
            self.frozen = False

    def current_range(self, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not self.frozen and v is not None and (
                self.kind == "weight" or (self.kind == "activation" and self.spec.dynamic)):
            return self.range_of(v)
        if not self.has_range:
            raise ImssaError(
                f"quantizer {self.name!r} has no range yet: call imssa.quant.calibrate(model, "
                "batches) first, or give its spec a bound (or dynamic=True for an activation)")
        return self.lo, self.hi

    def scale_zero_point(self, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Scale and zero point (broadcastable to the tensor) for the current range."""
        lo, hi = self.current_range(v)
        return qparams(lo, hi, self.spec.bits, self.spec.symmetric)  # type: ignore[arg-type]

    def forward(self, v: Tensor) -> Tensor:
        if self.observer is not None:
            self.observer.observe(v)
            return v
        if not self.enabled:
            return v
        scale, zero_point = self.scale_zero_point(v)
        return fake_quantize(v, scale, zero_point, self.qmin, self.qmax)

    def state_quant(self) -> StateQuant | None:
        """The scan's per-step state quantizer (None at full precision)."""
        if not self.enabled:
            return None
        scale, zero_point = self.scale_zero_point()
        return StateQuant(scale, zero_point, self.qmin, self.qmax,
                          stochastic=self.spec.rounding == "stochastic")

    def levels(self, v: Tensor | None = None) -> Tensor:
        """All representable values per group, (G, n); complex tensors give the complex grid."""
        scale, zero_point = self.scale_zero_point(v)
        q = torch.arange(self.qmin, self.qmax + 1, device=scale.device, dtype=scale.dtype)
        vals = (q - zero_point.reshape(-1, 1)) * scale.reshape(-1, 1)  # (G n)
        if v is not None and v.is_complex():
            return torch.complex(vals.unsqueeze(2), vals.unsqueeze(1)).flatten(1)  # (G n*n)
        return vals


class PolarQuantizer(Quantizer):
    """Quantizer of A_bar on a polar grid whose levels all lie strictly inside the unit circle.

    A_bar = exp(-rho + i theta) with decay rho = -ln|A_bar| > 0. The log-decay ln(rho) is
    quantized on a uniform grid over its range (so slow and fast modes, whose decays span
    decades, get the same relative precision), the phase theta on a symmetric uniform grid over
    [-theta_max, theta_max], theta_max <= pi. Each uses ``bits`` bits, so a complex value costs
    2 * bits, as on the Cartesian grid. Every level has |A_bar| = exp(-rho_q) with
    rho_q >= RHO_MIN > 0: stable by construction, even if training pushed |A_bar| >= 1.
    The gradient passes straight through (identity) to A_bar.

    A real A_bar (S4D-Real) has the log-decay grid alone, phase 0: every level is a real number
    in (0, 1), and all ``bits`` go to the decay.
    """

    log_rho_lo: Tensor
    log_rho_hi: Tensor
    theta_max: Tensor

    def __init__(self, name: str, spec: QuantSpec, channel_shape: tuple[int, ...]):
        super().__init__(name, spec, "weight")
        self.group_shape: tuple[int, ...] = (
            () if spec.granularity == "tensor" else tuple(channel_shape))
        for buf in ("log_rho_lo", "log_rho_hi", "theta_max"):
            self.register_buffer(buf, torch.zeros(self.group_shape))

    def extra_repr(self) -> str:
        return f"{self.name} (polar): {self.spec}"

    @staticmethod
    def decompose(A_bar: Tensor) -> tuple[Tensor, Tensor]:
        """(ln rho, theta) of A_bar, rho = -ln|A_bar| clamped to [RHO_MIN, RHO_MAX]."""
        rho = (-torch.log(A_bar.abs())).clamp(RHO_MIN, RHO_MAX)
        return torch.log(rho), torch.angle(A_bar)

    def range_of(self, A_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_rho, theta = self.decompose(A_bar.detach())
        gs = padded_shape(self.group_shape, log_rho)
        v_l, v_t = group_view(log_rho, gs), group_view(theta, gs)
        spec = self.spec
        if spec.calibration == "percentile":
            lo, hi = -percentile(-v_l, spec.percentile), percentile(v_l, spec.percentile)
            t = percentile(v_t.abs(), spec.percentile)
        else:
            lo, hi = v_l.amin(dim=1), v_l.amax(dim=1)
            t = v_t.abs().amax(dim=1)
        lo = lo.clamp_min(math.log(RHO_MIN))
        t = t.clamp(max=math.pi)
        return lo.reshape(gs), hi.reshape(gs), t.reshape(gs)

    def freeze(self, A_bar: Tensor | None = None) -> None:
        if not self.frozen:
            if A_bar is None:
                raise ImssaError(f"{self.name}: freezing the polar range needs A_bar")
            lo, hi, t = self.range_of(A_bar)
            self.log_rho_lo.copy_(lo.reshape(self.group_shape))
            self.log_rho_hi.copy_(hi.reshape(self.group_shape))
            self.theta_max.copy_(t.reshape(self.group_shape))
            self.has_range = True
        self.frozen = True

    def unfreeze(self) -> None:
        self.frozen = False

    def _grid(self, A_bar: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """(lo, step) of the log-decay grid and (step, qmax) of the phase grid."""
        if self.frozen or A_bar is None:
            if not self.has_range:
                raise ImssaError(f"{self.name}: the polar quantizer has no range yet")
            lo, hi, t = self.log_rho_lo, self.log_rho_hi, self.theta_max
        else:
            lo, hi, t = self.range_of(A_bar)
        bits = self.spec.bits or 2
        step_l = (hi - lo).clamp_min(EPS_SCALE) / (2**bits - 1)
        qmax_t = 2 ** (bits - 1) - 1
        step_t = t.clamp_min(EPS_SCALE) / qmax_t
        return lo, step_l, step_t

    def forward(self, A_bar: Tensor) -> Tensor:
        if not self.enabled:
            return A_bar
        bits = self.spec.bits or 2
        lo, step_l, step_t = self._grid(A_bar)
        qmax_t = 2 ** (bits - 1) - 1
        log_rho, theta = self.decompose(A_bar.detach())  # (H N/2)
        q_l = torch.clamp(torch.round((log_rho - lo) / step_l), 0, 2**bits - 1)
        mag = torch.exp(-torch.exp(lo + q_l * step_l))
        if not A_bar.is_complex():
            return mag + (A_bar - A_bar.detach())  # the log-decay grid, phase 0
        q_t = torch.clamp(torch.round(theta / step_t), -qmax_t, qmax_t)
        A_q = torch.polar(mag, q_t * step_t)
        return A_q + (A_bar - A_bar.detach())  # exactly A_q, identity gradient

    def levels(self, A_bar: Tensor | None = None) -> Tensor:
        """All representable values per group, (G, 2^b * (2^b - 1)) complex; (G, 2^b) real for
        a real A_bar."""
        bits = self.spec.bits or 2
        lo, step_l, step_t = self._grid(A_bar)
        qmax_t = 2 ** (bits - 1) - 1
        dev = lo.device
        q_l = torch.arange(2**bits, device=dev, dtype=lo.dtype)
        q_t = torch.arange(-qmax_t, qmax_t + 1, device=dev, dtype=lo.dtype)
        mag = torch.exp(-torch.exp(lo.reshape(-1, 1) + q_l * step_l.reshape(-1, 1)))  # (G 2^b)
        if A_bar is not None and not A_bar.is_complex():
            return mag
        phase = q_t * step_t.reshape(-1, 1)  # (G 2^b - 1)
        return torch.polar(mag.unsqueeze(2).expand(-1, -1, phase.shape[1]),
                           phase.unsqueeze(1).expand(-1, mag.shape[1], -1)).flatten(1)


def a_bar_levels(A_bar: Tensor, spec: QuantSpec, form: str = "cartesian") -> Tensor:
    """Every value the quantized A_bar can take, per range group, for ranges taken from A_bar.

    Args:
        A_bar: (H, N/2) complex.
        spec: its QuantSpec (bits, symmetric, granularity, calibration).
        form: ``cartesian`` or ``polar``.

    Returns:
        (G, n_levels) complex, G = 1 (per tensor) or H (per channel).
    """
    if spec.bits is None:
        raise ImssaError("a_bar_levels needs spec.bits; full precision has no grid")
    H = A_bar.shape[0]
    if form == "polar":
        return PolarQuantizer("A_bar", spec, (H, 1)).levels(A_bar)
    if form == "cartesian":
        return FakeQuantizer("A_bar", spec, "weight", (H, 1)).levels(A_bar)
    raise ImssaError(f"form must be 'cartesian' or 'polar', got {form!r}")
