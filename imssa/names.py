"""One name per tensor: module paths of :class:`~imssa.ssm.S4DModel`, and their short aliases.

Every config, CLI option, result coordinate, conductance map and noise setting names a tensor by
its path in the model graph: ``encoder.weight``, ``blocks.0.ssm.A_bar``, ``blocks.0.mix.bias``,
``decoder.weight``. The state a layer keeps is ``blocks.i.ssm.x``; activation points are
``encoder.input`` (the model input), ``blocks.i.ssm.input``, ``blocks.i.ssm.output``,
``blocks.i.activation.output`` (after GELU), ``blocks.i.glu.output`` and ``decoder.input`` (the
time-pooled features).

A *selector* picks tensors: a full path, a path with ``*`` for the layer (``blocks.*.ssm.A_bar``),
a module path (``encoder``, ``blocks.0.mix``: its weight and bias) or an alias of :data:`ALIASES`
(``A``, ``B``, ``C``, ``D``, ``x``, ``encoder``, ``mix``, ``decoder``: every layer's).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Literal, get_args

from imssa.errors import ImssaError

#: One range (or conductance scale) for the whole tensor, one per output channel (a head of an
#: activation, an output row of a weight, an output column of a crossbar), or one per (channel,
#: mode) of an SSM tensor or state. The only granularity words of the package.
Granularity = Literal["tensor", "channel", "mode"]
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
#: How a range is taken from observed values: min/max, a percentile, or max |v| (symmetric).
Calibration = Literal["minmax", "percentile", "maxabs"]
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)

#: Weights and biases of the dense layers, relative to their module.
LINEAR_TENSORS: tuple[str, ...] = ("weight", "bias")
#: Tensors of one SSM layer (the discrete system), relative to ``blocks.i.ssm``.
SSM_TENSORS: tuple[str, ...] = ("A_bar", "B_bar", "C", "D")

#: Short alias -> layer-generic selector.
ALIASES: dict[str, str] = {
    "A": "blocks.*.ssm.A_bar", "B": "blocks.*.ssm.B_bar", "C": "blocks.*.ssm.C",
    "D": "blocks.*.ssm.D", "x": "blocks.*.ssm.x", "encoder": "encoder", "mix": "blocks.*.mix",
    "decoder": "decoder",
}


def tensor_names(n_layers: int) -> list[str]:
    """Every stored tensor of a model with ``n_layers`` blocks, in graph order."""
    names = [f"encoder.{t}" for t in LINEAR_TENSORS]
    for i in range(n_layers):
        names += [f"blocks.{i}.ssm.{t}" for t in SSM_TENSORS]
        names += [f"blocks.{i}.mix.{t}" for t in LINEAR_TENSORS]
    return names + [f"decoder.{t}" for t in LINEAR_TENSORS]


def state_names(n_layers: int) -> list[str]:
    """The state of every layer."""
    return [f"blocks.{i}.ssm.x" for i in range(n_layers)]


def activation_names(n_layers: int) -> list[str]:
    """Every activation point, in graph order."""
    names = ["encoder.input"]
    for i in range(n_layers):
        names += [f"blocks.{i}.ssm.input", f"blocks.{i}.ssm.output",
                  f"blocks.{i}.activation.output", f"blocks.{i}.glu.output"]
    return names + ["decoder.input"]


def layer_generic(name: str) -> str:
    """``blocks.3.ssm.A_bar`` -> ``blocks.*.ssm.A_bar``; names outside the blocks unchanged."""
    parts = name.split(".")
    if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit():
        parts[1] = "*"
    return ".".join(parts)


def layer_of(name: str) -> int | None:
    """The block index of a path (``blocks.2.mix.weight`` -> 2), None outside the blocks."""
    parts = name.split(".")
    return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else None


def select(selectors: str | Iterable[str], universe: Iterable[str], *,
           what: str = "tensor") -> list[str]:
    """The names of ``universe`` that the selectors pick, in the universe's order.

    Args:
        selectors: one selector or several (a comma-separated string is split).
        universe: the names a selector may pick from (e.g. :func:`tensor_names`).
        what: how the error message calls a name.

    Raises:
        ImssaError: naming the first selector that picks nothing, with the allowed values.
    """
    if isinstance(selectors, str):
        selectors = [s for s in selectors.split(",") if s.strip()]
    universe = list(universe)
    picked: set[str] = set()
    for raw in selectors:
        sel = ALIASES.get(raw.strip(), raw.strip())
        hits = [n for n in universe
                if n == sel or fnmatch.fnmatchcase(n, sel) or n.startswith(sel + ".")
                or fnmatch.fnmatchcase(n, sel + ".*")]
        if not hits:
            raise ImssaError(f"unknown {what} {raw.strip()!r}; use an alias "
                             f"({', '.join(ALIASES)}) or a path such as {universe[0]!r} "
                             f"(all: {', '.join(universe)})")
        picked.update(hits)
    return [n for n in universe if n in picked]
