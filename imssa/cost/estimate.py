"""Operation counts of one inference and their energy and latency (:func:`estimate`).

One inference is one sequence of ``steps`` time steps on one chip. The encoder, SSMs, mixing
layers, activations and residual adds run every step, the decoder once, on the pooled features.

Crossbar parts (a model converted by :func:`imssa.crossbar.convert`), from the counts of
:func:`imssa.crossbar.crossbar_cost` (the one place that counts devices and conversions):

- every device of a tensor is read once per run (``device_reads``, ``cell_read_pj`` each), its
  weights are the ``analog_macs``; every DAC and ADC conversion costs its converter's bits;
- the digital periphery at ``digital_bits``: the sensed values an ADC reads are summed into
  its decoded outputs (column pieces, the (y, -y) polarities, the parts of a split A_bar: one
  add per sensed value beyond the first of each output); a drift-compensation gain is one
  multiply per decoded output; the increment form's accumulator one add per state value
  (``accumulator_adds``); the state register is written and read once per step.

Parts kept digital, and every part of a digital (float or quantized) model, at the bits of the
model's quantization config (float32 where a tensor is not quantized): a weight is one
multiply-accumulate per run (a complex A_bar entry four real ones per mode, i.e. two per stored
real value), read from SRAM at its bits; a bias one add; a digital SSM's state is a register of
its state bits (32 if not quantized). Stored bits come from :func:`imssa.quant.memory_footprint`.

Always digital: per block and step, GELU (H activations), GLU (H sigmoid activations and H
multiplies), the residual (H adds); mean pooling (H adds per step and H multiplies once).

Latency: per step, the ADC stages run one after another in graph order (encoder, per block
the state columns, the output columns and the mixing, then the decoder once); a stage takes one
array read plus its conversions spread over the ADCs of its tiles (``columns_per_adc`` columns
share one; the ``n_devices`` copies of a tensor's tiles share their ADCs, their bit lines
joined). Digital operations follow on ``digital_lanes`` lanes (a MAC, add or multiply is one
operation, an activation ``2 activation_ops``). Nothing overlaps: a pessimistic estimate.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from imssa.cost.energy import DEFAULT_ENERGY, EnergyConfig
from imssa.cost.report import UNITS, CostReport
from imssa.crossbar import ChipSet, crossbar_cost
from imssa.errors import ImssaError
from imssa.quant import make_config, memory_footprint
from imssa.quant.memory import FP_BITS
from imssa.ssm import S4DModel


def _input_point(name: str) -> str:
    """The activation point whose values weight ``name`` multiplies: ``encoder.input`` for
    ``encoder.weight``, ``blocks.i.ssm.x`` for A_bar and C, ``blocks.i.ssm.input`` for B_bar and
    D, ``blocks.i.activation.output`` for ``blocks.i.mix.weight``, ``decoder.input``."""
    head, _, last = name.rpartition(".")
    if head.endswith(".ssm"):
        return f"{head}.{'x' if last in ('A_bar', 'C') else 'input'}"
    if head.endswith(".mix"):
        return f"{head.rpartition('.')[0]}.activation.output"
    return f"{head}.input"


class _Tally:
    """Counts and energies (pJ) of one inference, with the latency's parts."""

    def __init__(self, energy: EnergyConfig, steps: int) -> None:
        self.e, self.steps = energy, steps
        self.n = dict.fromkeys(UNITS, 0.0)
        self.pj = dict.fromkeys(("adc", "dac", "array", "digital", "memory"), 0.0)
        self.analog_s = 0.0  # per inference
        self.ops = {"step": 0.0, "sequence": 0.0}  # digital operations per run

    def runs(self, runs: str) -> int:
        return self.steps if runs == "step" else 1

    def add(self, key: str | None, count: float, runs: str, category: str, pj: float,
            ops: float = 0.0) -> None:
        """``count`` operations per run of ``pj`` each, counted under ``key`` (if any)."""
        r = self.runs(runs)
        if key is not None:
            self.n[key] += count * r
        self.pj[category] += count * r * pj
        self.ops[runs] += ops * count

    def digital(self, key: str, count: float, runs: str, pj: float) -> None:
        self.add(key, count, runs, "digital", pj, ops=1.0)


