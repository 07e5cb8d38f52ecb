"""Post-training quantization (PTQ) and quantization-aware training (QAT) of a trained run.

PTQ calibrates static ranges on training sequences and evaluates in recurrent mode, the state
quantized at every step (Zhao et al. 2025, "Quantizing Small-Scale State-Space Models for Edge
AI"). QAT fine-tunes the full-precision checkpoint with fake quantization and straight-through
gradients, in recurrent mode (the paper) or convolutional mode (QS4D), and always reports the
accuracy of the true recurrent quantized execution, so the gap of conv-mode QAT is measured.

Noise-aware QAT (``--train-noise``) injects weight noise (:mod:`imssa.quant.noise`) into the
quantized crossbar weights at every training step, in the mapped domain of the state-transition
form the chip will use (``train_noise_transition``, ``train_noise_granularity``); validation and
test run clean. With the ``fp`` preset this trains a noise-robust full-precision model. Training
that diverges (a loss or parameter no longer finite) stops with an error before anything is saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from imssa.data import Split, TaskData, calibration_subset, load_task
from imssa.errors import ImssaError
from imssa.experiments.io import atomic_save, environment, parse_field, read_json, write_json
from imssa.experiments.rules import check_positive, check_ssm_lr
from imssa.experiments.train import (
    TrainConfig,
    accuracy,
    check_fresh_start,
    load_run,
    resolve_device,
    train_epochs,
)
from imssa.quant import (
    PARAMETERIZATIONS,
    QuantConfig,
    QuantSpec,
    TrainStep,
    apply_a_margin,
    calibrate,
    check_finite,
    float_state_dict,
    freeze_ranges,
    graph_blocker,
    legacy,
    make_config,
    memory_footprint,
    parameter_groups,
    prepare,
    set_weight_noise,
)
from imssa.quant.noise import NOISE_COMPONENTS, WeightNoiseConfig
from imssa.ssm import S4DConfig, S4DModel

QAT_PARAMETERIZATIONS = (*PARAMETERIZATIONS, "polar")
"""``polar`` is ``continuous`` training with the stable polar grid for A_bar."""
CALIBRATION_BATCH = 256  # calibration sequences per forward


@dataclass(frozen=True, kw_only=True)
class QuantRunConfig:
    """What to quantize: a preset, the heterogeneous A_bar / state bits and spec overrides.

    ``overrides`` maps a selector (``blocks.*.mix.bias``, ``A``, ``blocks.0.ssm.A_bar``) to
    QuantSpec fields; ``calib_samples`` sequences of :func:`imssa.data.calibration_subset` set
    the static ranges.
    """

    preset: str = "W4A6"
    a_bits: int | None = None
    x_bits: int | None = None
    a_form: str = "cartesian"
    x_granularity: str | None = None
    x_rounding: str | None = None
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    calib_samples: int = 1000

    def __post_init__(self) -> None:
        if isinstance(self.calib_samples, bool) or not isinstance(self.calib_samples, int) \
                or self.calib_samples < 1:
            raise ImssaError(f"QuantRunConfig.calib_samples must be an integer >= 1 (static "
                             f"ranges need calibration data), got {self.calib_samples!r}")
        self.quant_config()  # validates preset, bits, targets and fields

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QuantRunConfig:
        """A saved ``quant`` record, old target names translated."""
        return cls(**legacy.quant_run_dict(d))

    def quant_config(self) -> QuantConfig:
        overrides = dict(self.overrides)
        for name in ("granularity", "rounding"):
            value = getattr(self, f"x_{name}")
            if value is not None:
                overrides["x"] = {**overrides.get("x", {}), name: value}
        return make_config(self.preset, self.a_bits, self.x_bits, overrides,
                           a_bar_form=self.a_form)  # type: ignore[arg-type]

    def tag(self) -> str:
        a = "" if self.a_bits is None else f"-a{self.a_bits}"
        x = "" if self.x_bits is None else f"-x{self.x_bits}"
        sr = "-sr" if self.x_rounding == "stochastic" else ""
        return f"{self.preset}{a}{x}{sr}-{self.a_form}"


@dataclass(frozen=True, kw_only=True)
class QATConfig:
    """Fine-tuning settings. ``lr`` for weights, ``ssm_lr`` for the SSM dynamics (no decay).

    ``train_noise`` (sigma), ``train_noise_on`` (components), ``train_noise_kind`` (gaussian
    or pcm), ``train_noise_transition`` (direct or increment), ``train_noise_granularity``
    (tensor, channel or mode), ``train_read_noise`` (per-step read noise, recurrent mode) and
    ``train_noise_t`` (s; with pcm: the chip read that long after programming, drift and global
    compensation included) set the weight noise of every training step; see
    :class:`~imssa.quant.noise.WeightNoiseConfig`.
    sigma 0 (default) trains without noise. ``a_margin`` > 0 keeps 1 - |A_bar| of every noisy
    mode above a_margin times its error std (:mod:`imssa.quant.margin`; continuous
    parameterizations only); 0 (default) trains through the noise as the chip runs it.
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
    train_noise_transition: str = "direct"
    train_noise_granularity: str = "tensor"
    train_read_noise: float = 0.0
    train_noise_t: float = 0.0
    a_margin: float = 0.0

    def __post_init__(self) -> None:
        try:
            noise = self.weight_noise()
        except ImssaError as err:  # name this config's fields
            raise ImssaError(str(err).replace("WeightNoiseConfig.sigma", "QATConfig.train_noise")
                             .replace("WeightNoiseConfig.read_sigma", "QATConfig.train_read_noise")
                             .replace("WeightNoiseConfig.t_inference", "QATConfig.train_noise_t")
                             .replace("WeightNoiseConfig.components", "QATConfig.train_noise_on")
                             .replace("WeightNoiseConfig.", "QATConfig.train_noise_")) from None
        object.__setattr__(self, "train_noise_on", noise.components)
        if self.parameterization not in QAT_PARAMETERIZATIONS:
            raise ImssaError(f"QATConfig.parameterization must be one of "
                             f"{', '.join(QAT_PARAMETERIZATIONS)}, got {self.parameterization!r}")
        if self.mode not in ("recurrent", "conv"):
            raise ImssaError(f"QATConfig.mode must be recurrent or conv, got {self.mode!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImssaError(f"QATConfig.{name} must be an integer >= 1, got {value!r}")
        check_positive(self.lr, "QATConfig.lr")
        check_ssm_lr(self.ssm_lr, "QATConfig.ssm_lr")
        check_positive(self.grad_clip, "QATConfig.grad_clip")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ImssaError(f"QATConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if isinstance(self.a_margin, bool) or not isinstance(self.a_margin, (int, float)) \
                or not math.isfinite(self.a_margin) or self.a_margin < 0:
            raise ImssaError(f"QATConfig.a_margin must be a finite number >= 0 (0 = none), got "
                             f"{self.a_margin!r}")
        if self.a_margin > 0 and self.parameterization not in ("continuous", "polar"):
            raise ImssaError("QATConfig.a_margin moves log_A_real: it needs parameterization "
                             f"continuous or polar, got {self.parameterization!r}")
        if self.train_read_noise > 0 and self.mode != "recurrent":
            raise ImssaError("QATConfig.train_read_noise is per-step read noise: it needs "
                             f"mode='recurrent' (conv mode has no steps), got {self.mode!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> QATConfig:
        """A saved ``qat`` record, old noise component names translated."""
        return cls(**legacy.qat_dict(d))

    def weight_noise(self) -> WeightNoiseConfig:
        return WeightNoiseConfig(sigma=self.train_noise, components=self.train_noise_on,
                                 kind=self.train_noise_kind,
                                 transition=self.train_noise_transition,
                                 granularity=self.train_noise_granularity,
                                 read_sigma=self.train_read_noise,
                                 t_inference=self.train_noise_t)

    def settings(self) -> str:
        """The settings a diverged run names in its error."""
        return (f"QATConfig.lr={self.lr:g}, ssm_lr={self.ssm_lr:g}, train_noise={self.train_noise:g}"
                f" ({self.train_noise_kind}, {self.train_noise_transition}/"
                f"{self.train_noise_granularity}, t={self.train_noise_t:g} s), "
                f"train_read_noise={self.train_read_noise:g}, "
                f"a_margin={self.a_margin:g}, mode={self.mode}")


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["x.bits=6", "blocks.*.mix.bias.symmetric=false"]`` -> ``{"x": {"bits": 6}, ...}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        target, dot, name = key.rpartition(".")
        if not sep or not dot:
            raise ImssaError(f"override {item!r}: expected TARGET.FIELD=VALUE, e.g. x.bits=6")
        try:  # typed by the QuantSpec field: strict booleans, numbers that are numbers
            out.setdefault(target, {})[name] = parse_field(QuantSpec, name, value)
        except ImssaError as err:
            raise ImssaError(f"override {item!r}: {err}") from None
    return out


def calibration_batches(split: Split, n: int) -> list[torch.Tensor]:
    """The calibration inputs (:func:`imssa.data.calibration_subset`), in batches."""
    x = calibration_subset(split, n)
    return [x[i:i + CALIBRATION_BATCH] for i in range(0, len(x), CALIBRATION_BATCH)]


def _prepare(run: str | Path, qcfg: QuantRunConfig, parameterization: str, device: str,
             data_dir: str | None, limit: int | None
             ) -> tuple[TrainConfig, S4DModel, TaskData, torch.device, dict]:
    dev = resolve_device(device)
    cfg, model = load_run(run, dev)
    data = load_task(cfg.task, data_dir or cfg.data_dir, val_fraction=cfg.val_fraction,
                     seed=cfg.seed, limit=limit if limit is not None else cfg.limit)
    qconfig = qcfg.quant_config()
    prepare(model, qconfig, parameterization=parameterization)
    calibrate(model, calibration_batches(data.train, qcfg.calib_samples))
    memory = memory_footprint(qconfig, model.cfg)
    info = {"run": str(run), "task": cfg.task, "model": cfg.model,
            "architecture": model.cfg.to_dict(), "seed": cfg.seed,
            "quant": dataclasses.asdict(qcfg), "quant_config": qconfig.to_dict(),
            "memory": memory.to_dict(), "memory_savings_percent": memory.savings_percent}
    return cfg, model, data, dev, info


def recurrent_accuracy(model: S4DModel, split: Split, device: torch.device) -> float:
    """Test accuracy of a (prepared) model in recurrent mode, in eval mode."""
    model.eval()
    return accuracy(lambda u: model(u, mode="recurrent"), split, device, desc="eval recurrent")


def ptq(run: str | Path, qcfg: QuantRunConfig, out: str | Path | None = None,
        device: str = "auto", data_dir: str | None = None, limit: int | None = None) -> dict:
    """Calibrate, quantize and evaluate a trained run in recurrent mode; writes metrics.json."""
    out = Path(out) if out is not None else Path(run) / f"ptq-{qcfg.tag()}"
    t0 = time.perf_counter()
    _, model, data, dev, info = _prepare(run, qcfg, "continuous", device, data_dir, limit)
    metrics = {"method": "ptq", **info,
               "test_accuracy": recurrent_accuracy(model, data.test, dev),
               "seconds": time.perf_counter() - t0, **environment(dev)}
    write_json(metrics, out / "metrics.json")
    return metrics


def _qat_config(run: str | Path, qcfg: QuantRunConfig, tcfg: QATConfig) -> dict:
    """The settings a QAT folder records, through JSON (tuples become lists, as read back)."""
    return json.loads(json.dumps(
        {"run": str(run), "quant": dataclasses.asdict(qcfg), "qat": dataclasses.asdict(tcfg)}))


def _qat_settings(qcfg: QuantRunConfig, tcfg: QATConfig) -> tuple[QuantRunConfig, str]:
    """The quantization settings and SSM parameterization a QAT config trains with."""
    if tcfg.parameterization == "polar":
        return dataclasses.replace(qcfg, a_form="polar"), "continuous"
    return qcfg, tcfg.parameterization


def load_qat(folder: str | Path, device: torch.device | str = "cpu") -> tuple[S4DModel, dict]:
    """The prepared, frozen model of a finished QAT folder and its recorded settings.

    Folders written before one name per tensor load too (:mod:`imssa.quant.legacy`).
    """
    folder = Path(folder)
    if not (folder / "config.json").exists() or not (folder / "model.pt").exists():
        raise ImssaError(f"{folder} is not a finished QAT run (needs config.json and model.pt)")
    config = read_json(folder / "config.json")
    qcfg, param = _qat_settings(QuantRunConfig.from_dict(config["quant"]),
                                QATConfig.from_dict(config["qat"]))
    arch = S4DConfig(**config["model"]) if "model" in config else load_run(config["run"])[1].cfg
    model = prepare(S4DModel(arch), qcfg.quant_config(), parameterization=param)
    saved = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    state = legacy.state_dict(saved["qmodel"], param)
    own = model.state_dict()
    # quantizers of the parts a full-precision spec leaves unswapped carry no information
    state = {k: v for k, v in state.items() if k in own or ".q." not in k}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ImssaError(f"{folder}/model.pt does not fit the model of {folder}/config.json: "
                         f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval(), config


def qat(run: str | Path, qcfg: QuantRunConfig, tcfg: QATConfig, out: str | Path,
        device: str = "auto", data_dir: str | None = None, limit: int | None = None,
        resume: bool = False) -> dict:
    """Quantization-aware fine-tuning of a trained run; writes config, checkpoints and metrics.

    Static activation and state ranges are recalibrated at the start of every epoch (the
    dynamics change as A and Delta train) and frozen for the final evaluation.
    """
    out = Path(out)
    qcfg, param = _qat_settings(qcfg, tcfg)
    config = _qat_config(run, qcfg, tcfg)
    if resume and (out / "config.json").exists():
        saved = read_json(out / "config.json")
        try:  # through the dataclasses: fields added since the run started take their defaults
            same = _qat_config(saved["run"], QuantRunConfig.from_dict(saved["quant"]),
                               QATConfig.from_dict(saved["qat"])) == config
        except (KeyError, TypeError, ImssaError):
            same = False
        if not same:
            raise ImssaError(f"resume: {out} was started with other settings; use a new output "
                             "folder")
    if not resume and (out / "metrics.json").exists():
        raise ImssaError(f"{out} already holds a finished QAT run; choose a new output folder "
                         "or resume")
    cfg, model, data, dev, info = _prepare(run, qcfg, param, device, data_dir, limit)
    noise = tcfg.weight_noise()
    set_weight_noise(model, noise)  # training-mode forwards only; every evaluation is clean
    apply_a_margin(model, tcfg.a_margin)
    torch.manual_seed(tcfg.seed)  # dropout and the global-RNG weight noise (CPU state is resumed)
    check_fresh_start(out, resume)  # before config.json is written
    out.mkdir(parents=True, exist_ok=True)
    # With a continuous parameterization the float model is what was trained, so the folder
    # doubles as a training run of it ("train" and "model" keys, model.pt["model"]):
    # `imssa eval` and `imssa simulate` take it directly (e.g. a noise-trained fp model).
    as_run = param == "continuous"
    run_keys = {"train": dataclasses.asdict(cfg), "model": model.cfg.to_dict()} if as_run else {}
    ptq_accuracy = recurrent_accuracy(model, data.test, dev)
    calib = calibration_batches(data.train, qcfg.calib_samples)
    groups = parameter_groups(model)
    # Recurrent QAT on CUDA replays each update from a CUDA graph (it is bound by the host's
    # kernel launches otherwise): the optimizer is capturable with tensor learning rates, and
    # divergence is caught by the epoch's loss (the check of every step would synchronize).
    graphed = dev.type == "cuda" and tcfg.mode == "recurrent" and graph_blocker(model) is None
    lr = (lambda v: torch.tensor(v, device=dev)) if graphed else float
    optimizer = torch.optim.AdamW(
        [{"params": groups["other"]},
         {"params": groups["ssm"], "lr": lr(tcfg.ssm_lr), "weight_decay": 0.0}],
        lr=lr(tcfg.lr), weight_decay=tcfg.weight_decay, fused=dev.type == "cuda",
        capturable=graphed)
    loop = dataclasses.replace(cfg, epochs=tcfg.epochs, batch_size=tcfg.batch_size,
                               seed=tcfg.seed, lr=tcfg.lr)

    def forward(u: torch.Tensor) -> torch.Tensor:
        """One guarded forward: the margin projection of the last update, then a stop on
        non-finite parameters or logits (so no checkpoint or model of a diverged run is saved)."""
        apply_a_margin(model, tcfg.a_margin)
        check_finite(model, None, tcfg.settings())
        logits = model(u, mode=tcfg.mode)
        check_finite(model, logits, tcfg.settings())
        return logits

    update = TrainStep(model, lambda u: model(u, mode=tcfg.mode), optimizer, tcfg.grad_clip) \
        if graphed else None
    history = train_epochs(model, forward, data, loop, out, optimizer, dev, resume,
                           grad_clip=tcfg.grad_clip, on_epoch_start=lambda: calibrate(model, calib),
                           config=config, update=update,
                           on_start=lambda: write_json({**config, **run_keys}, out / "config.json"))
    apply_a_margin(model, tcfg.a_margin)
    check_finite(model, None, tcfg.settings())
    freeze_ranges(model)
    saved = {"qmodel": model.state_dict(), "config": config}
    if as_run:
        saved["model"] = float_state_dict(model)
    atomic_save(saved, out / "model.pt")
    metrics = {"method": "qat", **info, "qat": config["qat"], "train_noise": noise.to_dict(),
               "ptq_test_accuracy": ptq_accuracy,
               "test_accuracy": recurrent_accuracy(model, data.test, dev),
               "epoch_seconds": history["epoch_seconds"], "history": history,
               **environment(dev)}
    if tcfg.mode == "conv":  # the accuracy the training mode promised, against the true one
        model.eval()
        metrics["test_accuracy_conv"] = accuracy(lambda u: model(u, mode="conv"), data.test, dev)
        metrics["conv_recurrent_gap"] = metrics["test_accuracy_conv"] - metrics["test_accuracy"]
    write_json(metrics, out / "metrics.json")
    return metrics
