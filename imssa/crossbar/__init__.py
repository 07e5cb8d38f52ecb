"""The crossbar simulator as a conversion of the one graph: analog modules (DAC -> conductances
-> read noise -> ADC, drift compensation, state register) swapped into an S4DModel, vectorized
over chips and sequences.

Typical use::

    model = convert(trained, MappingConfig(), PCMDevice(), PeripheryConfig(adc_bits=8,
                    dac_bits=8), chips=25, seed=0)
    calibrate(model, u_train[:64])      # converter ranges, on the target weights
    set_time(model, 86400.0)            # drift every chip to one day after programming
    logits = model(u_test, mode="recurrent")   # (chips, B, n_classes)
"""

from imssa.crossbar.chips import AnalogPart, ChipSet
from imssa.crossbar.convert import (
    DIGITAL_PARTS,
    analog_names,
    analog_parts,
    calibrate,
    chip_set,
    convert,
    set_time,
)
from imssa.crossbar.cost import CrossbarCost, crossbar_cost
from imssa.crossbar.linear import AnalogLinear
from imssa.crossbar.periphery import (
    ADC_GRANULARITIES,
    CALIBRATIONS,
    COMPENSATIONS,
    PeripheryConfig,
    dac,
    quantize_symmetric,
    register,
    sense,
)
from imssa.crossbar.settings import (
    PER_TENSOR_PERIPHERY,
    check_forms,
    normalize_per_tensor,
    tensor_settings,
)
from imssa.crossbar.ssm import AnalogSSM, scan_backend
from imssa.crossbar.tile import AnalogTile, SensedArrays, compensation, make_generator

__all__ = [
    "ADC_GRANULARITIES", "CALIBRATIONS", "COMPENSATIONS", "DIGITAL_PARTS", "PER_TENSOR_PERIPHERY",
    "AnalogLinear", "AnalogPart", "AnalogSSM", "AnalogTile", "ChipSet", "CrossbarCost",
    "PeripheryConfig", "SensedArrays", "analog_names", "analog_parts", "calibrate", "chip_set",
    "check_forms", "compensation", "convert", "crossbar_cost", "dac", "make_generator",
    "normalize_per_tensor", "quantize_symmetric", "register", "scan_backend", "sense",
    "set_time", "tensor_settings",
]
