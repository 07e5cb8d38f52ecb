"""The device protocol shared by every memristive device model, and the pipeline around it.

A weight stored in analog memory lives through three stages (DESIGN.md, "Devices"):

    state   = device.program(g_target, generator)          # once per chip instance
    drifted = device.drift(state, t_inference, generator)  # conductance t seconds later
    g_read  = device.read(drifted, generator)              # one noisy read of every device

``program`` applies the mitigations and non-idealities that all devices share (finite
programmable levels, stuck-at faults, program-and-verify, several devices averaged per weight)
around one device-specific hook, ``write``. Random quantities that belong to a device for its
whole life (PCM drift exponents) are drawn in ``program`` and kept in the returned
:class:`ProgrammedState`, so that drifting the same state to many times follows one trajectory
per device. ``drift`` returns a :class:`DriftedState`: the effective conductance and the standard
deviation of one read of it, which is what the crossbar needs to draw read noise per output
(DESIGN.md, "Simulating reads cheaply") instead of per device.

Every tensor may have any shape; chip instances are a leading batch axis added by the caller.
Conductances are in µS, times in s. All random numbers come from the ``torch.Generator`` passed
in, so the same seed gives the same numbers on the same device.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import Tensor

from imssa.errors import ImssaError

ReadNoiseMode = Literal["per_step", "per_inference"]
"""When read noise is drawn anew.

``"per_step"`` (the default): fresh noise at every read, i.e. at every step of the recurrent
crossbar. A physical read integrates the cell current over a short window, and the thermal,
shot and fast 1/f fluctuations in that window are new at each read; a recurrent SSM reads the
same crossbar hundreds of times per sequence, so freezing one draw would turn read noise into a
second, correlated programming error that the recurrence accumulates coherently.

