"""Quantization of S4D models as conversions of the one graph, torchao-style: fake quantizers with
a straight-through estimator, calibration, PTQ and QAT, the integer model, and the memory
footprint of a quantized model.

Typical use::

    cfg = make_config("W4A6", a_bits=8, x_bits=8)
    prepare(model, cfg, parameterization="continuous")  # swaps fake-quantized parts in place
    calibrate(model, calibration_batches)               # static activation and state ranges
    logits = model(u, mode="recurrent")                 # everything fake-quantized
    print(memory_footprint(cfg, model.cfg).table())
    set_weight_noise(model, WeightNoiseConfig(sigma=0.02, components=("A",)))  # noise-aware QAT
    set_weight_noise(model, WeightNoiseConfig(sigma=0.02, transition="increment",
                                              granularity="mode"))  # the chip's A_bar - 1 form

Tensors are named by their :mod:`imssa.names` path (``blocks.*.ssm.A_bar``, aliases ``A`` ...).
"""

from imssa.quant.graphed import TrainStep, graph_blocker
from imssa.quant.integer import convert
from imssa.quant.margin import a_error_std, apply_a_margin, check_finite
from imssa.quant.memory import MemoryReport, MemoryRow, memory_footprint
from imssa.quant.modules import (
    PARAMETERIZATIONS,
    DiscreteParams,
    QuantGELU,
    QuantGLU,
    QuantLinear,
    QuantSSM,
    half_bits,
    hard_gelu,
)
from imssa.quant.noise import (
    NOISE_COMPONENTS,
    NOISE_KINDS,
    WeightNoiseConfig,
    add_noise,
    noisy_ssm,
    noisy_weights,
    parse_components,
    perturb,
    read_noise,
)
from imssa.quant.observer import RangeObserver, percentile, tensor_range
from imssa.quant.prepare import (
    activations,
    calibrate,
    float_state_dict,
    freeze_ranges,
    parameter_groups,
    prepare,
    quantized_weights,
    quantizers,
    set_weight_noise,
    unfreeze_ranges,
)
from imssa.quant.quantizer import (
    FakeQuantizer,
    PolarQuantizer,
    Quantizer,
    a_bar_levels,
    fake_quantize,
    qparams,
    qrange,
)
from imssa.quant.scales import TRANSITIONS, conductance_scales, programming_std
from imssa.quant.spec import PRESETS, TARGETS, QuantConfig, QuantSpec, Target, make_config

__all__ = [
    "NOISE_COMPONENTS", "NOISE_KINDS", "PARAMETERIZATIONS", "PRESETS", "TARGETS", "TRANSITIONS",
    "DiscreteParams", "FakeQuantizer", "MemoryReport", "MemoryRow", "PolarQuantizer",
    "QuantConfig", "QuantGELU", "QuantGLU", "QuantLinear", "QuantSSM", "QuantSpec", "Quantizer",
    "RangeObserver", "Target", "TrainStep", "WeightNoiseConfig", "a_bar_levels", "a_error_std",
    "activations", "add_noise",
    "apply_a_margin", "check_finite", "conductance_scales",
    "calibrate", "convert", "fake_quantize", "float_state_dict", "freeze_ranges", "half_bits",
    "graph_blocker", "hard_gelu", "make_config", "memory_footprint", "noisy_ssm", "noisy_weights",
    "parameter_groups", "parse_components", "percentile", "perturb", "prepare",
    "programming_std", "qparams", "qrange",
    "quantized_weights", "quantizers", "read_noise", "set_weight_noise", "tensor_range", "unfreeze_ranges",
]
