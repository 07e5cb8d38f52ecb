"""Checks of the analyses' arguments: each raises ImssaError naming the parameter it checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from imssa.errors import ImssaError
from imssa.quant.spec import MAX_BITS, MIN_BITS


def check_bits(bits: Iterable[Any], name: str = "bits") -> tuple[int, ...]:
    """Sorted unique bit widths, each an integer in MIN_BITS..MAX_BITS, at least one."""
    out = []
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) \
                or not MIN_BITS <= int(b) <= MAX_BITS:
            raise ImssaError(f"{name} must be integers in {MIN_BITS}..{MAX_BITS}, got {b!r}")
        out.append(int(b))
    if not out:
        raise ImssaError(f"{name} is empty; give at least one bit width in {MIN_BITS}..{MAX_BITS}")
    return tuple(sorted(set(out)))


def check_names(values: Iterable[str], valid: Sequence[str], name: str,
                what: str) -> tuple[str, ...]:
    """``values`` unique in their given order, each one of ``valid``, at least one.

    Args:
        name: the parameter (``targets``, ``variants``, ``forms``), first word of the message.
        what: what a value is, in words (``quantization target``).
    """
    out = tuple(dict.fromkeys(values))
    if not out:
        raise ImssaError(f"{name}: no {what} given; choose from {', '.join(valid)}")
    unknown = [v for v in out if v not in valid]
    if unknown:
        raise ImssaError(f"{name}: unknown {what}(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(valid)}")
    return out


def check_count(value: int | None, name: str, allow_none: bool = False) -> None:
    """``value`` is a count: an integer >= 1 (or None where ``allow_none``)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ImssaError(f"{name} must be a positive integer{' or None' if allow_none else ''}, "
                         f"got {value!r}")


def check_choice(value: str, valid: Sequence[str], name: str) -> None:
    """``value`` is one of ``valid``."""
    if value not in valid:
        raise ImssaError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
