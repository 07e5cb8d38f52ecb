"""Resistive RAM with the conductance spread measured on the NeuRRAM chip.

Source: W. Wan et al., "A compute-in-memory chip based on resistive random-access memory",
Nature 608, 504-512 (2022), as fitted in aihwkit's ``ReRamWan2022NoiseModel`` (aihwkit 1.2.0,
``aihwkit.inference.noise.reram``): after program-and-verify the conductance of a device relaxes
to a Gaussian around its target whose std depends on the target through a 4th-order polynomial,
fitted at 1 s, 1 day and 2 days after programming (g_max = 40 µS):

    sigma_t(g_T) = |sum_i c_i(t) (g_T / g_max)^i| * g_max / g_ref,   g_ref = 40 µS,
    g_P = max(0, g_T + sigma_1s(g_T) N(0, 1)),   g(t) = max(0, g_T + sigma_t(g_T) N(0, 1)).

Relaxation is not a drift with a per-device exponent: the conductance at t is drawn anew around
the target at each ``drift`` call (as aihwkit does), so draws at different times are independent
and ``drift`` needs a generator. Between the fitted times sigma_t is interpolated linearly in
ln t; before the first fitted time it is sigma_1s, after the last it is held at the last fit
(an extrapolation the data do not cover). At t_inference = 0 the programmed conductance is
returned. aihwkit accepts only the fitted times and, by an attribute-name slip, does not apply
the g_max / g_ref rescaling, so the two agree at g_max = g_ref = 40 µS and fitted times.

The model has no read noise of its own; ``read_noise`` adds an optional Gaussian one (aihwkit's
docstring suggests about 1% of g_max).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from imssa.devices.base import Device, DeviceConfig, _check_finite, randn_like
from imssa.errors import ImssaError

_WAN2022_TIMES = (1.0, 86400.0, 172800.0)
_WAN2022_COEFFS = (  # lowest order first, µS at g_max = 40 µS
    (0.348, 16.030, -43.853, 45.393, -16.815),
    (0.701, 22.086, -50.773, 47.095, -16.458),
    (0.782, 20.274, -43.507, 37.062, -11.934),
)


@dataclass(frozen=True, kw_only=True)
class RRAMConfig(DeviceConfig):
    """RRAM settings (plus the shared :class:`DeviceConfig` fields); defaults = Wan et al. 2022.

    Attributes:
        sigma_times: times (s, ascending, > 0) at which the spread was fitted.
        sigma_coeffs: per time, polynomial coefficients (µS at g_ref) of the std, lowest order
            first.
        coeff_g_max_reference: g_ref, the g_max (µS) of the fit; stds scale with g_max / g_ref.
        noise_scale: multiplier of the programming and relaxation std.
        read_noise: std of one read relative to g_max (additive); 0 = the published model.
    """

    kind: ClassVar[str] = "rram"

    g_max: float = 40.0
    sigma_times: tuple[float, ...] = _WAN2022_TIMES
    sigma_coeffs: tuple[tuple[float, ...], ...] = _WAN2022_COEFFS
    coeff_g_max_reference: float = 40.0
    noise_scale: float = 1.0
    read_noise: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sigma_times", tuple(float(t) for t in self.sigma_times))
        object.__setattr__(self, "sigma_coeffs",
                           tuple(tuple(float(c) for c in cs) for cs in self.sigma_coeffs))
        times, coeffs = self.sigma_times, self.sigma_coeffs
        if not times or len(times) != len(coeffs):
            raise ImssaError("RRAMConfig needs one coefficient list per time in sigma_times, got "
                             f"{len(times)} times and {len(coeffs)} lists")
        for t in times:
            _check_finite("RRAMConfig.sigma_times", t)
        if any(t <= 0 for t in times) or any(b <= a for a, b in zip(times, times[1:])):
            raise ImssaError(f"RRAMConfig.sigma_times must be > 0 s and ascending, got {times}")
        for cs in coeffs:
            if not cs:
                raise ImssaError("RRAMConfig.sigma_coeffs lists need at least one coefficient")
            for c in cs:
                _check_finite("RRAMConfig.sigma_coeffs", c)
        for field in ("coeff_g_max_reference",):
            _check_finite(f"RRAMConfig.{field}", getattr(self, field))
            if getattr(self, field) <= 0:
                raise ImssaError(f"RRAMConfig.{field} must be > 0, got {getattr(self, field)}")
        for field in ("noise_scale", "read_noise"):
            _check_finite(f"RRAMConfig.{field}", getattr(self, field))
            if getattr(self, field) < 0:
                raise ImssaError(f"RRAMConfig.{field} must be >= 0, got {getattr(self, field)}")


class RRAMDevice(Device):
    """RRAM per Wan et al. 2022; see the module docstring for the formulas."""

    config: RRAMConfig

    @classmethod
    def default_config(cls) -> RRAMConfig:
        return RRAMConfig()

    def _poly_std(self, g_target: Tensor, coeffs: tuple[float, ...]) -> Tensor:
        cfg = self.config
        x = g_target / cfg.g_max
        poly = torch.zeros_like(g_target)
        for c in reversed(coeffs):  # Horner
            poly = poly * x + c
        return poly.abs() * (cfg.g_max / cfg.coeff_g_max_reference) * cfg.noise_scale

    def spread_std(self, g_target: Tensor, t_inference: float) -> Tensor:
        """sigma_t(g_T) in µS at time t (s): the fitted std, interpolated in ln t."""
        times, coeffs = self.config.sigma_times, self.config.sigma_coeffs
        if t_inference <= times[0]:
            return self._poly_std(g_target, coeffs[0])
        if t_inference >= times[-1]:
            return self._poly_std(g_target, coeffs[-1])
        i = bisect.bisect_right(times, t_inference)
        w = (math.log(t_inference) - math.log(times[i - 1])) / (
            math.log(times[i]) - math.log(times[i - 1]))
        lo = self._poly_std(g_target, coeffs[i - 1])
        hi = self._poly_std(g_target, coeffs[i])
        return lo + w * (hi - lo)

    def write(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        noise = self._poly_std(g_target, self.config.sigma_coeffs[0])
        return (g_target + noise * randn_like(g_target, generator)).clamp(min=0.0)

    def drift_parameters(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        """The target itself: relaxation is drawn around it."""
        return g_target

    def drift_conductance(self, g_prog: Tensor, drift_param: Tensor | None, t_inference: float,
                          generator: torch.Generator | None) -> Tensor:
        if t_inference <= 0 or drift_param is None:
            return g_prog
        if generator is None:
            raise ImssaError("RRAMDevice.drift needs a generator: relaxation is random")
        std = self.spread_std(drift_param, t_inference)
        return (drift_param + std * randn_like(drift_param, generator)).clamp(min=0.0)

    def read_noise_std(self, g_drifted: Tensor, g_prog: Tensor, t_inference: float) -> Tensor:
        return torch.full_like(g_drifted, self.config.read_noise * self.config.g_max)
