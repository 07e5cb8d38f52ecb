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
from imssa.quant import TARGETS, QuantConfig, QuantSpec, make_config
from imssa.quant.spec import ABarForm, GeluForm

#: Bit widths of the sensitivity and width analyses.
DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 10, 12, 16)


@dataclass(frozen=True)
class Variant:
    """One way to quantize a target, applied on top of its preset spec (see ``sensitivity``).

    Attributes:
        name: short name, the coordinate of the ``variant`` dim.
        spec: QuantSpec fields replaced in the target's spec (bits is added per bit width).
        kinds: the target kinds (``weight``, ``ssm``, ``state``, ``activation``) it applies to.
        targets: restricts it further to these target names (None: every target of ``kinds``).
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
        if self.targets is not None and target not in self.targets:
            return False
        return TARGETS[target].kind in self.kinds

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
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("tensor-sym", {"granularity": "tensor", "symmetric": True}, _ALL_KINDS,
            description="one range per tensor, signed symmetric grid"),
    Variant("tensor-asym", {"granularity": "tensor", "symmetric": False}, _ALL_KINDS,
            description="one range per tensor, unsigned grid with a zero point"),
    Variant("head-sym", {"granularity": "head", "symmetric": True}, _ALL_KINDS,
            description="one range per head (weight row, activation channel), symmetric grid"),
    Variant("head-asym", {"granularity": "head", "symmetric": False}, _ALL_KINDS,
            description="one range per head, grid with a zero point"),
    Variant("mode-sym", {"granularity": "mode", "symmetric": True}, ("state",),
            description="state only: one static range per (head, mode), symmetric grid"),
    Variant("mode-asym", {"granularity": "mode", "symmetric": False}, ("state",),
            description="state only: one static range per (head, mode), grid with a zero point"),
    Variant("head-sym-sr", {"granularity": "head", "symmetric": True, "rounding": "stochastic"},
            ("state",), description="state only: per head, symmetric, stochastic rounding"),
    Variant("mode-sym-sr", {"granularity": "mode", "symmetric": True, "rounding": "stochastic"},
            ("state",),
            description="state only: per (head, mode), symmetric, stochastic rounding"),
    Variant("dynamic-tensor", {"granularity": "tensor", "symmetric": False, "dynamic": True},
            ("activation",),
            description="activations only: range of each input sample, per tensor"),
    Variant("dynamic-head", {"granularity": "head", "symmetric": False, "dynamic": True},
            ("activation",),
            description="activations only: range of each input sample, per channel"),
    Variant("polar-tensor", {"granularity": "tensor"}, ("ssm",), ("A_bar",), "polar",
            description="A_bar only: log-decay and phase grid inside the unit circle, per tensor"),
    Variant("polar-head", {"granularity": "head"}, ("ssm",), ("A_bar",), "polar",
            description="A_bar only: log-decay and phase grid inside the unit circle, per head"),
)}


def check_targets(targets: Iterable[str]) -> tuple[str, ...]:
    """Quantization target names, unique, each one of :data:`imssa.quant.TARGETS`."""
    return check_names(targets, list(TARGETS), "targets", "quantization target")


def check_variants(variants: Iterable[str]) -> tuple[str, ...]:
    """Variant names, unique, each one of :data:`VARIANTS`."""
    return check_names(variants, list(VARIANTS), "variants", "variant")


def target_config(target: str, bits: int, variant: str = "tensor-sym",
                  gelu: str = "exact") -> QuantConfig:
    """Full precision except ``target``, quantized at ``bits`` bits in ``variant``.

    The target keeps its preset's calibration (weights and SSM tensors min/max of the tensor,
    activations and the state the 99.999th percentile of calibration data); the variant replaces
    granularity, symmetry and dynamic ranges. Raises ImssaError when the variant does not apply.
    """
    check_targets([target])
    v = VARIANTS[check_variants([variant])[0]]
    if not v.applies_to(target):
        raise ImssaError(f"variant {variant!r} does not apply to target {target!r} "
                         f"({TARGETS[target].kind}): {v.description}")
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
        name: {"bits": bits} for name in TARGETS if name != "input"}
    cfg = make_config("fp", overrides=overrides, a_bar_form=cast(ABarForm, a_bar_form))
    return dataclasses.replace(cfg, gelu=cast(GeluForm, gelu))


def fp_config(gelu: str = "exact") -> QuantConfig:
    """Full precision (the reference every analysis compares with), with the GELU ``gelu``."""
    return dataclasses.replace(make_config("fp"), gelu=cast(GeluForm, gelu))
