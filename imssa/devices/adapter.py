"""Any aihwkit inference noise model as an imssa device.

Wraps an instance of ``aihwkit.inference.noise.base.BaseNoiseModel`` (``PCMLikeNoiseModel``,
``ReRamWan2022NoiseModel``, a user's own subclass, ...) and calls its per-conductance methods:
``apply_programming_noise_to_conductance`` in ``write``, ``generate_drift_coefficients`` in
``drift_parameters`` and ``apply_drift_noise_to_conductance`` in ``drift_conductance``. aihwkit
folds its read noise into the drift step, drawn once per call, so ``read_noise_std`` is zero and
the default ``read_noise_mode`` is "per_inference".

aihwkit draws from torch's global RNG. Each call here forks that RNG, seeds it from the
``torch.Generator`` passed in and restores it afterwards, so results follow the generator (same
seed, same numbers) and the caller's global RNG is left untouched. aihwkit is imported lazily:
the rest of ``imssa.devices`` works without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from imssa.devices.base import Device, DeviceConfig, ReadNoiseMode
from imssa.errors import ImssaError


@dataclass(frozen=True, kw_only=True)
class AihwkitConfig(DeviceConfig):
    """Shared device settings plus a description of the wrapped aihwkit model (for records)."""

    kind: ClassVar[str] = "aihwkit"

    noise_model: str = ""
    read_noise_mode: ReadNoiseMode = "per_inference"


@contextmanager
def _global_rng_from(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global RNG seeded from ``generator``, then restore it."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                             device=generator.device).item())
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _require_aihwkit() -> Any:
    try:
        import aihwkit.inference.noise.base as noise_base
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImssaError("AihwkitDevice needs aihwkit (pip install aihwkit, or "
                         "scripts/install.sh); the other devices work without it") from err
    return noise_base


class AihwkitDevice(Device):
    """An aihwkit ``BaseNoiseModel`` behind the imssa :class:`Device` interface.

    Args:
        noise_model: an aihwkit noise model instance, e.g. ``PCMLikeNoiseModel()``.
        config: shared device settings; by default g_min/g_max are the model's converter's
            (aihwkit's single-pair default: 0 and 25 µS) and read_noise_mode "per_inference".
    """

    config: AihwkitConfig

    def __init__(self, noise_model: Any, config: DeviceConfig | None = None) -> None:
        noise_base = _require_aihwkit()
        if not isinstance(noise_model, noise_base.BaseNoiseModel):
            raise ImssaError("noise_model must be an aihwkit BaseNoiseModel instance, "
                             f"got {type(noise_model).__name__}")
        self.noise_model = noise_model
        if config is None:
            converter = getattr(noise_model, "g_converter", None)
            g_max = getattr(noise_model, "g_max", None) or getattr(converter, "g_max", None)
            g_min = getattr(converter, "g_min", None)
            g_max, g_min = float(g_max or 25.0), float(g_min or 0.0)
            config = AihwkitConfig(g_min=float(g_min), g_max=float(g_max),
                                   noise_model=str(noise_model))
        super().__init__(config)

    def write(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        with _global_rng_from(generator, g_target.device):
            # aihwkit's models may modify their argument in place; give them a copy.
            return self.noise_model.apply_programming_noise_to_conductance(g_target.clone())

    def drift_parameters(self, g_target: Tensor, generator: torch.Generator) -> Tensor | None:
        with _global_rng_from(generator, g_target.device):
            return self.noise_model.generate_drift_coefficients(g_target.clone())

    def drift_conductance(self, g_prog: Tensor, drift_param: Tensor | None, t_inference: float,
                          generator: torch.Generator | None) -> Tensor:
        if generator is None:
            raise ImssaError("AihwkitDevice.drift needs a generator: aihwkit's drift step draws "
                             "random numbers")
        from aihwkit.exceptions import ArgumentError

        with _global_rng_from(generator, g_prog.device):
            try:
                return self.noise_model.apply_drift_noise_to_conductance(
                    g_prog, drift_param, t_inference)
            except ArgumentError as err:
                raise ImssaError(f"t_inference={t_inference} s rejected by "
                                 f"{type(self.noise_model).__name__}: {err}") from err
