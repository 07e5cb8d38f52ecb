"""Quantizer variants of the sensitivity analysis and the configurations the analyses evaluate.

A :class:`Variant` is one way to quantize a target (granularity, symmetric or not, static or
dynamic ranges, rounding, Cartesian or polar A_bar), applied on top of the target's preset
spec; :func:`target_config` quantizes one target in one variant (Zhao et al. 2025, Fig. 2) and
:func:`uniform_config` the whole model at one bit width, W{b}A{b} (Fig. 4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from imssa.errors import ImssaError
from imssa.experiments.analyses.checks import check_bits, check_names
from imssa.names import ALIASES, layer_generic
from imssa.quant import TARGETS, QuantConfig, QuantSpec, make_config
from imssa.quant.spec import ABarForm, GeluForm, resolve_targets

#: Bit widths of the sensitivity and width analyses.
DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 10, 12, 16)


@dataclass(frozen=True)
class Variant:
    """One way to quantize a target, applied on top of its preset spec (see ``sensitivity``).

    Attributes:
        name: short name, the coordinate of the ``variant`` dim.
        spec: QuantSpec fields replaced in the target's spec (bits is added per bit width).
        kinds: the target kinds (``weight``, ``ssm``, ``state``, ``activation``) it applies to.
        targets: restricts it further to these layer-generic target paths (None: every target
            of ``kinds``).
        a_bar_form: the A_bar grid, ``cartesian`` or ``polar``.
        description: one line for plots and attrs.
    """

    name: str
    spec: dict[str, Any]
    kinds: tuple[str, ...]
    targets: tuple[str, ...] | None = None
    a_bar_form: str = "cartesian"
    description: str = ""

    def applies_to(self, target: str) -> bool:
        """Whether it quantizes ``target``, a generic or concrete path of :data:`TARGETS`."""
        generic = layer_generic(target)
        if self.targets is not None and generic not in self.targets:
            return False
        return TARGETS[generic].kind in self.kinds

    @property
    def granularity(self) -> str:
        return str(self.spec.get("granularity", "tensor"))

    @property
    def symmetric(self) -> str:
        """``yes``/``no``, or ``n/a`` for the polar grid (which has no zero point)."""
        if self.a_bar_form == "polar":
            return "n/a"
        return "yes" if self.spec.get("symmetric", True) else "no"

    @property
    def ranges(self) -> str:
        return "dynamic" if self.spec.get("dynamic", False) else "static"

    @property
    def rounding(self) -> str:
        return str(self.spec.get("rounding", "nearest"))


_ALL_KINDS = ("weight", "ssm", "state", "activation")
_A_BAR = ("blocks.*.ssm.A_bar",)
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("tensor-sym", {"granularity": "tensor", "symmetric": True}, _ALL_KINDS,
            description="one range per tensor, signed symmetric grid"),
    Variant("tensor-asym", {"granularity": "tensor", "symmetric": False}, _ALL_KINDS,
            description="one range per tensor, unsigned grid with a zero point"),
    Variant("channel-sym", {"granularity": "channel", "symmetric": True}, _ALL_KINDS,
            description="one range per channel (weight row, activation channel), symmetric grid"),
    Variant("channel-asym", {"granularity": "channel", "symmetric": False}, _ALL_KINDS,
            description="one range per channel, grid with a zero point"),
    Variant("mode-sym", {"granularity": "mode", "symmetric": True}, ("state",),
            description="state only: one static range per (channel, mode), symmetric grid"),
    Variant("mode-asym", {"granularity": "mode", "symmetric": False}, ("state",),
            description="state only: one static range per (channel, mode), grid with a zero "
                        "point"),
    Variant("channel-sym-sr",
            {"granularity": "channel", "symmetric": True, "rounding": "stochastic"}, ("state",),
            description="state only: per channel, symmetric, stochastic rounding"),
    Variant("mode-sym-sr", {"granularity": "mode", "symmetric": True, "rounding": "stochastic"},
            ("state",),
            description="state only: per (channel, mode), symmetric, stochastic rounding"),
    Variant("dynamic-tensor", {"granularity": "tensor", "symmetric": False, "dynamic": True},
            ("activation",),
            description="activations only: range of each input sample, per tensor"),
    Variant("dynamic-channel", {"granularity": "channel", "symmetric": False, "dynamic": True},
            ("activation",),
            description="activations only: range of each input sample, per channel"),
    Variant("polar-tensor", {"granularity": "tensor"}, ("ssm",), _A_BAR, "polar",
            description="A_bar only: log-decay and phase grid inside the unit circle, per tensor"),
    Variant("polar-channel", {"granularity": "channel"}, ("ssm",), _A_BAR, "polar",
            description="A_bar only: log-decay and phase grid inside the unit circle, per "
                        "channel"),
)}


def check_targets(targets: Iterable[str]) -> tuple[str, ...]:
    """The target paths that selectors name, unique, in the given order.

    A selector is an :mod:`imssa.names` path, layer-generic (``blocks.*.ssm.A_bar``: every
    layer's) or concrete (``blocks.0.ssm.A_bar``: that layer's alone), a module (``mix``: its
    weight and bias) or an alias (``A``, ``x``); see :func:`imssa.quant.spec.resolve_targets`.
    """
    out: list[str] = []
    for selector in targets:
        try:
            out += resolve_targets(selector)
        except ImssaError as err:
            raise ImssaError(f"targets: {err}") from None
    if not out:
        raise ImssaError(f"targets: no quantization target given; choose from "
                         f"{', '.join(TARGETS)} or an alias ({', '.join(ALIASES)})")
    return tuple(dict.fromkeys(out))


def check_variants(variants: Iterable[str]) -> tuple[str, ...]:
    """Variant names, unique, each one of :data:`VARIANTS`."""
    return check_names(variants, list(VARIANTS), "variants", "variant")


def target_config(target: str, bits: int, variant: str = "tensor-sym",
                  gelu: str = "exact") -> QuantConfig:
    """Full precision except ``target`` (one tensor: a path or an alias of one, ``A``),
    quantized at ``bits`` bits in ``variant``.

    The target keeps its preset's calibration (weights and SSM tensors min/max of the tensor,
    activations and the state the 99.999th percentile of calibration data); the variant replaces
    granularity, symmetry and dynamic ranges. Raises ImssaError when the variant does not apply.
    """
    paths = check_targets([target])
    if len(paths) != 1:
        raise ImssaError(f"target {target!r} names {len(paths)} tensors ({', '.join(paths)}); "
                         "give one")
    target = paths[0]
    v = VARIANTS[check_variants([variant])[0]]
    if not v.applies_to(target):
        raise ImssaError(f"variant {variant!r} does not apply to target {target!r} "
                         f"({TARGETS[layer_generic(target)].kind}): {v.description}")
    cfg = make_config("fp", overrides={target: {**v.spec, "bits": bits}},
                      a_bar_form="polar" if v.a_bar_form == "polar" else None)
    return dataclasses.replace(cfg, gelu=cast(GeluForm, gelu))


def uniform_config(bits: int, a_bar_form: str = "cartesian", gelu: str = "auto") -> QuantConfig:
    """W{b}A{b}: every weight, SSM tensor, activation and the state at ``bits``, as the presets.

    Specs as :func:`imssa.quant.make_config`'s ``W8A8``/``W4A6`` (weights symmetric per tensor,
    activations asymmetric with percentile ranges, the input in full precision), so
    ``uniform_config(8) == make_config("W8A8")``.
    """
    check_bits([bits])
    overrides: dict[str, dict[str, Any] | QuantSpec] = {
        name: {"bits": bits} for name in TARGETS if name != "encoder.input"}
    cfg = make_config("fp", overrides=overrides, a_bar_form=cast(ABarForm, a_bar_form))
    return dataclasses.replace(cfg, gelu=cast(GeluForm, gelu))


def fp_config(gelu: str = "exact") -> QuantConfig:
    """Full precision (the reference every analysis compares with), with the GELU ``gelu``."""
    return dataclasses.replace(make_config("fp"), gelu=cast(GeluForm, gelu))
