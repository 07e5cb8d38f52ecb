"""Programming pulses per device that program-and-verify costs, for a run mapped onto PCM
crossbars (A_bar left out: it stays digital in the sMNIST tables). docs/results.md quotes it.

    python scripts/count_verify_pulses.py results/crossbar-smnist/noise-pcm-1.0 0.04 0.02 0.01
"""

from __future__ import annotations

import sys

import torch

from imssa.devices import PCMConfig, PCMDevice
from imssa.experiments.train import load_run
from imssa.mapping import MappingConfig, map_model

if __name__ == "__main__":
    _, model = load_run(sys.argv[1], "cpu")
    mapped = map_model(model, MappingConfig())
    for tol in [None, *map(float, sys.argv[2:])]:
        device = PCMDevice(PCMConfig(verify_tol=tol))
        pulses = torch.cat([device.program(t.g_target.unsqueeze(0),
                                           torch.Generator().manual_seed(0)).n_pulses.flatten()
                            for name, t in mapped.tensors().items() if not name.endswith(".A_bar")])
        print(f"verify_tol {tol}: {pulses.double().mean():.2f} pulses per device "
              f"({pulses.numel()} devices)")
