"""Quantization specs: what to quantize in an S4D classifier, with how many bits and how.

One frozen :class:`QuantSpec` per quantization target, grouped in a :class:`QuantConfig`. The
targets follow the seed paper (Zhao et al. 2025, "Quantizing Small-Scale State-Space Models for
Edge AI"): the discrete SSM tensors A_bar, B_bar, C, D, the dense weights and biases, the state x
(quantized at every recurrent step) and every activation a streaming device keeps. Presets
``fp``, ``W8A8`` and ``W4A6`` and their heterogeneous variants (A_bar and x at their own bits)
come from :func:`make_config`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from imssa.errors import ImssaError

Granularity = Literal["tensor", "head", "mode"]
Calibration = Literal["minmax", "percentile", "maxabs"]
ABarForm = Literal["cartesian", "polar"]
GeluForm = Literal["auto", "exact", "hard"]
Rounding = Literal["nearest", "stochastic"]
TargetKind = Literal["weight", "ssm", "state", "activation"]

MIN_BITS, MAX_BITS = 2, 16
GRANULARITIES = ("tensor", "head", "mode")
CALIBRATIONS = ("minmax", "percentile", "maxabs")
A_BAR_FORMS = ("cartesian", "polar")
GELU_FORMS = ("auto", "exact", "hard")
ROUNDINGS = ("nearest", "stochastic")


@dataclass(frozen=True, kw_only=True)
class QuantSpec:
    """How one tensor is fake-quantized.

    Attributes:
        bits: 2..16, or None for full precision (the tensor is left untouched).
        symmetric: signed grid [-(2^(b-1)-1), 2^(b-1)-1] with zero point 0 (True), or unsigned
            [0, 2^b-1] with a zero point (False).
        granularity: one range per tensor, per head (per output row of a weight, per channel of
            an activation), or per (head, mode) for the state x only.
        calibration: how a range is taken from values: min/max, a percentile (of |v| when
            symmetric, of both tails when not), or max-abs (range [-max|v|, max|v|]).
        percentile: the percentile for ``calibration="percentile"``, in (50, 100].
        dynamic: activations only: ranges from each input sample instead of calibration.
        bound: a fixed range [-bound, bound] instead of calibration (e.g. the state's clip bound).
        rounding: ``nearest`` (half to even), or ``stochastic`` for the state x only: round up
            with probability equal to the fraction, an unbiased dither (a random number per
            state update, e.g. from an LFSR). Nearest rounding has a dead zone: a slow mode whose
            per-step change is below half a step never moves (docs/results.md, "Stochastic rounding of the state").
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
        if self.granularity not in GRANULARITIES:
            raise ImssaError(f"QuantSpec.granularity must be one of {', '.join(GRANULARITIES)}, "
                             f"got {self.granularity!r}")
        if self.calibration not in CALIBRATIONS:
            raise ImssaError(f"QuantSpec.calibration must be one of {', '.join(CALIBRATIONS)}, "
                             f"got {self.calibration!r}")
        if self.rounding not in ROUNDINGS:
            raise ImssaError(f"QuantSpec.rounding must be one of {', '.join(ROUNDINGS)}, "
                             f"got {self.rounding!r}")
        if isinstance(self.percentile, bool) or not isinstance(self.percentile, (int, float)) \
                or not 50.0 < self.percentile <= 100.0:
            raise ImssaError(f"QuantSpec.percentile must be in (50, 100], got {self.percentile}")
        if self.bound is not None:
            if not (math.isfinite(self.bound) and self.bound > 0):
                raise ImssaError(f"QuantSpec.bound must be a finite number > 0 or None, "
                                 f"got {self.bound}")
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
    """One quantization target of the model."""

    name: str
    kind: TargetKind
    per_layer: bool
    description: str


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("input", "activation", False, "model input u, (B, L, d_input)"),
    Target("encoder_weight", "weight", False, "encoder Linear weight, (H, d_input)"),
    Target("encoder_bias", "weight", False, "encoder Linear bias, (H,)"),
    Target("ssm_input", "activation", True,
           "SSM input (encoder or previous block output), (B, L, H)"),
    Target("A_bar", "ssm", True, "discrete state transition, (H, N/2) complex"),
    Target("B_bar", "ssm", True, "discrete input vector, (H, N/2) complex"),
    Target("C", "ssm", True, "output vector, (H, N/2) complex"),
    Target("D", "ssm", True, "skip connection, (H,)"),
    Target("x", "state", True, "recurrent state, (B, H, N/2) complex, quantized every step"),
    Target("ssm_output", "activation", True, "SSM output y, (B, L, H)"),
    Target("gelu_output", "activation", True, "nonlinearity output, (B, L, H)"),
    Target("mix_weight", "weight", True, "GLU mixing Linear weight, (2H, H)"),
    Target("mix_bias", "weight", True, "GLU mixing Linear bias, (2H,)"),
    Target("mix_output", "activation", True, "GLU output before the residual add, (B, L, H)"),
    Target("pooled", "activation", False, "features averaged over time, (B, H)"),
    Target("decoder_weight", "weight", False, "decoder Linear weight, (n_classes, H)"),
    Target("decoder_bias", "weight", False, "decoder Linear bias, (n_classes,)"),
)}
ACTIVATION_TARGETS = tuple(n for n, t in TARGETS.items() if t.kind == "activation")
_LAYER_KEY = re.compile(r"^blocks\.(\d+)\.(\w+)$")


