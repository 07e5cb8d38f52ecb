"""What the analog modules of one converted model share, and the converters every module runs.

:func:`~imssa.crossbar.convert` puts one :class:`ChipSet` into the model (``model.chips``) and
into every analog module it swaps in: the chip count, the memristor and periphery, the
generators, the inference time, and the observers of a calibration pass. An
:class:`AnalogPart` is the base of the analog modules: its converters (DACs, ADCs, the state
register) are named by local keys, ``CONVERTERS`` gives each key's kind, and the full name of a
converter range is ``<module path>.<key>`` (e.g. ``blocks.0.ssm.state``).

Inside a converted model every tensor after the first analog module carries a leading chip axis
(chips, or 1 where nothing analog acted yet, e.g. a digital encoder's output); the first analog
module in graph order (``entry``) adds it to its input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from imssa.crossbar.periphery import PeripheryConfig, dac, register, sense
from imssa.crossbar.settings import finest
from imssa.crossbar.tile import AnalogTile, SensedArrays, compensation
from imssa.devices import Device
from imssa.errors import ImssaError
from imssa.quant import RangeObserver


class Observers:
    """Range observers of one calibration pass, started lazily with the values per group."""

    def __init__(self, periphery: PeripheryConfig) -> None:
        self.periphery, self.steps = periphery, 1  # steps: sequence length of the batch
        self.observers: dict[str, RangeObserver] = {}
        self.open: set[str] = set()

    def __call__(self, name: str, v: Tensor, shape: tuple[int, ...] = (),
                 total: int | None = None) -> None:
        """Observe ``v`` at point ``name``; ``total``: values the point gets in the whole batch
        (v's own count if None; steps x v's for a per-step point)."""
        obs = self.observers.get(name)
        if obs is None:
            obs = self.observers[name] = self.periphery.observer(shape)
        if name not in self.open:
            obs.start((v.numel() if total is None else total) // math.prod(shape))
            self.open.add(name)
        obs.update(v)

    def finish(self) -> None:
        for name in self.open:
            self.observers[name].finish()
        self.open.clear()


class ChipSet:
    """The chip instances one converted model runs on, shared by all its analog modules.

    Attributes:
        n_chips: independent chip instances (a leading dim of every analog output).
        memristor: the memristive device model; periphery: converters, noise, compensation.
        generator: programming, drift, and the default source of read noise.
        noise: the generator of the reads and output noise of forward passes; ``set_time``
            sets it to its own generator, so a time point's draws continue one stream.
        t_inference: seconds since programming, None before ``set_time``.
        observers: the calibration pass's observers while ``calibrate`` runs, else None.
        settings: the memristor and periphery of tensors with per-tensor settings, by path
            (:func:`imssa.crossbar.settings.tensor_settings`); the others use the shared ones.
    """

    def __init__(self, n_chips: int, memristor: Device, periphery: PeripheryConfig,
                 generator: torch.Generator,
                 settings: dict[str, tuple[Device, PeripheryConfig]] | None = None) -> None:
        self.n_chips, self.memristor, self.periphery = n_chips, memristor, periphery
        self.settings = settings or {}
        self.generator = self.noise = generator
        self.t_inference: float | None = None
        self.observers: Observers | None = None

    def __repr__(self) -> str:
        return (f"ChipSet(n_chips={self.n_chips}, memristor={self.memristor!r}, "
                f"t_inference={self.t_inference})")

    @property
    def calibrating(self) -> bool:
        return self.observers is not None

    def tile(self, tensor) -> AnalogTile:
        """Program a mapped tensor on every chip (draws from ``generator``), with its own
        settings where it has some."""
        memristor, periphery = self.settings.get(tensor.name, (self.memristor, self.periphery))
        return AnalogTile(tensor, memristor, periphery, n_chips=self.n_chips,
                          seed=self.generator)


class AnalogPart(nn.Module):
    """Base of the analog modules: tiles, converters and drift gains of one graph part.

    Subclasses set ``CONVERTERS`` (local key -> kind) and implement :meth:`tiles`,
    :meth:`groups` (ADC key -> the tiles whose currents share those columns) and
    :meth:`served` (converter key -> the tiles it converts for, which set its bits).
    """

    CONVERTERS: dict[str, str] = {}

    def __init__(self, path: str, chips: ChipSet, entry: bool) -> None:
        super().__init__()
        self.path, self.chips, self.entry = path, chips, entry
        self.ranges: dict[str, Tensor] = {}  # calibrated converter ranges by local key
        self.alpha: dict[str, Tensor | None] = {}  # drift-compensation gains by ADC key
        self._pass_ranges: dict[str, Tensor | None] = {}
        self._converters: dict[str, tuple[PeripheryConfig, PeripheryConfig]] = {}

    def extra_repr(self) -> str:
        return f"{self.path!r}, chips={self.chips.n_chips}"

    def tiles(self) -> list[AnalogTile]:
        raise NotImplementedError

    def groups(self) -> dict[str, list[AnalogTile]]:
        raise NotImplementedError

    def served(self) -> dict[str, list[AnalogTile]]:
        raise NotImplementedError

    def converter(self, key: str) -> PeripheryConfig:
        """The periphery of converter ``key``: the shared one, with the finest bits of the
        per-tensor settings of the tensors it serves (recomputed if the shared one changes)."""
        base = self.chips.periphery
        cached = self._converters.get(key)
        if cached is None or cached[0] is not base:
            own = [self.chips.settings[t.tensor.name][1] for t in self.served().get(key, [])
                   if t.tensor.name in self.chips.settings]
            cached = self._converters[key] = (base, finest(own, base))
        return cached[1]

    @property
    def uniform(self) -> bool:
        """Whether every converter has the shared periphery (no per-tensor bits)."""
        return all(self.converter(k) == self.chips.periphery for k in self.CONVERTERS)

    # --- time --------------------------------------------------------------------------------
    def set_time(self, t_inference: float, generator: torch.Generator) -> None:
        """Drift every tile to ``t_inference`` (s) and precompute its effective arrays."""
        for tile in self.tiles():
            tile.set_time(t_inference, generator)

    def compensate(self, generator: torch.Generator) -> None:
        """The drift-compensation gain of every column group, from a read-out now."""
        mode = self.chips.periphery.drift_compensation
        self.alpha = {key: compensation(tiles, mode, generator) if tiles and mode != "none"
                      else None for key, tiles in self.groups().items()}

    # --- one pass ----------------------------------------------------------------------------
    def begin(self, x: Tensor) -> Tensor:
        """Start a forward or a streaming step: check the time, add the chip axis."""
        if not self.chips.calibrating and self.chips.t_inference is None:
            raise ImssaError("call imssa.crossbar.set_time(model, t_inference) before the "
                             "forward pass")
        self._pass_ranges = {}
        return x.unsqueeze(0) if self.entry else x

    def range(self, key: str, ref: Tensor) -> Tensor | None:
        """A converter range: the given one, or the calibrated one, or None where none is needed
        (resolved once per pass)."""
        if key in self._pass_ranges:
            return self._pass_ranges[key]
        cfg, kind = self.converter(key), self.CONVERTERS[key]
        given = {"dac": cfg.dac_range, "register": cfg.state_clip, "adc": None}[kind]
        r: Tensor | None = None
        if given is not None:
            r = torch.tensor(given, dtype=ref.dtype, device=ref.device)
        elif needs_range(cfg, kind):
            if key not in self.ranges:
                raise ImssaError(f"the periphery needs calibrated ranges ({self.path}.{key} is "
                                 "missing): call imssa.crossbar.calibrate(model, u) with a few "
                                 "training sequences before the forward pass")
            r = self.ranges[key]
        self._pass_ranges[key] = r
        return r

    def arrays(self, tile: AnalogTile) -> SensedArrays:
        """The arrays a pass reads: the chips' now, or the targets while calibrating."""
        arrays = tile.target if self.chips.calibrating else tile.now
        assert arrays is not None
        return arrays

    def gain(self, key: str) -> Tensor | None:
        return None if self.chips.calibrating else self.alpha.get(key)

    def steps(self, v: Tensor) -> int | None:
        """Values a per-step point receives over the sequence, for the observers."""
        obs = self.chips.observers
        return v.numel() * obs.steps if obs is not None else None

    def dac(self, key: str, v: Tensor, total: int | None = None) -> Tensor:
        obs = self.chips.observers
        if obs is not None:
            obs(f"{self.path}.{key}", v, total=total)
            return v
        return dac(v, self.range(key, v), self.converter(key).dac_bits)

    def adc(self, key: str, tile: AnalogTile, mean: Tensor, var: Tensor | None,
            total: int | None = None) -> Tensor:
        cfg, obs = self.converter(key), self.chips.observers
        if obs is not None:
            obs(f"{self.path}.{key}", mean, tile.range_shape(cfg.adc_granularity), total)
            return mean
        return sense(mean, var, self.range(key, mean), cfg, self.chips.noise)

    def register(self, key: str, s: Tensor) -> Tensor:
        obs = self.chips.observers
        if obs is not None:
            obs(f"{self.path}.{key}", s, total=self.steps(s))
            return s
        return register(s, self.range(key, s), self.chips.periphery)


def needs_range(cfg: PeripheryConfig, kind: str) -> bool:
    """Whether converters of ``kind`` need calibrated ranges under ``cfg``."""
    return {"dac": cfg.needs_dac_ranges, "adc": cfg.needs_adc_ranges,
            "register": cfg.needs_state_ranges}[kind]
