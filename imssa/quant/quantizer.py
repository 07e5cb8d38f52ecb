"""Uniform fake quantization with a straight-through estimator, range statistics and observers.

Arithmetic (the same as :class:`imssa.ssm.scan.StateQuant`, so state and tensors share one grid
convention): code q = clamp(round(v / s) + z, qmin, qmax), value (q - z) * s, with ``torch.round``
(round half to even) everywhere. Symmetric grids are signed and narrow, [-(2^(b-1)-1),
2^(b-1)-1] with z = 0, so that the grid is symmetric around zero; asymmetric grids are
[0, 2^b-1] with an integer zero point, and their range is widened to contain 0 so that zero is
exact. Complex tensors quantize real and imaginary parts with one shared scale and zero point.

The straight-through estimator (Bengio et al. 2013) passes the gradient unchanged inside the
representable range [(qmin - z) s, (qmax - z) s] and zeroes it outside (the clipped values).

Ranges come from min/max, max-abs (QS4D, Siegel et al. 2025) or a percentile (99.999 in the seed
paper). Percentiles follow numpy's default ("linear") definition and are computed exactly from
the top tail of the values, so long calibration streams (the state at every step) never have to
be held in memory: the p-th percentile of n values needs only the n - floor(p/100 (n-1)) largest.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.quant.spec import QuantSpec
from imssa.ssm.scan import StateQuant

EPS_SCALE = 1e-30  # smallest scale, so an all-zero tensor quantizes to zeros instead of NaN
RHO_MIN = 1e-6  # smallest decay -ln|A_bar| on the polar grid: |A_bar| <= exp(-1e-6) < 1 in fp32
RHO_MAX = 50.0  # largest decay: |A_bar| >= exp(-50), keeps ln(rho) finite for A_bar = 0


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer code range: narrow signed for symmetric, unsigned for asymmetric grids."""
    if symmetric:
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def hard_gelu(x: Tensor) -> Tensor:
    """GELU in the hard-sigmoid form of Q-S5 (Abreu et al. 2024): x * clip((x + 2) / 4, 0, 1)."""
    return x * torch.clamp((x + 2) / 4, 0, 1)


def _fake_quantize_real(v: Tensor, scale: Tensor, zero_point: Tensor, qmin: int,
                        qmax: int) -> Tensor:
    scale, zero_point = scale.detach(), zero_point.detach()  # constants: no gradient to ranges
    q = torch.clamp(torch.round(v / scale) + zero_point, qmin, qmax)
    vq = (q - zero_point) * scale
    lo = (qmin - zero_point) * scale
    hi = (qmax - zero_point) * scale
    v_clipped = torch.minimum(torch.maximum(v, lo), hi)
    # STE: the value is exactly vq (v_clipped - v_clipped.detach() is exactly 0), the gradient
    # that of the clip: 1 inside the range, 0 outside (as StateQuant in the scan).
    return vq + (v_clipped - v_clipped.detach())


