"""What a converted model costs in hardware, as counts: devices, tiles, columns, programming
pulses, converter conversions per step and the state accumulator's bits.

Per mapped tensor (by module path):

- ``tiles``: crossbar tiles it occupies, ``array_tiles`` of its layout times ``n_devices``: the
  ``n_devices`` devices of a weight sit at the same cell of ``n_devices`` copies of the layout's
  tiles, whose bit lines are joined before the ADC (their currents add, so the average the
  device model takes is one read and one conversion); ``array_tiles``: the tiles of one copy,
  the ones whose columns the ADCs read; ``rows``, ``columns``: word and bit lines of its
  logical crossbar matrix (a split A_bar has twice the columns of a direct one); ``cells``:
  programmed cells of one copy (every cell of a block, its idle g_min devices too);
  ``utilization``: devices / the device positions of its tiles (cells / the cells of one
  copy's tiles);
- ``weights``: the signed weights those cells hold (structural zeros of a block included), i.e.
  the multiply-accumulates one read performs: cells / 4 for the rows and columns of a
  polarity-doubled block (A_bar, B_bar), cells / 2 for any other (a differential pair, or the
  input polarities of C and D);
- ``devices``: cells times the devices per weight (``n_devices``); ``pulses``: programming pulses
  of all of them, mean over the chips (one each without program-and-verify, more with it);
- its hardware settings: ``n_devices``, ``verify_tol`` and the bits of the converters that drive
  and sense it (``dac_bits``, ``adc_bits``; a converter serving several tensors has the finest
  bits among them, :func:`imssa.crossbar.settings.finest`), and ``adc``, the name of the ADC
  reading its columns; ``tile_cols``: columns per tile.

Per converter (``<module path>.<key>``, the names of the converter ranges): ``kind`` (dac, adc or
register), ``bits`` (None: ideal or full precision), ``per_step``: conversions per time step of
one sequence (values a DAC converts, sensed outputs an ADC reads: column pieces and both
polarities count; the register: state values it holds, and ``increment``: whether it
accumulates them, the increment form), ``runs``: "step" for the
encoder, SSM and mixing, "sequence" for the decoder, which runs once on the pooled features;
ADCs also give ``decoded``, the outputs their conversions are summed into digitally (column
pieces, the (y, -y) polarities and the two parts of a split A_bar).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from imssa.crossbar.chips import AnalogPart
from imssa.crossbar.convert import analog_parts
from imssa.crossbar.linear import AnalogLinear
from imssa.crossbar.ssm import AnalogSSM
from imssa.crossbar.tile import AnalogTile
from imssa.mapping import Encoding


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
        return "\n".join([*tensor_table(self.tensors),
                          ", ".join(f"{k} {v:g}" for k, v in self.totals.items())])


def tensor_table(tensors: dict[str, dict[str, Any]]) -> list[str]:
    """Lines of a text table of :attr:`CrossbarCost.tensors`: tiles, columns, devices, pulses
    and the settings of each tensor (devices per weight, DAC and ADC bits, "-" for ideal)."""
    def bits(b: int | None) -> str:
        return "-" if b is None else str(b)

    lines = [f"{'tensor':<22} {'tiles':>5} {'columns':>8} {'devices':>9} {'pulses':>10} "
             f"{'n_dev':>5} {'dac':>4} {'adc':>4}"]
    for name, t in tensors.items():
        lines.append(f"{name:<22} {t['tiles']:>5} {t['columns']:>8} {t['devices']:>9} "
                     f"{t['pulses']:>10.0f} {t['n_devices']:>5} {bits(t['dac_bits']):>4} "
                     f"{bits(t['adc_bits']):>4}")
    return lines


def _decoded(part: AnalogPart, key: str) -> int:
    """Outputs per step that the conversions of ADC ``key`` are summed into."""
    if isinstance(part, AnalogLinear):
        return part.out_features
    assert isinstance(part, AnalogSSM)
    H, M = part.exact.A_bar.shape
    return H * M * part.pairs if key == "state" else H


def _converters(part: AnalogPart) -> dict[str, dict[str, Any]]:
    """Kind, bits and conversions per step of each converter the part uses (module doc)."""
    periphery = part.chips.periphery
    out: dict[str, dict[str, Any]] = {}
    served = part.served()
    for key, kind in part.CONVERTERS.items():
        tiles = served.get(key, [])
        cfg = part.converter(key)
        row: dict[str, Any] = {"kind": kind}
        if kind == "register":
            assert isinstance(part, AnalogSSM)
            row |= {"bits": periphery.state_bits,
                    "per_step": part.exact.A_bar.numel() * part.pairs,
                    "increment": part.increment}
        elif not tiles:
            continue
        elif kind == "adc":
            row |= {"bits": cfg.adc_bits,
                    "per_step": max(t.role.sensed(t.target.W) for t in tiles),
                    "decoded": _decoded(part, key)}
        elif isinstance(part, AnalogLinear):
            row |= {"bits": cfg.dac_bits, "per_step": part.in_features}
        else:
            assert isinstance(part, AnalogSSM)
            H, M = part.exact.A_bar.shape
            row |= {"bits": cfg.dac_bits,
                    "per_step": H if key == "input" else H * M * part.pairs}
        out[key] = row
    return out


def _weights(tile: AnalogTile, cells: int) -> int:
    """Signed weights held by ``cells`` programmed cells of the tile's tensor (module doc)."""
    t = tile.tensor
    return cells // (4 if t.encoding is Encoding.POLARITY_BLOCK and t.doubled else 2)


def crossbar_cost(model: nn.Module) -> CrossbarCost:
    """The hardware counts of a converted model (:func:`imssa.crossbar.convert`)."""
    cost = CrossbarCost()
    totals = dict.fromkeys(("tiles", "columns", "devices", "pulses", "dac_per_step",
                            "adc_per_step", "dac_per_sequence", "adc_per_sequence"), 0.0)
    for part in analog_parts(model):
        runs = "sequence" if part.path == "decoder" else "step"
        converters = _converters(part)
        served = part.served()
        for tile in part.tiles():
            t = tile.tensor
            n_dev = tile.memristor.config.n_devices
            cells = int(t.used_cells().sum())
            keys = {kind: key for key, kind in part.CONVERTERS.items()
                    if kind != "register" and tile in served.get(key, [])}
            bits = {"dac_bits": part.converter(keys["dac"]).dac_bits,
                    "adc_bits": part.converter(keys["adc"]).adc_bits,
                    "adc": f"{part.path}.{keys['adc']}"}
            tiles = t.n_tiles * n_dev
            row = {"tiles": tiles, "array_tiles": t.n_tiles, "rows": t.layout.n_rows,
                   "columns": t.layout.n_cols, "tile_cols": t.layout.tile_cols, "cells": cells,
                   "utilization": cells * n_dev / (tiles * t.layout.tile_rows * t.layout.tile_cols),
                   "weights": _weights(tile, cells), "devices": cells * n_dev,
                   "pulses": float(tile.programmed.n_pulses.sum(dim=tuple(
                       range(1, tile.programmed.n_pulses.ndim))).double().mean()),
                   "n_devices": n_dev, "verify_tol": tile.memristor.config.verify_tol,
                   **bits, "runs": runs}
            cost.tensors[t.name] = row
            for k in ("tiles", "columns", "devices", "pulses"):
                totals[k] += row[k]
        for key, row in converters.items():
            cost.converters[f"{part.path}.{key}"] = row | {"runs": runs}
            if row["kind"] != "register":
                totals[f"{row['kind']}_per_{runs}"] += row["per_step"]
    cost.totals.update(totals)
    return cost
