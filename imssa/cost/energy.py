"""Per-operation energy and latency figures of the hardware cost model, in one frozen config.

Every figure is an estimate taken from the literature, not a measurement of a chip: the cost
model multiplies them by operation counts to give the order of magnitude of energy and latency
per inference, and how they move with a design choice (bits, devices per weight, mapping form,
parts kept digital). Technology nodes differ between the sources (32 nm for ISAAC's periphery,
40 nm Aladdin, 45 nm Horowitz); nothing is rescaled between nodes.

Sources:

- [ISAAC] A. Shafiee et al., "ISAAC: A Convolutional Neural Network Accelerator with In-Situ
  Analog Arithmetic in Crossbars", ISCA 2016, Table II (32 nm): per in-situ multiply-accumulate
  unit, eight 128x128 memristor arrays at 2.4 mW read in a 100 ns cycle, 8 x 128 one-bit DACs at
  4 mW, eight 8-bit 1.2 GS/s ADCs at 16 mW (one per array's 128 columns), 16-bit fixed-point
  digital datapath. The per-operation figures below are those of the ISAAC models of the
  hwcomponents library (Accelergy project, ``hwcomponents_library/library/isaac.py``).
- [Kull] L. Kull et al., "A 3.1 mW 8b 1.2 GS/s single-channel asynchronous SAR ADC with
  alternate comparators for enhanced speed in 32 nm digital SOI CMOS", ISSCC 2013: ISAAC's ADC,
  16 mW / (8 x 1.2 GS/s) = 1.67 pJ per conversion.
- [Saberi] M. Saberi et al., "Analysis of power consumption and linearity in capacitive
  digital-to-analog converters used in successive approximation ADCs", IEEE TCAS-I 2011: the
  rule by which hwcomponents scales ISAAC's ADC to 4..10 bits (0.79, 0.99, 1.20, 1.42, 1.67,
  1.97, 2.38 pJ).
- [Murmann] B. Murmann, "ADC Performance Survey 1997-2023", github.com/bmurmann/ADC-survey:
  above about 10 bits the best converters are limited by thermal noise, whose energy grows
  4x per bit (a constant Schreier figure of merit); the hwcomponents-adc model (Andrulis et al.,
  arXiv:2404.06553) is fitted to it.
- [Aladdin] Y. S. Shao et al., "Aladdin: a pre-RTL, power-performance accelerator simulator",
  ISCA 2014 (40 nm), as tabulated by hwcomponents: a register read or write 0.009 pJ per bit.
- [Horowitz] M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC
  2014 (45 nm): integer add 0.03 pJ (8 bit) / 0.1 pJ (32 bit), integer multiply 0.2 pJ (8 bit) /
  3.1 pJ (32 bit), float32 add 0.9 pJ and multiply 3.7 pJ, a 64-bit read of an 8 KB SRAM 10 pJ.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from imssa.errors import ImssaError

#: ISAAC's ADC per conversion (pJ) at 4..10 bits, as scaled by hwcomponents [Saberi, Kull].
ADC_TABLE_PJ: dict[int, float] = {4: 0.79, 5: 0.99, 6: 1.20, 7: 1.42, 8: 1.67, 9: 1.97,
                                  10: 2.38}
#: Energy growth per bit of an ADC above the table: thermal-noise limited, 4x per bit [Murmann].
ADC_THERMAL_RATIO = 4.0


@dataclass(frozen=True, kw_only=True)
class EnergyConfig:
    """Energy (pJ) and latency (s) per operation; defaults cited in the module docstring.

    Attributes:
        adc_pj: ADC energy per conversion by bits; other bit widths follow :func:`adc_energy`.
        dac_pj_per_bit: DAC energy per converted value and bit: ISAAC's one-bit DAC (0.417 pJ
            per drive in hwcomponents [ISAAC]), a b-bit value costing b of them (b bit-serial
            drives, or a ladder of b sections).
        cell_read_pj: energy of one device in one array read: 2.4 mW / (8 x 128 x 128 cells) x
            100 ns = 1.83 fJ [ISAAC].
        add_pj_8, add_pj_32: integer add at 8 and 32 bits [Horowitz]; multiply likewise
            (``mult_pj_8``, ``mult_pj_32``); other widths: the power law through the two.
        add_pj_fp32, mult_pj_fp32: float32 add and multiply, for full-precision tensors.
        register_pj_per_bit: register read or write per bit [Aladdin].
        sram_pj_per_bit: SRAM read per bit, 10 pJ / 64 bits [Horowitz]: a digital weight read
            for each of its multiply-accumulates.
        digital_bits: width of the digital periphery of the crossbar (piece sums, (y, -y)
            averages, compensation gains, the increment form's accumulator, residual adds,
            pooling, activations): ISAAC's 16-bit datapath [ISAAC].
        accumulator_bits: accumulator width of a digital multiply-accumulate of quantized
            tensors (32-bit integer adds).
        activation_ops: multiplies and adds of one activation (GELU, the GLU's sigmoid), each:
            2, the hard GELU x relu6(x + 3) / 6 of Q-S5 as a multiply, a scale and two clamps.
        ideal_bits: bits whose energy a converter simulated as ideal (None) is charged.
        read_s: one array read (drive, settle, integrate): 100 ns [ISAAC].
        adc_s: one ADC conversion, 1 / 1.2 GS/s [Kull]; ``columns_per_adc``: columns sharing an
            ADC, 128 [ISAAC] (a tile of c columns has ceil(c / 128) ADCs).
        digital_s: one digital operation, 1 ns (a 1 GHz clock, as Aladdin's tables);
            ``digital_lanes``: digital operations in parallel, 128 (one per column of a 128-column
            array: an assumption, ISAAC gives no figure).
    """

    adc_pj: tuple[tuple[int, float], ...] = tuple(ADC_TABLE_PJ.items())
    dac_pj_per_bit: float = 0.41667
    cell_read_pj: float = 2.4e-3 / (8 * 128 * 128) * 100e-9 * 1e12
    add_pj_8: float = 0.03
    add_pj_32: float = 0.1
    mult_pj_8: float = 0.2
    mult_pj_32: float = 3.1
    add_pj_fp32: float = 0.9
    mult_pj_fp32: float = 3.7
    register_pj_per_bit: float = 0.009
    sram_pj_per_bit: float = 10.0 / 64
    digital_bits: int = 16
    accumulator_bits: int = 32
    activation_ops: int = 2
    ideal_bits: int = 8
    read_s: float = 100e-9
    adc_s: float = 1 / 1.2e9
    columns_per_adc: int = 128
    digital_s: float = 1e-9
    digital_lanes: int = 128

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "adc_pj":
                if not v or any(not (isinstance(b, int) and b >= 1 and e > 0) for b, e in v):
                    raise ImssaError("EnergyConfig.adc_pj must be non-empty (bits >= 1, pJ > 0) "
                                     f"pairs, got {v!r}")
                object.__setattr__(self, "adc_pj", tuple(sorted((int(b), float(e))
                                                                for b, e in v)))
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v <= 0:
                raise ImssaError(f"EnergyConfig.{f.name} must be a finite number > 0, got {v!r}")
        for name in ("digital_bits", "accumulator_bits", "activation_ops", "ideal_bits",
                     "columns_per_adc", "digital_lanes"):
            if not isinstance(getattr(self, name), int):
                raise ImssaError(f"EnergyConfig.{name} must be an integer, got "
                                 f"{getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    # --- per-operation energies (pJ) --------------------------------------------------------
    def adc(self, bits: int | None) -> float:
        return adc_energy(self.ideal_bits if bits is None else bits, self.adc_pj)

    def dac(self, bits: int | None) -> float:
        return self.dac_pj_per_bit * (self.ideal_bits if bits is None else bits)

    def add(self, bits: int | None) -> float:
        """An add at ``bits`` (None: float32)."""
        if bits is None:
            return self.add_pj_fp32
        return _power_law(bits, (8, self.add_pj_8), (32, self.add_pj_32))

    def mult(self, bits_a: int | None, bits_b: int | None) -> float:
        """A ``bits_a`` x ``bits_b`` multiply (either None: float32), at the geometric mean
        width."""
        if bits_a is None or bits_b is None:
            return self.mult_pj_fp32
        return _power_law(math.sqrt(bits_a * bits_b), (8, self.mult_pj_8), (32, self.mult_pj_32))

    def mac(self, weight_bits: int | None, input_bits: int | None) -> float:
        """A digital multiply-accumulate: the multiply and an accumulator add."""
        full = weight_bits is None or input_bits is None
        return self.mult(weight_bits, input_bits) + self.add(None if full
                                                             else self.accumulator_bits)

    def activation(self) -> float:
        return self.activation_ops * (self.mult(self.digital_bits, self.digital_bits)
                                      + self.add(self.digital_bits))


#: The cited defaults.
DEFAULT_ENERGY = EnergyConfig()


def _power_law(x: float, p0: tuple[float, float], p1: tuple[float, float]) -> float:
    """The power law e = e0 (x / x0)^k through p0 = (x0, e0) and p1 = (x1, e1)."""
    (x0, e0), (x1, e1) = p0, p1
    k = math.log(e1 / e0) / math.log(x1 / x0)
    return e0 * (x / x0) ** k


def adc_energy(bits: int, table: tuple[tuple[int, float], ...] = tuple(ADC_TABLE_PJ.items())
               ) -> float:
    """ADC energy per conversion (pJ) at ``bits``, from ``table`` ((bits, pJ) pairs, sorted).

    The rule: a tabulated width gives its figure; between two tabulated widths the energy is
    geometric in bits (linear in log energy); below the table it falls by the ratio of its two
    lowest entries per bit (about 1.25x per bit with the defaults), and above it grows
    :data:`ADC_THERMAL_RATIO` (4x) per bit, the thermal-noise limit of the Murmann survey.
    """
    table = tuple(sorted(table))
    known = dict(table)
    if bits in known:
        return known[bits]
    (b_lo, e_lo), (b_hi, e_hi) = table[0], table[-1]
    if bits < b_lo:
        ratio = table[1][1] / e_lo if len(table) > 1 else 2.0
        return e_lo * ratio ** (bits - b_lo)
    if bits > b_hi:
        return e_hi * ADC_THERMAL_RATIO ** (bits - b_hi)
    (b0, e0), (b1, e1) = next((a, b) for a, b in zip(table, table[1:]) if a[0] < bits < b[0])
    return e0 * (e1 / e0) ** ((bits - b0) / (b1 - b0))
