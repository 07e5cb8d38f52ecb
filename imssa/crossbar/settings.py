"""Per-tensor hardware settings and the checks of a mapping form, before any work.

A per-tensor setting overrides, for the tensors an :mod:`imssa.names` selector picks (``A``,
``blocks.0.ssm.A_bar``, ``encoder``, ...), fields of the memristor's config (program-and-verify
tolerance ``verify_tol``, devices per weight ``n_devices``, or any other field of it) or the
converter bits of the periphery (:data:`PER_TENSOR_PERIPHERY`), e.g. ``{"A": {"verify_tol":
0.005, "n_devices": 4, "adc_bits": 10}}``. Later entries win over earlier ones.

A converter that serves several tensors (the state columns of A_bar and B_bar share one ADC,
DAC(x) drives A_bar's and C's rows) takes the finest setting among them: the most bits, an
ideal converter (None) finest of all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from imssa.crossbar.periphery import PeripheryConfig
from imssa.devices import Device, device_from_config
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig
from imssa.names import select

#: Periphery fields a per-tensor setting may override.
PER_TENSOR_PERIPHERY: tuple[str, ...] = ("dac_bits", "adc_bits")
#: Per-tensor settings, normalized: (selector, ((field, value), ...)), in the order given.
PerTensor = tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]


def normalize_per_tensor(per_tensor: Mapping[str, Mapping[str, Any]] | Iterable[Any] | None
                         ) -> PerTensor:
    """A mapping {selector: {field: value}} or (selector, fields) pairs -> :data:`PerTensor`."""
    if not per_tensor:
        return ()
    items = per_tensor.items() if isinstance(per_tensor, Mapping) else per_tensor
    out = []
    for item in items:
        if isinstance(item, str) or len(item) != 2:
            raise ImssaError(f"per_tensor: each entry is (selector, {{field: value}}), got "
                             f"{item!r}")
        selector, fields = item
        fields = dict(fields)
        if not fields:
            raise ImssaError(f"per_tensor {selector!r}: no settings given")
        out.append((str(selector), tuple(fields.items())))
    return tuple(out)


def check_fields(per_tensor: PerTensor, memristor_fields: Iterable[str] | None = None) -> None:
    """Every field is a memristor-config field (when known) or one of
    :data:`PER_TENSOR_PERIPHERY`; a clear error naming the allowed ones otherwise."""
    for selector, fields in per_tensor:
        for field, _ in fields:
            if field in PER_TENSOR_PERIPHERY:
                continue
            if memristor_fields is not None and field not in memristor_fields:
                raise ImssaError(f"per_tensor {selector}: {field!r} is neither a memristor "
                                 f"setting ({', '.join(sorted(memristor_fields))}) nor one of "
                                 f"{', '.join(PER_TENSOR_PERIPHERY)}")


def tensor_settings(per_tensor: PerTensor, universe: list[str], kept: set[str],
                    memristor: Device, periphery: PeripheryConfig
                    ) -> dict[str, tuple[Device, PeripheryConfig]]:
    """The memristor and periphery of every analog tensor that a setting changes, by path.

    Raises:
        ImssaError: a selector that picks only parts kept digital, an unknown field, or a value
            the memristor or periphery config refuses.
    """
    check_fields(per_tensor, [f.name for f in dataclasses.fields(memristor.config)])
    merged: dict[str, dict[str, Any]] = {}
    for selector, fields in per_tensor:
        names = [n for n in select(selector, universe, what="tensor of a per-tensor setting")
                 if n not in kept]
        if not names:
            raise ImssaError(f"per_tensor {selector}: every tensor it selects is kept digital; "
                             "a hardware setting needs an analog tensor")
        for name in names:
            merged.setdefault(name, {}).update(fields)
    out = {}
    for name, fields in merged.items():
        mem = {k: v for k, v in fields.items() if k not in PER_TENSOR_PERIPHERY}
        per = {k: v for k, v in fields.items() if k in PER_TENSOR_PERIPHERY}
        try:
            device = device_from_config(dataclasses.replace(memristor.config, **mem)) \
                if mem else memristor
            out[name] = (device, dataclasses.replace(periphery, **per) if per else periphery)
        except ImssaError as err:
            raise ImssaError(f"per_tensor {name}: {err}") from None
    return out


def finest(configs: Iterable[PeripheryConfig], base: PeripheryConfig) -> PeripheryConfig:
    """The periphery of a converter serving tensors of ``configs``: ``base`` with the most
    DAC and ADC bits among them (None, ideal, is finest); ``base`` itself for none."""
    configs = list(configs)
    if not configs or all(c == base for c in configs):
        return base
    fields = {}
    for name in PER_TENSOR_PERIPHERY:
        bits = [getattr(c, name) for c in configs]
        fields[name] = None if None in bits else max(bits)
    return dataclasses.replace(base, **fields)


def check_forms(mapping: MappingConfig, periphery: PeripheryConfig, *,
                analog_A: bool = True, real: bool | None = None) -> None:
    """The mapping form of A_bar against the rest of the setup, before any work.

    Args:
        analog_A: whether some layer's A_bar is on the crossbar (a form for a part kept
            digital is refused).
        real: whether the SSMs are real (None: not known yet, e.g. before the model is loaded).
    """
    if mapping.default_transition:
        return
    form = (f"MappingConfig.transition={mapping.transition!r}, "
            f"transition_scale={mapping.transition_scale!r}")
    if not analog_A:
        raise ImssaError(f"{form} maps A_bar, but every A_bar is kept digital; drop A from "
                         "digital or use the default transition")
    if mapping.transition_scale == "split":
        if real:
            raise ImssaError("MappingConfig.transition_scale='split' needs complex modes; the "
                             "model's SSMs are real (no off-diagonal entries): use 'mode'")
        if periphery.drift_compensation == "per_column":
            raise ImssaError("MappingConfig.transition_scale='split' does not support "
                             "PeripheryConfig.drift_compensation='per_column' (its A_bar "
                             "columns are summed in pairs); use 'global' or 'global_ones'")
    if mapping.transition == "increment":
        acc, dac = periphery.state_bits, periphery.dac_bits
        if acc is not None and dac is not None and acc < dac:
            raise ImssaError(f"PeripheryConfig.state_bits={acc} (the increment form's "
                             f"accumulator) is narrower than the state it feeds back through "
                             f"the DAC, dac_bits={dac}; use state_bits >= {dac}")
