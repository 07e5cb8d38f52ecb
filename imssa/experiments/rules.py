"""Validation rules shared by the training configs (``TrainConfig`` and ``QATConfig``), so that a
value one command refuses the other refuses too."""

from __future__ import annotations

import math

from imssa.errors import ImssaError

#: Largest learning rate of the SSM dynamics (A and Delta), as in the S4 reference recipe.
SSM_LR_MAX = 1e-3


def check_ssm_lr(value: float, field: str) -> None:
    """Raise unless ``value`` (the config field ``field``) is in (0, :data:`SSM_LR_MAX`]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= SSM_LR_MAX:
        raise ImssaError(f"{field} must be in (0, {SSM_LR_MAX:g}] as in the S4 reference, "
                         f"got {value!r}")


def check_positive(value: float, field: str) -> None:
    """Raise unless ``value`` (the config field ``field``) is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ImssaError(f"{field} must be a finite number > 0, got {value!r}")
