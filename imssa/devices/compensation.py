"""Drift compensation: undo the average conductance decay with a measured digital gain.

Global drift compensation (Joshi et al., Nat. Commun. 11, 2473 (2020); aihwkit's
``GlobalDriftCompensation``): right after programming, drive the array with a fixed set of
read-out inputs (aihwkit uses the one-hot vectors, so the outputs are the rows of the weight
matrix) and store the mean absolute output. At inference time t, read again and scale every
output by

    alpha(t) = mean|y_ref| / mean|y(t)|.

Per-column compensation (aihwkit's ``PerColumnDriftCompensation``) takes the mean over the
read-out inputs only, giving one gain per output column. Means are clamped at 1e-4 (in the units
of the outputs) as in aihwkit, so an all-zero read-out does not divide by zero.

With one-hot read-outs the outputs are the (effective) weights themselves, so the same function
takes conductance or weight matrices directly: for differential pairs pass G+ - G-.
"""

from __future__ import annotations

from typing import Literal, get_args

from torch import Tensor

from imssa.errors import ImssaError

CompensationMode = Literal["global", "per_column"]
COMPENSATION_MODES: tuple[str, ...] = get_args(CompensationMode)


def _readout(y: Tensor, mode: str, eps: float) -> Tensor:
    dims = (-2, -1) if mode == "global" else (-2,)
    return y.abs().mean(dim=dims).clamp(min=eps)


def drift_compensation_factor(reference: Tensor, current: Tensor,
                              mode: CompensationMode = "global", eps: float = 1e-4) -> Tensor:
    """The gain that maps outputs at time t back to the scale of the reference read.

    Args:
        reference: (..., n_reads, n_cols) outputs of the read-out inputs right after
            programming (or conductances / weights: one-hot read-outs).
        current: the same read-out at inference time, same shape.
        mode: "global", one gain per array, or "per_column", one per output column.
        eps: lower clamp of each mean absolute output.

    Returns:
        alpha: (...) for "global", (..., n_cols) for "per_column". Multiply the outputs (in
        per_column mode, along their last axis) by it.
    """
    if mode not in COMPENSATION_MODES:
        raise ImssaError(f"mode must be one of {COMPENSATION_MODES}, got {mode!r}")
    if reference.shape != current.shape:
        raise ImssaError("reference and current read-outs must have the same shape, got "
                         f"{tuple(reference.shape)} and {tuple(current.shape)}")
    if reference.ndim < 2:
        raise ImssaError("read-outs must have shape (..., n_reads, n_cols), got "
                         f"{tuple(reference.shape)}")
    if not eps > 0:
        raise ImssaError(f"eps must be > 0, got {eps}")
    return _readout(reference, mode, eps) / _readout(current, mode, eps)
