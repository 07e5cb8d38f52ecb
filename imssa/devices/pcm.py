"""Phase-change memory with the statistics of aihwkit's ``PCMLikeNoiseModel``.

The model was fitted on a million-device PCM array (Nandakumar et al., ICECS 2019; Joshi et al.,
Nat. Commun. 11, 2473 (2020)) and is implemented here independently of aihwkit, with the same
distributions and edge cases so results can be cross-checked against aihwkit 1.2.0
(``aihwkit.inference.noise.pcm``). g_T is the target, g_P the programmed conductance, all in µS:

- programming: g_P = max(0, g_T + sigma_P * N(0, 1)), sigma_P = |c0 + c1 x + c2 x^2| *
  g_max / g_ref, x = g_T / g_max, (c0, c1, c2) = (0.26348, 1.9650, -1.1731), g_ref = 25 µS;
- drift exponent, drawn once per device from the target: nu = |N(mu, sigma)|, with
  g_rel = max(|g_T| / g_max, 1e-7), mu = clip(-0.0155 ln g_rel + 0.0244, 0.049, 0.1),
  sigma = clip(-0.0125 ln g_rel - 0.0059, 0.008, 0.045);
- drift: with t = t_inference + t_0, g(t) = g_P (t / t_0)^(-nu) for t_inference > 0, and g_P at
  t_inference = 0;
- accumulated 1/f read noise: std |g(t)| Q_s sqrt(ln((t + t_read) / (2 t_read))), Q_s =
  min(0.0088 / max((|g_P| / g_max)^0.65, 1e-3), 0.2). Note t includes t_0, so read noise is
  present already at t_inference = 0 (as in aihwkit);
- a read is clipped at 0 µS. A device at 0 µS stays there: it neither drifts nor reads noise.

aihwkit draws this 1/f noise once per ``drift_weights`` call ("per_inference"); here it is the
std of a read, drawn when and as often as ``PCMConfig.read_noise_mode`` says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from imssa.devices.base import Device, DeviceConfig, _check_finite, randn_like
from imssa.errors import ImssaError

_G_REL_FLOOR = 1e-7  # aihwkit's _ZERO_CLIP: ln(0) guard for the drift-exponent fit


@dataclass(frozen=True, kw_only=True)
class PCMConfig(DeviceConfig):
    """PCM device settings (plus the shared :class:`DeviceConfig` fields); defaults = aihwkit.

    Attributes:
        prog_coeff: programming-noise polynomial coefficients (µS at g_ref), lowest order first.
        prog_coeff_g_max_reference: g_ref, the g_max (µS) the coefficients were fitted at; the
            std scales with g_max / g_ref.
        t_0: first read after programming, s: the drift reference time.
        t_read: read duration of the 1/f noise fit, s.
        prog_noise_scale, read_noise_scale, drift_scale: multipliers of the programming std,
            the read-noise std and the drift exponent (1 = the fitted device).
    """

    kind: ClassVar[str] = "pcm"

    prog_coeff: tuple[float, ...] = (0.26348, 1.9650, -1.1731)
    prog_coeff_g_max_reference: float = 25.0
    t_0: float = 20.0
    t_read: float = 250e-9
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "prog_coeff", tuple(float(c) for c in self.prog_coeff))
        if not self.prog_coeff:
            raise ImssaError("PCMConfig.prog_coeff needs at least one coefficient")
        for c in self.prog_coeff:
            _check_finite("PCMConfig.prog_coeff", c)
        for field in ("prog_coeff_g_max_reference", "t_0", "t_read"):
            value = getattr(self, field)
            _check_finite(f"PCMConfig.{field}", value)
            if value <= 0:
                raise ImssaError(f"PCMConfig.{field} must be > 0, got {value}")
        for field in ("prog_noise_scale", "read_noise_scale", "drift_scale"):
            value = getattr(self, field)
            _check_finite(f"PCMConfig.{field}", value)
            if value < 0:
                raise ImssaError(f"PCMConfig.{field} must be >= 0, got {value}")


class PCMDevice(Device):
    """PCM per aihwkit's ``PCMLikeNoiseModel``; see the module docstring for the formulas."""

    config: PCMConfig

    @classmethod
    def default_config(cls) -> PCMConfig:
        return PCMConfig()

    # --- closed forms, public for tests and characterization -------------------------------
    def programming_std(self, g_target: Tensor) -> Tensor:
        """sigma_P(g_T) in µS, before the clip at 0."""
        cfg = self.config
        x = g_target / cfg.g_max
        poly = torch.zeros_like(g_target)
        for c in reversed(cfg.prog_coeff):  # Horner
            poly = poly * x + c
        return poly.abs() * (cfg.g_max / cfg.prog_coeff_g_max_reference) * cfg.prog_noise_scale

    def drift_exponent_moments(self, g_target: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, sigma) of the normal whose absolute value is the drift exponent (before scale)."""
        g_rel = (g_target / self.config.g_max).abs().clamp(min=_G_REL_FLOOR)
        log_g = torch.log(g_rel)
        mu = (-0.0155 * log_g + 0.0244).clamp(0.049, 0.1)
        sigma = (-0.0125 * log_g - 0.0059).clamp(0.008, 0.045)
        return mu, sigma

    def read_noise_q(self, g_prog: Tensor) -> Tensor:
        """Q_s(g_P): the 1/f noise amplitude, dimensionless."""
        ratio = ((g_prog.abs() / self.config.g_max) ** 0.65).clamp(min=1e-3)
        return (0.0088 / ratio).clamp(max=0.2)

    def read_noise_time_factor(self, t_inference: float) -> float:
        """sqrt(ln((t + t_read) / (2 t_read))) with t = t_inference + t_0."""
        t = t_inference + self.config.t_0
        return math.sqrt(math.log((t + self.config.t_read) / (2 * self.config.t_read)))

    # --- device hooks -----------------------------------------------------------------------
    def write(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        noise = self.programming_std(g_target) * randn_like(g_target, generator)
        return (g_target + noise).clamp(min=0.0)

    def drift_parameters(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        """nu = |N(mu(g_T), sigma(g_T))| * drift_scale, one per device."""
        mu, sigma = self.drift_exponent_moments(g_target)
        return (mu + sigma * randn_like(g_target, generator)).abs() * self.config.drift_scale

    def drift_conductance(self, g_prog: Tensor, drift_param: Tensor | None, t_inference: float,
                          generator: torch.Generator | None) -> Tensor:
        if t_inference <= 0 or drift_param is None:
            return g_prog
        ratio = (t_inference + self.config.t_0) / self.config.t_0
        return g_prog * torch.pow(torch.as_tensor(ratio, dtype=g_prog.dtype,
                                                  device=g_prog.device), -drift_param)

    def read_noise_std(self, g_drifted: Tensor, g_prog: Tensor, t_inference: float) -> Tensor:
        scale = self.config.read_noise_scale * self.read_noise_time_factor(t_inference)
        return g_drifted.abs() * self.read_noise_q(g_prog) * scale
