"""The points of a sweep: settings (a memristor and its mapping) x inference times, and the seeds
that make every point's numbers independent of which other points were computed.

The chips of setting ``s`` are programmed from a generator seeded by (seed, s) and the noise of
point (s, j) is drawn from one seeded by (seed, s, j), so a resumed sweep gives the same numbers
as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from imssa.crossbar.tile import check_window
from imssa.devices import Device, DeviceConfig, device_from_config
from imssa.errors import ImssaError
from imssa.experiments.simulate.config import SimulationConfig
from imssa.mapping import MappingConfig


@dataclass(frozen=True)
class Setting:
    """One memristor setting of a sweep: the ``setting`` coordinate ``index``."""

    index: int
    memristor: Device
    mapping: MappingConfig


@dataclass(frozen=True)
class Point:
    """One (setting, inference time) point; ``name`` keys its result in the parts store."""

    setting: int
    time: int
    t_inference: float

    @property
    def name(self) -> str:
        return f"s{self.setting}_t{self.time}"


def sweep_memristors(base: DeviceConfig, field: str, values: Sequence[Any]) -> list[DeviceConfig]:
    """Copies of ``base`` with ``field`` set to each value (each validated by the config)."""
    names = {f.name for f in dataclasses.fields(base)}
    if field not in names:
        raise ImssaError(f"`sweep` {field}: {type(base).__name__} has no field {field!r}; it has "
                         f"{', '.join(sorted(names))}")
    if not values:
        raise ImssaError(f"`sweep` {field}: a sweep needs at least one value")
    return [dataclasses.replace(base, **{field: v}) for v in values]


def _as_memristor(m: Device | DeviceConfig) -> Device:
    if isinstance(m, Device):
        return m
    if isinstance(m, DeviceConfig):
        return device_from_config(m)
    raise ImssaError(f"memristors must be Device or DeviceConfig objects, got {type(m).__name__}")


def settings(memristor: Device | DeviceConfig | Sequence[Device | DeviceConfig],
             config: SimulationConfig, sweep: str | None) -> list[Setting]:
    """One setting per memristor, each with its mapping (window checked against the memristor)."""
    memristors = [_as_memristor(m) for m in memristor] \
        if isinstance(memristor, (list, tuple)) else [_as_memristor(memristor)]
    if not memristors:
        raise ImssaError("simulate needs at least one memristor")
    if sweep is not None:
        missing = [i for i, m in enumerate(memristors) if not hasattr(m.config, sweep)]
        if missing:
            raise ImssaError(f"`sweep` {sweep}: not a field of every memristor config "
                             f"(settings {missing})")
    result = []
    for s, m in enumerate(memristors):
        mapping = config.mapping if config.window == "mapping" else dataclasses.replace(
            config.mapping, g_min=m.config.g_min, g_max=m.config.g_max)
        check_window(mapping.g_min, mapping.g_max, m)
        result.append(Setting(s, m, mapping))
    return result


def sweep_points(settings: Sequence[Setting], times: Sequence[float]) -> list[Point]:
    """Every (setting, time) point, setting-major (the order of the computation)."""
    return [Point(s.index, j, t) for s in settings for j, t in enumerate(times)]


def sweep_coordinate(settings: Sequence[Setting], sweep: str) -> np.ndarray:
    """The swept field's value per setting: float64 when every value is a number, else text
    (e.g. read_noise_mode = per_step, per_inference; None and booleans become text)."""
    values = [getattr(s.memristor.config, sweep) for s in settings]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    return np.asarray([str(v) for v in values])


def _seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (numpy's SeedSequence: well mixed, reproducible)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def generator(device: torch.device, *parts: int) -> torch.Generator:
    """A torch generator on ``device`` seeded from ``parts`` (e.g. seed, setting, time)."""
    return torch.Generator(device=device).manual_seed(_seed(*parts))
