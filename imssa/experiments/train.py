"""Training and evaluation of S4D classifiers, resumable, following the S4 reference recipe.

AdamW with the SSM's A and Delta (log_A_real, A_imag, log_dt) in their own group (lower learning
rate, no weight decay), a cosine schedule over all steps, batches drawn from tensors kept on the
training device (the models are small, so a DataLoader would dominate the step time). A
checkpoint is written atomically every epoch; ``resume=True`` continues from it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from imssa.data import TASKS, Split, TaskData, load_task
from imssa.errors import ImssaError
from imssa.experiments.io import (
    atomic_save,
    check_field_types,
    config_from_dict,
    environment,
    load_tensors,
    progress,
    read_json,
    write_json,
)
from imssa.experiments.rules import check_positive, check_ssm_lr
from imssa.files import check_writable
from imssa.quant import TrainStep
from imssa.ssm import S4DConfig, S4DModel, count_parameters, preset

#: TrainConfig fields that override the preset's architecture (None: the preset's own), so that
#: width, depth, state size and SSM kind are sweep axes without a preset per combination.
ARCHITECTURE_FIELDS = ("d_model", "n_layers", "d_state", "ssm")
SSM_SLOW_PARAMS = ("log_A_real", "A_imag", "log_dt")
MODES = ("conv", "recurrent")
_TORCH_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_name(name: object, field: str) -> None:
    """Raise ImssaError unless ``name`` is a torch device imssa runs on: cpu, cuda, cuda:N, auto."""
    if not isinstance(name, str) or not _TORCH_DEVICE.fullmatch(name):
        raise ImssaError(f"{field} must be cpu, cuda, cuda:N or auto (imssa runs on CPUs and "
                         f"CUDA GPUs), got {name!r}")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run: the task, the model preset (``imssa.ssm.PRESETS``, sized for the task's
    inputs and classes), the optimizer settings and the torch device.

    ``d_model`` (width H), ``n_layers`` (depth), ``d_state`` (real state size N per channel)
    and ``ssm`` (``complex`` or ``real``) replace the preset's fields where not None, e.g.
    ``model="s4d-16", d_model=32, n_layers=2`` (:meth:`architecture` gives the result). In a
    run's metrics (and simulate's NetCDF attrs) ``model`` is always this preset's name and
    ``architecture`` the S4DConfig the model was built with, overrides applied.

    ``lr`` is AdamW's learning rate of the weights, ``ssm_lr`` that of A and Delta (in (0, 1e-3]
    as in the S4 reference, no weight decay). ``limit`` keeps the first samples of the task for
    quick checks; ``data_dir`` is stored as an absolute path, so the run can be evaluated from any
    working directory.
    """

    task: str = "sdigits"
    model: str = "s4d-16"
    d_model: int | None = None
    n_layers: int | None = None
    d_state: int | None = None
    ssm: str | None = None
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-2
    ssm_lr: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0
    val_fraction: float = 0.1
    limit: int | None = None
    data_dir: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.task not in TASKS:
            raise ImssaError(f"TrainConfig.task: unknown task {self.task!r}; choose one of "
                             f"{', '.join(TASKS)}")
        try:
            preset(self.model)
        except ImssaError as err:
            raise ImssaError(f"TrainConfig.model: {err}") from None
        try:
            self.architecture()
        except ImssaError as err:  # S4DConfig's rule, named by this config's field
            raise ImssaError(str(err).replace("S4DConfig.", "TrainConfig.")) from None
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ImssaError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        check_positive(self.lr, "TrainConfig.lr")
        check_ssm_lr(self.ssm_lr, "TrainConfig.ssm_lr")  # the one rule of train and qat
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ImssaError(f"TrainConfig.weight_decay must be a finite number >= 0, "
                             f"got {self.weight_decay}")
        if not 0 <= self.val_fraction < 1:
            raise ImssaError(f"TrainConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.limit is not None and self.limit < 1:
            raise ImssaError(f"TrainConfig.limit must be None or >= 1, got {self.limit}")
        check_device_name(self.device, "TrainConfig.device")
        if self.data_dir is not None:
            if not self.data_dir.strip():
                raise ImssaError("TrainConfig.data_dir must be a folder or None, got ''")
            object.__setattr__(self, "data_dir", str(Path(self.data_dir).expanduser().resolve()))

    def architecture(self, d_input: int = 1, n_classes: int = 10) -> S4DConfig:
        """The model's S4DConfig: the preset with the overrides that are not None, sized for
        ``d_input`` input features and ``n_classes`` classes."""
        overrides = {name: getattr(self, name) for name in ARCHITECTURE_FIELDS
                     if getattr(self, name) is not None}
        return preset(self.model, d_input=d_input, n_classes=n_classes, **overrides)


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """Evaluation of a run: execution ``mode`` (conv or recurrent), torch ``device``, and the data
    folder and sample limit (None: the run's own)."""

    mode: str = "conv"
    device: str = "auto"
    data_dir: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.mode not in MODES:
            raise ImssaError(f"EvalConfig.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        check_device_name(self.device, "EvalConfig.device")
        if self.limit is not None and self.limit < 1:
            raise ImssaError(f"EvalConfig.limit must be None or >= 1, got {self.limit}")


def resolve_device(name: str, field: str = "device") -> torch.device:
    """'auto' picks CUDA when available; otherwise the named device, checked to exist."""
    check_device_name(name, field)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ImssaError(f"{field} is {name}, but CUDA is not available here; use cpu")
        index = torch.device(name).index
        if index is not None and index >= torch.cuda.device_count():
            raise ImssaError(f"{field} is {name}, but this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def build_model(cfg: TrainConfig, data: TaskData) -> S4DModel:
    """The run's model (:meth:`TrainConfig.architecture`), sized for the task's inputs and
    classes."""
    return S4DModel(cfg.architecture(data.d_input, data.n_classes))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; the SSM's A and Delta get ``ssm_lr`` and no weight decay (S4 reference)."""
    slow, rest = [], []
    for name, p in model.named_parameters():
        (slow if name.rsplit(".", 1)[-1] in SSM_SLOW_PARAMS else rest).append(p)
    groups = [{"params": rest},
              {"params": slow, "lr": cfg.ssm_lr, "weight_decay": 0.0}]
    fused = all(p.is_cuda for p in model.parameters())  # one kernel per step on the GPU
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int):
    """Cosine decay from each group's learning rate to zero over ``total_steps``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps)))


Forward = Callable[[Tensor], Tensor]


@torch.no_grad()
def accuracy(forward: Forward, split: Split, device: torch.device, batch_size: int = 1000,
             desc: str | None = None) -> float:
    """Fraction of ``split`` classified correctly by ``forward`` (logits from inputs)."""
    if len(split.y) == 0:
        raise ImssaError("the split to evaluate is empty: no accuracy can be measured")
    correct = 0
    starts = range(0, len(split.y), batch_size)
    for i in progress(starts, desc=desc, leave=False, disable=desc is None):
        x = split.x[i:i + batch_size].to(device, non_blocking=True)
        y = split.y[i:i + batch_size].to(device, non_blocking=True)
        correct += (forward(x).argmax(-1) == y).sum().item()
    return correct / len(split.y)


def model_forward(model: S4DModel, mode: str) -> Forward:
    """The model's forward in ``mode`` ('conv' or 'recurrent')."""
    if mode not in MODES:
        raise ImssaError(f"EvalConfig.mode must be one of {', '.join(MODES)}, got {mode!r}")
    return functools.partial(model, mode=mode)


def _load_checkpoint(path: Path, config: dict, device: torch.device) -> dict:
    """The checkpoint at ``path``, checked to belong to the run ``config`` describes."""
    ckpt = load_tensors(path, "checkpoint", "delete it to start the run over")
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "scheduler", "history", "epoch",
                                          "rng"} <= ckpt.keys():
        raise ImssaError(f"checkpoint {path} lacks the training state imssa writes; it comes "
                         "from elsewhere: delete it to start the run over")
    if "config" not in ckpt:
        print(f"note: {path} predates checkpoints that record their settings; resuming on the "
              "word of config.json", flush=True)
    else:  # a key one side lacks counts as None: a field added since, at its default None
        changed = sorted(k for k in {**config, **ckpt["config"]}
                         if config.get(k) != ckpt["config"].get(k))
        if not changed:
            return ckpt
        raise ImssaError(f"checkpoint {path} belongs to a run with other settings (differing: "
                         f"{', '.join(changed)}); resume it with its own settings, or start the "
                         "new run in another folder")
    return ckpt


def check_fresh_start(out: Path, resume: bool) -> None:
    """A run started without ``resume`` must not inherit or overwrite an interrupted one in the
    same folder: call before writing the folder's config.json."""
    if not resume and (out / "checkpoint.pt").exists():
        raise ImssaError(f"{out} holds an interrupted run (checkpoint.pt): continue it with "
                         "resume=True, or choose a new folder")


def train_epochs(model: nn.Module, forward: Forward, data: TaskData, cfg: TrainConfig,
                 out: Path, optimizer: torch.optim.Optimizer, device: torch.device,
                 resume: bool, grad_clip: float | None = None,
                 on_epoch_start: Callable[[], object] | None = None,
                 config: dict | None = None,
                 update: Callable[[Tensor, Tensor], Tensor] | None = None,
                 on_start: Callable[[], object] | None = None) -> dict:
    """The epoch loop shared by training and QAT: shuffles, steps, checkpoints, resumes.

    ``on_epoch_start`` runs before each epoch (QAT recalibrates its ranges there). ``config``
    (JSON-ready; default: ``cfg`` as a dict) is stored in every checkpoint, and a resume from a
    checkpoint of other settings is refused: a resumed run is the uninterrupted run, bit for bit.
    A loss that turns NaN or infinite stops the run with ImssaError (the last good checkpoint
    stays, no model is written).

    ``update`` (u, y) -> loss is one optimizer step; the default is the eager step of ``forward``,
    cross-entropy, ``grad_clip`` and ``optimizer`` (:class:`imssa.quant.TrainStep` without a
    graph); QAT passes one replayed from a CUDA graph.

    ``on_start`` runs once the checkpoint (if resuming) is checked and loaded, before the first
    epoch: the caller writes its config.json there, so a refused resume leaves the folder as it
    was.

    Returns the history (per-epoch loss, validation accuracy and seconds).
    """
    if update is None:
        update = TrainStep(model, forward, optimizer, grad_clip, graph=False)
    config = json.loads(json.dumps(config if config is not None else dataclasses.asdict(cfg)))
    n = len(data.train.y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    scheduler = cosine_schedule(optimizer, cfg.epochs * steps_per_epoch)
    history: dict = {"loss": [], "val_accuracy": [], "epoch_seconds": []}
    start_epoch = 0
    ckpt_path = out / "checkpoint.pt"
    check_fresh_start(out, resume)
    if resume and ckpt_path.exists():
        ckpt = _load_checkpoint(ckpt_path, config, device)
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise ImssaError(f"checkpoint {ckpt_path} does not fit this model ({err}); delete it "
                             "to start the run over") from None
        scheduler.load_state_dict(ckpt["scheduler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"] + 1
        torch.set_rng_state(ckpt["rng"])
        print(f"resuming {out} after epoch {start_epoch}/{cfg.epochs}", flush=True)
    if on_start is not None:
        on_start()
    x_train, y_train = data.train.x.to(device), data.train.y.to(device)
    for epoch in range(start_epoch, cfg.epochs):
        if on_epoch_start is not None:
            on_epoch_start()
        model.train()
        # The order depends on (seed, epoch) only, so a resumed run sees the same batches.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        order = order.to(device)
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            loss = update(x_train[idx], y_train[idx])
            scheduler.step()
            total += loss * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        mean_loss = total.item() / n
        if not math.isfinite(mean_loss):
            raise ImssaError(f"training diverged: the loss is {mean_loss} in epoch {epoch + 1}; "
                             f"lower the learning rate (TrainConfig.lr = {cfg.lr:g}); nothing of "
                             "this epoch was saved")
        model.eval()
        val = accuracy(forward, data.val, device) if len(data.val.y) else None  # val_fraction 0
        history["loss"].append(mean_loss)
        history["val_accuracy"].append(val)
        history["epoch_seconds"].append(seconds)
        val_text = "-" if val is None else f"{100 * val:.2f} %"
        print(f"epoch {epoch + 1}/{cfg.epochs}  loss {mean_loss:.4f}  val {val_text}  "
              f"{seconds:.1f} s", flush=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "history": history, "epoch": epoch,
                 "rng": torch.get_rng_state(), "config": config}
        atomic_save(state, ckpt_path)
    return history


def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train one model into the run folder ``out``; returns the metrics it writes.

    Everything that can fail is checked before the first epoch: the folder is writable, a
    resumed run has the same settings, the task's splits are not empty.
    """
    out = Path(out)
    device = resolve_device(cfg.device, "TrainConfig.device")
    check_writable(out, "run folder")
    config_path = out / "config.json"
    if resume and config_path.exists():
        saved = config_from_dict(TrainConfig, _section(read_json(config_path), "train",
                                                       config_path), f"{config_path} ('train')")
        if saved != cfg:
            changed = [f.name for f in dataclasses.fields(cfg)
                       if getattr(saved, f.name) != getattr(cfg, f.name)]
            raise ImssaError(f"resume=True: {out} was started with other settings (differing: "
                             f"{', '.join(changed)}); use the same settings or a new folder")
    elif not resume and (out / "metrics.json").exists():
        raise ImssaError(f"{out} already holds a finished run; choose a new folder or resume=True")
    check_fresh_start(out, resume)
    torch.manual_seed(cfg.seed)
    data = load_task(cfg.task, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
                     limit=cfg.limit)
    if len(data.test.y) == 0:
        raise ImssaError(f"task {cfg.task} has no test samples in {data.source}; the run could "
                         "not be evaluated, so it is not started")
    model = build_model(cfg, data).to(device)
    out.mkdir(parents=True, exist_ok=True)
    history = train_epochs(model, model, data, cfg, out, make_optimizer(model, cfg), device,
                           resume, on_start=lambda: write_json(
                               {"train": dataclasses.asdict(cfg), "model": model.cfg.to_dict()},
                               config_path))
    atomic_save({"model": model.state_dict(), "model_config": model.cfg.to_dict()},
                out / "model.pt")
    model.eval()
    metrics = {
        "task": cfg.task, "model": cfg.model, "architecture": model.cfg.to_dict(),
        "seed": cfg.seed, "mode": "conv", "test_accuracy": accuracy(model, data.test, device),
        "val_accuracy": history["val_accuracy"][-1],
        "parameters": count_parameters(model),
        "epoch_seconds": history["epoch_seconds"],
        "history": history,
        **environment(device),
    }
    write_json(metrics, out / "metrics.json")
    return metrics


def _section(saved: object, key: str, path: Path) -> object:
    """``saved[key]`` of a run's config.json, with an error that says what the folder is instead."""
    if isinstance(saved, dict) and key in saved:
        return saved[key]
    if isinstance(saved, dict) and "qat" in saved:
        param = saved["qat"].get("parameterization") if isinstance(saved["qat"], dict) else None
        raise ImssaError(f"{path.parent} is a QAT folder of the {param!r} parameterization, which "
                         "stores no float model to run; pass the training run it was fine-tuned "
                         f"from ({saved.get('run', 'its config.json names it')})")
    keys = ", ".join(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__
    raise ImssaError(f"{path} is not the config of a training run (it holds {keys}; a run's has "
                     "'train' and 'model'); pass a folder written by `imssa train`")


def find_runs(folder: str | Path, depth: int = 2) -> list[Path]:
    """Finished training runs (config.json and model.pt) in ``folder`` itself or up to ``depth``
    levels below it, sorted; for the hint when a user names the folder above a run."""
    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "model.pt").is_file():
        return [folder]
    if depth == 0 or not folder.is_dir():
        return []
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return [run for child in children for run in find_runs(child, depth - 1)]


def resolve_run(run: str | Path) -> Path:
    """The run folder ``run``, checked to hold a finished training run. When it does not but
    folders inside it do (``runs/demo`` holds ``runs/demo/train``), the error names them."""
    run = Path(run)
    if (run / "config.json").is_file() and (run / "model.pt").is_file():
        return run
    if not run.exists():
        where = "" if run.is_absolute() else f" (looked for {run.absolute()})"
        raise ImssaError(f"{run} is not a finished training run: the folder does not exist{where}")
    inside = find_runs(run)
    if inside:
        names = ", ".join(str(r) for r in inside[:5]) + (" ..." if len(inside) > 5 else "")
        raise ImssaError(f"{run} is not a training run itself, but holds {len(inside)}: {names}; "
                         "pass one of those folders")
    raise ImssaError(f"{run} is not a finished training run (needs config.json and model.pt); "
                     "train one with `imssa train --out RUN`")


def load_run(run: str | Path, device: torch.device | str = "cpu") -> tuple[TrainConfig, S4DModel]:
    """The configuration and trained model of a run folder, with one clear error for anything
    else: a folder above runs, a QAT folder without a float model, a corrupt config.json or
    model.pt, or a model.pt of another model."""
    run = resolve_run(run)
    config_path = run / "config.json"
    saved = read_json(config_path)
    cfg = config_from_dict(TrainConfig, _section(saved, "train", config_path),
                           f"{config_path} ('train')")
    model_cfg = config_from_dict(S4DConfig, _section(saved, "model", config_path),
                                 f"{config_path} ('model')")
    model = S4DModel(model_cfg)
    state = load_tensors(run / "model.pt", "model file")
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError, IndexError) as err:
        raise ImssaError(f"{run}/model.pt does not fit the model in {run}/config.json "
                         f"({cfg.model}: {saved['model']}); it comes from another model. "
                         "Retrain or copy the matching config.json") from err
    return cfg, model.to(device).eval()


def evaluate(run: str | Path, mode: str = "conv", device: str = "auto",
             data_dir: str | None = None, limit: int | None = None) -> dict:
    """Test accuracy of a trained run in ``mode`` (see :class:`EvalConfig`); writes
    ``metrics_<mode>.json`` beside it. The folder is checked to be writable before the work."""
    ecfg = EvalConfig(mode=mode, device=device, data_dir=data_dir, limit=limit)
    dev = resolve_device(ecfg.device, "EvalConfig.device")
    cfg, model = load_run(run, dev)
    check_writable(run, "run folder")
    data = load_task(cfg.task, ecfg.data_dir or cfg.data_dir, val_fraction=cfg.val_fraction,
                     seed=cfg.seed, limit=ecfg.limit if ecfg.limit is not None else cfg.limit)
    forward = model_forward(model, ecfg.mode)
    t0 = time.perf_counter()
    acc = accuracy(forward, data.test, dev, desc=f"eval {ecfg.mode}")
    metrics = {"task": cfg.task, "model": cfg.model, "architecture": model.cfg.to_dict(),
               "seed": cfg.seed, "mode": ecfg.mode,
               "test_accuracy": acc, "parameters": count_parameters(model),
               "eval_seconds": time.perf_counter() - t0, **environment(dev)}
    write_json(metrics, Path(run) / f"metrics_{ecfg.mode}.json")
    return metrics
