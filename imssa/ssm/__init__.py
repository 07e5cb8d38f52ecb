"""S4D state-space models: the layer, its discretization and the classifier."""

from imssa.ssm.model import PRESETS, S4DConfig, S4DModel, count_parameters, preset
from imssa.ssm.s4d import MODES, DiscreteSSM, S4DLayer, check_mode, fft_conv, ssm_kernel, zoh

__all__ = ["MODES", "PRESETS", "DiscreteSSM", "S4DConfig", "S4DLayer", "S4DModel", "check_mode",
           "count_parameters", "fft_conv", "preset", "ssm_kernel", "zoh"]
