"""The three kinds of task a sweep runs on its Dask workers: a training, a quantization and a
point. Each writes only its own files, each file atomically, and returns a small dict that the
tasks after it take as their input (Dask passes it along the graph).

A task's console output goes to its log file (``DIR/logs/<stage>-<key>.log``), not to the
worker's terminal. A finished output is not recomputed: a training whose folder holds
``metrics.json`` returns at once, a quantization of the same model (by the hash of its model
file) too, and a point whose file holds the fingerprint of its configs and model is skipped.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imssa.experiments.io import read_json, write_json
from imssa.experiments.simulate.parts import file_digest
from imssa.sweep.spec import PointConfig, digest


@contextlib.contextmanager
def _task(log: str | Path, threads: int) -> Iterator[None]:
    """torch's threads for the task, and its stdout and stderr appended to ``log``."""
    import torch

    torch.set_num_threads(threads)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def _finished(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "model.pt").is_file()


def train_task(config: PointConfig, folder: str, log: str, threads: int) -> dict[str, Any]:
    """Train ``config.train`` into ``folder`` (resuming an interrupted run of it); a given run
    (``config.run``) is taken as it is."""
    from imssa.experiments.train import train

    path = Path(config.run or folder)
    if config.run is None:
        with _task(log, threads):
            if not _finished(path):
                train(config.train, path, resume=True)
    metrics = read_json(path / "metrics.json")
    return {"run": str(path), "test_accuracy": float(metrics["test_accuracy"]),
            "model_sha256": file_digest(path / "model.pt")}


def quantize_task(config: PointConfig, trained: dict[str, Any], folder: str, log: str,
                  threads: int) -> dict[str, Any]:
    """PTQ or QAT of the trained run into ``folder``. The folder records the hash of the model it
    was made from; a folder made from another model (a training redone) is made again."""
    from imssa.experiments.quantize import ptq, qat

    path = Path(folder)
    marker = path / "sweep.json"
    made_from = {"model_sha256": trained["model_sha256"]}
    if marker.is_file() and read_json(marker) != made_from:
        shutil.rmtree(path)
    with _task(log, threads):
        if not (path / "metrics.json").is_file():
            write_json(made_from, marker)
            data_dir, limit = config.quant_data
            if config.method == "ptq":
                ptq(trained["run"], config.quant, path, data_dir=data_dir, limit=limit)
            else:
                qat(trained["run"], config.quant, config.qat, path, data_dir=data_dir,
                    limit=limit, resume=True)
    metrics = read_json(path / "metrics.json")
    result = {"test_accuracy": float(metrics["test_accuracy"])}
    if config.method == "qat":
        result |= {"run": str(path), "model_sha256": file_digest(path / "model.pt")}
    return result


def point_fingerprint(key: str, model_sha256: str) -> str:
    """What a point's numbers depend on: its configs (the key) and the model's bytes."""
    return digest({"point": key, "model_sha256": model_sha256})


def cost_figures(model: Any, config: PointConfig, steps: int) -> dict[str, list[Any]]:
    """The hardware-cost figures of one inference, {name: [value, units]}, from
    ``imssa.cost.estimate(converted, steps=steps)`` on one chip of the point's crossbar (its
    ``as_dict()`` and ``imssa.cost.UNITS``); nothing while ``imssa.cost`` does not exist."""
    try:
        import imssa.cost as cost
    except ModuleNotFoundError as err:
        if err.name != "imssa.cost":
            raise
        return {}
    from imssa.crossbar import convert
    from imssa.experiments.simulate.points import generator, settings

    sim = config.simulation
    setting = settings(config.memristor, sim, None)[0]
    chip = convert(model, setting.mapping, setting.memristor, sim.periphery, chips=1,
                   seed=generator(next(model.parameters()).device, sim.seed, 0),
                   digital=sim.digital, per_tensor=sim.per_tensor)
    report = cost.estimate(chip, steps=steps)
    figures = report.as_dict() if hasattr(report, "as_dict") else dict(report)
    units = getattr(cost, "UNITS", {})
    out = {}
    for name, value in figures.items():
        unit = units.get(name, "1")
        out[name] = [float(value), unit[0] if isinstance(unit, (tuple, list)) else str(unit)]
    return out


def point_task(config: PointConfig, trained: dict[str, Any], quantized: dict[str, Any] | None,
               key: str, path: str, log: str, threads: int) -> dict[str, Any]:
    """Simulate one point (when the spec has a simulate stage) and write its result file: the
    stages' accuracies, the accuracy per time and chip, the crossbar counts and cost figures."""
    from imssa.data import load_task
    from imssa.experiments.simulate import simulate
    from imssa.experiments.train import load_run

    t0 = time.perf_counter()
    model = quantized if config.method == "qat" else trained
    fingerprint = point_fingerprint(key, model["model_sha256"])
    out = Path(path)
    if out.is_file() and read_json(out).get("fingerprint") == fingerprint:
        return {"key": key, "skipped": True}
    result: dict[str, Any] = {
        "fingerprint": fingerprint, "key": key, "model_sha256": model["model_sha256"],
        "train_accuracy": trained["test_accuracy"],
        "quant_accuracy": None if quantized is None else quantized["test_accuracy"],
        "configs": config.to_dict()}
    if config.simulation is not None:
        with _task(log, threads):
            ds = simulate(model["run"], config.memristor, config.simulation)
            train_cfg, net = load_run(model["run"])
            data = load_task(train_cfg.task, config.simulation.data_dir or train_cfg.data_dir,
                             limit=100)  # for the sequence length
            result["cost"] = cost_figures(net, config, int(data.test.x.shape[1]))
        counts = read_cost(ds.attrs["cost"])
        result |= {"t_inference": ds["t_inference"].values.tolist(),
                   "accuracy": ds["accuracy"].values.tolist(),
                   "seconds": ds["seconds"].values.tolist(),
                   "digital_accuracy": float(ds.attrs["digital_accuracy"]),
                   "crossbar": counts, "device": ds.attrs.get("env_device", "")}
    result["task_seconds"] = time.perf_counter() - t0
    write_json(result, out)
    return {"key": key, "skipped": False}


def read_cost(cost_json: str) -> dict[str, float]:
    """The totals of simulate's crossbar counts (its ``cost`` attr: one entry per setting)."""
    import json

    entries = json.loads(cost_json)
    return {k: float(v) for k, v in (entries[0] or {}).get("totals", {}).items()} \
        if entries else {}
