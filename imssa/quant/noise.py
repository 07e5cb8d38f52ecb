"""Weight noise for noise-aware training: the crossbar's programming error injected into the
weights during QAT, re-drawn at every training forward (QS4D, Siegel et al. 2025; Joshi et al.,
Nat. Commun. 11, 2473 (2020), for training through a PCM noise model).

A tensor the crossbar holds is perturbed after fake quantization (the devices are programmed to
the quantized values):

- ``gaussian``: W_noisy = W + sigma * max|W| * N(0, 1), one draw per element. max|W| is taken
  per crossbar tensor (one w_max, as :mod:`imssa.mapping` maps it by default): over the real and
  imaginary parts of a complex SSM tensor, over weight and bias of a dense layer (the bias is
  the crossbar's last column). Real and imaginary parts get independent draws.
- ``pcm``: each weight is programmed as the conductance g_T = |w| / w_max * g_max on one PCM
  device, and perturbed by that device's programming std (:meth:`PCMDevice.programming_std`, the
  aihwkit ``PCMLikeNoiseModel`` fit), converted back to weight units and times sigma:
  W_noisy = W + sigma * sigma_P(g_T) * w_max / g_max * N(0, 1). sigma = 1 is the fitted device;
  the ratio sigma_P / g_max does not depend on g_max. Kept simple on purpose: the partner device
  of the differential pair, the clip of g at 0, drift and read noise are left out.

The noise is an additive constant for autograd (straight-through: d W_noisy / d W = 1). An
all-zero tensor (w_max = 0) is left unchanged by both kinds.

A perturbed A_bar is pulled back inside the unit circle (|A_bar| <= :data:`A_BAR_MAX_ABS`, phase
kept): noise of a few percent of max|A_bar| ~ 1 would otherwise put slow modes outside it, and
A_bar^L explodes over a 784-step sequence (a chip's state register and ADC saturate instead; a
convolution kernel cannot). The slow modes that noise would destabilize are thus trained at the
edge of stability, as the crossbar's saturating periphery runs them.

Components (``--train-noise-on``) are :mod:`imssa.names` selectors: the aliases A, B, C, D (the
discrete SSM of every layer), encoder, mix, decoder (dense weight and bias), or paths
(``blocks.0.ssm.A_bar``, ``blocks.*.mix.weight``). QS4D's experiments perturb A alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from imssa.devices.pcm import PCMConfig, PCMDevice
from imssa.errors import ImssaError
from imssa.names import ALIASES, SSM_TENSORS, layer_generic, select, tensor_names
from imssa.ssm.s4d import DiscreteSSM

NOISE_COMPONENTS = ("A", "B", "C", "D", "encoder", "mix", "decoder")
NOISE_KINDS = ("gaussian", "pcm")
_PCM = PCMDevice(PCMConfig())  # the fitted device; sigma_P / g_max is independent of g_max
A_BAR_MAX_ABS = 1.0 - 1e-4  # bound of a noisy A_bar's magnitude during noise-aware training
_GENERIC = list(dict.fromkeys(layer_generic(n) for n in tensor_names(1)))  # noisy tensors


@dataclass(frozen=True, kw_only=True)
class WeightNoiseConfig:
    """Noise injected into the crossbar weights at every training forward.

    Attributes:
        sigma: >= 0. ``gaussian``: std relative to the tensor's max |w|; ``pcm``: multiple of the
            PCM programming std (1 = the fitted device). 0 turns the noise off.
        components: which weights get noise: :mod:`imssa.names` selectors (default
            :data:`NOISE_COMPONENTS`, every crossbar tensor; ``("A",)`` as in QS4D). A
            comma-separated string and ``"all"`` are accepted.
        kind: ``gaussian`` or ``pcm`` (see the module docstring).
    """

    sigma: float = 0.0
    components: tuple[str, ...] = NOISE_COMPONENTS
    kind: str = "gaussian"

    def __post_init__(self) -> None:
        if isinstance(self.sigma, bool) or not isinstance(self.sigma, (int, float)) \
                or not math.isfinite(self.sigma) or self.sigma < 0:
            raise ImssaError(f"WeightNoiseConfig.sigma must be a finite number >= 0 (0 = no "
                             f"noise), got {self.sigma!r}")
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "components", parse_components(self.components))
        if self.kind not in NOISE_KINDS:
            raise ImssaError(f"WeightNoiseConfig.kind must be one of {', '.join(NOISE_KINDS)}, "
                             f"got {self.kind!r}")

    @property
    def enabled(self) -> bool:
        return self.sigma > 0

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


def noise_targets(config: WeightNoiseConfig, universe: Sequence[str]) -> list[str]:
    """The tensor paths of ``universe`` that the config's components select."""
    return select(config.components, universe, what="noise component")


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def add_noise(tensors: Sequence[Tensor], config: WeightNoiseConfig,
              generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
    """Perturb the tensors of one crossbar array (they share one w_max), whatever the components.

    Args:
        tensors: real or complex tensors, e.g. (weight, bias) of a dense layer or one SSM tensor.
        config: sigma and kind (``components`` is not consulted here).
        generator: source of the draws; the global RNG of the tensors' device if None.

    Returns:
        The perturbed tensors, same shapes and dtypes; the inputs themselves when sigma is 0.
        Gradients pass straight through (the noise is a constant).
    """
    if not config.enabled or not tensors:
        return tuple(tensors)
    with torch.no_grad():
        w_max = torch.stack([_real(t).detach().abs().amax() if t.numel() else
                             torch.zeros((), dtype=_real(t).dtype, device=t.device)
                             for t in tensors]).amax()  # ()
        safe = torch.where(w_max > 0, w_max, torch.ones_like(w_max))
        out = []
        for t in tensors:
            r = _real(t).detach()
            z = torch.randn(r.shape, generator=generator, dtype=r.dtype, device=r.device)
            if config.kind == "gaussian":
                std = config.sigma * w_max
            else:  # pcm: programming std at g_T = |w| / w_max * g_max, back in weight units
                g_max = _PCM.config.g_max
                std = config.sigma * _PCM.programming_std(r.abs() / safe * g_max) / g_max * w_max
            noise = torch.where(w_max > 0, std * z, torch.zeros_like(z))
            out.append(torch.view_as_complex(noise) if t.is_complex() else noise)
    return tuple(t + n for t, n in zip(tensors, out))


def noisy_ssm(ssm: DiscreteSSM, config: WeightNoiseConfig,
              generator: torch.Generator | None = None,
              tensors: Sequence[str] = SSM_TENSORS) -> DiscreteSSM:
    """The discrete SSM with ``tensors`` (of A_bar, B_bar, C, D) perturbed, each with its own
    w_max; a perturbed A_bar is kept inside the unit circle (module docstring)."""
    parts = []
    for name in SSM_TENSORS:
        t = getattr(ssm, name)
        if config.enabled and name in tensors:
            t = add_noise((t,), config, generator)[0]
            if name == "A_bar":  # a constant rescale: gradients pass straight through
                t = t * (A_BAR_MAX_ABS / t.detach().abs().clamp_min(1e-30)).clamp(max=1.0)
        parts.append(t)
    return DiscreteSSM(*parts)


def noisy_weights(weights: Mapping[str, Tensor], config: WeightNoiseConfig,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Perturb the selected tensors of a weight dict (paths as :func:`quantized_weights`).

    A dense layer's ``.weight`` and ``.bias`` share one w_max (one crossbar array); every other
    tensor has its own. Unselected tensors are returned as they are.
    """
    picked = set(noise_targets(config, list(weights)))
    groups: dict[str, list[str]] = {}
    for name in weights:
        key = name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name
        groups.setdefault(key, []).append(name)
    out = dict(weights)
    for names in groups.values():
        if picked & set(names):
            noisy = dict(zip(names, add_noise([weights[n] for n in names], config, generator)))
            out.update({n: noisy[n] for n in names if n in picked})
    return out