def estimate(model: nn.Module, energy: EnergyConfig = DEFAULT_ENERGY, *, steps: int
             ) -> CostReport:
    """Hardware counts, energy and latency of one inference of ``model`` (module docstring).

    Args:
        model: a converted crossbar model (:func:`imssa.crossbar.convert`), or a digital
            S4DModel, float or quantized (:func:`imssa.quant.prepare`): then everything is
            digital and the counts are its digital operations and memory.
        energy: the per-operation figures (default: ``EnergyConfig()``).
        steps: time steps of the sequence (its length L).

    Returns:
        A :class:`CostReport`; its ``as_dict()`` holds every figure of
        :data:`imssa.cost.UNITS`. An estimate from literature figures, not a measurement.
    """
    if not isinstance(model, S4DModel):
        raise ImssaError(f"model must be an imssa S4DModel (digital, quantized or converted), "
                         f"got {type(model).__name__}")
    if not isinstance(energy, EnergyConfig):
        raise ImssaError(f"energy must be an imssa.cost.EnergyConfig, got "
                         f"{type(energy).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ImssaError(f"steps (the sequence length) must be an integer >= 1, got {steps!r}")
    tally = _Tally(energy, steps)
    tensors: dict[str, dict[str, Any]] = {}
    converters: dict[str, dict[str, Any]] = {}
    chips = getattr(model, "chips", None)
    if isinstance(chips, ChipSet):
        counts = crossbar_cost(model)
        tensors, converters = counts.tensors, counts.converters
        _crossbar(tally, counts.tensors, counts.converters,
                  chips.periphery.drift_compensation != "none")
    _digital(tally, model, set(tensors), set(converters))
    _graph(tally, model.cfg.d_model, model.cfg.n_layers)
    e = energy
    t = tally.n
    t["steps"] = float(steps)
    for k in ("tiles", "columns", "devices", "pulses"):
        t[k] = float(sum(r[k] for r in tensors.values()))
    capacity = sum(r["devices"] / r["utilization"] for r in tensors.values())
    t["utilization"] = t["devices"] / capacity if capacity else 0.0
    for k, pj in tally.pj.items():
        t[f"energy_{k}_nj"] = pj * 1e-3
    t["energy_nj"] = sum(tally.pj.values()) * 1e-3
    t["latency_s"] = (tally.analog_s
                      + steps * math.ceil(tally.ops["step"] / e.digital_lanes) * e.digital_s
                      + math.ceil(tally.ops["sequence"] / e.digital_lanes) * e.digital_s)
    return CostReport(totals={k: float(t[k]) for k in UNITS}, tensors=tensors,
                      converters=converters, energy=e.to_dict())


def _crossbar(tally: _Tally, tensors: dict[str, dict[str, Any]],
              converters: dict[str, dict[str, Any]], compensated: bool) -> None:
    """Device reads, conversions, periphery operations and ADC stages of the crossbar parts."""
    e = tally.e
    for r in tensors.values():
        tally.add("device_reads", r["devices"], r["runs"], "array", e.cell_read_pj)
        tally.n["analog_macs"] += r["weights"] * tally.runs(r["runs"])
    bits = e.digital_bits
    adcs: dict[str, int] = {}  # ADCs on the tiles each ADC group reads (one copy of them)
    for r in tensors.values():
        adcs[r["adc"]] = adcs.get(r["adc"], 0) + r["array_tiles"] * math.ceil(
            r["tile_cols"] / e.columns_per_adc)
    for name, c in converters.items():
        runs, per_step = c["runs"], c["per_step"]
        if c["kind"] == "dac":
            tally.add("dac_conversions", per_step, runs, "dac", e.dac(c["bits"]))
        elif c["kind"] == "adc":
            tally.add("adc_conversions", per_step, runs, "adc", e.adc(c["bits"]))
            tally.digital("digital_adds", per_step - c["decoded"], runs, e.add(bits))
            if compensated:
                tally.digital("compensation_mults", c["decoded"], runs, e.mult(bits, bits))
            tally.analog_s += tally.runs(runs) * (e.read_s
                                                  + math.ceil(per_step / adcs[name]) * e.adc_s)
        else:  # the state register: written and read every step
            width = FP_BITS if c["bits"] is None else c["bits"]
            tally.n["state_register_bits"] += per_step * width
            tally.add(None, 2 * per_step * width, runs, "memory", e.register_pj_per_bit)
            if c["increment"]:
                tally.digital("accumulator_adds", per_step, runs, e.add(bits))
    # the counts of the named sub-kinds are adds and multiplies too
    tally.n["digital_adds"] += tally.n["accumulator_adds"]
    tally.n["digital_mults"] += tally.n["compensation_mults"]


def _digital(tally: _Tally, model: S4DModel, analog: set[str], converters: set[str]) -> None:
    """Multiply-accumulates, SRAM reads and state registers of the parts kept digital."""
    e = tally.e
    config = getattr(model, "quant_config", None) or make_config("fp")
    complex_ssm = model.cfg.ssm == "complex"
    for row in memory_footprint(config, model.cfg).rows:
        name = row.name
        if row.kind == "activation" or name in analog or name.rpartition(".")[0] in analog:
            continue
        runs = "sequence" if name.startswith("decoder") else "step"
        bits = config.spec(name).bits
        if row.kind == "state":
            if f"{name.rpartition('.')[0]}.register" in converters:
                continue  # an analog SSM's register is counted with the crossbar
            width = row.bits
            tally.n["state_register_bits"] += row.elements * width
            tally.add(None, 2 * row.elements * width, runs, "memory", e.register_pj_per_bit)
            continue
        tally.n["digital_weight_bits"] += row.total_bits
        tally.add(None, row.elements * row.bits, runs, "memory", e.sram_pj_per_bit)
        if name.endswith(".bias"):  # added to the accumulator
            tally.digital("digital_adds", row.elements, runs,
                          e.add(None if bits is None else e.accumulator_bits))
            continue
        macs = row.elements * (2 if complex_ssm and name.endswith(".A_bar") else 1)
        tally.digital("digital_macs", macs, runs,
                      e.mac(bits, config.spec(_input_point(name)).bits))


def _graph(tally: _Tally, H: int, n_layers: int) -> None:
    """The digital parts every model has: activations, residual adds, mean pooling."""
    e = tally.e
    bits = e.digital_bits
    act_ops = 2 * e.activation_ops
    for _ in range(n_layers):
        tally.add("activations", 2 * H, "step", "digital", e.activation(), ops=act_ops)
        tally.digital("digital_mults", H, "step", e.mult(bits, bits))  # GLU's gate product
        tally.digital("digital_adds", H, "step", e.add(bits))  # residual
    tally.digital("digital_adds", H, "step", e.add(bits))  # running sum of the mean
    tally.digital("digital_mults", H, "sequence", e.mult(bits, bits))  # / L