``"per_inference"``: one draw per device per inference time, kept for all steps and all inputs.
This is aihwkit's behaviour (its noise models fold the accumulated 1/f noise into
``drift_weights``), right for feed-forward networks that read each weight once per input, and
the setting to use when cross-checking results against aihwkit.
"""

READ_NOISE_MODES: tuple[str, ...] = get_args(ReadNoiseMode)


def _check_finite(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ImssaError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class DeviceConfig:
    """Settings every device shares. Conductances in µS.

    Attributes:
        g_min: lowest programmable conductance (µS), >= 0.
        g_max: highest programmable conductance (µS), > g_min. Noise laws given "relative to
            g_max" scale with it.
        n_levels: number of programmable levels, evenly spaced in [g_min, g_max] (targets are
            rounded to the nearest one before programming); None for a continuum.
        p_stuck_min: probability that a device is stuck at g_min (fault rate).
        p_stuck_max: probability that a device is stuck at g_max.
        n_devices: devices programmed to the same target and averaged per weight; independent
            errors of standard deviation s fall to s / sqrt(n_devices).
        verify_tol: program-and-verify: reprogram a device until |g - g_target| <= verify_tol *
            g_max (or verify_max_pulses is reached); None programs once, open loop.
        verify_max_pulses: most programming attempts per device in program-and-verify.
        read_noise_mode: when the consumer draws read noise, see :data:`ReadNoiseMode`.
    """

    kind: ClassVar[str] = "ideal"

    g_min: float = 0.0
    g_max: float = 25.0
    n_levels: int | None = None
    p_stuck_min: float = 0.0
    p_stuck_max: float = 0.0
    n_devices: int = 1
    verify_tol: float | None = None
    verify_max_pulses: int = 20
    read_noise_mode: ReadNoiseMode = "per_step"

    def __post_init__(self) -> None:
        name = type(self).__name__
        _check_finite(f"{name}.g_min", self.g_min)
        _check_finite(f"{name}.g_max", self.g_max)
        if self.g_min < 0.0:
            raise ImssaError(f"{name}.g_min must be >= 0 µS, got {self.g_min}")
        if self.g_min >= self.g_max:
            raise ImssaError(f"{name} needs g_min < g_max, got g_min={self.g_min} µS, "
                             f"g_max={self.g_max} µS")
        if self.n_levels is not None and (not isinstance(self.n_levels, int) or self.n_levels < 2):
            raise ImssaError(f"{name}.n_levels must be None or an integer >= 2, "
                             f"got {self.n_levels!r}")
        for field in ("p_stuck_min", "p_stuck_max"):
            value = getattr(self, field)
            _check_finite(f"{name}.{field}", value)
            if not 0.0 <= value <= 1.0:
                raise ImssaError(f"{name}.{field} must be in [0, 1], got {value}")
        if self.p_stuck_min + self.p_stuck_max > 1.0:
            raise ImssaError(f"{name} needs p_stuck_min + p_stuck_max <= 1, got "
                             f"{self.p_stuck_min} + {self.p_stuck_max}")
        if not isinstance(self.n_devices, int) or self.n_devices < 1:
            raise ImssaError(f"{name}.n_devices must be an integer >= 1, got {self.n_devices!r}")
        if self.verify_tol is not None:
            _check_finite(f"{name}.verify_tol", self.verify_tol)
            if self.verify_tol <= 0.0:
                raise ImssaError(f"{name}.verify_tol must be None or > 0 (a fraction of g_max), "
                                 f"got {self.verify_tol}")
        if not isinstance(self.verify_max_pulses, int) or self.verify_max_pulses < 1:
            raise ImssaError(f"{name}.verify_max_pulses must be an integer >= 1, "
                             f"got {self.verify_max_pulses!r}")
        if self.read_noise_mode not in READ_NOISE_MODES:
            raise ImssaError(f"{name}.read_noise_mode must be one of {READ_NOISE_MODES}, "
                             f"got {self.read_noise_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain fields plus ``"device"``, the device kind, for JSON and NetCDF attrs."""
        return {"device": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass(frozen=True)
class ProgrammedState:
    """Devices right after programming (t_inference = 0), one per weight and device copy.

    Attributes:
        g_target: (...) target conductance in µS after rounding to the programmable levels.
        g_prog: (..., n_devices) programmed conductance of each physical device, µS.
        drift_param: (..., n_devices) per-device drift parameters drawn once at programming
            (PCM: the drift exponent nu), or None for devices that do not drift.
        n_pulses: (..., n_devices) int32, programming attempts used (1 without verify).
        stuck: (..., n_devices) bool, devices stuck at g_min or g_max (they neither drift nor
            respond to programming).
    """

    g_target: Tensor
    g_prog: Tensor
    drift_param: Tensor | None
    n_pulses: Tensor
    stuck: Tensor

    @property
    def g(self) -> Tensor:
        """(...) effective programmed conductance in µS: the mean over the device copies."""
        return self.g_prog.mean(dim=-1)

    @property
    def n_devices(self) -> int:
        return self.g_prog.shape[-1]


@dataclass(frozen=True)
class DriftedState:
    """Effective conductances at one inference time, and the noise of one read of them.

    Attributes:
        g: (...) effective conductance (mean over device copies) at t_inference, µS.
        read_std: (...) standard deviation of one read of ``g``, µS. With n device copies of
            per-device std s_i it is sqrt(sum s_i^2) / n. Per output of a crossbar column the
            read noise then has variance sum_j read_std_ij^2 x_j^2 (DESIGN.md).
        t_inference: seconds since programming ended.
    """

    g: Tensor
    read_std: Tensor
    t_inference: float


def check_time(t_inference: float, name: str = "t_inference") -> float:
    """Validate a time since programming (s): finite and >= 0."""
    if isinstance(t_inference, Tensor):
        if t_inference.numel() != 1:
            raise ImssaError(f"{name} must be one number (s), got a tensor of shape "
                             f"{tuple(t_inference.shape)}")
        t_inference = t_inference.item()
    if (not isinstance(t_inference, (int, float)) or isinstance(t_inference, bool)
            or not math.isfinite(t_inference) or t_inference < 0):
        raise ImssaError(f"{name} must be a finite time >= 0 s, got {t_inference!r}")
    return float(t_inference)


#: Seconds per unit of :func:`parse_times` ("y" is 365 days).
TIME_UNITS: dict[str, float] = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0,
                                "w": 604800.0, "y": 365 * 86400.0}
_TIME = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-z]*)$")


def parse_times(text: str, name: str = "t_inference") -> list[float]:
    """Times like "1s,1h,1d,1y,3600" -> seconds [1, 3600, 86400, 31536000, 3600].

    Units: s, m or min, h, d, w, y (365 d); a bare number is seconds. Each time must be >= 0.
    ``name`` is what an error message calls the text.
    """
    times = []
    for item in str(text).split(","):
        token = item.strip().lower()
        match = _TIME.match(token)
        if token.startswith("-"):
            raise ImssaError(f"{name}: times must be >= 0 s, got {item.strip()!r}")
        if not match or match.group(2) not in ("", *TIME_UNITS):
            raise ImssaError(f"{name}: cannot read {item.strip()!r} as a time; write a number "
                             f"with an optional unit ({', '.join(TIME_UNITS)}), e.g. "
                             "'1s,1h,1d,1y' or '3600'")
        t = float(match.group(1)) * TIME_UNITS[match.group(2) or "s"]
        times.append(check_time(t, name))
    return times


