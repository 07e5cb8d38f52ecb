"""Range statistics of values and the observer that collects them over calibration batches.

Ranges come from min/max, max-abs (QS4D, Siegel et al. 2025) or a percentile (99.999 in the seed
paper). Percentiles follow numpy's default ("linear") definition and are computed exactly from
the top tail of the values, so long calibration streams (the state at every step) never have to
be held in memory: the p-th percentile of n values needs only the n - floor(p/100 (n-1)) largest.
A range group is a right-aligned group shape: a dim of 1 is reduced, any other dim is kept.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from imssa.errors import ImssaError
from imssa.quant.spec import QuantSpec


def padded_shape(group_shape: tuple[int, ...] | list[int], v: Tensor) -> list[int]:
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
    gs = padded_shape(group_shape, v)
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
    gs = padded_shape(group_shape, v)
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
