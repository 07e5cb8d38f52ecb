"""The result of the hardware cost model: per-inference figures with their units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from imssa.crossbar.cost import tensor_table

#: Every figure of :meth:`CostReport.as_dict`: name -> (units, what it is). Counts are per
#: inference (one sequence, all its time steps, on one chip) unless they say otherwise.
UNITS: dict[str, tuple[str, str]] = {
    "energy_nj": ("nJ", "energy per inference (estimate)"),
    "energy_adc_nj": ("nJ", "ADC energy per inference"),
    "energy_dac_nj": ("nJ", "DAC energy per inference"),
    "energy_array_nj": ("nJ", "crossbar array read energy per inference"),
    "energy_digital_nj": ("nJ", "digital arithmetic energy per inference"),
    "energy_memory_nj": ("nJ", "register and SRAM access energy per inference"),
    "latency_s": ("s", "latency per inference (estimate)"),
    "steps": ("1", "time steps per inference"),
    "tiles": ("1", "crossbar tiles (each tensor's times its devices per weight)"),
    "columns": ("1", "bit lines of the mapped tensors"),
    "devices": ("1", "programmed memristive devices"),
    "utilization": ("1", "programmed devices / device positions of the occupied tiles"),
    "pulses": ("1", "programming pulses, once per chip (mean over chips)"),
    "dac_conversions": ("1", "DAC conversions per inference"),
    "adc_conversions": ("1", "ADC conversions per inference"),
    "analog_macs": ("1", "multiply-accumulates on the crossbar per inference"),
    "device_reads": ("1", "device reads per inference"),
    "digital_macs": ("1", "digital multiply-accumulates per inference (parts kept digital)"),
    "digital_adds": ("1", "digital adds per inference"),
    "digital_mults": ("1", "digital multiplies per inference"),
    "activations": ("1", "activation evaluations (GELU, GLU sigmoid) per inference"),
    "accumulator_adds": ("1", "state accumulator adds of the increment form per inference"),
    "compensation_mults": ("1", "drift-compensation gain multiplies per inference"),
    "state_register_bits": ("bit", "bits of the state registers"),
    "digital_weight_bits": ("bit", "bits of the weights kept in digital memory"),
}


@dataclass(frozen=True)
class CostReport:
    """Per-inference hardware figures of one model (:func:`imssa.cost.estimate`).

    Attributes:
        totals: every figure of :data:`UNITS`, by name.
        tensors: per crossbar tensor (module path): tiles, columns, cells, devices, weights,
            utilization, pulses and its settings (n_devices, verify_tol, dac_bits, adc_bits);
            empty for a digital model (:func:`imssa.crossbar.crossbar_cost`).
        converters: per converter (``<module path>.<key>``): kind, bits, conversions per step.
        energy: the per-operation figures used.
    """

    totals: dict[str, float]
    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    converters: dict[str, dict[str, Any]] = field(default_factory=dict)
    energy: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """Every figure by name (units in :data:`UNITS`)."""
        return dict(self.totals)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: totals, tensors, converters and the energy config."""
        return {"totals": self.as_dict(), "tensors": self.tensors, "converters": self.converters,
                "energy": self.energy}

    def line(self) -> str:
        """One line: energy and its split, latency, devices, conversions, digital work."""
        t = self.totals
        total = t["energy_nj"] or 1.0
        split = ", ".join(f"{k} {100 * t[f'energy_{k}_nj'] / total:.0f} %"
                          for k in ("adc", "dac", "array", "digital", "memory"))
        return (f"{t['energy_nj']:.4g} nJ ({split}), {1e6 * t['latency_s']:.4g} µs per "
                f"inference of {t['steps']:.0f} steps; {t['devices']:.0f} devices on "
                f"{t['tiles']:.0f} tiles ({100 * t['utilization']:.0f} % used), "
                f"{t['pulses']:.0f} pulses; {t['dac_conversions']:.4g} DAC + "
                f"{t['adc_conversions']:.4g} ADC conversions, {t['analog_macs']:.4g} analog "
                f"MACs, {t['digital_macs']:.4g} digital MACs, "
                f"{t['digital_adds'] + t['digital_mults']:.4g} other digital ops; "
                f"{t['state_register_bits']:.0f} state-register bits (estimate)")

    def summary(self) -> str:
        """A text table: one line per crossbar tensor, then :meth:`line`."""
        return "\n".join([*(tensor_table(self.tensors) if self.tensors else []), self.line()])
