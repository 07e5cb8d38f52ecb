"""The per-point evaluation: the one place that drives the crossbar engine.

:func:`evaluate_setting` programs the chips of one setting, calibrates their periphery and
classifies the split at each pending inference time. Nothing else in the simulate package
touches the engine, so switching engines changes this module only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from imssa.crossbar import DIGITAL_PARTS, CrossbarS4D
from imssa.data import Split
from imssa.errors import ImssaError
from imssa.experiments.simulate.config import SimulationConfig, check_digital, format_time
from imssa.experiments.simulate.points import Point, Setting, generator
from imssa.names import select, tensor_names
from imssa.ssm import S4DModel


def digital_parts(model: S4DModel, selectors: Sequence[str]) -> tuple[str, ...]:
    """The engine's digital parts for ``SimulationConfig.digital``, checked against ``model``.

    CrossbarS4D keeps whole parts digital (a part's weight and bias in every layer; each part
    is the :data:`imssa.names.ALIASES` entry of its name), so a selection of some of a part's
    tensors is refused.
    """
    n_layers = len(model.blocks)
    check_digital(tuple(selectors), n_layers)
    universe = tensor_names(n_layers)
    chosen = set(select(selectors, universe)) if selectors else set()
    parts = []
    for part in DIGITAL_PARTS:
        tensors = set(select(part, universe))
        if tensors <= chosen:
            parts.append(part)
        elif tensors & chosen:
            raise ImssaError(f"SimulationConfig.digital: the crossbar keeps whole parts digital "
                             f"(every layer's), but {sorted(tensors & chosen)} is only part of "
                             f"{part!r}; select {part!r}")
    return tuple(parts)


@torch.no_grad()
def evaluate_setting(model: S4DModel, setting: Setting, config: SimulationConfig,
                     calibration: Tensor, split: Split, pending: Sequence[Point],
                     device: torch.device) -> Iterator[tuple[Point, list[float], float]]:
    """Program ``config.chips`` chips with ``setting`` and classify ``split`` at each point.

    Yields (point, accuracy per chip, seconds) as each point finishes; the seconds exclude
    programming and calibration. The chips come from a generator seeded by (seed, setting), a
    point's noise from one seeded by (seed, setting, time).
    """
    xbar = CrossbarS4D(model, setting.mapping, setting.memristor, config.periphery,
                       n_chips=config.chips, seed=generator(device, config.seed, setting.index),
                       digital=digital_parts(model, config.digital))
    if config.periphery.needs_calibration:
        xbar.calibrate(calibration.split(config.batch_size))
    n = len(split.y)
    for point in pending:
        t0 = time.perf_counter()
        noise = generator(device, config.seed, point.setting, point.time)
        xbar.set_time(point.t_inference, noise)
        correct = torch.zeros(config.chips, dtype=torch.long, device=device)
        for i in tqdm(range(0, n, config.batch_size), leave=False,
                      desc=f"t = {format_time(point.t_inference)}"):
            x = split.x[i:i + config.batch_size].to(device)
            y = split.y[i:i + config.batch_size].to(device)
            correct += (xbar(x, noise).argmax(-1) == y).sum(dim=1)
        yield point, [c / n for c in correct.tolist()], time.perf_counter() - t0