def _spec_from(value: Any, where: str) -> QuantSpec:
    if isinstance(value, QuantSpec):
        return value
    if isinstance(value, dict):
        return _replace_spec(QuantSpec(), value, where)
    raise ImssaError(f"{where} must be a QuantSpec or a dict of its fields, got "
                     f"{type(value).__name__}")


def _replace_spec(spec: QuantSpec, fields: dict[str, Any], where: str) -> QuantSpec:
    valid = [f.name for f in dataclasses.fields(QuantSpec)]
    unknown = [k for k in fields if k not in valid]
    if unknown:
        raise ImssaError(f"{where}: unknown QuantSpec field(s) {', '.join(map(repr, unknown))}; "
                         f"valid fields are {', '.join(valid)}")
    return dataclasses.replace(spec, **fields)


def _valid_names() -> str:
    return ", ".join(TARGETS) + " (per-layer ones also as 'blocks.<i>.<name>')"


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """Quantization of a whole S4D classifier: one spec per target, shared by all layers.

    ``layers`` holds per-layer exceptions keyed ``"blocks.<i>.<target>"`` (e.g. keep layer 0's
    A_bar at 8 bits). ``a_bar_form`` chooses the grid of A_bar: ``cartesian`` quantizes real and
    imaginary parts with one shared scale (the paper's scheme; some levels lie outside the unit
    circle), ``polar`` quantizes decay and phase so every level lies strictly inside it.
    ``gelu`` is ``auto``: the hard-sigmoid form of Q-S5, x*clip((x+2)/4, 0, 1), whenever an
    activation is quantized, the exact GELU otherwise.
    """

    input: QuantSpec = QuantSpec()
    encoder_weight: QuantSpec = QuantSpec()
    encoder_bias: QuantSpec = QuantSpec()
    ssm_input: QuantSpec = QuantSpec()
    A_bar: QuantSpec = QuantSpec()
    B_bar: QuantSpec = QuantSpec()
    C: QuantSpec = QuantSpec()
    D: QuantSpec = QuantSpec()
    x: QuantSpec = QuantSpec()
    ssm_output: QuantSpec = QuantSpec()
    gelu_output: QuantSpec = QuantSpec()
    mix_weight: QuantSpec = QuantSpec()
    mix_bias: QuantSpec = QuantSpec()
    mix_output: QuantSpec = QuantSpec()
    pooled: QuantSpec = QuantSpec()
    decoder_weight: QuantSpec = QuantSpec()
    decoder_bias: QuantSpec = QuantSpec()
    a_bar_form: ABarForm = "cartesian"
    gelu: GeluForm = "auto"
    layers: dict[str, QuantSpec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.a_bar_form not in A_BAR_FORMS:
            raise ImssaError(f"QuantConfig.a_bar_form must be one of {', '.join(A_BAR_FORMS)}, "
                             f"got {self.a_bar_form!r}")
        if self.gelu not in GELU_FORMS:
            raise ImssaError(f"QuantConfig.gelu must be one of {', '.join(GELU_FORMS)}, "
                             f"got {self.gelu!r}")
        for name in TARGETS:
            spec = getattr(self, name)
            if not isinstance(spec, QuantSpec):
                raise ImssaError(f"QuantConfig.{name} must be a QuantSpec, got "
                                 f"{type(spec).__name__}")
            _check_target(name, spec)
        for key, spec in self.layers.items():
            m = _LAYER_KEY.match(key)
            if m is None or m.group(2) not in TARGETS or not TARGETS[m.group(2)].per_layer:
                per_layer = ", ".join(n for n, t in TARGETS.items() if t.per_layer)
                raise ImssaError(f"QuantConfig.layers key {key!r} is not 'blocks.<i>.<target>' "
                                 f"with a per-layer target; per-layer targets are {per_layer}")
            if not isinstance(spec, QuantSpec):
                raise ImssaError(f"QuantConfig.layers[{key!r}] must be a QuantSpec, got "
                                 f"{type(spec).__name__}")
            _check_target(m.group(2), spec, key)

    def spec(self, target: str, layer: int | None = None) -> QuantSpec:
        """The spec of ``target`` (in ``layer`` for per-layer targets, honouring ``layers``)."""
        if target not in TARGETS:
            raise ImssaError(f"unknown quantization target {target!r}; valid names: "
                             f"{_valid_names()}")
        if layer is not None and TARGETS[target].per_layer:
            key = f"blocks.{layer}.{target}"
            if key in self.layers:
                return self.layers[key]
        return getattr(self, target)

    def check_layers(self, n_layers: int) -> None:
        """Raise if ``layers`` names a layer the model does not have."""
        for key in self.layers:
            i = int(_LAYER_KEY.match(key).group(1))  # type: ignore[union-attr]
            if i >= n_layers:
                raise ImssaError(f"the quantization config has a spec for {key!r}, but the model "
                                 f"has {n_layers} layer(s) (blocks.0 .. blocks.{n_layers - 1}); "
                                 f"valid names: {_valid_names()}")

    def any_activation_quantized(self, n_layers: int) -> bool:
        return any(self.spec(t, i).enabled for t in ACTIVATION_TARGETS for i in range(n_layers))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; :meth:`from_dict` inverts it."""
        d: dict[str, Any] = {n: dataclasses.asdict(getattr(self, n)) for n in TARGETS}
        d["a_bar_form"] = self.a_bar_form
        d["gelu"] = self.gelu
        d["layers"] = {k: dataclasses.asdict(v) for k, v in self.layers.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> QuantConfig:
        valid = [*TARGETS, "a_bar_form", "gelu", "layers"]
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise ImssaError("QuantConfig.from_dict: unknown key(s) "
                             f"{', '.join(map(repr, unknown))}; valid keys: {', '.join(valid)}")
        kw: dict[str, Any] = {n: _spec_from(d[n], f"QuantConfig.{n}") for n in TARGETS if n in d}
        for k in ("a_bar_form", "gelu"):
            if k in d:
                kw[k] = d[k]
        kw["layers"] = {k: _spec_from(v, f"QuantConfig.layers[{k!r}]")
                        for k, v in d.get("layers", {}).items()}
        return cls(**kw)


def _check_target(name: str, spec: QuantSpec, where: str | None = None) -> None:
    where = where or name
    kind = TARGETS[name].kind
    if spec.granularity == "mode" and kind != "state":
        raise ImssaError(f"{where}: granularity 'mode' (one range per head and mode) exists only "
                         "for the state x; use 'tensor' or 'head'")
    if spec.rounding == "stochastic" and kind != "state":
        raise ImssaError(f"{where}: rounding 'stochastic' exists only for the state x (a dither "
                         "of the state register); other targets round to nearest")
    if spec.dynamic and kind != "activation":
        raise ImssaError(f"{where}: dynamic=True applies to activations only; weight and SSM "
                         "tensor ranges always follow the tensor itself (until freeze_ranges()), "
                         "and the state x needs a fixed grid for the scan (calibrate it or give a "
                         "bound)")


def _preset(w_bits: int | None, a_bits: int | None) -> QuantConfig:
    """Weights (dense, biases, A_bar, B_bar, C, D) at w_bits; activations and the state at a_bits.

    Weight matrices and the SSM tensors A_bar, B_bar, C: symmetric, one range per head (output
    row), min/max of the tensor itself; biases and D: symmetric, per tensor. Per head because
    B_bar = (A_bar - 1)/A * B spans orders of magnitude across heads (it scales with Delta):
    one 4-bit range for the whole tensor rounds most heads to zero (sdigits s4d-16, B_bar alone
    at 4 bits: 33 % per tensor, 95 % per head, FP 95.5 %). Activations: asymmetric, per tensor,
    99.999th percentile (the paper's choice). State x: symmetric, per tensor, 99.999th
    percentile of |Re x|, |Im x| over all steps.
    """
    w = QuantSpec(bits=w_bits, symmetric=True, granularity="head", calibration="minmax")
    vector = QuantSpec(bits=w_bits, symmetric=True, calibration="minmax")
    a = QuantSpec(bits=a_bits, symmetric=False, calibration="percentile")
    x = QuantSpec(bits=a_bits, symmetric=True, calibration="percentile")
    kw: dict[str, Any] = {}
    for n, t in TARGETS.items():
        kw[n] = {"weight": w, "ssm": w, "state": x, "activation": a}[t.kind]
    for n in ("encoder_bias", "mix_bias", "decoder_bias", "D"):
        kw[n] = vector
    kw["input"] = QuantSpec(bits=None, symmetric=False, calibration="percentile")
    return QuantConfig(**kw)


PRESETS: dict[str, QuantConfig] = {
    "fp": _preset(None, None),
    "W8A8": _preset(8, 8),
    "W4A6": _preset(4, 6),
}


def make_config(preset: str = "fp", a_bits: int | None = None, x_bits: int | None = None,
                overrides: dict[str, dict[str, Any] | QuantSpec] | None = None, *,
                a_bar_form: ABarForm | None = None) -> QuantConfig:
    """A named preset, optionally heterogeneous, with any spec overridden by target name.

    Args:
        preset: ``fp``, ``W8A8`` or ``W4A6``.
        a_bits: bits of A_bar (e.g. W4A6 with A_bar at 8 bits), None keeps the preset's.
        x_bits: bits of the state x, None keeps the preset's.
        overrides: target name (``"mix_weight"``, or ``"blocks.0.A_bar"`` for one layer) ->
            dict of QuantSpec fields to replace (``{"bits": 6, "granularity": "head"}``) or a
            whole QuantSpec. Applied after a_bits and x_bits.
        a_bar_form: ``cartesian`` or ``polar`` grid for A_bar; None keeps ``cartesian``.

    Returns:
        The QuantConfig. Unknown presets, targets or fields raise ImssaError naming the valid ones.
    """
    if preset not in PRESETS:
        raise ImssaError(f"unknown quantization preset {preset!r}; choose one of "
                         f"{', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    changes: dict[str, Any] = {}
    if a_bits is not None:
        changes["A_bar"] = _replace_spec(cfg.A_bar, {"bits": a_bits}, "a_bits")
    if x_bits is not None:
        changes["x"] = _replace_spec(cfg.x, {"bits": x_bits}, "x_bits")
    if a_bar_form is not None:
        changes["a_bar_form"] = a_bar_form
    layers = dict(cfg.layers)
    # Whole-model targets first, so that a per-layer override builds on the new global spec.
    items = sorted((overrides or {}).items(), key=lambda kv: kv[0].startswith("blocks."))
    for key, value in items:
        m = _LAYER_KEY.match(key)
        name = m.group(2) if m else key
        if name not in TARGETS or (m and not TARGETS[name].per_layer):
            raise ImssaError(f"overrides: unknown quantization target {key!r}; valid names: "
                             f"{_valid_names()}")
        base = changes.get(name, getattr(cfg, name))
        if isinstance(value, QuantSpec):
            spec = value
        elif isinstance(value, dict):
            spec = _replace_spec(base, value, f"overrides[{key!r}]")
        else:
            raise ImssaError(f"overrides[{key!r}] must be a dict of QuantSpec fields or a "
                             f"QuantSpec, got {type(value).__name__}")
        if m:
            layers[key] = spec
        else:
            changes[name] = spec
    return dataclasses.replace(cfg, **changes, layers=layers)
