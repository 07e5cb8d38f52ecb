"""Sensitivity (Zhao et al. 2025, Fig. 2): test accuracy when ONE quantization target is
quantized at a time, everything else in full precision, against its bit width, for several
quantizer variants (:data:`~imssa.experiments.analyses.variants.VARIANTS`: granularity,
symmetric or not, static or dynamic ranges, rounding, Cartesian or polar A_bar).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from imssa.experiments.analyses.variants import (
    DEFAULT_BITS,
    VARIANTS,
    check_targets,
    check_variants,
    fp_config,
    target_config,
)
from imssa.experiments.io import progress
from imssa.experiments.train import resolve_device
from imssa.names import layer_generic
from imssa.quant import TARGETS, make_config
from imssa.quant.spec import GELU_FORMS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Every weight matrix, SSM tensor, the state and every activation but the model input.
DEFAULT_TARGETS = ("blocks.*.ssm.A_bar", "blocks.*.ssm.B_bar", "blocks.*.ssm.C", "blocks.*.ssm.D",
                   "blocks.*.ssm.x", "encoder.weight", "blocks.*.mix.weight", "decoder.weight",
                   "blocks.*.ssm.input", "blocks.*.ssm.output", "blocks.*.activation.output",
                   "blocks.*.glu.output", "decoder.input")


def sensitivity(run: str | Path, bits: Iterable[int] = DEFAULT_BITS,
                targets: Iterable[str] = DEFAULT_TARGETS,
                variants: Iterable[str] = tuple(VARIANTS), *, device: str = "auto",
                data_dir: str | None = None, limit: int | None = None,
                calib_samples: int = CALIBRATION_SAMPLES, seed: int = 0,
                batch_size: int = BATCH_SIZE, gelu: str = "exact",
                out: str | Path | None = None, plot: str | Path | None = None) -> xr.Dataset:
    """PTQ accuracy when one target is quantized at a time, against bits, per quantizer variant.

    Every other target stays in full precision (``make_config("fp")`` with one override). The
    variants (:data:`VARIANTS`) replace granularity (per tensor / per channel; per (channel, mode) for
    the state), symmetry, static or dynamic ranges and the A_bar grid on top of the target's
    preset spec. Not every pair exists, and those are NaN:

    - ``dynamic`` ranges (from each input sample) exist for activations only: weights and SSM
      tensors always take their range from the tensor itself, and the state x needs one fixed
      grid for the whole scan. The state's range variants are therefore its static
      granularities: one calibrated range per tensor, per channel or per (channel, mode)
      (``tensor-*``, ``channel-*``, ``mode-*``).
    - ``polar-*`` apply to A_bar only (log-decay and phase grid inside the unit circle); its
      Cartesian grid is the ``tensor-*``/``channel-*`` variants.

    Args:
        run: a training run folder (``imssa train --out RUN``).
        bits: bit widths, each in 2..16.
        targets: selectors of quantization targets: :mod:`imssa.names` paths, layer-generic
            (``blocks.*.ssm.A_bar``) or of one layer (``blocks.0.ssm.A_bar``), modules (``mix``)
            or aliases (``A``, ``x``); each tensor they name is one ``target``.
        variants: names of :data:`VARIANTS`.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``.
        data_dir: data folder (default: the run's, else ``$IMSSA_DATA_DIR``).
        limit: evaluate on the first ``limit`` test sequences only (quick runs).
        calib_samples: training sequences for static ranges (seeded random subset).
        seed: seeds the choice of calibration sequences.
        batch_size: sequences per forward pass (calibration batches too).
        gelu: ``exact`` (default) keeps the trained GELU, so a curve shows the target's
            quantization alone; ``auto`` switches to the hard GELU whenever an activation is
            quantized, as a deployed integer model does.
        out, plot: write the Dataset (NetCDF) and :func:`plot_sensitivity` (PNG) there.

    Returns:
        Dataset with ``accuracy(target, variant, bits)`` (fraction of test sequences, NaN where
        the variant does not apply), ``eval_seconds(target, variant, bits)`` and the full-precision
        recurrent accuracy ``fp_accuracy``.
    """
    bits_t = check_bits(bits)
    targets_t = check_targets(targets)
    variants_t = check_variants(variants)
    check_choice(gelu, GELU_FORMS, "gelu")
    check_ptq(limit, calib_samples, batch_size)
    jobs = [(i, j, k) for i, t in enumerate(targets_t) for j, v in enumerate(variants_t)
            if VARIANTS[v].applies_to(t) for k in range(len(bits_t))]
    if not jobs:
        raise ImssaError(f"none of the variants {', '.join(variants_t)} applies to the targets "
                         f"{', '.join(targets_t)}; see imssa.experiments.analyses.VARIANTS")
    dev = resolve_device(device)
    ctx = load_context(run, dev, data_dir, limit, calib_samples, seed, batch_size)

    shape = (len(targets_t), len(variants_t), len(bits_t))
    acc = np.full(shape, np.nan)
    seconds = np.full(shape, np.nan)
    fp = ptq_accuracy(ctx, fp_config(gelu))
    bar = progress(jobs, desc="sensitivity", unit="config")
    for i, j, k in bar:
        t, v, b = targets_t[i], variants_t[j], bits_t[k]
        bar.set_postfix_str(f"{t} {v} {b} bit")
        t0 = time.perf_counter()
        acc[i, j, k] = ptq_accuracy(ctx, target_config(t, b, v, gelu))
        seconds[i, j, k] = time.perf_counter() - t0

    vs = [VARIANTS[v] for v in variants_t]
    ds = xr.Dataset(
        {"accuracy": (("target", "variant", "bits"), acc, {
            "long_name": "test accuracy, one target quantized", "units": "1",
            "description": "fraction of test sequences classified correctly in recurrent mode; "
                           "NaN where the variant does not apply to the target"}),
         "eval_seconds": (("target", "variant", "bits"), seconds, {
             "long_name": "calibration and evaluation time", "units": "s"}),
         "fp_accuracy": ((), fp, {"long_name": "full-precision test accuracy (recurrent)",
                                  "units": "1"})},
        coords={
            "target": ("target", list(targets_t), {"long_name": "quantization target"}),
            "variant": ("variant", list(variants_t), {"long_name": "quantizer variant"}),
            "bits": ("bits", np.array(bits_t, dtype=np.int32), {"units": "bit"}),
            "target_kind": ("target", [TARGETS[layer_generic(t)].kind for t in targets_t]),
            "granularity": ("variant", [v.granularity for v in vs]),
            "symmetric": ("variant", [v.symmetric for v in vs]),
            "ranges": ("variant", [v.ranges for v in vs]),
            "rounding": ("variant", [v.rounding for v in vs]),
            "a_bar_form": ("variant", [v.a_bar_form for v in vs]),
            "variant_description": ("variant", [v.description for v in vs]),
        },
        attrs=dataset_attrs("sensitivity", ctx.cfg.task, dev, {
            "run": str(ctx.run), "train": dataclasses.asdict(ctx.cfg),
            "model": ctx.model.cfg.to_dict(), "base_quant": make_config("fp").to_dict(),
            "variants": {v.name: dataclasses.asdict(v) for v in vs},
            "bits": list(bits_t), "targets": list(targets_t), "gelu": gelu,
            "mode": "recurrent", "seed": seed, "limit": limit, "batch_size": batch_size,
            **ctx.info}))
    save_outputs(ds, out, plot, plot_sensitivity)
    return ds


def plot_sensitivity(ds: xr.Dataset) -> Figure:
    """One panel per target: accuracy (%) against bits, a line per applicable variant."""
    from matplotlib.figure import Figure

    targets = [str(t) for t in ds.target.values]
    ncols = min(4, len(targets))
    nrows = math.ceil(len(targets) / ncols)
    fig = Figure(figsize=(3.4 * ncols, 2.8 * nrows + 0.8), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    fp = 100 * float(ds.fp_accuracy)
    bits = ds.bits.values
    for ax, t in zip(axes.flat, targets):
        for n, v in enumerate(ds.variant.values):  # one color per variant across panels
            y = 100 * ds.accuracy.sel(target=t, variant=v).values
            if np.isfinite(y).any():
                ax.plot(bits, y, marker="o", ms=3, color=f"C{n % 10}",
                        ls=("-", "--", ":")[n // 10 % 3], label=str(v))
        ax.axhline(fp, color="k", ls="--", lw=0.8, label="full precision")
        ax.set_title(t, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(targets):]:
        ax.set_visible(False)
    for col in range(ncols):  # the lowest panel in use of each column carries the bits axis
        ax = axes[(len(targets) - 1 - col) // ncols, col]
        ax.set_xlabel("bits")
        ax.set_xticks(bits)
        ax.tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (%)")
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center",
               ncols=min(6, len(handles)), fontsize=8)
    fig.suptitle(f"Sensitivity: one target quantized at a time ({ds.attrs.get('task', '')})")
    return fig


