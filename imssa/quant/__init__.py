"""Quantization of S4D models: fake quantizers with a straight-through estimator, calibration,
PTQ and QAT wrappers, and the memory footprint of a quantized model.

Typical use::

    cfg = make_config("W4A6", a_bits=8, x_bits=8)
    qmodel = QuantizedS4D(model, cfg, parameterization="continuous")
    calibrate(qmodel, calibration_batches)     # static activation and state ranges
    logits = qmodel(u)                          # recurrent mode, everything fake-quantized
    print(memory_footprint(cfg, model.cfg).table())
    qmodel.weight_noise = WeightNoiseConfig(sigma=0.02, components=("A_bar",))  # noise-aware QAT
"""

from imssa.quant.memory import MemoryReport, MemoryRow, memory_footprint
from imssa.quant.noise import (
    NOISE_COMPONENTS,
    NOISE_KINDS,
    WeightNoiseConfig,
    add_noise,
    noisy_ssm,
    noisy_weights,
    parse_components,
)
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
    "MODES", "NOISE_COMPONENTS", "NOISE_KINDS", "PARAMETERIZATIONS", "PRESETS", "TARGETS",
    "DiscreteParams", "FakeQuantizer", "MemoryReport", "MemoryRow", "PolarQuantizer",
    "QuantConfig", "QuantSpec", "QuantizedS4D", "RangeObserver", "Target", "WeightNoiseConfig",
    "a_bar_levels", "add_noise", "calibrate", "fake_quantize", "half_bits", "hard_gelu",
    "make_config", "memory_footprint", "noisy_ssm", "noisy_weights", "parse_components",
    "percentile", "qparams", "qrange", "quantize_codes", "tensor_range",
]
