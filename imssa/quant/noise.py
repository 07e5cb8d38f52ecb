"""Weight noise for noise-aware training: the crossbar's programming error injected into the
weights during QAT, re-drawn at every training forward (QS4D, Siegel et al. 2025; Joshi et al.,
Nat. Commun. 11, 2473 (2020), for training through a PCM noise model).

A tensor the crossbar holds is perturbed after fake quantization (the devices are programmed to
the quantized values), in the mapped domain of the chosen state-transition form and relative to
the conductance scale that form gives (:mod:`imssa.quant.scales`, the one place the scales are
computed): ``transition`` ``direct`` (the array holds A_bar) or ``increment`` (it holds
A_bar - 1, sharing one scale per mode with B_bar), ``granularity`` ``tensor``, ``channel`` or
``mode``, the words of :class:`imssa.mapping.MappingConfig`. The noise is drawn per held entry
(real and imaginary parts independently):

- ``gaussian``: std sigma * scale;
- ``pcm``: the PCM programming std at the mapped conductance g_T = |held| / scale * g_max, times
  sigma, in weight units (:func:`imssa.quant.scales.programming_std`; sigma = 1 is the fitted
  device). The partner device of the pair and the clip of g at 0 are left out.

  With ``t_inference`` > 0 (s) the draw is what the chip reads that long after programming, as
  the simulator's PCM model has it (:mod:`imssa.devices.pcm`, aihwkit's ``PCMLikeNoiseModel``):
  the programmed g_P drifts as g_P (t / t_0)^(-nu) with one exponent nu per entry, one read adds
  the accumulated 1/f noise at t, and one global drift-compensation gain per array, mean |g_P| /
  mean |g(t)| (aihwkit's ``GlobalDriftCompensation`` with one-hot read-outs), scales it back. So
  training sees the chip-to-chip spread of the drift exponents that compensation cannot undo,
  which dominates the error at 1 day (Joshi et al. 2020 train against a fixed Gaussian instead).

The increment form's exact digital 1 is added back, so A_bar's error is the array's error on
A_bar - 1: for a slow mode, sigma times its own |A_bar - 1| instead of sigma times ~1.

``read_sigma`` adds per-step read noise in recurrent mode: A_bar and B_bar are read afresh at
every step with std read_sigma * scale (:class:`imssa.ssm.scan.ReadNoise`).

The noise is an additive constant for autograd (straight-through: d W_noisy / d W = 1). An
all-zero group (scale 0) is left unchanged. There is no pull-back of a noisy A_bar into the unit
circle, because the chip has none: a mode whose 1 - |A_bar| is below its error leaves the circle
and its state grows, until the state register clips it (recurrent mode with the state x
quantized: its range, or ``QuantSpec.bound``), or training keeps a margin
(:mod:`imssa.quant.margin`).

Components (``--train-noise-on``) are :mod:`imssa.names` selectors: the aliases A, B, C, D (the
discrete SSM of every layer), encoder, mix, decoder (dense weight and bias), or paths
(``blocks.0.ssm.A_bar``, ``blocks.*.mix.weight``). QS4D's experiments perturb A alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from imssa.errors import ImssaError
from imssa.names import ALIASES, SSM_TENSORS, layer_generic, select, tensor_names
from imssa.quant.scales import (
    NOISE_KINDS,
    PCM_DEVICE,
    arrays,
    check_form,
    conductance_scales,
    held_values,
    programming_std,
    real_scale,
)
from imssa.ssm.s4d import DiscreteSSM
from imssa.ssm.scan import ReadNoise

NOISE_COMPONENTS = ("A", "B", "C", "D", "encoder", "mix", "decoder")
_GENERIC = list(dict.fromkeys(layer_generic(n) for n in tensor_names(1)))  # noisy tensors


@dataclass(frozen=True, kw_only=True)
class WeightNoiseConfig:
    """Noise injected into the crossbar weights at every training forward.

    Attributes:
        sigma: >= 0. ``gaussian``: std relative to the held value's conductance scale; ``pcm``:
            multiple of the PCM programming std (1 = the fitted device). 0: no programming noise.
        components: which weights get noise: :mod:`imssa.names` selectors (default
            :data:`NOISE_COMPONENTS`, every crossbar tensor; ``("A",)`` as in QS4D). A
            comma-separated string and ``"all"`` are accepted.
        kind: ``gaussian`` or ``pcm`` (see the module docstring).
        transition: ``direct`` (the array holds A_bar) or ``increment`` (A_bar - 1), as
            :class:`imssa.mapping.MappingConfig`'s field of that name.
        granularity: the conductance scale per ``tensor``, ``channel`` or ``mode``
            (:mod:`imssa.quant.scales`).
        read_sigma: >= 0, per-step read noise of A_bar and B_bar relative to their scale, in
            recurrent-mode forwards (conv mode has no steps); 0: none.
        t_inference: >= 0, s: with ``kind="pcm"``, draw what the chip reads this long after
            programming (drift, 1/f read noise, global compensation; module docstring); 0:
            programming noise alone.
    """

    sigma: float = 0.0
    components: tuple[str, ...] = NOISE_COMPONENTS
    kind: str = "gaussian"
    transition: str = "direct"
    granularity: str = "tensor"
    read_sigma: float = 0.0
    t_inference: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sigma", "read_sigma", "t_inference"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ImssaError(f"WeightNoiseConfig.{name} must be a finite number >= 0 (0 = no "
                                 f"noise), got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "components", parse_components(self.components))
        if self.kind not in NOISE_KINDS:
            raise ImssaError(f"WeightNoiseConfig.kind must be one of {', '.join(NOISE_KINDS)}, "
                             f"got {self.kind!r}")
        check_form(self.transition, self.granularity)
        if self.t_inference > 0 and self.kind != "pcm":
            raise ImssaError("WeightNoiseConfig.t_inference draws the PCM model's drift: it needs "
                             f"kind='pcm', got {self.kind!r}")

    @property
    def enabled(self) -> bool:
        return self.sigma > 0 or self.read_sigma > 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = list(self.components)
        return d


def parse_components(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"A,C"``, ``["A", "blocks.0.mix"]`` or ``"all"`` -> the selectors, checked, duplicates
    dropped (``all`` is :data:`NOISE_COMPONENTS`)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = list(dict.fromkeys(str(s).strip() for s in items if str(s).strip()))
    if "all" in names:
        return NOISE_COMPONENTS
    if not names:
        raise ImssaError(f"WeightNoiseConfig.components is empty; name at least one of "
                         f"{', '.join(NOISE_COMPONENTS)} (or all)")
    for name in names:
        try:
            select(layer_generic(ALIASES.get(name, name)), _GENERIC, what="noise component")
        except ImssaError:
            raise ImssaError(f"WeightNoiseConfig.components: unknown noise component {name!r}; "
                             f"use {', '.join(NOISE_COMPONENTS)}, all, or a tensor path such as "
                             "blocks.0.ssm.A_bar") from None
    return tuple(names)


def noise_targets(config: WeightNoiseConfig, universe: Sequence[str], *,
                  strict: bool = True) -> list[str]:
    """The tensor paths of ``universe`` that the config's components select; ``strict``: a
    component that selects none of them is an error (a layer the model does not have)."""
    if strict:
        return select(config.components, universe, what="noise component")
    picked: set[str] = set()
    for component in config.components:
        try:
            picked.update(select(component, universe, what="noise component"))
        except ImssaError:
            pass
    return [n for n in universe if n in picked]


def perturb(tensors: Mapping[str, Tensor], config: WeightNoiseConfig,
            generator: torch.Generator | None = None,
            selected: Sequence[str] | None = None) -> dict[str, Tensor]:
    """The tensors of one part with the ``selected`` ones (default: all) perturbed by one draw of
    programming noise in the mapped domain (module docstring); the others returned as they are.

    Args:
        tensors: one part's tensors by name (:func:`imssa.quant.scales.conductance_scales`).
        config: sigma, kind, transition and granularity (``components`` is not consulted here).
        generator: source of the draws; the global RNG of the tensors' device if None.

    Returns:
        name -> tensor, same shapes and dtypes; the inputs themselves when sigma is 0.
        Gradients pass straight through (the noise is a constant).
    """
    names = list(tensors) if selected is None else [n for n in tensors if n in selected]
    if config.sigma == 0 or not names:
        return dict(tensors)
    scales = conductance_scales(tensors, config.transition, config.granularity)
    out = dict(tensors)
    with torch.no_grad():
        held = {n: held_values(n, tensors[n].detach(), config.transition) for n in names}
        error = {}
        for n in names:
            scale = real_scale(tensors[n], scales[n])
            std = programming_std(held[n], scale, config.sigma, config.kind)
            error[n] = std * torch.randn(held[n].shape, generator=generator, dtype=held[n].dtype,
                                         device=held[n].device)
        if config.t_inference > 0:
            for group in arrays(names, config.transition):
                error.update(_drifted_error({n: held[n] for n in group}, error,
                                            {n: real_scale(tensors[n], scales[n]) for n in group},
                                            config.t_inference, generator))
    for n in names:  # the increment form's exact 1 cancels: A_bar + e = (A_bar - 1 + e) + 1
        e = error[n]
        out[n] = tensors[n] + (torch.view_as_complex(e.contiguous()) if tensors[n].is_complex()
                               else e)
    return out


def _drifted_error(held: Mapping[str, Tensor], programmed: Mapping[str, Tensor],
                   scales: Mapping[str, Tensor], t_inference: float,
                   generator: torch.Generator | None) -> dict[str, Tensor]:
    """The error of one array's held values read ``t_inference`` s after programming (module
    docstring), from their programming errors; entries keep their sign (the pair's other device
    is left out). Real views, in the tensors' own units."""
    device, g_max = PCM_DEVICE, PCM_DEVICE.config.g_max
    ratio = (t_inference + device.config.t_0) / device.config.t_0
    g_prog, g_read = {}, {}
    for n, h in held.items():
        safe = torch.where(scales[n] > 0, scales[n], torch.ones_like(scales[n]))
        g_target = h.abs() / safe * g_max
        g_prog[n] = (h + programmed[n]).abs() / safe * g_max
        mu, sigma = device.drift_exponent_moments(g_target)
        z = torch.randn(h.shape, generator=generator, dtype=h.dtype, device=h.device)
        g_t = g_prog[n] * ratio ** -(mu + sigma * z).abs()
        z = torch.randn(h.shape, generator=generator, dtype=h.dtype, device=h.device)
        g_read[n] = g_t + device.read_noise_std(g_t, g_prog[n], t_inference) * z
    total = lambda g: sum(v.abs().sum() for v in g.values())  # noqa: E731
    gain = total(g_prog) / total(g_read).clamp(min=torch.finfo(torch.float32).tiny)
    out = {}
    for n, h in held.items():
        sign = torch.where(h + programmed[n] < 0, -1.0, 1.0).to(h.dtype)
        w = sign * g_read[n] * gain / g_max * scales[n]
        out[n] = torch.where(scales[n] > 0, w - h, torch.zeros_like(h))
    return out


