"""S4D state-space models: the layer, its discretization and the classifier."""

from imssa.ssm.model import PRESETS, S4DConfig, S4DModel, count_parameters, preset
from imssa.ssm.s4d import DiscreteSSM, S4DLayer

__all__ = ["PRESETS", "DiscreteSSM", "S4DConfig", "S4DLayer", "S4DModel", "count_parameters",
           "preset"]
