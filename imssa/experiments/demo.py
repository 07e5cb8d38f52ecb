"""The main job on the embedded default, the whole pipeline in a few minutes on a laptop CPU:
train an S4D on ``sdigits``, evaluate it in both execution modes, quantize it (PTQ and QAT),
map it onto crossbar tiles, program it onto simulated PCM chips, drift them, simulate
recurrent inference through 8-bit DACs and ADCs (all analog, and with A_bar kept digital), then
the all-analog recipe of issue 9: a real-mode S4D (S4D-Real), fine-tuned against the crossbar's
programming noise in the increment form, all analog with A_bar - 1 on the array and one
conductance scale per mode; and plot the three against drift time. The trained run is
``<out>/train``: the folder ``imssa eval``, ``ptq``, ``qat`` and ``simulate`` take (``simulate``
programs its float model, not the QAT one); the recipe's runs are ``<out>/real/train`` and its
noise-aware fine-tuning ``<out>/real/noise`` (also a run)."""

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
#: The all-analog recipe (issue 9): a real-mode model, trained in full precision, then
#: fine-tuned in conv mode with Gaussian noise on every crossbar tensor, drawn in the mapped
#: domain of the increment form with one scale per mode, as `imssa qat --preset fp --train-noise
#: SIGMA --train-noise-on all --train-noise-transition increment --train-noise-granularity mode
#: --mode conv` does. Chosen on sdigits by experiment on a CPU (docs/results.md).
REAL = TrainConfig(task="sdigits", model="s4d-real-64x2", epochs=30, batch_size=32)
REAL_NOISE = QATConfig(mode="conv", epochs=10, batch_size=32, lr=3e-3, train_noise=0.05,
                       train_noise_transition="increment", train_noise_granularity="mode")
INCREMENT = MappingConfig(transition="increment", transition_scale="mode")


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
    print(f"[1/7] training {cfg.model} on {cfg.task} ({cfg.epochs} epochs) into {run}")
    trained = train(cfg, run)

    print("[2/7] evaluating in convolutional and recurrent mode")
    conv = evaluate(run, "conv", device)["test_accuracy"]
    rec = evaluate(run, "recurrent", device)["test_accuracy"]

    print("[3/7] quantizing: PTQ and recurrent QAT, W4A6 with A_bar and the state at 8 bits")
    paper = QuantRunConfig(preset="W4A6", a_bits=8, x_bits=8)
    ptq_acc = ptq(run, paper, out / "ptq", device)["test_accuracy"]
    ours = QuantRunConfig(preset="W4A6", a_bits=8, x_bits=8, a_form="polar", x_granularity="mode")
    q = qat(run, ours, QATConfig(epochs=5, batch_size=32, lr=3e-3), out / "qat", device)

    print("[4/7] mapping onto 64 x 64 crossbar tiles")
    _, model = load_run(run)
    maps = conductance_maps(map_model(model, MappingConfig(tile_rows=64, tile_cols=64)))
    save_dataset(maps, out / "conductance_maps.nc")

    print("[5/7] programming 5 PCM chips, drifting to 1 s ... 1 year, simulating inference")
    sim_cfg = SimulationConfig(chips=5, device=device, periphery=PeripheryConfig(
        dac_bits=8, adc_bits=8, drift_compensation="global"))
    sim = simulate(run, PCMConfig(), sim_cfg, out / "simulation.nc")
    print("      the same chips with A_bar kept digital (the state transition is the fragile part)")
    sim_a = simulate(run, PCMConfig(), replace(sim_cfg, digital=("A",)),
                     out / "simulation_A_digital.nc")

    real_run, noise_run = out / "real" / "train", out / "real" / "noise"
    print(f"[6/7] the all-analog recipe: {REAL.model} (real modes, {REAL.epochs} epochs), "
          f"fine-tuned against {100 * REAL_NOISE.train_noise:g} % programming noise in the "
          "increment form; PCM chips with A_bar - 1 on the array, one scale per mode")
    real = train(replace(REAL, device=device), real_run)
    noisy = qat(real_run, QuantRunConfig(preset="fp"), REAL_NOISE, noise_run, device)
    sim_r = simulate(noise_run, PCMConfig(), replace(sim_cfg, mapping=INCREMENT),
                     out / "simulation_real_increment.nc")

    print("[7/7] plotting accuracy against drift time")
    curves = {f"{cfg.model}, all analog": sim, rf"{cfg.model}, $\bar{{A}}$ kept digital": sim_a,
              rf"{REAL.model} noise-aware, all analog, $\bar{{A}} - 1$ on the array": sim_r}
    plot_demo(curves, {cfg.model: rec, f"{REAL.model} noise-aware": noisy["test_accuracy"]},
              f"{cfg.task}: 5 PCM chips, 8-bit DAC/ADC, global drift compensation",
              out / "accuracy_vs_time.png")

    pcm = {name: [float(a) for a in ds["accuracy"].mean("chip").squeeze().values]
           for name, ds in (("all_analog", sim), ("A_digital", sim_a), ("real_increment", sim_r))}
    summary = {"task": cfg.task, "model": cfg.model, "parameters": trained["parameters"],
               "train_seconds": sum(trained["epoch_seconds"]),
               "test_accuracy_conv": conv, "test_accuracy_recurrent": rec,
               "ptq_W4A6_a8_x8": ptq_acc, "qat_W4A6_a8_x8_polar": q["test_accuracy"],
               "qat_memory_savings_percent": q["memory_savings_percent"],
               "tiles": int(maps.sizes["tile"]),
               "mean_tile_utilization": float(maps["utilization"].mean()),
               "pcm_times": [format_time(float(t)) for t in sim["t_inference"].values],
               "pcm_accuracy": pcm["all_analog"], "pcm_A_digital_accuracy": pcm["A_digital"],
               "real_model": REAL.model, "real_parameters": real["parameters"],
               "real_test_accuracy": real["test_accuracy"],
               "real_noise_aware_test_accuracy": noisy["test_accuracy"],
               "pcm_real_increment_accuracy": pcm["real_increment"],
               "seconds": time.perf_counter() - t_start}
    write_json(summary, out / SUMMARY)
    print(report(summary, out))
    return summary


