"""The main job on the embedded default: train a small S4D on ``sdigits`` and evaluate it in both
execution modes, in well under a minute on a laptop CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

from imssa.experiments.train import TrainConfig, evaluate, train


def run_demo(out: Path, device: str = "auto") -> dict:
    """Train ``s4d-16`` on ``sdigits`` into ``out/train`` and evaluate it; returns a summary."""
    run = out / "train"
    if run.exists():
        shutil.rmtree(run)
    cfg = TrainConfig(task="sdigits", model="s4d-16", epochs=60, batch_size=32, device=device)
    print(f"[1/2] training {cfg.model} on {cfg.task} ({cfg.epochs} epochs) into {run}")
    trained = train(cfg, run)
    print("[2/2] evaluating in convolutional and recurrent mode")
    conv = evaluate(run, "conv", device)
    rec = evaluate(run, "recurrent", device)
    summary = {"parameters": trained["parameters"],
               "train_seconds": sum(trained["epoch_seconds"]),
               "test_accuracy_conv": conv["test_accuracy"],
               "test_accuracy_recurrent": rec["test_accuracy"]}
    print(f"\n{cfg.model} on {cfg.task}: {summary['parameters']} parameters, trained in "
          f"{summary['train_seconds']:.1f} s\n"
          f"  test accuracy, convolutional mode: {100 * summary['test_accuracy_conv']:.2f} %\n"
          f"  test accuracy, recurrent mode:     {100 * summary['test_accuracy_recurrent']:.2f} %")
    return summary
