"""The mixed-signal periphery of a crossbar: DACs on the rows, ADCs on the columns, output noise,
the state register of the recurrence, and drift compensation settings.

Conventions (shared with :mod:`imssa.quant`): a b-bit converter has the narrow signed grid,
codes -q..q with q = 2^(b-1) - 1 (:func:`levels`), step = r / q for a range [-r, r];
values are rounded half to even (``torch.round``) and saturate at the range. A range is one
number per converter group: per tensor for DACs (one input range per driven signal), per tensor
or per output channel (column) for ADCs. Ranges are given or calibrated from data (max-abs or a
percentile of |v|) on the target weights, as a chip's periphery is trimmed once at design time.

Output noise is additive Gaussian noise on each sensed column current before the ADC, with a std
relative to that column's ADC range (a model of amplifier and integrator noise); it is drawn
fresh at every read.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from imssa.devices import READ_NOISE_MODES, ReadNoiseMode
from imssa.devices.base import randn_like
from imssa.errors import ImssaError
from imssa.quant import QuantSpec, RangeObserver

#: Calibration words of the periphery (a subset of imssa.names.Calibration: ranges are symmetric).
Calibration = Literal["maxabs", "percentile"]
#: ADC range granularities (imssa.names' words): one range per column group or per sensed output
#: channel (column). "column", the old word, is read as "channel" from saved configs.
AdcGranularity = Literal["tensor", "channel"]
#: Drift compensation: "global" is aihwkit 1.2.0's GlobalDriftCompensation (one-hot read-outs,
#: mean |output|), "global_ones" one all-ones read-out, "per_column" aihwkit's
#: PerColumnDriftCompensation (see :func:`imssa.crossbar.tile.compensation`).
Compensation = Literal["none", "global", "global_ones", "per_column"]
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)
ADC_GRANULARITIES: tuple[str, ...] = get_args(AdcGranularity)
COMPENSATIONS: tuple[str, ...] = get_args(Compensation)
_OLD_WORDS = {"adc_granularity": {"column": "channel"}}
MIN_BITS, MAX_BITS = 2, 16
EPS_RANGE = 1e-30  # smallest converter range, so an all-zero calibration gives zeros, not NaN


def _check_bits(name: str, bits: Any) -> None:
    if bits is None:
        return
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ImssaError(f"PeripheryConfig.{name} must be None (ideal) or an integer in "
                         f"{MIN_BITS}..{MAX_BITS}, got {bits!r}")


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    if value is None:
        return
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and (value >= 0 if allow_zero else value > 0))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ImssaError(f"PeripheryConfig.{name} must be a finite number {bound}, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class PeripheryConfig:
    """DACs, ADCs, output noise, state register and drift compensation of every crossbar.

    Attributes:
        dac_bits: input DAC resolution, 2..16; None = ideal (no clipping, no rounding).
        dac_range: input range r of every DAC (inputs clipped to [-r, r], in input units); None
            calibrates one range per driven signal.
        adc_bits: ADC resolution, 2..16; None = ideal (no rounding, no saturation).
        adc_granularity: one ADC range per column group ("tensor") or per sensed output
            ("channel": a dense output, a state column of a (channel, mode), a channel of C).
        calibration: how calibrated ranges are taken: max |v| or a percentile of |v|.
        percentile: the percentile of ``calibration="percentile"``, in (50, 100].
        output_noise: std of additive Gaussian noise on each sensed column, relative to its ADC
            range (needs a range, so it is calibrated even with an ideal ADC).
        read_noise_mode: "per_step" (fresh device read noise at every recurrent step) or
            "per_inference" (one read per inference time, aihwkit's behaviour); None follows the
            device config's ``read_noise_mode``.
        state_bits: resolution of the state register fed back every step, 2..16; None keeps it
            in full precision.
        state_clip: bound of the state register: real and imaginary parts clipped to
            [-state_clip, state_clip] every step (and the range of ``state_bits``); None
            calibrates the range when ``state_bits`` is set, and does not clip otherwise.
        drift_compensation: "none", "global" (one gain per column group and chip, aihwkit's
            one-hot read-outs), "global_ones" (the same from one all-ones read-out) or
            "per_column" (one per output), from a reference read-out at programming time.
    """

    dac_bits: int | None = None
    dac_range: float | None = None
    adc_bits: int | None = None
    adc_granularity: AdcGranularity = "tensor"
    calibration: Calibration = "maxabs"
    percentile: float = 99.99
    output_noise: float = 0.0
    read_noise_mode: ReadNoiseMode | None = None
    state_bits: int | None = None
    state_clip: float | None = None
    drift_compensation: Compensation = "none"

    def __post_init__(self) -> None:
        for name in ("dac_bits", "adc_bits", "state_bits"):
            _check_bits(name, getattr(self, name))
        _check_positive("dac_range", self.dac_range)
        _check_positive("state_clip", self.state_clip)
        _check_positive("output_noise", self.output_noise, allow_zero=True)
        if self.adc_granularity not in ADC_GRANULARITIES:
            raise ImssaError(f"PeripheryConfig.adc_granularity must be one of "
                             f"{ADC_GRANULARITIES}, got {self.adc_granularity!r}")
        if self.calibration not in CALIBRATIONS:
            raise ImssaError(f"PeripheryConfig.calibration must be one of {CALIBRATIONS}, "
                             f"got {self.calibration!r}")
        p = self.percentile
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 50.0 < p <= 100.0:
            raise ImssaError(f"PeripheryConfig.percentile must be in (50, 100], got {p!r}")
        if self.read_noise_mode is not None and self.read_noise_mode not in READ_NOISE_MODES:
            raise ImssaError(f"PeripheryConfig.read_noise_mode must be None (the device's) or one "
                             f"of {READ_NOISE_MODES}, got {self.read_noise_mode!r}")
        if self.drift_compensation not in COMPENSATIONS:
            raise ImssaError(f"PeripheryConfig.drift_compensation must be one of {COMPENSATIONS}, "
                             f"got {self.drift_compensation!r}")

    @property
    def needs_dac_ranges(self) -> bool:
        return self.dac_bits is not None and self.dac_range is None

    @property
    def needs_adc_ranges(self) -> bool:
        return self.adc_bits is not None or self.output_noise > 0

    @property
    def needs_state_ranges(self) -> bool:
        return self.state_bits is not None and self.state_clip is None

    @property
    def needs_calibration(self) -> bool:
        """Whether some range has to be calibrated from data before a forward pass."""
        return self.needs_dac_ranges or self.needs_adc_ranges or self.needs_state_ranges

    def observer(self, group_shape: tuple[int, ...] = ()) -> RangeObserver:
        """A range observer for one converter group (imssa.quant's, exact streaming percentiles)."""
        spec = QuantSpec(symmetric=True, calibration=self.calibration,
                         percentile=float(self.percentile))
        return RangeObserver(spec, group_shape)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PeripheryConfig:
        """From :meth:`to_dict`; a saved config's old words are translated."""
        return cls(**{k: _OLD_WORDS.get(k, {}).get(v, v) if isinstance(v, str) else v
                      for k, v in d.items()})


def levels(bits: int) -> int:
    """q = 2^(b-1) - 1: the largest code of a b-bit narrow signed grid (imssa.quant's)."""
    return 2 ** (bits - 1) - 1


def grid_step(r: Tensor, bits: int) -> Tensor:
    """Step r / q of the b-bit narrow signed grid of [-r, r], r clamped at EPS_RANGE: the one
    formula of every converter (and of the fused kernel's precomputed steps)."""
    return r.clamp_min(EPS_RANGE) / levels(bits)


def quantize_symmetric(v: Tensor, r: Tensor | float, bits: int) -> Tensor:
    """Round v to the b-bit narrow signed grid of [-r, r] and saturate: a DAC or ADC transfer.

    Args:
        v: real tensor (a new tensor is returned; v is not modified).
        r: range, scalar or broadcastable to v, > 0 (clamped at 1e-30).
        bits: 2..16.
    """
    q = levels(bits)
    step = grid_step(torch.as_tensor(r, dtype=v.dtype, device=v.device), bits)
    return torch.round(v / step).clamp_(-q, q).mul_(step)


def dac(v: Tensor, r: Tensor | float | None, bits: int | None) -> Tensor:
    """Input DAC: identity when ideal (bits None), else clip to [-r, r] and round to b bits.

    Complex inputs (states as complex numbers) convert real and imaginary parts alike.
    """
    if bits is None:
        return v
    if r is None:
        raise ImssaError("a DAC with dac_bits set needs a range: give dac_range or calibrate")
    if v.is_complex():
        return torch.complex(quantize_symmetric(v.real, r, bits),
                             quantize_symmetric(v.imag, r, bits))
    return quantize_symmetric(v, r, bits)


def sense(mean: Tensor, var: Tensor | None, r: Tensor | None, cfg: PeripheryConfig,
          generator: torch.Generator | None) -> Tensor:
    """Sensed column outputs: currents plus read and output noise, through the ADC.

    Args:
        mean: (..., cols) noiseless column outputs (weight units; a new tensor, modified in place).
        var: read-noise variance per output, like mean (a new tensor, overwritten), or None when
            the devices read noiselessly.
        r: ADC range broadcastable to mean's trailing dims (needed when adc_bits is set or
            output_noise > 0; None otherwise).
        generator: source of the noise.

    Returns:
        mean + N(0, var + (output_noise * r)^2), then rounded to the ADC grid and saturated.
    """
    if cfg.output_noise > 0:
        if r is None:
            raise ImssaError("output noise needs calibrated ADC ranges; call calibrate first")
        out_var = (cfg.output_noise * r).square()
        var = out_var if var is None else var + out_var
    if var is not None:
        mean = mean.addcmul_(var.sqrt_(), randn_like(mean, generator))
    if cfg.adc_bits is None:
        return mean
    if r is None:
        raise ImssaError("an ADC with adc_bits set needs calibrated ranges; call calibrate first")
    q = levels(cfg.adc_bits)
    step = grid_step(r, cfg.adc_bits)
    return mean.div_(step).round_().clamp_(-q, q).mul_(step)


def register(x: Tensor, r: Tensor | None, cfg: PeripheryConfig) -> Tensor:
    """The state register: clip to [-state_clip, state_clip] and round to state_bits.

    Args:
        x: state as real pairs (..., 2) or complex.
        r: the register's range (state_clip, or calibrated); needed when state_bits is set.
    """
    if cfg.state_bits is not None:
        if r is None:
            raise ImssaError("state_bits needs a state range: give state_clip or calibrate")
        return dac(x, r, cfg.state_bits)
    if cfg.state_clip is not None:
        if x.is_complex():
            return torch.complex(x.real.clamp(-cfg.state_clip, cfg.state_clip),
                                 x.imag.clamp(-cfg.state_clip, cfg.state_clip))
        return x.clamp(-cfg.state_clip, cfg.state_clip)
    return x
