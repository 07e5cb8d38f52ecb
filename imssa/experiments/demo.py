"""The main job on the embedded default, the whole pipeline in a few minutes on a laptop CPU:
train an S4D on ``sdigits``, evaluate it in both execution modes, quantize it (PTQ and QAT),
map it onto crossbar tiles, program it onto simulated PCM chips, drift them, simulate
recurrent inference through 8-bit DACs and ADCs (all analog, and with A_bar kept digital), and
plot both against drift time. The trained run is ``<out>/train``: the folder ``imssa eval``,
``ptq``, ``qat`` and ``simulate`` take (``simulate`` programs its float model, not the QAT one)."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from imssa.crossbar import PeripheryConfig
from imssa.devices import PCMConfig, format_time
from imssa.errors import ImssaError
from imssa.experiments.analyses import save_dataset
from imssa.experiments.io import atomic_write, write_json
from imssa.experiments.quantize import QATConfig, QuantRunConfig, ptq, qat
from imssa.experiments.simulate import SimulationConfig, simulate
from imssa.experiments.train import TrainConfig, evaluate, load_run, train
from imssa.files import check_writable
from imssa.mapping import MappingConfig, conductance_maps, map_model

if TYPE_CHECKING:
    import xarray as xr

SUMMARY = "demo.json"
N_CLASSES = 10


def run_demo(out: str | Path = Path("runs/demo"), device: str = "auto") -> dict:
    """Run every stage into ``out`` (replacing an earlier demo there); returns a summary, also
    written to ``out/demo.json``. A non-empty folder that is not an earlier demo is refused."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not ((out / SUMMARY).exists() or (out / "train").is_dir()):
            raise ImssaError(f"{out} holds files that are not an earlier demo; the demo replaces "
                             "its folder, so give it an empty or new one")
        shutil.rmtree(out)
    check_writable(out, "demo folder")
    t_start = time.perf_counter()
    run = out / "train"
    cfg = TrainConfig(task="sdigits", model="s4d-16", epochs=60, batch_size=32, device=device)
    print(f"[1/6] training {cfg.model} on {cfg.task} ({cfg.epochs} epochs) into {run}")
    trained = train(cfg, run)

    print("[2/6] evaluating in convolutional and recurrent mode")
    conv = evaluate(run, "conv", device)["test_accuracy"]
    rec = evaluate(run, "recurrent", device)["test_accuracy"]

    print("[3/6] quantizing: PTQ and recurrent QAT, W4A6 with A_bar and the state at 8 bits")
    paper = QuantRunConfig(preset="W4A6", a_bits=8, x_bits=8)
    ptq_acc = ptq(run, paper, out / "ptq", device)["test_accuracy"]
    ours = QuantRunConfig(preset="W4A6", a_bits=8, x_bits=8, a_form="polar", x_granularity="mode")
    q = qat(run, ours, QATConfig(epochs=5, batch_size=32, lr=3e-3), out / "qat", device)

    print("[4/6] mapping onto 64 x 64 crossbar tiles")
    _, model = load_run(run)
    maps = conductance_maps(map_model(model, MappingConfig(tile_rows=64, tile_cols=64)))
    save_dataset(maps, out / "conductance_maps.nc")

    print("[5/6] programming 5 PCM chips, drifting to 1 s ... 1 year, simulating inference")
    sim_cfg = SimulationConfig(chips=5, device=device, periphery=PeripheryConfig(
        dac_bits=8, adc_bits=8, drift_compensation="global"))
    sim = simulate(run, PCMConfig(), sim_cfg, out / "simulation.nc")
    print("      the same chips with A_bar kept digital (the state transition is the fragile part)")
    sim_a = simulate(run, PCMConfig(), replace(sim_cfg, digital=("A",)),
                     out / "simulation_A_digital.nc")

    print("[6/6] plotting accuracy against drift time")
    plot_demo({"PCM, all analog": sim, r"PCM, $\bar{A}$ kept digital": sim_a}, rec,
              f"{cfg.model} on {cfg.task}: 5 PCM chips, 8-bit DAC/ADC, global drift compensation",
              out / "accuracy_vs_time.png")

    pcm = sim["accuracy"].mean("chip").squeeze().values
    pcm_a = sim_a["accuracy"].mean("chip").squeeze().values
    summary = {"parameters": trained["parameters"],
               "train_seconds": sum(trained["epoch_seconds"]),
               "test_accuracy_conv": conv, "test_accuracy_recurrent": rec,
               "ptq_W4A6_a8_x8": ptq_acc, "qat_W4A6_a8_x8_polar": q["test_accuracy"],
               "qat_memory_savings_percent": q["memory_savings_percent"],
               "tiles": int(maps.sizes["tile"]),
               "mean_tile_utilization": float(maps["utilization"].mean()),
               "pcm_accuracy_1s": float(pcm[0]), "pcm_accuracy_1y": float(pcm[-1]),
               "pcm_A_digital_accuracy_1s": float(pcm_a[0]),
               "pcm_A_digital_accuracy_1y": float(pcm_a[-1])}
    write_json(summary, out / SUMMARY)
    print(f"\n{cfg.model} on {cfg.task}, {summary['parameters']} parameters "
          f"(everything in {time.perf_counter() - t_start:.0f} s, results in {out})\n"
          f"  full precision, convolutional mode:   {100 * conv:6.2f} %\n"
          f"  full precision, recurrent mode:       {100 * rec:6.2f} %\n"
          f"  PTQ W4A6, A_bar/x 8 bits (paper):     {100 * ptq_acc:6.2f} %\n"
          f"  QAT W4A6, A_bar/x 8 bits (polar):     {100 * q['test_accuracy']:6.2f} %  "
          f"({q['memory_savings_percent']:.1f} % less memory than float32)\n"
          f"  crossbar: {summary['tiles']} tiles of 64 x 64, mean utilization "
          f"{100 * summary['mean_tile_utilization']:.1f} %\n"
          f"  PCM chips, 8-bit DAC/ADC, global drift compensation: "
          f"{100 * summary['pcm_accuracy_1s']:.2f} % at 1 s, "
          f"{100 * summary['pcm_accuracy_1y']:.2f} % at 1 year (mean of 5 chips)\n"
          f"  the same with A_bar digital: {100 * summary['pcm_A_digital_accuracy_1s']:.2f} % at 1 s, "
          f"{100 * summary['pcm_A_digital_accuracy_1y']:.2f} % at 1 year\n"
          f"  figure: {out / 'accuracy_vs_time.png'}\n"
          f"  the trained run for eval, ptq, qat and simulate: {run}")
    return summary


