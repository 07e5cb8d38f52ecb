"""``simulate``: a trained run on simulated chips, over settings and inference times, resumable.

The order of the work: every input is checked (configs, ``out``, the run, the data, the digital
selection), then the record of what the numbers depend on is fingerprinted; a finished result
of the same fingerprint is returned without recomputing, one of another is refused; then the
digital accuracy and every unfinished point are computed, each saved as it finishes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from imssa.data import Split, calibration_subset, load_task
from imssa.devices import Device, DeviceConfig
from imssa.errors import ImssaError
from imssa.experiments.io import progress, read_json
from imssa.experiments.simulate.chips import evaluate_setting
from imssa.experiments.simulate.config import SimulationConfig, check_digital, check_model
from imssa.experiments.simulate.parts import PartsStore, file_digest, fingerprint, tensor_digest
from imssa.experiments.simulate.points import Point, Setting, settings, sweep_points
from imssa.experiments.simulate.result import (
    build_dataset,
    check_out,
    read_dataset,
    summary_table,
    write_dataset,
)
from imssa.ssm import S4DModel

if TYPE_CHECKING:
    import xarray as xr


@dataclasses.dataclass(frozen=True)
class _Inputs:
    """What a simulation reads: the model, the split it classifies and the calibration inputs."""

    model: S4DModel
    split: Split
    calibration: torch.Tensor
    record: dict[str, Any]


def _inputs(run: str | Path, config: SimulationConfig, setting_list: Sequence[Setting],
            sweep: str | None, keep_setting: bool, device: torch.device) -> _Inputs:
    """Load and check the run and data; the record holds the content the numbers depend on
    (model bytes, run config, data, configs), not the run's path."""
    from imssa.experiments.train import load_run

    train_cfg, model = load_run(run, device)
    check_digital(config.digital, len(model.blocks))  # before any work
    check_model(config, model, setting_list)
    data = load_task(train_cfg.task, config.data_dir or train_cfg.data_dir,
                     val_fraction=train_cfg.val_fraction, seed=train_cfg.seed, limit=config.limit)
    split = data.test if config.split == "test" else data.val
    if len(split.y) == 0:
        raise ImssaError(f"SimulationConfig.split: the {config.split} split of {train_cfg.task} "
                         "is empty; use another split or a larger SimulationConfig.limit")
    calibration = calibration_subset(data.train, config.calibration_samples)
    record = {
        "task": train_cfg.task, "model": train_cfg.model,
        "model_sha256": file_digest(Path(run) / "model.pt"),
        "run_config": read_json(Path(run) / "config.json"),
        "data_sha256": tensor_digest([split.x, split.y, calibration]),
        "simulation": config.to_dict() | {"device": str(device)},
        "memristors": [s.memristor.config.to_dict() for s in setting_list],
        "memristor_names": [repr(s.memristor) for s in setting_list],
        "mappings": [s.mapping.to_dict() for s in setting_list],
        "sweep": sweep, "setting_dimension": keep_setting,
    }
    return _Inputs(model, split, calibration.to(device), record)


def _finished(out: Path, fp: str) -> xr.Dataset:
    """The finished result in ``out`` if it is this simulation's; refused if it is another's."""
    ds = read_dataset(out)
    if ds.attrs.get("fingerprint") != fp:
        raise ImssaError(f"`out` {out} holds a simulation of other settings (another model, "
                         "data or configs); choose another `out`, or pass `force=True` to "
                         "overwrite it")
    return ds


def _fill(accuracy: np.ndarray, seconds: np.ndarray, point: Point, result: dict[str, Any],
          where: str) -> None:
    acc = np.asarray(result.get("accuracy"), dtype=np.float64)
    if acc.shape != accuracy.shape[-1:] or not ((acc >= 0) & (acc <= 1)).all():
        raise ImssaError(f"{where}: the saved point {point.name} is damaged; delete the folder "
                         "or pass `force=True` to recompute")
    accuracy[point.setting, point.time] = acc
    seconds[point.setting, point.time] = float(result.get("seconds", np.nan))


