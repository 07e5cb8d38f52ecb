"""The per-point evaluation: the one place that drives the crossbar engine.

:func:`evaluate_setting` converts the model onto the chips of one setting
(:func:`imssa.crossbar.convert`), calibrates their periphery and classifies the split at each
pending inference time. Nothing else in the simulate package touches the engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from imssa.cost import estimate
from imssa.crossbar import calibrate, convert, set_time
from imssa.data import Split
from imssa.devices import format_time
from imssa.experiments.io import progress
from imssa.experiments.simulate.config import SimulationConfig
from imssa.experiments.simulate.points import Point, Setting, generator
from imssa.ssm import S4DModel


@torch.no_grad()
def evaluate_setting(model: S4DModel, setting: Setting, config: SimulationConfig,
                     calibration: Tensor, split: Split, pending: Sequence[Point],
                     device: torch.device
                     ) -> Iterator[tuple[Point, list[float], float, dict[str, Any]]]:
    """Program ``config.chips`` chips with ``setting`` and classify ``split`` at each point.

    Yields (point, accuracy per chip, seconds, the chips' hardware cost per inference of one
    sequence of the split, :meth:`imssa.cost.CostReport.to_dict`) as each point finishes; the
    seconds exclude programming and calibration. The chips come from a generator seeded by (seed, setting), a
    point's noise from one seeded by (seed, setting, time).
    """
    chips = convert(model, setting.mapping, setting.memristor, config.periphery,
                    chips=config.chips, seed=generator(device, config.seed, setting.index),
                    digital=config.digital, per_tensor=config.per_tensor)
    cost = estimate(chips, steps=split.x.shape[1])
    print(f"setting {setting.index} cost: {cost.line()}")
    if config.periphery.needs_calibration:
        calibrate(chips, calibration.split(config.batch_size))
    n = len(split.y)
    for point in pending:
        t0 = time.perf_counter()
        set_time(chips, point.t_inference, generator(device, config.seed, point.setting,
                                                     point.time))
        correct = torch.zeros(config.chips, dtype=torch.long, device=device)
        for i in progress(range(0, n, config.batch_size), leave=False,
                      desc=f"t = {format_time(point.t_inference)}"):
            x = split.x[i:i + config.batch_size].to(device)
            y = split.y[i:i + config.batch_size].to(device)
            correct += (chips(x, mode="recurrent").argmax(-1) == y).sum(dim=1)
        yield point, [c / n for c in correct.tolist()], time.perf_counter() - t0, cost.to_dict()
