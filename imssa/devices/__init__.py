"""Memristive device models: program (programming error) -> drift to t -> read (read noise).

Devices: :class:`IdealDevice`, :class:`GaussianDevice`, :class:`PCMDevice` (aihwkit's
``PCMLikeNoiseModel`` statistics), :class:`RRAMDevice` (Wan et al., Nature 2022) and
:class:`AihwkitDevice` (any aihwkit noise model; aihwkit imported lazily). Shared settings (levels,
stuck-at faults, devices per weight, program-and-verify, read-noise mode) live in
:class:`DeviceConfig`. ``imssa.devices.characterize`` (needs xarray/matplotlib) is imported
separately. Only torch is needed here.
"""

from __future__ import annotations

from typing import Any

from imssa.devices.adapter import AihwkitConfig, AihwkitDevice
from imssa.devices.base import (
    READ_NOISE_MODES,
    TIME_UNITS,
    Device,
    DeviceConfig,
    DriftedState,
    IdealDevice,
    ProgrammedState,
    ReadNoiseMode,
    check_time,
    format_time,
    format_times,
    parse_times,
    quantize_levels,
)
from imssa.devices.compensation import COMPENSATION_MODES, drift_compensation_factor
from imssa.devices.gaussian import GaussianConfig, GaussianDevice
from imssa.devices.pcm import PCMConfig, PCMDevice
from imssa.devices.rram import RRAMConfig, RRAMDevice
from imssa.errors import ImssaError

DEVICES: dict[str, tuple[type[DeviceConfig], type[Device]]] = {
    "ideal": (DeviceConfig, IdealDevice),
    "gaussian": (GaussianConfig, GaussianDevice),
    "pcm": (PCMConfig, PCMDevice),
    "rram": (RRAMConfig, RRAMDevice),
}
"""Device kinds buildable from a config alone (``AihwkitDevice`` needs a noise-model object)."""


def make_device(kind: str, **fields: Any) -> Device:
    """The device of the named kind, its config built from ``fields`` (e.g. g_max=25.0)."""
    if kind not in DEVICES:
        raise ImssaError(f"unknown device {kind!r}; choose one of {', '.join(DEVICES)}")
    config_cls, device_cls = DEVICES[kind]
    try:
        config = config_cls(**fields)
    except TypeError as err:
        raise ImssaError(f"bad settings for device {kind!r}: {err}") from err
    return device_cls(config)


def device_from_config(config: DeviceConfig | dict[str, Any]) -> Device:
    """The device a config (or its ``to_dict()``) describes."""
    if isinstance(config, dict):
        fields = dict(config)
        kind = fields.pop("device", "ideal")
        return make_device(kind, **fields)
    for config_cls, device_cls in DEVICES.values():
        if type(config) is config_cls:
            return device_cls(config)
    raise ImssaError(f"no device is built from a {type(config).__name__}; aihwkit devices need "
                     "AihwkitDevice(noise_model)")


__all__ = [
    "COMPENSATION_MODES", "DEVICES", "READ_NOISE_MODES", "TIME_UNITS", "AihwkitConfig", "AihwkitDevice",
    "Device", "DeviceConfig", "DriftedState", "GaussianConfig", "GaussianDevice", "IdealDevice",
    "PCMConfig", "PCMDevice", "ProgrammedState", "RRAMConfig", "RRAMDevice", "ReadNoiseMode",
    "check_time", "device_from_config", "drift_compensation_factor", "format_time", "format_times",
    "make_device", "parse_times",
    "quantize_levels",
]
