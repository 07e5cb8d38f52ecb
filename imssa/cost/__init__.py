"""The hardware cost model: devices, conversions, analog and digital operations, memory, and
the energy and latency they take per inference, from per-operation literature figures.

    report = estimate(converted, EnergyConfig(), steps=784)
    report.as_dict()["energy_nj"]      # every figure of UNITS, by name
    print(report.summary())

Everything here is an estimate (see :mod:`imssa.cost.energy` for the figures and their sources):
good for comparing designs against each other, not for the absolute energy of a chip.
"""

from imssa.cost.energy import ADC_TABLE_PJ, EnergyConfig, adc_energy
from imssa.cost.estimate import estimate
from imssa.cost.report import UNITS, CostReport

__all__ = ["ADC_TABLE_PJ", "UNITS", "CostReport", "EnergyConfig", "adc_energy", "estimate"]