def simulate(run: str | Path, memristor: Device | DeviceConfig | Sequence[Device | DeviceConfig],
             config: SimulationConfig | None = None, out: str | Path | None = None, *,
             sweep: str | None = None, force: bool = False) -> xr.Dataset:
    """Accuracy of a trained run on simulated chips, per setting, inference time and chip.

    Args:
        run: a training run folder (``imssa train --out RUN``).
        memristor: one memristor model (or its config), or a list of them: one ``setting`` each.
        config: times, chips, mapping, periphery, data and seeds.
        out: NetCDF path; written atomically when the sweep is complete, with finished points
            in ``<out>.parts/`` until then: a rerun with the same model, data and settings
            resumes from them. A finished ``out`` of the same simulation is returned without
            recomputing; one of another simulation is refused. None keeps results in memory.
        sweep: the memristor-config field that varies over the list (e.g. "prog_noise"); it
            becomes a coordinate along ``setting``.
        force: recompute every point, and overwrite ``out`` whatever it holds.

    Returns:
        Dataset with ``accuracy`` (t_inference, chip), or (setting, t_inference, chip) for a
        list of memristors, and ``seconds`` per point; coords t_inference (s), chip, setting;
        attrs: the record as JSON, its fingerprint, the digital model's accuracy, the
        environment.
    """
    from imssa.experiments.train import accuracy, resolve_device

    config = config if config is not None else SimulationConfig()
    out_path = None if out is None else check_out(out)
    setting_list = settings(memristor, config, sweep)
    keep_setting = isinstance(memristor, (list, tuple))
    device = resolve_device(config.device)
    inputs = _inputs(run, config, setting_list, sweep, keep_setting, device)
    fp = fingerprint(inputs.record)
    if out_path is not None and out_path.exists() and not force:
        ds = _finished(out_path, fp)
        print(f"{out_path} already holds this simulation (same model, data and settings): "
              "not recomputed; force recomputes it")
        print(summary_table(ds))
        return ds
    store = PartsStore.open(out_path, fp, inputs.record, force=force)

    digital = store.load("digital")
    if digital is None:
        digital = {"accuracy": accuracy(functools.partial(inputs.model, mode="recurrent"),
                                        inputs.split, device, config.batch_size)}
        store.save("digital", digital)
    elif not 0 <= digital.get("accuracy", -1) <= 1:
        raise ImssaError(f"{store.folder}: the saved digital accuracy is damaged; delete the "
                         "folder or pass `force=True` to recompute")
    times = config.t_inference
    costs: dict[int, Any] = {}
    acc = np.zeros((len(setting_list), len(times), config.chips))
    seconds = np.zeros((len(setting_list), len(times)))
    pending: dict[int, list[Point]] = {}
    points = sweep_points(setting_list, times)
    for point in points:
        saved = store.load(point.name)
        if saved is None:
            pending.setdefault(point.setting, []).append(point)
        else:
            _fill(acc, seconds, point, saved, str(store.folder))
            costs[point.setting] = saved.get("cost")
    done = len(points) - sum(len(p) for p in pending.values())
    if done:
        print(f"resuming from {store.folder}: {done} of {len(points)} points are finished")
    with progress(total=len(points), initial=done, desc="simulate") as bar:
        for setting in setting_list:
            if setting.index not in pending:
                continue  # every point finished: its chips are not even programmed
            for point, chip_acc, secs, cost in evaluate_setting(
                    inputs.model, setting, config, inputs.calibration, inputs.split,
                    pending[setting.index], device):
                result = {"accuracy": chip_acc, "seconds": secs, "cost": cost}
                costs[setting.index] = cost
                store.save(point.name, result)
                _fill(acc, seconds, point, result, "simulate")
                bar.update()

    ds = build_dataset(acc, seconds, times, setting_list, sweep=sweep, keep_setting=keep_setting,
                       record_json=json.dumps(inputs.record, sort_keys=True), fingerprint=fp,
                       run=str(Path(run).resolve()), digital_accuracy=digital["accuracy"],
                       n_samples=len(inputs.split.y), device=device,
                       cost_json=json.dumps([costs.get(s.index) for s in setting_list]),
                       architecture_json=json.dumps(inputs.model.cfg.to_dict()))
    if out_path is not None:
        write_dataset(ds, out_path)
        store.remove()
    print(summary_table(ds))
    return ds