def format_time(t: float) -> str:
    """Seconds as the largest whole unit: 3600 -> '1 h', 90 -> '90 s', 31536000 -> '1 y'."""
    for unit in ("y", "d", "h", "min", "s"):
        n = t / TIME_UNITS[unit]
        if n >= 1 and float(n).is_integer():
            return f"{int(n)} {unit}"
    return f"{t:g} s"


def format_times(times: tuple[float, ...]) -> str:
    """Times as :func:`parse_times` reads them back: (1, 3600) -> '1s,1h'."""
    return ",".join(format_time(t).replace(" ", "") for t in times)


def quantize_levels(g: Tensor, g_min: float, g_max: float, n_levels: int) -> Tensor:
    """Round conductances to the nearest of n_levels evenly spaced levels in [g_min, g_max] (µS).

    The rounding has zero gradient; the result is clamped to [g_min, g_max].
    """
    step = (g_max - g_min) / (n_levels - 1)
    k = torch.round((g - g_min) / step).clamp(0, n_levels - 1)
    return g_min + k * step


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal numbers of x's shape, dtype and device, from ``generator``."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def rand_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) numbers of x's shape, dtype and device, from ``generator``."""
    return torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)


class Device(ABC):
    """A memristive device model: program -> drift -> read, vectorized over any shape.

    Subclasses describe one physical device through four hooks, all elementwise:

    - ``write(g_target, generator)``: one programming attempt (programming error);
    - ``drift_parameters(g_target, generator)``: per-device parameters drawn once (PCM: nu);
    - ``drift_conductance(g_prog, drift_param, t_inference, generator)``: conductance at t;
    - ``read_noise_std(g_drifted, g_prog, t_inference)``: std of one read (µS).

    The pipeline methods ``program``, ``drift`` and ``read`` add what all devices share.
    """

    config: DeviceConfig

    def __init__(self, config: DeviceConfig | None = None) -> None:
        default = self.default_config()
        if config is not None and not isinstance(config, type(default)):
            raise ImssaError(f"{type(self).__name__} needs a {type(default).__name__}, "
                             f"got {type(config).__name__}")
        self.config = config if config is not None else default

    @classmethod
    def default_config(cls) -> DeviceConfig:
        return DeviceConfig()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # --- physics of one device (override) ---------------------------------------------------
    @abstractmethod
    def write(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        """One programming attempt of each device: target (µS) -> programmed conductance (µS)."""

    def drift_parameters(self, g_target: Tensor, generator: torch.Generator) -> Tensor | None:
        """Per-device drift parameters, drawn once at programming; None if the device has none."""
        return None

    def drift_conductance(self, g_prog: Tensor, drift_param: Tensor | None, t_inference: float,
                          generator: torch.Generator | None) -> Tensor:
        """Conductance (µS) t_inference seconds after programming. Default: no drift."""
        return g_prog

    def read_noise_std(self, g_drifted: Tensor, g_prog: Tensor, t_inference: float) -> Tensor:
        """Standard deviation (µS) of one read of a device at g_drifted. Default: noiseless."""
        return torch.zeros_like(g_drifted)

    def clip(self, g: Tensor) -> Tensor:
        """Physical range of a read conductance: non-negative (as aihwkit clamps)."""
        return g.clamp(min=0.0)

    # --- pipeline ---------------------------------------------------------------------------
    def check_target(self, g_target: Tensor) -> Tensor:
        """Validate targets: floating point, finite, within [g_min, g_max] up to rounding."""
        cfg = self.config
        if not isinstance(g_target, Tensor) or not torch.is_floating_point(g_target):
            raise ImssaError("g_target must be a floating-point tensor of conductances in µS, "
                             f"got {type(g_target).__name__}"
                             + (f" of {g_target.dtype}" if isinstance(g_target, Tensor) else ""))
        if g_target.numel() == 0:
            return g_target
        if not torch.isfinite(g_target).all():
            raise ImssaError("g_target contains NaN or infinite values")
        slack = 1e-6 * (cfg.g_max - cfg.g_min)
        lo, hi = g_target.min().item(), g_target.max().item()
        if lo < cfg.g_min - slack or hi > cfg.g_max + slack:
            raise ImssaError(f"g_target must lie in [g_min, g_max] = [{cfg.g_min}, {cfg.g_max}] "
                             f"µS, got values in [{lo:.6g}, {hi:.6g}] µS")
        return g_target.clamp(cfg.g_min, cfg.g_max)

    def quantize(self, g_target: Tensor) -> Tensor:
        """Targets rounded to the programmable levels (unchanged if n_levels is None)."""
        cfg = self.config
        if cfg.n_levels is None:
            return g_target
        return quantize_levels(g_target, cfg.g_min, cfg.g_max, cfg.n_levels)

    def program(self, g_target: Tensor, generator: torch.Generator) -> ProgrammedState:
        """Program every device to its target.

        Order: round to levels -> copy n_devices times -> draw stuck-at faults -> write (and
        verify: rewrite those outside tolerance, counting attempts) -> draw drift parameters
        from the (rounded) target, as aihwkit does.

        Args:
            g_target: (...) target conductances in µS, within [g_min, g_max].
            generator: source of all random numbers.

        Returns:
            The programmed state; see :class:`ProgrammedState` for shapes.
        """
        cfg = self.config
        g_target = self.quantize(self.check_target(g_target))
        target = g_target.unsqueeze(-1).expand(*g_target.shape, cfg.n_devices)  # (... n)

        stuck_value = None
        stuck = torch.zeros(target.shape, dtype=torch.bool, device=target.device)
        if cfg.p_stuck_min > 0 or cfg.p_stuck_max > 0:
            u = rand_like(target, generator)
            low = u < cfg.p_stuck_min
            stuck = u < cfg.p_stuck_min + cfg.p_stuck_max
            stuck_value = torch.where(low, cfg.g_min, cfg.g_max).to(target.dtype)

        def attempt() -> Tensor:
            g = self.write(target, generator)
            return g if stuck_value is None else torch.where(stuck, stuck_value, g)

        g_prog = attempt()
        n_pulses = torch.ones(target.shape, dtype=torch.int32, device=target.device)
        if cfg.verify_tol is not None:
            tol = cfg.verify_tol * cfg.g_max
            for _ in range(cfg.verify_max_pulses - 1):
                bad = (g_prog - target).abs() > tol
                if not bool(bad.any()):
                    break
                g_prog = torch.where(bad, attempt(), g_prog)
                n_pulses = n_pulses + bad.to(torch.int32)

        drift_param = self.drift_parameters(target, generator)
        return ProgrammedState(g_target=g_target, g_prog=g_prog, drift_param=drift_param,
                               n_pulses=n_pulses, stuck=stuck)

    def drift(self, state: ProgrammedState, t_inference: float,
              generator: torch.Generator | None = None) -> DriftedState:
        """Conductances t_inference seconds after programming, and the std of one read of them.

        Deterministic for devices whose drift is (PCM: exponents were drawn in ``program``);
        devices with stochastic relaxation (RRAM, aihwkit models) need ``generator``.

        Args:
            state: from :meth:`program`.
            t_inference: time since programming ended, s (>= 0).
            generator: source of random numbers where drift is stochastic.

        Returns:
            Effective (device-averaged) conductance and read std, both shaped like g_target.
        """
        t = check_time(t_inference)
        g_dev = self.drift_conductance(state.g_prog, state.drift_param, t, generator)
        g_dev = torch.where(state.stuck, state.g_prog, g_dev)
        std_dev = self.read_noise_std(g_dev, state.g_prog, t)
        n = state.n_devices
        if n == 1:
            return DriftedState(g=g_dev.squeeze(-1), read_std=std_dev.squeeze(-1), t_inference=t)
        read_std = std_dev.square().sum(dim=-1).sqrt() / n
        return DriftedState(g=g_dev.mean(dim=-1), read_std=read_std, t_inference=t)

    def read(self, drifted: DriftedState, generator: torch.Generator) -> Tensor:
        """One read of every weight with independent Gaussian read noise (per-device reference).

        g + read_std * N(0, 1), clipped to the device's physical range (``clip``).
        """
        return self.clip(drifted.g + drifted.read_std * randn_like(drifted.g, generator))

    def program_and_drift(self, g_target: Tensor, t_inference: float,
                          generator: torch.Generator) -> DriftedState:
        """Shortcut: ``drift(program(g_target), t_inference)`` with one generator."""
        return self.drift(self.program(g_target, generator), t_inference, generator)


class IdealDevice(Device):
    """A noiseless, drift-free device: programs exactly (up to levels and faults)."""

    def write(self, g_target: Tensor, generator: torch.Generator) -> Tensor:
        return g_target.clone()