def fake_quantize(v: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """Quantize and dequantize ``v`` with a straight-through gradient.

    Args:
        v: real or complex tensor; complex parts share scale and zero point.
        scale, zero_point: broadcastable to v (zero_point integer-valued).
        qmin, qmax: integer code range.

    Returns:
        A tensor like v whose values lie on the grid (q - zero_point) * scale.
    """
    if v.is_complex():
        return torch.complex(_fake_quantize_real(v.real, scale, zero_point, qmin, qmax),
                             _fake_quantize_real(v.imag, scale, zero_point, qmin, qmax))
    return _fake_quantize_real(v, scale, zero_point, qmin, qmax)


def quantize_codes(v: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """The integer codes (as floats) of a real tensor: clamp(round(v / s) + z, qmin, qmax)."""
    return torch.clamp(torch.round(v / scale) + zero_point, qmin, qmax)


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


# --- ranges ----------------------------------------------------------------------------------
def _padded(group_shape: tuple[int, ...] | list[int], v: Tensor) -> list[int]:
    """group_shape right-aligned to v's dims (a complex tensor counts its own dims)."""
    gs = list(group_shape)
    if len(gs) > v.ndim:
        raise ImssaError(f"a quantizer with group shape {tuple(group_shape)} got a tensor of shape "
                         f"{tuple(v.shape)}")
    return [1] * (v.ndim - len(gs)) + gs


def group_view(v: Tensor, group_shape: tuple[int, ...] | list[int]) -> Tensor:
    """Values of ``v`` as (G, M): one row per range group (complex v: real and imaginary parts).

    ``group_shape`` is right-aligned to ``v``: a dim of 1 is reduced, any other dim is kept.
    """
    v = v.detach()
    gs = _padded(group_shape, v)
    if v.is_complex():
        v, gs = torch.view_as_real(v), gs + [1]  # real and imaginary parts share the group
    for size, g in zip(v.shape, gs):
        if g not in (1, size):
            raise ImssaError(f"a quantizer with group shape {tuple(group_shape)} got a tensor of "
                             f"shape {tuple(v.shape)}")
    keep = [i for i, g in enumerate(gs) if g != 1]
    rest = [i for i in range(v.ndim) if i not in keep]
    G = math.prod(gs)
    return v.permute(*keep, *rest).reshape(G, -1)


def _percentile_position(n: int, p: float) -> tuple[int, float, int]:
    """numpy's linear percentile of n sorted values sits at pos = p/100 (n-1) = i0 + frac.

    Returns i0, frac and m = n - i0, the number of largest values that determine it.
    """
    pos = p / 100.0 * (n - 1)
    i0 = min(int(math.floor(pos)), n - 1)
    return i0, pos - i0, n - i0


def tail_percentile(top: Tensor, n: int, p: float) -> Tensor:
    """The p-th percentile of n values per row, given each row's largest values in descending order.

    Args:
        top: (G, m') with m' >= n - floor(p/100 (n-1)), sorted descending.
        n: how many values each row had.
    """
    i0, frac, m = _percentile_position(n, p)
    a0 = top[:, m - 1]  # the i0-th smallest value
    if frac == 0.0 or m < 2:
        return a0
    a1 = top[:, m - 2]  # the (i0+1)-th smallest value
    return a0 + frac * (a1 - a0)


def percentile(v2: Tensor, p: float) -> Tensor:
    """Exact p-th percentile (numpy 'linear') of each row of v2 (G, M), from its top tail."""
    n = v2.shape[1]
    _, _, m = _percentile_position(n, p)
    return tail_percentile(v2.topk(m, dim=1).values, n, p)


def value_range(v2: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor]:
    """Range (lo, hi), each (G,), of each row of v2 (G, M) by the spec's calibration method."""
    if spec.calibration == "minmax":
        lo, hi = v2.amin(dim=1), v2.amax(dim=1)
        if spec.symmetric:
            a = torch.maximum(-lo, hi)
            return -a, a
        return lo, hi
    if spec.calibration == "maxabs":
        a = v2.abs().amax(dim=1)
        return -a, a
    if spec.symmetric:
        a = percentile(v2.abs(), spec.percentile)
        return -a, a
    return -percentile(-v2, spec.percentile), percentile(v2, spec.percentile)


def tensor_range(v: Tensor, spec: QuantSpec, group_shape: tuple[int, ...],
                 per_sample: bool = False) -> tuple[Tensor, Tensor]:
    """Range of ``v`` per group, shaped to broadcast against v.

    Args:
        v: the tensor (complex: both parts count).
        group_shape: right-aligned group shape, () for one range per tensor.
        per_sample: one range per entry of v's first (batch) axis as well (dynamic ranges).
    """
    gs = _padded(group_shape, v)
    if per_sample:
        gs[0] = v.shape[0]
    lo, hi = value_range(group_view(v, gs), spec)
    return lo.reshape(gs), hi.reshape(gs)


class RangeObserver:
    """Collects the range of one quantization point over calibration batches, deterministically.

    Per batch: min/max and max-abs take the extremes, a percentile is computed exactly over the
    batch (from tails, so a batch may arrive in chunks). Over batches: extremes of extremes, and
    the mean of the per-batch percentiles.
    """

    def __init__(self, spec: QuantSpec, group_shape: tuple[int, ...]):
        self.spec, self.group_shape = spec, tuple(group_shape)
        self._lo: Tensor | None = None
        self._hi: Tensor | None = None
        self._sum_lo: Tensor | None = None
        self._sum_hi: Tensor | None = None
        self._batches = 0
        self._n: int | None = None
        self._tails: list[Tensor | None] = [None, None]
        self._batch_lo: Tensor | None = None
        self._batch_hi: Tensor | None = None

    def observe(self, v: Tensor) -> None:
        """One whole batch of values at once."""
        values = v.numel() * (2 if v.is_complex() else 1)
        self.start(values // math.prod(self.group_shape))
        self.update(v)
        self.finish()

    def start(self, n: int) -> None:
        """Begin a batch that will bring ``n`` values per group, in one or more updates."""
        self._n, self._tails, self._batch_lo, self._batch_hi = n, [None, None], None, None

    def update(self, v: Tensor) -> None:
        """Add a chunk of the current batch (any shape right-aligned with the group shape)."""
        if self._n is None:
            raise ImssaError("RangeObserver.update called outside start() ... finish()")
        v2 = group_view(v, self.group_shape)  # (G M)
        spec = self.spec
        if spec.calibration == "percentile":
            _, _, m = _percentile_position(self._n, spec.percentile)
            sources = [v2.abs()] if spec.symmetric else [v2, -v2]
            for i, s in enumerate(sources):
                old = self._tails[i]
                both = s if old is None else torch.cat([old, s], dim=1)
                self._tails[i] = both.topk(min(m, both.shape[1]), dim=1).values
            return
        if spec.calibration == "maxabs":
            a = v2.abs().amax(dim=1)
            lo, hi = -a, a
        else:
            lo, hi = v2.amin(dim=1), v2.amax(dim=1)
        self._batch_lo = lo if self._batch_lo is None else torch.minimum(self._batch_lo, lo)
        self._batch_hi = hi if self._batch_hi is None else torch.maximum(self._batch_hi, hi)

    def finish(self) -> None:
        """Fold the current batch into the running statistic."""
        if self._n is None:
            raise ImssaError("RangeObserver.finish called without start()")
        spec = self.spec
        if spec.calibration == "percentile":
            if self._tails[0] is None:
                raise ImssaError("RangeObserver: a batch ended without values")
            hi = tail_percentile(self._tails[0], self._n, spec.percentile)
            if spec.symmetric or self._tails[1] is None:
                lo = -hi
            else:
                lo = -tail_percentile(self._tails[1], self._n, spec.percentile)
            self._sum_lo = lo if self._sum_lo is None else self._sum_lo + lo
            self._sum_hi = hi if self._sum_hi is None else self._sum_hi + hi
        else:
            if self._batch_lo is None or self._batch_hi is None:
                raise ImssaError("RangeObserver: a batch ended without values")
            self._lo = (self._batch_lo if self._lo is None
                        else torch.minimum(self._lo, self._batch_lo))
            self._hi = (self._batch_hi if self._hi is None
                        else torch.maximum(self._hi, self._batch_hi))
        self._batches += 1
        self._n = None

    @property
    def batches(self) -> int:
        return self._batches

    def range(self) -> tuple[Tensor, Tensor]:
        """(lo, hi), each shaped like the group shape; symmetric specs give lo = -hi."""
        if self._batches == 0:
            raise ImssaError("RangeObserver.range: no batch was observed; pass at least one "
                             "calibration batch")
        if self.spec.calibration == "percentile":
            assert self._sum_lo is not None and self._sum_hi is not None
            lo, hi = self._sum_lo / self._batches, self._sum_hi / self._batches
        else:
            assert self._lo is not None and self._hi is not None
            lo, hi = self._lo, self._hi
        if self.spec.symmetric:
            a = torch.maximum(-lo, hi)
            lo, hi = -a, a
        return lo.reshape(self.group_shape), hi.reshape(self.group_shape)


# --- quantizer modules -------------------------------------------------------------------------
class FakeQuantizer(nn.Module):
    """One quantization point: its spec, its range and the fake-quant operation.

    ``kind`` decides where the range comes from: ``weight`` (dense and SSM tensors) from the
    tensor itself at every call until :meth:`freeze`; ``activation`` from calibration (static),
    from each input sample (``dynamic``) or from ``bound``; ``state`` from calibration or
    ``bound``, handed to the scan as a :class:`StateQuant`.

    Args:
        name: full name for messages (``"blocks.0.ssm_input"``).
        spec: the QuantSpec.
        kind: ``weight``, ``activation`` or ``state``.
        head_shape: the group shape of ``granularity="head"``, right-aligned to the tensor
            (``(H,)`` for activations, ``(rows, 1)`` for weights, ``(H, 1)`` for SSM tensors).
        mode_shape: the group shape of ``granularity="mode"`` (the state: ``(H, N/2)``).
    """

    lo: Tensor
    hi: Tensor

    def __init__(self, name: str, spec: QuantSpec, kind: str, head_shape: tuple[int, ...],
                 mode_shape: tuple[int, ...] | None = None):
        super().__init__()
        self.name, self.spec, self.kind = name, spec, kind
        if spec.granularity == "tensor":
            self.group_shape: tuple[int, ...] = ()
        elif spec.granularity == "head":
            self.group_shape = tuple(head_shape)
        else:
            if mode_shape is None:
                raise ImssaError(f"{name}: granularity 'mode' exists only for the state x")
            self.group_shape = tuple(mode_shape)
        self.register_buffer("lo", torch.zeros(self.group_shape))
        self.register_buffer("hi", torch.zeros(self.group_shape))
        self.has_range = False
        self.frozen = False
        if spec.bound is not None:
            self.lo.fill_(-spec.bound)
            self.hi.fill_(spec.bound)
            self.has_range = self.frozen = True

    @property
    def enabled(self) -> bool:
        return self.spec.bits is not None

    @property
    def qmin(self) -> int:
        return qrange(self.spec.bits or 2, self.spec.symmetric)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.spec.bits or 2, self.spec.symmetric)[1]

    def extra_repr(self) -> str:
        return f"{self.name}: {self.spec}"

    def get_extra_state(self) -> dict[str, Any]:
        return {"has_range": self.has_range, "frozen": self.frozen}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.has_range, self.frozen = bool(state["has_range"]), bool(state["frozen"])

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
                f"quantizer {self.name!r} has no range yet: call imssa.quant.calibrate(qmodel, "
                "batches) first, or give its spec a bound (or dynamic=True for an activation)")
        return self.lo, self.hi

    def scale_zero_point(self, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Scale and zero point (broadcastable to the tensor) for the current range."""
        lo, hi = self.current_range(v)
        return qparams(lo, hi, self.spec.bits, self.spec.symmetric)  # type: ignore[arg-type]

    def forward(self, v: Tensor) -> Tensor:
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


class PolarQuantizer(nn.Module):
    """Quantizer of A_bar on a polar grid whose levels all lie strictly inside the unit circle.

    A_bar = exp(-rho + i theta) with decay rho = -ln|A_bar| > 0. The log-decay ln(rho) is
    quantized on a uniform grid over its range (so slow and fast modes, whose decays span
    decades, get the same relative precision), the phase theta on a symmetric uniform grid over
    [-theta_max, theta_max], theta_max <= pi. Each uses ``bits`` bits, so a complex value costs
    2 * bits, as on the Cartesian grid. Every level has |A_bar| = exp(-rho_q) with
    rho_q >= RHO_MIN > 0: stable by construction, even if training pushed |A_bar| >= 1.
    The gradient passes straight through (identity) to A_bar.
    """

    log_rho_lo: Tensor
    log_rho_hi: Tensor
    theta_max: Tensor

    def __init__(self, name: str, spec: QuantSpec, head_shape: tuple[int, ...]):
        super().__init__()
        self.name, self.spec, self.kind = name, spec, "weight"
        self.group_shape: tuple[int, ...] = (
            () if spec.granularity == "tensor" else tuple(head_shape))
        for buf in ("log_rho_lo", "log_rho_hi", "theta_max"):
            self.register_buffer(buf, torch.zeros(self.group_shape))
        self.has_range = False
        self.frozen = False

    @property
    def enabled(self) -> bool:
        return self.spec.bits is not None

    def extra_repr(self) -> str:
        return f"{self.name} (polar): {self.spec}"

    def get_extra_state(self) -> dict[str, Any]:
        return {"has_range": self.has_range, "frozen": self.frozen}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.has_range, self.frozen = bool(state["has_range"]), bool(state["frozen"])

    @staticmethod
    def decompose(A_bar: Tensor) -> tuple[Tensor, Tensor]:
        """(ln rho, theta) of A_bar, rho = -ln|A_bar| clamped to [RHO_MIN, RHO_MAX]."""
        rho = (-torch.log(A_bar.abs())).clamp(RHO_MIN, RHO_MAX)
        return torch.log(rho), torch.angle(A_bar)

    def range_of(self, A_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        log_rho, theta = self.decompose(A_bar.detach())
        gs = _padded(self.group_shape, log_rho)
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
        q_t = torch.clamp(torch.round(theta / step_t), -qmax_t, qmax_t)
        A_q = torch.polar(torch.exp(-torch.exp(lo + q_l * step_l)), q_t * step_t)
        return A_q + (A_bar - A_bar.detach())  # exactly A_q, identity gradient

    def levels(self, A_bar: Tensor | None = None) -> Tensor:
        """All representable values per group, (G, 2^b * (2^b - 1)) complex."""
        bits = self.spec.bits or 2
        lo, step_l, step_t = self._grid(A_bar)
        qmax_t = 2 ** (bits - 1) - 1
        dev = lo.device
        q_l = torch.arange(2**bits, device=dev, dtype=lo.dtype)
        q_t = torch.arange(-qmax_t, qmax_t + 1, device=dev, dtype=lo.dtype)
        mag = torch.exp(-torch.exp(lo.reshape(-1, 1) + q_l * step_l.reshape(-1, 1)))  # (G 2^b)
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
        (G, n_levels) complex, G = 1 (per tensor) or H (per head).
    """
    if spec.bits is None:
        raise ImssaError("a_bar_levels needs spec.bits; full precision has no grid")
    H = A_bar.shape[0]
    if form == "polar":
        return PolarQuantizer("A_bar", spec, (H, 1)).levels(A_bar)
    if form == "cartesian":
        return FakeQuantizer("A_bar", spec, "weight", (H, 1)).levels(A_bar)
    raise ImssaError(f"form must be 'cartesian' or 'polar', got {form!r}")