def report(s: dict, out: Path) -> str:
    """The demo's closing lines from its summary; the PCM accuracies as a table (% correct,
    mean of 5 chips) at 1 s, 1 d and 1 y."""
    shown = [s["pcm_times"].index(t) for t in ("1 s", "1 d", "1 y")]
    model = s["model"]
    rows = [(f"{model}, all analog (A_bar on the array)", s["test_accuracy_recurrent"],
             s["pcm_accuracy"]),
            (f"{model}, A_bar kept digital", s["test_accuracy_recurrent"],
             s["pcm_A_digital_accuracy"]),
            (f"{s['real_model']} noise-aware, all analog, A_bar - 1",
             s["real_noise_aware_test_accuracy"], s["pcm_real_increment_accuracy"])]
    width = max(len(r[0]) for r in rows)
    table = [f"    {'':{width}}  digital " + "".join(f"{s['pcm_times'][i]:>7}" for i in shown)]
    table += [f"    {name:{width}}  {100 * digital:6.2f} " + "".join(
        f"{100 * acc[i]:7.2f}" for i in shown) for name, digital, acc in rows]
    return "\n".join([
        f"\n{model} on {s['task']}, {s['parameters']} parameters; {s['real_model']}, "
        f"{s['real_parameters']} (everything in {s['seconds']:.0f} s, results in {out})",
        f"  full precision, convolutional mode:   {100 * s['test_accuracy_conv']:6.2f} %",
        f"  full precision, recurrent mode:       {100 * s['test_accuracy_recurrent']:6.2f} %",
        f"  PTQ W4A6, A_bar/x 8 bits (paper):     {100 * s['ptq_W4A6_a8_x8']:6.2f} %",
        f"  QAT W4A6, A_bar/x 8 bits (polar):     {100 * s['qat_W4A6_a8_x8_polar']:6.2f} %  "
        f"({s['qat_memory_savings_percent']:.1f} % less memory than float32)",
        f"  crossbar: {s['tiles']} tiles of 64 x 64, mean utilization "
        f"{100 * s['mean_tile_utilization']:.1f} %",
        "  PCM chips, 8-bit DAC/ADC, global drift compensation, % correct (mean of 5 chips):",
        *table,
        f"  figure: {out / 'accuracy_vs_time.png'}",
        f"  the trained run for eval, ptq, qat and simulate: {out / 'train'}"])


def plot_demo(curves: dict[str, xr.Dataset], digital: dict[str, float], title: str,
              path: Path) -> None:
    """Accuracy (% of the test sequences classified correctly; mean ± std over chips) against
    time since programming, one curve per simulation, with each digital model (by name) and
    chance as labelled reference lines and the times labelled 1 s / 1 h / 1 d / 1 y. Written
    atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for (label, ds), marker in zip(curves.items(), "os^D"):
        acc = 100 * ds["accuracy"].squeeze()
        ax.errorbar(ds["t_inference"].values, acc.mean("chip"), yerr=acc.std("chip"),
                    marker=marker, capsize=3, label=label)
    times = next(iter(curves.values()))["t_inference"].values
    n_chips = next(iter(curves.values())).sizes["chip"]
    for (name, acc), style in zip(digital.items(), ("--", "-.", (0, (5, 1)))):
        ax.axhline(100 * acc, color="k", ls=style, lw=1,
                   label=f"digital {name} (float, recurrent): {100 * acc:.1f} %")
    ax.axhline(100 / N_CLASSES, color="0.5", ls=":", lw=1, label=f"chance ({100 / N_CLASSES:g} %)")
    ax.set_xscale("log")
    ax.set_xticks(times, [format_time(float(t)) for t in times])
    ax.minorticks_off()
    ax.set(xlabel="time since programming", ylim=(0, 105), title=title,
           ylabel=f"test accuracy (% correct), mean ± std of {n_chips} chips")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=150,
                                                   bbox_inches="tight"))
    finally:
        plt.close(fig)