def plot_demo(curves: dict[str, xr.Dataset], digital: float, title: str, path: Path) -> None:
    """Accuracy (% of the test sequences classified correctly; mean ± std over chips) against
    time since programming, one curve per simulation, with the digital model and chance as
    labelled reference lines and the times labelled 1 s / 1 h / 1 d / 1 y. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, ds), marker in zip(curves.items(), "os^D"):
        acc = 100 * ds["accuracy"].squeeze()
        ax.errorbar(ds["t_inference"].values, acc.mean("chip"), yerr=acc.std("chip"),
                    marker=marker, capsize=3, label=label)
    times = next(iter(curves.values()))["t_inference"].values
    n_chips = next(iter(curves.values())).sizes["chip"]
    ax.axhline(100 * digital, color="k", ls="--", lw=1,
               label=f"digital model (float, recurrent): {100 * digital:.1f} %")
    ax.axhline(100 / N_CLASSES, color="0.5", ls=":", lw=1, label=f"chance ({100 / N_CLASSES:g} %)")
    ax.set_xscale("log")
    ax.set_xticks(times, [format_time(float(t)) for t in times])
    ax.minorticks_off()
    ax.set(xlabel="time since programming", ylim=(0, 105), title=title,
           ylabel=f"test accuracy (% correct), mean ± std of {n_chips} chips")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150))
    finally:
        plt.close(fig)
