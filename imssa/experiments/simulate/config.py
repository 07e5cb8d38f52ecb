"""What one simulation sweep is: :class:`SimulationConfig`, and inference times as text.

The memristor settings (one per ``setting`` of the result) are passed beside the config; see
:mod:`imssa.experiments.simulate.points`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from imssa.crossbar import PeripheryConfig, analog_names, check_forms, tensor_settings
from imssa.crossbar.settings import PerTensor, check_fields, normalize_per_tensor
from imssa.data import CALIBRATION_SAMPLES
from imssa.devices import check_time, parse_times
from imssa.errors import ImssaError
from imssa.experiments.io import parse_value
from imssa.mapping import MappingConfig
from imssa.names import ALIASES, layer_generic, select
from imssa.ssm import S4DModel

Split = Literal["test", "val"]
SPLITS: tuple[str, ...] = get_args(Split)
#: Where each setting's conductance window comes from, see :class:`SimulationConfig`.
Window = Literal["memristor", "mapping"]
WINDOWS: tuple[str, ...] = get_args(Window)
#: The memristor model of the command line when none is named.
DEFAULT_MEMRISTOR = "pcm"


def _check_int(name: str, value: Any, low: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = "" if low is None else f" >= {low}"
        raise ImssaError(f"SimulationConfig.{name} must be an integer{bound}, got {value!r}")


def parse_per_tensor(text: str) -> tuple[str, dict[str, Any]]:
    """``"A:verify_tol=0.005,n_devices=4"`` -> ("A", {"verify_tol": 0.005, "n_devices": 4})."""
    selector, sep, rest = text.partition(":")
    if not sep or not selector.strip() or not rest.strip():
        raise ImssaError(f"SimulationConfig.per_tensor: write SELECTOR:FIELD=VALUE[,...], e.g. "
                         f"A:verify_tol=0.005,n_devices=4,adc_bits=10; got {text!r}")
    fields: dict[str, Any] = {}
    for item in rest.split(","):
        field, eq, value = item.partition("=")
        if not eq or not field.strip():
            raise ImssaError(f"SimulationConfig.per_tensor {text!r}: {item!r} is not FIELD=VALUE")
        fields[field.strip()] = parse_value(value.strip())
    return selector.strip(), fields


def check_model(config: SimulationConfig, model: S4DModel, settings: Sequence[Any]) -> None:
    """What needs the model, before any work: the mapping form against its SSMs and the digital
    parts, and the per-tensor settings against every setting's memristor."""
    n = len(model.blocks)
    universe = analog_names(n)
    kept = set(select(config.digital, universe)) if config.digital else set()
    real = any(not torch.is_complex(b.ssm.discrete().A_bar) for b in model.blocks)
    analog_A = any(f"blocks.{i}.ssm.A_bar" not in kept for i in range(n))
    for s in settings:
        check_forms(s.mapping, config.periphery, analog_A=analog_A, real=real)
        tensor_settings(config.per_tensor, universe, kept, s.memristor, config.periphery)


def check_digital(selectors: tuple[str, ...], n_layers: int | None = None) -> None:
    """Every selector of ``digital`` names parts the crossbar can keep digital
    (:func:`imssa.crossbar.analog_names`: of any layer, or of a model of ``n_layers`` blocks)."""
    if n_layers is None:  # the form only: which layers exist is known from the model
        universe = [layer_generic(n) for n in analog_names(1)]
        selectors = tuple(layer_generic(s) for s in selectors)
    else:
        universe = analog_names(n_layers)
    try:
        select(selectors, universe, what="part to keep digital")
    except ImssaError as err:
        raise ImssaError(f"SimulationConfig.digital: {err}") from None


