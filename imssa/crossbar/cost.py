"""What a converted model costs in hardware, as counts: devices, tiles, columns, programming
pulses, converter conversions per step and the state accumulator's bits.

Per mapped tensor (by module path):

- ``tiles``: crossbar tiles it occupies; ``rows``, ``columns``: word and bit lines of its logical
  crossbar matrix (a split A_bar has twice the columns of a direct one);
- ``devices``: programmed devices, every cell of a block (its idle g_min devices too) times the
  devices per weight (``n_devices``); ``pulses``: programming pulses of all of them, mean over
  the chips (one each without program-and-verify, more with it).

Per converter (``<module path>.<key>``, the names of the converter ranges): ``kind`` (dac, adc or
register), ``bits`` (None: ideal or full precision), ``per_step``: conversions per time step of
one sequence (values a DAC converts, sensed outputs an ADC reads: column pieces and both
polarities count; the register: state values it accumulates), and ``runs``: "step" for the
encoder, SSM and mixing, "sequence" for the decoder, which runs once on the pooled features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from imssa.crossbar.chips import AnalogPart
from imssa.crossbar.convert import analog_parts
from imssa.crossbar.linear import AnalogLinear
from imssa.crossbar.ssm import AnalogSSM


@dataclass(frozen=True)
class CrossbarCost:
    """Counts of one converted model; see the module docstring for every field."""

    tensors: dict[str, dict[str, Any]] = field(default_factory=dict)
    converters: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": self.tensors, "converters": self.converters, "totals": self.totals}

    def summary(self) -> str:
        """A small text table: one line per tensor, then the totals."""
        lines = [f"{'tensor':<22} {'tiles':>5} {'columns':>8} {'devices':>9} {'pulses':>10}"]
        for name, t in self.tensors.items():
            lines.append(f"{name:<22} {t['tiles']:>5} {t['columns']:>8} {t['devices']:>9} "
                         f"{t['pulses']:>10.0f}")
        lines.append(", ".join(f"{k} {v:g}" for k, v in self.totals.items()))
        return "\n".join(lines)


def _converters(part: AnalogPart) -> dict[str, tuple[int, Any]]:
    """Conversions per step and bits of each converter the part uses."""
    periphery = part.chips.periphery
    out: dict[str, tuple[int, Any]] = {}
    served = part.served()
    for key, kind in part.CONVERTERS.items():
        tiles = served.get(key, [])
        cfg = part.converter(key)
        if kind == "register":
            assert isinstance(part, AnalogSSM)
            out[key] = (part.exact.A_bar.numel() * part.pairs, periphery.state_bits)
        elif not tiles:
            continue
        elif kind == "adc":
            out[key] = (max(t.role.sensed(t.target.W) for t in tiles), cfg.adc_bits)
        elif isinstance(part, AnalogLinear):
            out[key] = (part.in_features, cfg.dac_bits)
        else:
            assert isinstance(part, AnalogSSM)
            H, M = part.exact.A_bar.shape
            out[key] = (H if key == "input" else H * M * part.pairs, cfg.dac_bits)
    return out


def crossbar_cost(model: nn.Module) -> CrossbarCost:
    """The hardware counts of a converted model (:func:`imssa.crossbar.convert`)."""
    cost = CrossbarCost()
    totals = dict.fromkeys(("tiles", "columns", "devices", "pulses", "dac_per_step",
                            "adc_per_step", "dac_per_sequence", "adc_per_sequence"), 0.0)
    for part in analog_parts(model):
        for tile in part.tiles():
            t = tile.tensor
            n_dev = tile.memristor.config.n_devices
            row = {"tiles": t.n_tiles, "rows": t.layout.n_rows, "columns": t.layout.n_cols,
                   "devices": int(t.used_cells().sum()) * n_dev,
                   "pulses": float(tile.programmed.n_pulses.sum(dim=tuple(
                       range(1, tile.programmed.n_pulses.ndim))).double().mean()),
                   "n_devices": n_dev, "verify_tol": tile.memristor.config.verify_tol}
            cost.tensors[t.name] = row
            for k in ("tiles", "columns", "devices", "pulses"):
                totals[k] += row[k]
        runs = "sequence" if part.path == "decoder" else "step"
        for key, (count, bits) in _converters(part).items():
            kind = part.CONVERTERS[key]
            cost.converters[f"{part.path}.{key}"] = {"kind": kind, "bits": bits,
                                                     "per_step": count, "runs": runs}
            if kind != "register":
                totals[f"{kind}_per_{runs}"] += count
    cost.totals.update(totals)
    return cost
