"""What every PTQ analysis shares: a run loaded with its calibration and test data, the
accuracy of a quantization config on it, and the attrs each result Dataset carries.

Static ranges are calibrated (:func:`imssa.quant.calibrate`) on
:func:`imssa.data.calibration_subset` of the run's own training split (``calib_samples``
sequences drawn with ``seed``), the one subset PTQ, QAT and the crossbar use; accuracy is
measured on the run's test split (the first ``limit`` sequences for quick runs), always in
recurrent mode, the deployed form where the state is quantized at every step.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imssa.data import Split, TaskData, calibration_subset, load_task
from imssa.experiments.analyses.checks import check_count
from imssa.experiments.io import environment
from imssa.experiments.train import TrainConfig, accuracy, load_run
from imssa.quant import QuantConfig, calibrate, prepare, quantizers
from imssa.ssm import S4DModel, count_parameters

PAPER = "Zhao et al. 2025, Quantizing Small-Scale State-Space Models for Edge AI"
#: Sequences per forward pass (and per calibration batch).
BATCH_SIZE = 500


@dataclass(frozen=True)
class RunContext:
    """One run ready for PTQ: model on the device, calibration batches, test split.

    Attributes:
        run: the run folder.
        cfg: its training config.
        model: the trained model, on ``device``.
        calib: the calibration inputs in batches of ``batch_size`` (B, L, d_input), on ``device``.
        test: the test split evaluated (the first ``limit`` sequences), on ``device``.
        seq_len: the task's sequence length L.
        device: the torch device everything runs on.
        batch_size: sequences per forward pass.
        info: JSON-ready facts for the result's attrs (task, width, samples, parameters).
    """

    run: Path
    cfg: TrainConfig
    model: S4DModel
    calib: list[torch.Tensor]
    test: Split
    seq_len: int
    device: torch.device
    batch_size: int
    info: dict[str, Any] = field(default_factory=dict)


def check_ptq(limit: int | None, calib_samples: int, batch_size: int) -> None:
    """The evaluation arguments of :func:`load_context`: positive integers (``limit`` or None)."""
    check_count(limit, "limit", allow_none=True)
    check_count(calib_samples, "calib_samples")
    check_count(batch_size, "batch_size")


def task_data(cfg: TrainConfig, data_dir: str | None, cache: dict | None = None) -> TaskData:
    """The run's task split as in training; ``cache`` shares it between runs of one task."""
    key = (cfg.task, data_dir or cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.limit)
    if cache is not None and key in cache:
        return cache[key]
    data = load_task(cfg.task, key[1], val_fraction=cfg.val_fraction, seed=cfg.seed,
                     limit=cfg.limit)
    if cache is not None:
        cache[key] = data
    return data


def load_context(run: str | Path, device: torch.device, data_dir: str | None, limit: int | None,
                 calib_samples: int, seed: int, batch_size: int,
                 cache: dict | None = None) -> RunContext:
    """Load a run, its data split as in training, the calibration batches and the test split."""
    cfg, model = load_run(run, device)
    data = task_data(cfg, data_dir, cache)
    calib_x = calibration_subset(data.train, int(calib_samples), seed).to(device)
    n_test = len(data.test) if limit is None else min(limit, len(data.test))
    test = Split(data.test.x[:n_test].to(device), data.test.y[:n_test].to(device))
    info = {"task": cfg.task, "d_model": model.cfg.d_model, "seed": cfg.seed,
            "calib_samples": len(calib_x), "test_samples": n_test,
            "parameters": count_parameters(model)}
    return RunContext(Path(run), cfg, model, list(calib_x.split(batch_size)), test,
                      data.seq_len, device, batch_size, info)


def ptq_accuracy(ctx: RunContext, config: QuantConfig) -> float:
    """Test accuracy (fraction) of the run quantized by ``config``, calibrated, in recurrent mode.

    A copy of the run's model is prepared (:func:`imssa.quant.prepare` swaps parts in place), so
    the context's float model serves every configuration.
    """
    qmodel = prepare(copy.deepcopy(ctx.model), config).eval()
    if any(q.calibrated for q in quantizers(qmodel).values()):
        calibrate(qmodel, ctx.calib)
    return accuracy(lambda u: qmodel(u, mode="recurrent"), ctx.test, ctx.device, ctx.batch_size)


def dataset_attrs(analysis: str, task: str, device: torch.device,
                  config: dict[str, Any]) -> dict[str, Any]:
    """Dataset attrs: what it is, the configuration as JSON (NetCDF rejects dicts), environment."""
    return {"title": f"imssa {analysis} analysis", "analysis": analysis, "task": task,
            "source_paper": PAPER, "config": json.dumps(config, sort_keys=True),
            **environment(device)}
