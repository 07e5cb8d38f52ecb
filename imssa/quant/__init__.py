"""Quantization of S4D models: fake quantizers with a straight-through estimator, calibration,
PTQ and QAT wrappers, and the memory footprint of a quantized model.

Typical use::

    cfg = make_config("W4A6", a_bits=8, x_bits=8)
    qmodel = QuantizedS4D(model, cfg, parameterization="continuous")
    calibrate(qmodel, calibration_batches)     # static activation and state ranges
    logits = qmodel(u)                          # recurrent mode, everything fake-quantized
    print(memory_footprint(cfg, model.cfg).table())
"""

from imssa.quant.memory import MemoryReport, MemoryRow, memory_footprint
from imssa.quant.qmodel import (
    MODES,
    PARAMETERIZATIONS,
    DiscreteParams,
    QuantizedS4D,
    calibrate,
    half_bits,
)
from imssa.quant.quantizer import (
    FakeQuantizer,
    PolarQuantizer,
    RangeObserver,
    a_bar_levels,
    fake_quantize,
    hard_gelu,
    percentile,
    qparams,
    qrange,
    quantize_codes,
    tensor_range,
)
from imssa.quant.spec import PRESETS, TARGETS, QuantConfig, QuantSpec, Target, make_config

__all__ = [
    "MODES", "PARAMETERIZATIONS", "PRESETS", "TARGETS", "DiscreteParams", "FakeQuantizer",
    "MemoryReport", "MemoryRow", "PolarQuantizer", "QuantConfig", "QuantSpec", "QuantizedS4D",
    "RangeObserver", "Target", "a_bar_levels", "calibrate", "fake_quantize", "half_bits",
    "hard_gelu", "make_config", "memory_footprint", "percentile", "qparams", "qrange",
    "quantize_codes", "tensor_range",
]
