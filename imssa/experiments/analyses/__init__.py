"""Post-training-quantization analyses of trained runs, after Zhao et al. 2025 ("Quantizing
Small-Scale State-Space Models for Edge AI"), Figs. 2, 3 and 4, one module per analysis:

- :mod:`.sensitivity` (Fig. 2): test accuracy when ONE quantization target is quantized at a
  time against its bit width, for the quantizer variants of :mod:`.variants`.
- :mod:`.stability` (Fig. 3): the quantized A_bar against the unit circle and the error of
  A_bar_q^k against the step k.
- :mod:`.width` (Fig. 4): accuracy of W{b}A{b} against b, for models of several widths.
- :mod:`.transition` (issue 9): each mode's A_bar as crossbar chips realize it, against the
  digital one and its decay 1 - |A_bar| (no quantization; ``imssa analyze transition-error``).

Shared by all three: :mod:`.context` (a run with its calibration subset and test split, the PTQ
accuracy of a config, the Dataset attrs), :mod:`.checks` (argument checks naming the parameter)
and :mod:`.files` (NetCDF and PNG, atomically). Every analysis runs the model in recurrent mode
(the deployed form, where the state is quantized at every step) and returns an
:class:`xarray.Dataset` with named dims, units in each variable's attrs, the whole configuration
as a JSON string in ``attrs["config"]`` and the environment (device, library versions, date).
The ``imssa analyze`` command lives in :mod:`imssa.cli.analyze`.
"""

from imssa.experiments.analyses.context import PAPER, RunContext, load_context, ptq_accuracy
from imssa.experiments.analyses.files import save_dataset, save_figure
from imssa.experiments.analyses.sensitivity import DEFAULT_TARGETS, plot_sensitivity, sensitivity
from imssa.experiments.analyses.stability import (
    MAX_LEVEL_BITS,
    STABILITY_BITS,
    plot_stability,
    power_errors,
    stability,
)
from imssa.experiments.analyses.variants import (
    DEFAULT_BITS,
    VARIANTS,
    Variant,
    fp_config,
    target_config,
    uniform_config,
)
from imssa.experiments.analyses.width import plot_width, width

ANALYSES = ("sensitivity", "stability", "width")

__all__ = [
    "ANALYSES", "DEFAULT_BITS", "DEFAULT_TARGETS", "MAX_LEVEL_BITS", "PAPER", "STABILITY_BITS",
    "VARIANTS", "RunContext", "Variant", "fp_config", "load_context", "plot_sensitivity",
    "plot_stability", "plot_width", "power_errors", "ptq_accuracy", "save_dataset", "save_figure",
    "sensitivity", "stability", "target_config", "uniform_config", "width",
]
