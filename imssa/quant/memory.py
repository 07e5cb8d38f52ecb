"""Memory footprint of a quantized S4D classifier on a streaming edge device.

The accounting, so that a reader can redo it by hand (H = d_model, N = d_state, d = d_input,
K = n_classes, per layer unless noted):

- parameters as deployed (the discrete system, not the continuous one it came from):
  encoder weight H*d and bias H (once); A_bar, B_bar, C: N/2 complex = N real values each;
  D: H; mixing weight 2H*H and bias 2H; decoder weight K*H and bias K (once);
- buffers a streaming device keeps: the state, H*N real values (N/2 complex per channel), and
  one vector per activation point: input d (once), SSM input, SSM output, GELU output and GLU
  output H each, pooled features H (once, the running sum of the mean);
- each at its target's bits (32 when full precision), plus the quantization parameters of each
  quantized tensor: per range group a 32-bit scale and, for asymmetric grids, a zero point of
  the tensor's bits (polar A_bar: three 32-bit numbers per group: log-decay offset and step,
  phase step). Groups: 1 per tensor, one per row (channel) or one per (channel, mode) of the
  state.

The reference is the same tensors and buffers as 32-bit floats; savings = 1 - total / reference.
"""

from __future__ import annotations

from dataclasses import dataclass

from imssa.errors import ImssaError
from imssa.quant.spec import QuantConfig, QuantSpec
from imssa.ssm.model import S4DConfig

FP_BITS = 32


@dataclass(frozen=True, kw_only=True)
class MemoryRow:
    """One stored tensor or buffer.

    Attributes:
        name: the tensor's path (``blocks.0.ssm.A_bar``).
        kind: ``parameter``, ``state`` or ``activation``.
        elements: real numbers stored (a complex number counts as two).
        bits: bits per element (32 when full precision).
        groups: range groups (0 when full precision).
        qparam_bits: bits of scales and zero points.
    """

    name: str
    kind: str
    elements: int
    bits: int
    groups: int
    qparam_bits: int

    @property
    def total_bits(self) -> int:
        return self.elements * self.bits + self.qparam_bits

    @property
    def fp32_bits(self) -> int:
        return self.elements * FP_BITS

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "elements": self.elements,
                "bits": self.bits, "groups": self.groups, "qparam_bits": self.qparam_bits,
                "total_bits": self.total_bits, "fp32_bits": self.fp32_bits}


@dataclass(frozen=True, kw_only=True)
class MemoryReport:
    """Rows of stored tensors and their totals against 32-bit floats."""

    rows: tuple[MemoryRow, ...]

    @property
    def total_bits(self) -> int:
        return sum(r.total_bits for r in self.rows)

    @property
    def fp32_bits(self) -> int:
        return sum(r.fp32_bits for r in self.rows)

    @property
    def total_bytes(self) -> float:
        return self.total_bits / 8

    @property
    def fp32_bytes(self) -> float:
        return self.fp32_bits / 8

    @property
    def savings_percent(self) -> float:
        """Memory saved against 32-bit floats, in %."""
        return 100.0 * (1.0 - self.total_bits / self.fp32_bits)

    @property
    def compression(self) -> float:
        """32-bit footprint / quantized footprint (e.g. 6.3 for '6x smaller')."""
        return self.fp32_bits / self.total_bits

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready): rows and totals."""
        return {"rows": [r.to_dict() for r in self.rows], "total_bits": self.total_bits,
                "fp32_bits": self.fp32_bits, "savings_percent": self.savings_percent,
                "compression": self.compression}

    def table(self) -> str:
        """The report as a fixed-width text table, ready to print in a doc or a terminal."""
        head = f"{'tensor':<28}{'kind':<11}{'elements':>10}{'bits':>6}{'qparams':>9}" \
               f"{'bits total':>12}{'fp32 bits':>12}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.name:<28}{r.kind:<11}{r.elements:>10}{r.bits:>6}{r.qparam_bits:>9}"
                         f"{r.total_bits:>12}{r.fp32_bits:>12}")
        lines.append("-" * len(head))
        lines.append(f"{'total':<28}{'':<11}{sum(r.elements for r in self.rows):>10}{'':>6}"
                     f"{sum(r.qparam_bits for r in self.rows):>9}{self.total_bits:>12}"
                     f"{self.fp32_bits:>12}")
        lines.append(f"{self.total_bytes / 1024:.2f} KiB vs {self.fp32_bytes / 1024:.2f} KiB "
                     f"at 32 bits: {self.savings_percent:.2f} % saved "
                     f"({self.compression:.2f}x smaller)")
        return "\n".join(lines)


def _row(name: str, kind: str, elements: int, spec: QuantSpec, channels: int, modes: int = 0,
         polar: bool = False) -> MemoryRow:
    if spec.bits is None:
        return MemoryRow(name=name, kind=kind, elements=elements, bits=FP_BITS, groups=0,
                         qparam_bits=0)
    groups = {"tensor": 1, "channel": channels, "mode": modes}[spec.granularity]
    per_group = 3 * FP_BITS if polar else FP_BITS + (0 if spec.symmetric else spec.bits)
    return MemoryRow(name=name, kind=kind, elements=elements, bits=spec.bits, groups=groups,
                     qparam_bits=groups * per_group)


def memory_footprint(config: QuantConfig, model_cfg: S4DConfig) -> MemoryReport:
    """Bits stored by the quantized model on a streaming device, row by row (see module doc).

    Args:
        config: the quantization config.
        model_cfg: the model's architecture.

    Returns:
        A MemoryReport: ``rows`` (named by tensor path), ``total_bits``, ``fp32_bits``,
        ``savings_percent``, ``table()``.
    """
    if not isinstance(config, QuantConfig):
        raise ImssaError(f"config must be a QuantConfig, got {type(config).__name__}")
    if not isinstance(model_cfg, S4DConfig):
        raise ImssaError(f"model_cfg must be an S4DConfig, got {type(model_cfg).__name__}")
    config.check_layers(model_cfg.n_layers)
    H, N, d, K = model_cfg.d_model, model_cfg.d_state, model_cfg.d_input, model_cfg.n_classes

    def row(name: str, kind: str, elements: int, channels: int, modes: int = 0,
            polar: bool = False) -> MemoryRow:
        return _row(name, kind, elements, config.spec(name), channels, modes, polar)

    rows = [row("encoder.input", "activation", d, d),
            row("encoder.weight", "parameter", H * d, H),
            row("encoder.bias", "parameter", H, H)]
    for i in range(model_cfg.n_layers):
        p = f"blocks.{i}."
        rows += [
            row(p + "ssm.input", "activation", H, H),
            row(p + "ssm.A_bar", "parameter", H * N, H, polar=config.a_bar_form == "polar"),
            row(p + "ssm.B_bar", "parameter", H * N, H),
            row(p + "ssm.C", "parameter", H * N, H),
            row(p + "ssm.D", "parameter", H, H),
            row(p + "ssm.x", "state", H * N, H, H * N // 2),
            row(p + "ssm.output", "activation", H, H),
            row(p + "activation.output", "activation", H, H),
            row(p + "mix.weight", "parameter", 2 * H * H, 2 * H),
            row(p + "mix.bias", "parameter", 2 * H, 2 * H),
            row(p + "glu.output", "activation", H, H),
        ]
    rows += [row("decoder.input", "activation", H, H),
             row("decoder.weight", "parameter", K * H, K),
             row("decoder.bias", "parameter", K, K)]
    return MemoryReport(rows=tuple(rows))
