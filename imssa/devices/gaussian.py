"""A generic Gaussian device: programming and read noise with a constant or proportional std.

The textbook abstraction used to sweep noise levels independently of a technology (e.g. Joshi et
al., Nat. Commun. 11, 2473 (2020), who train with additive Gaussian weight noise relative to
w_max). Programming error and read noise are each either *additive* (std = sigma * g_max, the
same for every conductance) or *multiplicative* (std = sigma * |g|). No drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from imssa.devices.base import Device, DeviceConfig, _check_finite, randn_like
from imssa.errors import ImssaError

NoiseType = Literal["additive", "multiplicative"]
NOISE_TYPES: tuple[str, ...] = get_args(NoiseType)


@dataclass(frozen=True, kw_only=True)
class GaussianConfig(DeviceConfig):
    """Gaussian device settings (plus the shared :class:`DeviceConfig` fields).

    Attributes:
        prog_noise: programming-error std, relative: additive -> sigma = prog_noise * g_max;
            multiplicative -> sigma = prog_noise * g_target.
        prog_noise_type: "additive" or "multiplicative".
        read_noise: std of one read, relative, in the same two forms (g_max or |g(t)|).
        read_noise_type: "additive" or "multiplicative".
    """

    kind: ClassVar[str] = "gaussian"

    prog_noise: float = 0.02
    prog_noise_type: NoiseType = "additive"
    read_noise: float = 0.0
    read_noise_type: NoiseType = "additive"

    def __post_init__(self) -> None:
        super().__post_init__()
        for field in ("prog_noise", "read_noise"):
            value = getattr(self, field)
            _check_finite(f"GaussianConfig.{field}", value)
            if value < 0:
                raise ImssaError(f"GaussianConfig.{field} must be >= 0 (relative std), "
                                 f"got {value}")
        for field in ("prog_noise_type", "read_noise_type"):
            if getattr(self, field) not in NOISE_TYPES:
                raise ImssaError(f"GaussianConfig.{field} must be one of {NOISE_TYPES}, "
                                 f"got {getattr(self, field)!r}")


class GaussianDevice(Device):
    """Gaussian programming error (clipped at 0 µS) and optional Gaussian read noise."""

    config: GaussianConfig

    @classmethod
    def default_config(cls) -> GaussianConfig:
        return GaussianConfig()

    def _std(self, g: Tensor, sigma: float, noise_type: str) -> Tensor:
        if noise_type == "additive":
            return torch.full_like(g, sigma * self.config.g_max)
        return sigma * g.abs()

    def programming_std(self, g_target: Tensor) -> Tensor:
        """Std of the programming error (µS) before clipping at 0."""
        return self._std(g_target, self.config.prog_noise, self.config.prog_noise_type)

    def write(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        noise = self.programming_std(g_target) * randn_like(g_target, generator)
        return (g_target + noise).clamp(min=0.0)

    def read_noise_std(self, g_drifted: Tensor, g_prog: Tensor, t_inference: float) -> Tensor:
        return self._std(g_drifted, self.config.read_noise, self.config.read_noise_type)
