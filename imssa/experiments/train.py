"""Training and evaluation of S4D classifiers, resumable, following the S4 reference recipe.

AdamW with the SSM's A and Delta (log_A_real, A_imag, log_dt) in their own group (lower learning
rate, no weight decay), a cosine schedule over all steps, batches drawn from tensors kept on the
training device (the models are small, so a DataLoader would dominate the step time). A
checkpoint is written atomically every epoch; ``resume=True`` continues from it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from imssa.data import TASKS, Split, TaskData, load_task
from imssa.errors import ImssaError
from imssa.experiments.io import atomic_save, environment, read_json, write_json
from imssa.ssm import S4DConfig, S4DModel, count_parameters, preset

SSM_SLOW_PARAMS = ("log_A_real", "A_imag", "log_dt")
MODES = ("conv", "recurrent")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run. ``model`` names a preset; ``model_overrides`` replaces its fields."""

    task: str = "sdigits"
    model: str = "s4d-16"
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
        if self.task not in TASKS:
            raise ImssaError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        preset(self.model)  # raises for an unknown preset
        if self.epochs < 1:
            raise ImssaError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ImssaError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 0 < self.ssm_lr <= 1e-3:
            raise ImssaError(f"--ssm-lr must be in (0, 1e-3] as in the S4 reference, got {self.ssm_lr}")
        if self.lr <= 0:
            raise ImssaError(f"--lr must be > 0, got {self.lr}")


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when available; otherwise the named device, checked to exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ImssaError(f"--device {name} asked for, but CUDA is not available; use --device cpu")
    return torch.device(name)


def build_model(cfg: TrainConfig, data: TaskData) -> S4DModel:
    """The preset's model, sized for the task's inputs and classes."""
    return S4DModel(preset(cfg.model, d_input=data.d_input, n_classes=data.n_classes))


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
    correct = 0
    starts = range(0, len(split.y), batch_size)
    for i in tqdm(starts, desc=desc, leave=False, disable=desc is None):
        x = split.x[i:i + batch_size].to(device, non_blocking=True)
        y = split.y[i:i + batch_size].to(device, non_blocking=True)
        correct += (forward(x).argmax(-1) == y).sum().item()
    return correct / len(split.y)


def model_forward(model: S4DModel, mode: str) -> Forward:
    """The model's forward in ``mode`` ('conv' or 'recurrent')."""
    if mode not in MODES:
        raise ImssaError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    return functools.partial(model, mode=mode)


def train_epochs(model: nn.Module, forward: Forward, data: TaskData, cfg: TrainConfig,
                 out: Path, optimizer: torch.optim.Optimizer, device: torch.device,
                 resume: bool, grad_clip: float | None = None,
                 on_epoch_start: Callable[[], object] | None = None) -> dict:
    """The epoch loop shared by training and QAT: shuffles, steps, checkpoints, resumes.

    ``on_epoch_start`` runs before each epoch (QAT recalibrates its ranges there).

    Returns the history (per-epoch loss, validation accuracy and seconds).
    """
    n = len(data.train.y)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    scheduler = cosine_schedule(optimizer, cfg.epochs * steps_per_epoch)
    history: dict = {"loss": [], "val_accuracy": [], "epoch_seconds": []}
    start_epoch = 0
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        history, start_epoch = ckpt["history"], ckpt["epoch"] + 1
        torch.set_rng_state(ckpt["rng"].cpu())  # map_location moved it
        print(f"resuming {out} after epoch {start_epoch}/{cfg.epochs}")
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
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            loss = F.cross_entropy(forward(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(idx)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        model.eval()
        val = accuracy(forward, data.val, device)
        history["loss"].append(total.item() / n)
        history["val_accuracy"].append(val)
        history["epoch_seconds"].append(seconds)
        print(f"epoch {epoch + 1}/{cfg.epochs}  loss {history['loss'][-1]:.4f}  "
              f"val {100 * val:.2f} %  {seconds:.1f} s", flush=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "history": history, "epoch": epoch,
                 "rng": torch.get_rng_state()}
        atomic_save(state, ckpt_path)
    return history


def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train one model into the run folder ``out``; returns the metrics it writes."""
    out = Path(out)
    device = resolve_device(cfg.device)
    config_path = out / "config.json"
    if resume and config_path.exists():
        saved = TrainConfig(**read_json(config_path)["train"])
        if saved != cfg:
            raise ImssaError(f"--resume: {out} was started with another configuration; "
                             "rerun with the same arguments or choose a new --out")
    elif not resume and (out / "metrics.json").exists():
        raise ImssaError(f"{out} already holds a finished run; choose a new --out or pass --resume")
    torch.manual_seed(cfg.seed)
    data = load_task(cfg.task, cfg.data_dir, val_fraction=cfg.val_fraction, seed=cfg.seed,
                     limit=cfg.limit)
    model = build_model(cfg, data).to(device)
    out.mkdir(parents=True, exist_ok=True)
    write_json({"train": dataclasses.asdict(cfg), "model": model.cfg.to_dict()}, config_path)
    history = train_epochs(model, model, data, cfg, out, make_optimizer(model, cfg), device,
                           resume)
    atomic_save({"model": model.state_dict(), "model_config": model.cfg.to_dict()},
                out / "model.pt")
    model.eval()
    metrics = {
        "task": cfg.task, "model": cfg.model, "seed": cfg.seed, "mode": "conv",
        "test_accuracy": accuracy(model, data.test, device),
        "val_accuracy": history["val_accuracy"][-1],
        "parameters": count_parameters(model),
        "epoch_seconds": history["epoch_seconds"],
        "history": history,
        **environment(device),
    }
    write_json(metrics, out / "metrics.json")
    return metrics


def load_run(run: str | Path, device: torch.device | str = "cpu") -> tuple[TrainConfig, S4DModel]:
    """The configuration and trained model of a run folder, with clear errors when it is not one."""
    run = Path(run)
    if not (run / "config.json").exists() or not (run / "model.pt").exists():
        raise ImssaError(f"{run} is not a finished training run (needs config.json and model.pt); "
                         "train one with `imssa train --out RUN`")
    saved = read_json(run / "config.json")
    cfg = TrainConfig(**saved["train"])
    model = S4DModel(S4DConfig(**saved["model"]))
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise ImssaError(f"{run}/model.pt does not fit the model in {run}/config.json "
                         f"({cfg.model}: {saved['model']}); it comes from another model. "
                         "Retrain or copy the matching config.json") from err
    return cfg, model.to(device).eval()


def evaluate(run: str | Path, mode: str = "conv", device: str = "auto",
             data_dir: str | None = None, limit: int | None = None) -> dict:
    """Test accuracy of a trained run in ``mode``; writes ``metrics_<mode>.json`` beside it."""
    dev = resolve_device(device)
    cfg, model = load_run(run, dev)
    data = load_task(cfg.task, data_dir or cfg.data_dir, val_fraction=cfg.val_fraction,
                     seed=cfg.seed, limit=limit if limit is not None else cfg.limit)
    forward = model_forward(model, mode)
    t0 = time.perf_counter()
    acc = accuracy(forward, data.test, dev, desc=f"eval {mode}")
    metrics = {"task": cfg.task, "model": cfg.model, "seed": cfg.seed, "mode": mode,
               "test_accuracy": acc, "parameters": count_parameters(model),
               "eval_seconds": time.perf_counter() - t0, **environment(dev)}
    write_json(metrics, Path(run) / f"metrics_{mode}.json")
    return metrics
