"""The crossbar simulator: analog tiles (DAC -> conductances -> read noise -> ADC) and the
recurrent engine that runs a whole S4D classifier on them, vectorized over chips and sequences.

Typical use::

    xbar = CrossbarS4D(model, MappingConfig(), PCMDevice(), PeripheryConfig(adc_bits=8,
                       dac_bits=8), n_chips=25, seed=0)
    xbar.calibrate(u_train[:64])      # converter ranges, on the target weights
    xbar.set_time(86400.0)            # drift every chip to one day after programming
    logits = xbar(u_test)             # (chips, B, n_classes)
"""

from imssa.crossbar.engine import DIGITAL_PARTS, CrossbarS4D
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
from imssa.crossbar.tile import AnalogTile, SensedArrays, compensation, make_generator

__all__ = [
    "ADC_GRANULARITIES", "CALIBRATIONS", "COMPENSATIONS", "DIGITAL_PARTS", "AnalogTile",
    "CrossbarS4D", "PeripheryConfig", "SensedArrays", "compensation", "dac", "make_generator",
    "quantize_symmetric", "register", "sense",
]
