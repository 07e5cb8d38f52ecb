"""Width (Zhao et al. 2025, Fig. 4): accuracy of the uniformly quantized model W{b}A{b} (every
weight, SSM tensor, activation and the state at b bits) against b, for models of several widths;
runs of one width with different training seeds are averaged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from imssa.data import CALIBRATION_SAMPLES
from imssa.errors import ImssaError
from imssa.experiments.analyses.checks import check_bits, check_choice
from imssa.experiments.analyses.context import (
    BATCH_SIZE,
    check_ptq,
    dataset_attrs,
    load_context,
    ptq_accuracy,
)
from imssa.experiments.analyses.files import save_outputs
from imssa.experiments.analyses.variants import DEFAULT_BITS, fp_config, uniform_config
from imssa.experiments.io import progress
from imssa.experiments.train import load_run, resolve_device
from imssa.quant.spec import A_BAR_FORMS, GELU_FORMS
from imssa.ssm import count_parameters

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def width(runs: Sequence[str | Path], bits: Iterable[int] = DEFAULT_BITS, *,
          a_bar_form: str = "cartesian", gelu: str = "auto", device: str = "auto",
          data_dir: str | None = None, limit: int | None = None,
          calib_samples: int = CALIBRATION_SAMPLES, seed: int = 0,
          batch_size: int = BATCH_SIZE, out: str | Path | None = None,
          plot: str | Path | None = None) -> xr.Dataset:
    """PTQ accuracy of W{b}A{b} (:func:`uniform_config`) against b for models of several widths.

    Args:
        runs: training run folders of one task; several runs of one width (training seeds) are
            averaged.
        bits: bit widths b, each in 2..16.
        a_bar_form: ``cartesian`` (the paper's) or ``polar`` grid of A_bar.
        gelu: ``auto`` (default) uses the hard GELU of an integer model, as every activation is
            quantized; ``exact`` keeps the trained GELU.
        device, data_dir, limit, calib_samples, seed, batch_size: as for :func:`sensitivity`.
        out, plot: write the Dataset (NetCDF) and :func:`plot_width` (PNG) there.

    Returns:
        Dataset with ``accuracy(d_model, bits)`` (mean over the runs of each width),
        ``accuracy_per_seed(d_model, seed, bits)`` (NaN where there is no such run),
        ``fp_accuracy(d_model)``, ``fp_accuracy_per_seed(d_model, seed)``, ``n_runs(d_model)``,
        ``parameters(d_model)`` and ``run(d_model, seed)`` (the folder, "" where none).
    """
    if isinstance(runs, (str, Path)) or not runs:
        raise ImssaError("runs must be a non-empty list of training run folders")
    bits_t = check_bits(bits)
    check_choice(a_bar_form, A_BAR_FORMS, "a_bar_form")
    check_choice(gelu, GELU_FORMS, "gelu")
    check_ptq(limit, calib_samples, batch_size)
    dev = resolve_device(device)

    headers = []
    for r in runs:
        cfg, model = load_run(r, "cpu")  # check every run before the long part starts
        headers.append((str(r), cfg, model.cfg.d_model, count_parameters(model)))
    tasks = sorted({h[1].task for h in headers})
    if len(tasks) > 1:
        raise ImssaError(f"width: the runs are of different tasks ({', '.join(tasks)}); "
                         "compare widths on one task")
    seen: dict[tuple[int, int], str] = {}
    for path, cfg, d_model, _ in headers:
        key = (d_model, cfg.seed)
        if key in seen:
            raise ImssaError(f"width: {seen[key]} and {path} are both d_model={d_model} with "
                             f"training seed {cfg.seed}; give each (width, seed) once")
        seen[key] = path
    d_models = sorted({h[2] for h in headers})
    seeds = sorted({h[1].seed for h in headers})

    acc = np.full((len(d_models), len(seeds), len(bits_t)), np.nan)
    fp = np.full((len(d_models), len(seeds)), np.nan)
    run_names = np.full((len(d_models), len(seeds)), "", dtype=object)
    params = np.zeros(len(d_models), dtype=np.int32)
    cache: dict = {}
    infos = []
    bar = progress(total=len(headers) * (len(bits_t) + 1), desc="width", unit="config")
    for path, cfg, d_model, n_params in headers:
        i, s = d_models.index(d_model), seeds.index(cfg.seed)
        ctx = load_context(path, dev, data_dir, limit, calib_samples, seed, batch_size, cache)
        infos.append({"run": path, **ctx.info})
        run_names[i, s], params[i] = path, n_params
        bar.set_postfix_str(f"d_model={d_model} seed={cfg.seed} fp")
        fp[i, s] = ptq_accuracy(ctx, fp_config("exact"))
        bar.update()
        for k, b in enumerate(bits_t):
            bar.set_postfix_str(f"d_model={d_model} seed={cfg.seed} W{b}A{b}")
            acc[i, s, k] = ptq_accuracy(ctx, uniform_config(b, a_bar_form, gelu))
            bar.update()
        del ctx
    bar.close()

    n_runs = np.isfinite(fp).sum(axis=1).astype(np.int32)
    with np.errstate(invalid="ignore"):
        mean_acc = np.nansum(acc, axis=1) / n_runs[:, None]
        mean_fp = np.nansum(fp, axis=1) / n_runs
    unit = {"units": "1"}
    ds = xr.Dataset(
        {"accuracy": (("d_model", "bits"), mean_acc, {
            "long_name": "test accuracy of W{b}A{b}", **unit,
            "description": "every weight, SSM tensor, activation and the state at b bits, "
                           "recurrent mode; mean over the runs of each width"}),
         "accuracy_per_seed": (("d_model", "seed", "bits"), acc, {
             "long_name": "test accuracy of W{b}A{b} per run", **unit,
             "description": "NaN where no run has this (d_model, seed)"}),
         "fp_accuracy": (("d_model",), mean_fp, {
             "long_name": "full-precision test accuracy (recurrent)", **unit}),
         "fp_accuracy_per_seed": (("d_model", "seed"), fp, {
             "long_name": "full-precision test accuracy per run", **unit}),
         "n_runs": (("d_model",), n_runs, {"long_name": "runs averaged", "units": "count"}),
         "parameters": (("d_model",), params, {"long_name": "trainable parameters",
                                               "units": "count"}),
         "run": (("d_model", "seed"), run_names.astype(str), {"long_name": "run folder"})},
        coords={"d_model": ("d_model", np.array(d_models, dtype=np.int32),
                            {"long_name": "model width H (heads)", "units": "count"}),
                "seed": ("seed", np.array(seeds, dtype=np.int32),
                         {"long_name": "training seed"}),
                "bits": ("bits", np.array(bits_t, dtype=np.int32), {"units": "bit"})},
        attrs=dataset_attrs("width", tasks[0], dev, {
            "runs": infos, "train": [dataclasses.asdict(h[1]) for h in headers],
            "bits": list(bits_t), "a_bar_form": a_bar_form, "gelu": gelu,
            "quant_example": uniform_config(bits_t[0], a_bar_form, gelu).to_dict(),
            "mode": "recurrent", "seed": seed, "limit": limit, "batch_size": batch_size,
            "calib_samples": calib_samples, "task": tasks[0]}))
    save_outputs(ds, out, plot, plot_width)
    return ds


def plot_width(ds: xr.Dataset) -> Figure:
    """Accuracy (%) of W{b}A{b} against b, one line per width, full precision dotted."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    for i, h in enumerate(ds.d_model.values):
        color = f"C{i}"
        ax.plot(ds.bits.values, 100 * ds.accuracy.sel(d_model=h).values, "o-", ms=4,
                color=color, label=f"{h} heads")
        ax.axhline(100 * float(ds.fp_accuracy.sel(d_model=h)), color=color, ls=":", lw=0.9)
    ax.set_xlabel("bits b (W{b}A{b})")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(ds.bits.values)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="dotted: full precision", title_fontsize=7)
    ax.set_title(f"Accuracy against bits per model width ({ds.attrs.get('task', '')})")
    return fig