def add_noise(tensors: Sequence[Tensor], config: WeightNoiseConfig,
              generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
    """Perturb the tensors of one crossbar array that share its scale (a dense layer's weight
    and bias, or one tensor), held as they are, at the config's granularity (channel = first
    axis). See :func:`perturb`."""
    keyed = dict(zip(("weight", "bias"), tensors)) if len(tensors) == 2 else \
        {str(i): t for i, t in enumerate(tensors)}
    if len(tensors) > 2:
        raise ImssaError("add_noise takes one tensor or a (weight, bias) pair of one array")
    out = perturb(keyed, dataclasses.replace(config, transition="direct"), generator)
    return tuple(out.values())


def noisy_ssm(ssm: DiscreteSSM, config: WeightNoiseConfig,
              generator: torch.Generator | None = None,
              tensors: Sequence[str] = SSM_TENSORS) -> DiscreteSSM:
    """The discrete SSM with ``tensors`` (of A_bar, B_bar, C, D) perturbed in the mapped domain
    of the config's form (:func:`perturb`); no pull-back into the unit circle."""
    parts = {n: getattr(ssm, n) for n in SSM_TENSORS}
    return DiscreteSSM(**perturb(parts, config, generator, tensors))


def read_noise(ssm: DiscreteSSM, config: WeightNoiseConfig,
               generator: torch.Generator | None = None,
               tensors: Sequence[str] = SSM_TENSORS) -> ReadNoise | None:
    """The per-step read noise of A_bar and B_bar (where selected), std read_sigma * scale of the
    config's form, for :func:`imssa.ssm.scan.ssm_scan`; None without read noise."""
    if config.read_sigma == 0 or not {"A_bar", "B_bar"} & set(tensors):
        return None
    scales = conductance_scales({n: getattr(ssm, n) for n in SSM_TENSORS}, config.transition,
                                config.granularity)
    std = {n: config.read_sigma * scales[n] if n in tensors else torch.zeros_like(scales[n])
           for n in ("A_bar", "B_bar")}
    return ReadNoise(std["A_bar"], std["B_bar"], generator)


def noisy_weights(weights: Mapping[str, Tensor], config: WeightNoiseConfig,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Perturb the selected tensors of a weight dict (paths as :func:`quantized_weights`).

    The tensors of one part (a dense layer's weight and bias; an SSM layer's A_bar, B_bar, C,
    D) are perturbed together (:func:`perturb`), so they get the scales of the config's form.
    Unselected tensors are returned as they are.
    """
    picked = set(noise_targets(config, list(weights), strict=False))
    parts: dict[str, dict[str, str]] = {}
    for name in weights:
        path, _, tensor = name.rpartition(".")
        parts.setdefault(path, {})[tensor] = name
    out = dict(weights)
    for names in parts.values():
        chosen = [t for t, n in names.items() if n in picked]
        if chosen:
            noisy = perturb({t: weights[n] for t, n in names.items()}, config, generator, chosen)
            out.update({names[t]: noisy[t] for t in chosen})
    return out