@dataclass(frozen=True, kw_only=True)
class SimulationConfig:
    """One simulation sweep: times, chips, mapping, periphery, data and seeds.

    Attributes:
        t_inference: times since programming (s), each >= 0; text such as "1s,1h,1d" is read
            with :func:`parse_times`.
        chips: chip instances per setting.
        mapping: weight -> conductance mapping (tiles, encoding, granularity, window).
        window: "memristor" maps every setting onto its memristor's conductance window
            (g_min, g_max; the mapping's own window is not used), "mapping" onto the mapping's
            window, which must lie inside every memristor's.
        periphery: DACs, ADCs, noise, state register, drift compensation.
        digital: parts computed digitally, as :mod:`imssa.names` selectors (aliases A, B, C,
            D, encoder, mix, decoder, or module paths such as ``blocks.0.ssm.A_bar`` or
            ``blocks.1.mix``; see :func:`imssa.crossbar.analog_names`).
        split: the split classified, "test" or "val".
        limit: first ``limit`` samples of every split; None = all.
        calibration_samples: training sequences of :func:`imssa.data.calibration_subset` that
            calibrate the converter ranges.
        batch_size: sequences per forward pass (memory ~ chips x batch x length x width).
        seed: seeds programming (per setting) and noise (per setting and time).
        data_dir: dataset folder; None uses the run's.
        device: the torch device, "auto", "cpu", "cuda", "cuda:1", ...
        per_tensor: hardware settings of single tensors (:mod:`imssa.crossbar.settings`):
            {selector: {field: value}}, (selector, fields) pairs, or texts
            "A:verify_tol=0.005,n_devices=4,adc_bits=10"; stored normalized.
    """

    t_inference: tuple[float, ...] = (1.0, 3600.0, 86400.0, 365 * 86400.0)
    chips: int = 25
    mapping: MappingConfig = dataclasses.field(default_factory=MappingConfig)
    window: Window = "memristor"
    periphery: PeripheryConfig = dataclasses.field(default_factory=PeripheryConfig)
    digital: tuple[str, ...] = ()
    split: Split = "test"
    limit: int | None = None
    calibration_samples: int = CALIBRATION_SAMPLES
    batch_size: int = 256
    seed: int = 0
    data_dir: str | None = None
    device: str = "auto"
    per_tensor: PerTensor = ()

    def __post_init__(self) -> None:
        per = self.per_tensor
        items = [parse_per_tensor(p) if isinstance(p, str) else p
                 for p in (per.items() if isinstance(per, dict) else [per] if
                           isinstance(per, str) else per or ())]
        object.__setattr__(self, "per_tensor", normalize_per_tensor(items))
        check_fields(self.per_tensor)
        times: Any = self.t_inference
        if isinstance(times, str):
            times = parse_times(times, "SimulationConfig.t_inference")
        times = tuple(times) if isinstance(times, (list, tuple)) else (times,)
        if not times:
            raise ImssaError("SimulationConfig.t_inference needs at least one time (s)")
        object.__setattr__(self, "t_inference",
                           tuple(check_time(t, "SimulationConfig.t_inference") for t in times))
        digital = (self.digital,) if isinstance(self.digital, str) else tuple(self.digital)
        object.__setattr__(self, "digital", tuple(s.strip() for s in digital))
        check_digital(self.digital)
        for name in ("chips", "calibration_samples", "batch_size"):
            _check_int(name, getattr(self, name), 1)
        if self.limit is not None:
            _check_int("limit", self.limit, 1)
        _check_int("seed", self.seed, None)
        if self.split not in SPLITS:
            raise ImssaError(f"SimulationConfig.split must be one of {SPLITS}, got {self.split!r}")
        if self.window not in WINDOWS:
            raise ImssaError(f"SimulationConfig.window must be one of {WINDOWS}, "
                             f"got {self.window!r}")
        if not isinstance(self.mapping, MappingConfig):
            raise ImssaError(f"SimulationConfig.mapping must be a MappingConfig, got "
                             f"{type(self.mapping).__name__}")
        if not isinstance(self.periphery, PeripheryConfig):
            raise ImssaError(f"SimulationConfig.periphery must be a PeripheryConfig, got "
                             f"{type(self.periphery).__name__}")
        generic = {ALIASES.get(d, d) for d in self.digital}
        check_forms(self.mapping, self.periphery,
                    analog_A=not generic & {"blocks.*.ssm.A_bar", "blocks.*.ssm"})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (the nested configs as their dicts)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["t_inference"] = list(self.t_inference)
        d["digital"] = list(self.digital)
        d["mapping"] = self.mapping.to_dict()
        d["periphery"] = self.periphery.to_dict()
        d["per_tensor"] = [[sel, dict(fields)] for sel, fields in self.per_tensor]
        return d
