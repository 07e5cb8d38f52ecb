"""Quantization specs: what to quantize in an S4D classifier, with how many bits and how.

One frozen :class:`QuantSpec` per quantization target, grouped in a :class:`QuantConfig`. The
targets follow the seed paper (Zhao et al. 2025, "Quantizing Small-Scale State-Space Models for
Edge AI"): the discrete SSM tensors A_bar, B_bar, C, D, the dense weights and biases, the state x
(quantized at every recurrent step) and every activation a streaming device keeps. A target is
named by its :mod:`imssa.names` path, layer-generic (``blocks.*.ssm.A_bar``) in the config and
concrete (``blocks.0.ssm.A_bar``) for a per-layer exception. Presets ``fp``, ``W8A8`` and
``W4A6`` and their heterogeneous variants (A_bar and x at their own bits) come from
:func:`make_config`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from imssa.errors import ImssaError
from imssa.names import ALIASES, CALIBRATIONS, GRANULARITIES, Calibration, Granularity, \
    layer_generic, layer_of, select

ABarForm = Literal["cartesian", "polar"]
GeluForm = Literal["auto", "exact", "hard"]
Rounding = Literal["nearest", "stochastic"]
TargetKind = Literal["weight", "ssm", "state", "activation"]

MIN_BITS, MAX_BITS = 2, 16
A_BAR_FORMS = ("cartesian", "polar")
GELU_FORMS = ("auto", "exact", "hard")
ROUNDINGS = ("nearest", "stochastic")
__all__ = ["CALIBRATIONS", "GRANULARITIES", "Calibration", "Granularity"]  # re-exported


@dataclass(frozen=True, kw_only=True)
class QuantSpec:
    """How one tensor is fake-quantized.

    Attributes:
        bits: 2..16, or None for full precision (the tensor is left untouched).
        symmetric: signed grid [-(2^(b-1)-1), 2^(b-1)-1] with zero point 0 (True), or unsigned
            [0, 2^b-1] with a zero point (False).
        granularity: one range per tensor, per channel (per output row of a weight, per
            channel h of an activation or SSM tensor), or per (channel, mode) for the state x.
        calibration: how a range is taken from values: min/max, a percentile (of |v| when
            symmetric, of both tails when not), or max-abs (range [-max|v|, max|v|]).
        percentile: the percentile for ``calibration="percentile"``, in (50, 100].
        dynamic: activations only: ranges from each input sample instead of calibration.
        bound: a fixed range [-bound, bound] instead of calibration (e.g. the state's clip bound).
        rounding: ``nearest`` (half to even), or ``stochastic`` for the state x only: round up
            with probability equal to the fraction, an unbiased dither (a random number per
            state update, e.g. from an LFSR). Nearest rounding has a dead zone: a slow mode whose
            per-step change is below half a step never moves (docs/results.md, "Stochastic
            rounding of the state").
    """

    bits: int | None = None
    symmetric: bool = True
    granularity: Granularity = "tensor"
    calibration: Calibration = "minmax"
    percentile: float = 99.999
    dynamic: bool = False
    bound: float | None = None
    rounding: Rounding = "nearest"

    def __post_init__(self) -> None:
        if self.bits is not None and (isinstance(self.bits, bool) or not isinstance(self.bits, int)
                                      or not MIN_BITS <= self.bits <= MAX_BITS):
            raise ImssaError(f"QuantSpec.bits must be an integer in {MIN_BITS}..{MAX_BITS} or None "
                             f"(full precision), got {self.bits!r}")
        for name in ("symmetric", "dynamic"):
            if not isinstance(getattr(self, name), bool):
                raise ImssaError(f"QuantSpec.{name} must be true or false, got "
                                 f"{getattr(self, name)!r}")
        for name, allowed in (("granularity", GRANULARITIES), ("calibration", CALIBRATIONS),
                              ("rounding", ROUNDINGS)):
            if getattr(self, name) not in allowed:
                raise ImssaError(f"QuantSpec.{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)) \
                or not 50.0 < self.percentile <= 100.0:
            raise ImssaError(f"QuantSpec.percentile must be in (50, 100], got {self.percentile!r}")
        if self.bound is not None:
            if isinstance(self.bound, bool) or not isinstance(self.bound, (int, float)) \
                    or not (math.isfinite(self.bound) and self.bound > 0):
                raise ImssaError(f"QuantSpec.bound must be a finite number > 0 or None, "
                                 f"got {self.bound!r}")
            if self.bits is None:
                raise ImssaError("QuantSpec.bound needs bits: a bound is the range of a quantizer; "
                                 "set bits as well, or drop bound")
            if self.dynamic:
                raise ImssaError("QuantSpec.bound and dynamic=True contradict each other: a bound "
                                 "fixes the range, dynamic recomputes it per input; choose one")

    @property
    def enabled(self) -> bool:
        return self.bits is not None


@dataclass(frozen=True)
class Target:
    """One quantization target of the model, by its layer-generic :mod:`imssa.names` path."""

    name: str
    kind: TargetKind
    description: str

    @property
    def per_layer(self) -> bool:
        return self.name.startswith("blocks.*.")


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("encoder.input", "activation", "model input u, (B, L, d_input)"),
    Target("encoder.weight", "weight", "encoder Linear weight, (H, d_input)"),
    Target("encoder.bias", "weight", "encoder Linear bias, (H,)"),
    Target("blocks.*.ssm.input", "activation",
           "SSM input (encoder or previous block output), (B, L, H)"),
    Target("blocks.*.ssm.A_bar", "ssm", "discrete state transition, (H, N/2) complex"),
    Target("blocks.*.ssm.B_bar", "ssm", "discrete input vector, (H, N/2) complex"),
    Target("blocks.*.ssm.C", "ssm", "output vector, (H, N/2) complex"),
    Target("blocks.*.ssm.D", "ssm", "skip connection, (H,)"),
    Target("blocks.*.ssm.x", "state", "recurrent state, (B, H, N/2) complex, quantized every step"),
    Target("blocks.*.ssm.output", "activation", "SSM output y, (B, L, H)"),
    Target("blocks.*.activation.output", "activation", "nonlinearity (GELU) output, (B, L, H)"),
    Target("blocks.*.mix.weight", "weight", "GLU mixing Linear weight, (2H, H)"),
    Target("blocks.*.mix.bias", "weight", "GLU mixing Linear bias, (2H,)"),
    Target("blocks.*.glu.output", "activation", "GLU output before the residual add, (B, L, H)"),
    Target("decoder.input", "activation", "features averaged over time, (B, H)"),
    Target("decoder.weight", "weight", "decoder Linear weight, (n_classes, H)"),
    Target("decoder.bias", "weight", "decoder Linear bias, (n_classes,)"),
)}
ACTIVATION_TARGETS = tuple(n for n, t in TARGETS.items() if t.kind == "activation")
_STORED = [n for n, t in TARGETS.items() if t.kind != "activation"]


def _valid_names() -> str:
    return (", ".join(TARGETS) + f"; aliases {', '.join(ALIASES)}; a concrete layer "
            "(blocks.0.ssm.A_bar) for one layer")


def resolve_targets(selector: str) -> list[str]:
    """The target paths a selector names: generic (``blocks.*.ssm.A_bar``), or concrete
    (``blocks.0.ssm.A_bar``) for a selector naming one layer.

    A selector is a path, a module (``mix``, ``blocks.0.ssm``: its stored tensors and state) or an
    alias of :data:`imssa.names.ALIASES`; activation points are named by their full path.
    """
    sel = ALIASES.get(selector.strip(), selector.strip())
    layer = layer_of(sel)
    generic = layer_generic(sel)
    try:
        hits = select(generic, _STORED, what="quantization target")
    except ImssaError:
        try:
            hits = select(generic, TARGETS, what="quantization target")
        except ImssaError:
            raise ImssaError(f"unknown quantization target {selector!r}; valid names: "
                             f"{_valid_names()}") from None
    return hits if layer is None else [h.replace("*", str(layer), 1) for h in hits]


def _spec_from(value: Any, where: str) -> QuantSpec:
    if isinstance(value, QuantSpec):
        return value
    if isinstance(value, dict):
        return _replace_spec(QuantSpec(), value, where)
    raise ImssaError(f"{where} must be a QuantSpec or a dict of its fields, got "
                     f"{type(value).__name__}")


def _replace_spec(spec: QuantSpec, fields: Mapping[str, Any], where: str) -> QuantSpec:
    valid = [f.name for f in dataclasses.fields(QuantSpec)]
    unknown = [k for k in fields if k not in valid]
    if unknown:
        raise ImssaError(f"{where}: unknown QuantSpec field(s) {', '.join(map(repr, unknown))}; "
                         f"valid fields are {', '.join(valid)}")
    try:
        return dataclasses.replace(spec, **fields)
    except ImssaError as err:
        raise ImssaError(f"{where}: {err}") from None


def _check_target(generic: str, spec: QuantSpec, where: str) -> None:
    kind = TARGETS[generic].kind
    if spec.granularity == "mode" and kind != "state":
        raise ImssaError(f"QuantConfig {where}: granularity 'mode' (one range per channel and "
                         "mode) exists only for the state blocks.*.ssm.x; use 'tensor' or "
                         "'channel'")
    if spec.rounding == "stochastic" and kind != "state":
        raise ImssaError(f"QuantConfig {where}: rounding 'stochastic' exists only for the state "
                         "blocks.*.ssm.x (a dither of the state register); other targets round "
                         "to nearest")
    if spec.dynamic and kind != "activation":
        raise ImssaError(f"QuantConfig {where}: dynamic=True applies to activations only; weight "
                         "and SSM tensor ranges always follow the tensor itself (until "
                         "freeze_ranges), and the state x needs a fixed grid for the scan "
                         "(calibrate it or give a bound)")


def _full(specs: Mapping[str, QuantSpec]) -> dict[str, QuantSpec]:
    return {n: specs.get(n, QuantSpec()) for n in TARGETS}


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Quantization of a whole S4D classifier.

    Attributes:
        specs: layer-generic target path (:data:`TARGETS`) -> QuantSpec; a target left out is in
            full precision. Stored with every target, in graph order.
        layers: per-layer exceptions by concrete path (``blocks.0.ssm.A_bar``: keep layer 0's
            A_bar at 8 bits).
        a_bar_form: the grid of A_bar: ``cartesian`` quantizes real and imaginary parts with one
            shared scale (the paper's scheme; some levels lie outside the unit circle),
            ``polar`` quantizes decay and phase so every level lies strictly inside it.
        gelu: ``auto`` is the hard-sigmoid form of Q-S5, x*clip((x+2)/4, 0, 1), whenever an
            activation is quantized, the exact GELU otherwise; ``exact`` and ``hard`` force one.
    """

    specs: Mapping[str, QuantSpec] = field(default_factory=dict)
    layers: Mapping[str, QuantSpec] = field(default_factory=dict)
    a_bar_form: ABarForm = "cartesian"
    gelu: GeluForm = "auto"

    def __post_init__(self) -> None:
        for name, allowed in (("a_bar_form", A_BAR_FORMS), ("gelu", GELU_FORMS)):
            if getattr(self, name) not in allowed:
                raise ImssaError(f"QuantConfig.{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        for key, spec in self.specs.items():
            if key not in TARGETS:
                raise ImssaError(f"QuantConfig.specs: unknown target {key!r}; targets are "
                                 f"{', '.join(TARGETS)}")
            if not isinstance(spec, QuantSpec):
                raise ImssaError(f"QuantConfig.specs[{key!r}] must be a QuantSpec, got "
                                 f"{type(spec).__name__}")
            _check_target(key, spec, f"specs[{key!r}]")
        for key, spec in self.layers.items():
            generic = layer_generic(key)
            if layer_of(key) is None or generic not in TARGETS:
                per_layer = ", ".join(n for n, t in TARGETS.items() if t.per_layer)
                raise ImssaError(f"QuantConfig.layers key {key!r} is not a concrete per-layer "
                                 f"path (blocks.<i>.ssm.A_bar); per-layer targets are {per_layer}")
            if not isinstance(spec, QuantSpec):
                raise ImssaError(f"QuantConfig.layers[{key!r}] must be a QuantSpec, got "
                                 f"{type(spec).__name__}")
            _check_target(generic, spec, f"layers[{key!r}]")
        object.__setattr__(self, "specs", _full(self.specs))
        object.__setattr__(self, "layers", dict(self.layers))

    def spec(self, path: str) -> QuantSpec:
        """The spec of one tensor: a concrete path (``blocks.0.ssm.A_bar``, honouring
        ``layers``), a generic one (``blocks.*.ssm.A_bar``) or a one-tensor alias (``A``)."""
        path = ALIASES.get(path, path)
        if path in self.layers:
            return self.layers[path]
        generic = layer_generic(path)
        if generic not in TARGETS:
            raise ImssaError(f"unknown quantization target {path!r}; valid names: "
                             f"{_valid_names()}")
        return self.specs[generic]

    def check_layers(self, n_layers: int) -> None:
        """Raise if ``layers`` names a layer the model does not have."""
        for key in self.layers:
            i = layer_of(key)
            if i is not None and i >= n_layers:
                raise ImssaError(f"QuantConfig.layers has a spec for {key!r}, but the model has "
                                 f"{n_layers} layer(s) (blocks.0 .. blocks.{n_layers - 1})")

    def any_activation_quantized(self, n_layers: int) -> bool:
        return any(self.spec(t.replace("*", str(i))).enabled
                   for t in ACTIVATION_TARGETS for i in range(n_layers))

    def hard_gelu(self, n_layers: int) -> bool:
        """Whether the model runs the hard GELU (``gelu``: hard, or auto with a quantized
        activation)."""
        return self.gelu == "hard" or (self.gelu == "auto"
                                       and self.any_activation_quantized(n_layers))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        return {"specs": {k: dataclasses.asdict(v) for k, v in self.specs.items()},
                "layers": {k: dataclasses.asdict(v) for k, v in self.layers.items()},
                "a_bar_form": self.a_bar_form, "gelu": self.gelu}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantConfig:
        """The config of :meth:`to_dict`; a config saved with the old target names is
        translated (:func:`imssa.quant.legacy.quant_config_dict`)."""
        from imssa.quant.legacy import quant_config_dict

        d = quant_config_dict(d)
        valid = ("specs", "layers", "a_bar_form", "gelu")
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ImssaError("QuantConfig.from_dict: unknown key(s) "
                             f"{', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
        kw: dict[str, Any] = {k: d[k] for k in ("a_bar_form", "gelu") if k in d}
        for k in ("specs", "layers"):
            kw[k] = {n: _spec_from(v, f"QuantConfig.{k}[{n!r}]") for n, v in d.get(k, {}).items()}
        return cls(**kw)


def _preset(w_bits: int | None, a_bits: int | None) -> QuantConfig:
    """Weights (dense, biases, A_bar, B_bar, C, D) at w_bits; activations and the state at a_bits.

    Weight matrices and the SSM tensors A_bar, B_bar, C: symmetric, one range per channel
    (output row), min/max of the tensor itself; biases and D: symmetric, per tensor. Per channel
    because B_bar = (A_bar - 1)/A * B spans orders of magnitude across channels (it scales with
    Delta): one 4-bit range for the whole tensor rounds most channels to zero (sdigits s4d-16,
    B_bar alone at 4 bits: 33 % per tensor, 95 % per channel, FP 95.5 %). Activations:
    asymmetric, per tensor, 99.999th percentile (the paper's choice); the model input stays in
    full precision. State x: symmetric, per tensor, 99.999th percentile of |Re x|, |Im x| over
    all steps.
    """
    w = QuantSpec(bits=w_bits, symmetric=True, granularity="channel", calibration="minmax")
    vector = QuantSpec(bits=w_bits, symmetric=True, calibration="minmax")
    a = QuantSpec(bits=a_bits, symmetric=False, calibration="percentile")
    x = QuantSpec(bits=a_bits, symmetric=True, calibration="percentile")
    specs = {n: {"weight": w, "ssm": w, "state": x, "activation": a}[t.kind]
             for n, t in TARGETS.items()}
    for n in ("encoder.bias", "blocks.*.mix.bias", "decoder.bias", "blocks.*.ssm.D"):
        specs[n] = vector
    specs["encoder.input"] = QuantSpec(bits=None, symmetric=False, calibration="percentile")
    return QuantConfig(specs=specs)


PRESETS: dict[str, QuantConfig] = {
    "fp": _preset(None, None),
    "W8A8": _preset(8, 8),
    "W4A6": _preset(4, 6),
}


def make_config(preset: str = "fp", a_bits: int | None = None, x_bits: int | None = None,
                overrides: Mapping[str, Mapping[str, Any] | QuantSpec] | None = None, *,
                a_bar_form: ABarForm | None = None) -> QuantConfig:
    """A named preset, optionally heterogeneous, with any spec overridden by selector.

    Args:
        preset: ``fp``, ``W8A8`` or ``W4A6``.
        a_bits: bits of A_bar (e.g. W4A6 with A_bar at 8 bits), None keeps the preset's.
        x_bits: bits of the state x, None keeps the preset's.
        overrides: selector (a target path ``blocks.*.mix.weight``, a module ``mix``, an alias
            ``A``, or a concrete layer ``blocks.0.ssm.A_bar`` for that layer only) -> dict of
            QuantSpec fields to replace (``{"bits": 6, "granularity": "channel"}``) or a whole
            QuantSpec. Applied after a_bits and x_bits; layer-generic ones before per-layer ones.
        a_bar_form: ``cartesian`` or ``polar`` grid for A_bar; None keeps ``cartesian``.

    Returns:
        The QuantConfig. Unknown presets, targets or fields raise ImssaError naming the valid ones.
    """
    if preset not in PRESETS:
        raise ImssaError(f"unknown quantization preset {preset!r}; choose one of "
                         f"{', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    specs, layers = dict(cfg.specs), dict(cfg.layers)
    if a_bits is not None:
        specs["blocks.*.ssm.A_bar"] = _replace_spec(specs["blocks.*.ssm.A_bar"], {"bits": a_bits},
                                                    "a_bits")
    if x_bits is not None:
        specs["blocks.*.ssm.x"] = _replace_spec(specs["blocks.*.ssm.x"], {"bits": x_bits},
                                                "x_bits")
    resolved = [(key, value, resolve_targets(key)) for key, value in (overrides or {}).items()]
    resolved.sort(key=lambda r: layer_of(ALIASES.get(r[0], r[0])) is not None)  # generic first
    for key, value, paths in resolved:
        if not isinstance(value, (QuantSpec, Mapping)):
            raise ImssaError(f"overrides[{key!r}] must be a dict of QuantSpec fields or a "
                             f"QuantSpec, got {type(value).__name__}")
        for path in paths:
            target = layers if layer_of(path) is not None else specs
            base = layers.get(path, specs[layer_generic(path)])
            target[path] = value if isinstance(value, QuantSpec) else \
                _replace_spec(base, value, f"overrides[{key!r}]")
    return QuantConfig(specs=specs, layers=layers,
                       a_bar_form=a_bar_form if a_bar_form is not None else cfg.a_bar_form,
                       gelu=cfg.gelu)
