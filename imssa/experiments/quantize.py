"""Post-training quantization (PTQ) and quantization-aware training (QAT) of a trained run.

PTQ calibrates static ranges on training sequences and evaluates in recurrent mode, the state
quantized at every step (Zhao et al. 2025, "Quantizing Small-Scale State-Space Models for Edge
AI"). QAT fine-tunes the full-precision checkpoint with fake quantization and straight-through
gradients, in recurrent mode (the paper) or convolutional mode (QS4D), and always reports the
accuracy of the true recurrent quantized execution, so the gap of conv-mode QAT is measured.

Noise-aware QAT (``--train-noise``) injects weight noise (:mod:`imssa.quant.noise`) into the
quantized crossbar weights at every training step; validation and test run clean. With the ``fp``
preset this trains a noise-robust full-precision model.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imssa.data import Split, TaskData, load_task
from imssa.errors import ImssaError
from imssa.experiments.io import atomic_save, environment, parse_field, read_json, write_json
from imssa.experiments.train import TrainConfig, accuracy, load_run, resolve_device, train_epochs
from imssa.quant import (
    PARAMETERIZATIONS,
    QuantizedS4D,
    QuantSpec,
    calibrate,
    make_config,
    memory_footprint,
)
from imssa.quant.noise import NOISE_COMPONENTS, WeightNoiseConfig

QAT_PARAMETERIZATIONS = (*PARAMETERIZATIONS, "polar")
"""``polar`` is ``continuous`` training with the stable polar grid for A_bar."""


@dataclass(frozen=True, kw_only=True)
class QuantRunConfig:
    """What to quantize: a preset, the heterogeneous A_bar / state bits and spec overrides."""

    preset: str = "W4A6"
    a_bits: int | None = None
    x_bits: int | None = None
    a_form: str = "cartesian"
    x_granularity: str | None = None
    x_rounding: str | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    calib_samples: int = 1000

    def __post_init__(self) -> None:
        if self.calib_samples < 1:
            raise ImssaError(f"--calib-samples must be >= 1 (static ranges need calibration "
                             f"data), got {self.calib_samples}")
        self.quant_config()  # validates preset, bits, targets and fields

    def quant_config(self):
        overrides = dict(self.overrides)
        for name in ("granularity", "rounding"):
            value = getattr(self, f"x_{name}")
            if value is not None:
                overrides["x"] = {**overrides.get("x", {}), name: value}
        return make_config(self.preset, self.a_bits, self.x_bits, overrides,
                           a_bar_form=self.a_form)

    def tag(self) -> str:
        a = "" if self.a_bits is None else f"-a{self.a_bits}"
        x = "" if self.x_bits is None else f"-x{self.x_bits}"
        sr = "-sr" if self.x_rounding == "stochastic" else ""
        return f"{self.preset}{a}{x}{sr}-{self.a_form}"


@dataclass(frozen=True, kw_only=True)
class QATConfig:
    """Fine-tuning settings. ``lr`` for weights, ``ssm_lr`` for the SSM dynamics (no decay).

    ``train_noise`` (sigma), ``train_noise_on`` (components) and ``train_noise_kind`` (gaussian
    or pcm) set the weight noise of every training step; see
    :class:`~imssa.quant.noise.WeightNoiseConfig`. sigma 0 (default) trains without noise.
    """

    parameterization: str = "continuous"
    mode: str = "recurrent"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    ssm_lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    train_noise: float = 0.0
    train_noise_on: tuple[str, ...] = NOISE_COMPONENTS
    train_noise_kind: str = "gaussian"

    def __post_init__(self) -> None:
        try:
            noise = self.weight_noise()
        except ImssaError as err:  # name the command-line flags
            raise ImssaError(f"--train-noise / --train-noise-on / --train-noise-kind: {err}") from err
        object.__setattr__(self, "train_noise_on", noise.components)
        if self.parameterization not in QAT_PARAMETERIZATIONS:
            raise ImssaError(f"--param must be one of {', '.join(QAT_PARAMETERIZATIONS)}, "
                             f"got {self.parameterization!r}")
        if self.mode not in ("recurrent", "conv"):
            raise ImssaError(f"--mode must be recurrent or conv, got {self.mode!r}")
        if self.grad_clip <= 0:
            raise ImssaError(f"--grad-clip must be > 0, got {self.grad_clip}")

    def weight_noise(self) -> WeightNoiseConfig:
        return WeightNoiseConfig(sigma=self.train_noise, components=self.train_noise_on,
                                 kind=self.train_noise_kind)


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["x.bits=6", "A_bar.granularity=head"]`` -> ``{"x": {"bits": 6}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        target, dot, name = key.rpartition(".")
        if not sep or not dot:
            raise ImssaError(f"--set {item!r}: expected TARGET.FIELD=VALUE, e.g. x.bits=6")
        try:  # typed by the QuantSpec field: strict booleans, numbers that are numbers
            out.setdefault(target, {})[name] = parse_field(QuantSpec, name, value)
        except ImssaError as err:
            raise ImssaError(f"--set {item!r}: {err}") from None
    return out


def _calibration_batches(split: Split, n: int, batch: int = 256):
    if len(split.y) == 0:
        raise ImssaError("the run's task has no training data to calibrate on")
    x = split.x[:n]
    return [x[i:i + batch] for i in range(0, len(x), batch)]


def _prepare(run: str | Path, qcfg: QuantRunConfig, parameterization: str, device: str,
             data_dir: str | None, limit: int | None
             ) -> tuple[TrainConfig, QuantizedS4D, TaskData, torch.device, dict]:
    dev = resolve_device(device)
    cfg, model = load_run(run, dev)
    data = load_task(cfg.task, data_dir or cfg.data_dir, val_fraction=cfg.val_fraction,
                     seed=cfg.seed, limit=limit if limit is not None else cfg.limit)
    qconfig = qcfg.quant_config()
    qmodel = QuantizedS4D(model, qconfig, parameterization=parameterization).to(dev)
    calibrate(qmodel, _calibration_batches(data.train, qcfg.calib_samples))
    memory = memory_footprint(qconfig, model.cfg)
    info = {"run": str(run), "task": cfg.task, "model": cfg.model, "seed": cfg.seed,
            "quant": dataclasses.asdict(qcfg), "quant_config": qconfig.to_dict(),
            "memory": memory.to_dict(), "memory_savings_percent": memory.savings_percent}
    return cfg, qmodel, data, dev, info


def _recurrent_accuracy(qmodel: QuantizedS4D, split: Split, device: torch.device) -> float:
    qmodel.eval()
    return accuracy(lambda u: qmodel(u, mode="recurrent"), split, device, desc="eval recurrent")


def ptq(run: str | Path, qcfg: QuantRunConfig, out: str | Path | None = None,
        device: str = "auto", data_dir: str | None = None, limit: int | None = None) -> dict:
    """Calibrate, quantize and evaluate a trained run in recurrent mode; writes metrics.json."""
    out = Path(out) if out is not None else Path(run) / f"ptq-{qcfg.tag()}"
    t0 = time.perf_counter()
    _, qmodel, data, dev, info = _prepare(run, qcfg, "continuous", device, data_dir, limit)
    metrics = {"method": "ptq", **info,
               "test_accuracy": _recurrent_accuracy(qmodel, data.test, dev),
               "seconds": time.perf_counter() - t0, **environment(dev)}
    write_json(metrics, out / "metrics.json")
    return metrics


def _qat_config(run: str | Path, qcfg: QuantRunConfig, tcfg: QATConfig) -> dict:
    """The settings a QAT folder records, through JSON (tuples become lists, as read back)."""
    return json.loads(json.dumps(
        {"run": str(run), "quant": dataclasses.asdict(qcfg), "qat": dataclasses.asdict(tcfg)}))


def qat(run: str | Path, qcfg: QuantRunConfig, tcfg: QATConfig, out: str | Path,
        device: str = "auto", data_dir: str | None = None, limit: int | None = None,
        resume: bool = False) -> dict:
    """Quantization-aware fine-tuning of a trained run; writes config, checkpoints and metrics.

    Static activation and state ranges are recalibrated at the start of every epoch (the
    dynamics change as A and Delta train) and frozen for the final evaluation.
    """
    out = Path(out)
    if tcfg.parameterization == "polar":
        qcfg = dataclasses.replace(qcfg, a_form="polar")
    param = "continuous" if tcfg.parameterization == "polar" else tcfg.parameterization
    config = _qat_config(run, qcfg, tcfg)
    if resume and (out / "config.json").exists():
        saved = read_json(out / "config.json")
        try:  # through the dataclasses: fields added since the run started take their defaults
            same = _qat_config(saved["run"], QuantRunConfig(**saved["quant"]),
                               QATConfig(**saved["qat"])) == config
        except (KeyError, TypeError, ImssaError):
            same = False
        if not same:
            raise ImssaError(f"--resume: {out} was started with other settings; use a new --out")
    if not resume and (out / "metrics.json").exists():
        raise ImssaError(f"{out} already holds a finished QAT run; choose a new --out or --resume")
    cfg, qmodel, data, dev, info = _prepare(run, qcfg, param, device, data_dir, limit)
    noise = tcfg.weight_noise()
    qmodel.weight_noise = noise  # training-mode forwards only; every evaluation below is clean
    torch.manual_seed(tcfg.seed)  # dropout and the global-RNG weight noise (CPU state is resumed)
    out.mkdir(parents=True, exist_ok=True)
    # With a continuous parameterization the wrapped float model is what was trained, so the
    # folder doubles as a training run of it ("train" and "model" keys, model.pt["model"]):
    # `imssa eval` and `imssa simulate` take it directly (e.g. a noise-trained fp model).
    as_run = param == "continuous"
    run_keys = {"train": dataclasses.asdict(cfg), "model": qmodel.model.cfg.to_dict()} \
        if as_run else {}
    write_json({**config, **run_keys}, out / "config.json")
    ptq_accuracy = _recurrent_accuracy(qmodel, data.test, dev)
    calib = _calibration_batches(data.train, qcfg.calib_samples)
    groups = qmodel.parameter_groups()
    fused = dev.type == "cuda"
    optimizer = torch.optim.AdamW(
        [{"params": groups["other"]},
         {"params": groups["ssm"], "lr": tcfg.ssm_lr, "weight_decay": 0.0}],
        lr=tcfg.lr, weight_decay=tcfg.weight_decay, fused=fused)
    loop = dataclasses.replace(cfg, epochs=tcfg.epochs, batch_size=tcfg.batch_size,
                               seed=tcfg.seed, lr=tcfg.lr)
    history = train_epochs(qmodel, lambda u: qmodel(u, mode=tcfg.mode), data, loop, out,
                           optimizer, dev, resume, grad_clip=tcfg.grad_clip,
                           on_epoch_start=lambda: calibrate(qmodel, calib))
    qmodel.freeze_ranges()
    saved = {"qmodel": qmodel.state_dict(), "config": config}
    if as_run:
        saved["model"] = qmodel.model.state_dict()
    atomic_save(saved, out / "model.pt")
    metrics = {"method": "qat", **info, "qat": config["qat"], "train_noise": noise.to_dict(),
               "ptq_test_accuracy": ptq_accuracy,
               "test_accuracy": _recurrent_accuracy(qmodel, data.test, dev),
               "epoch_seconds": history["epoch_seconds"], "history": history,
               **environment(dev)}
    if tcfg.mode == "conv":  # the accuracy the training mode promised, against the true one
        qmodel.eval()
        metrics["test_accuracy_conv"] = accuracy(lambda u: qmodel(u, mode="conv"), data.test, dev)
        metrics["conv_recurrent_gap"] = metrics["test_accuracy_conv"] - metrics["test_accuracy"]
    write_json(metrics, out / "metrics.json")
    return metrics
