"""Stability (Zhao et al. 2025, Fig. 3): the quantized A_bar against the unit circle: the grid
levels, how many modes land on or outside it, and how fast the error of A_bar_q^k grows with the
step k, for Cartesian and polar grids. A_bar is a weight, so no data is needed.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import xarray as xr

from imssa.errors import ImssaError
from imssa.experiments.analyses.checks import check_bits, check_count, check_names
from imssa.experiments.analyses.context import dataset_attrs, task_data
from imssa.experiments.analyses.files import save_outputs
from imssa.experiments.io import progress
from imssa.experiments.train import load_run, resolve_device
from imssa.quant import QuantConfig, a_bar_levels, make_config, prepare, quantized_weights
from imssa.quant.spec import A_BAR_FORMS, ABarForm

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Bit widths of A_bar of the stability analysis.
STABILITY_BITS = (4, 6, 8)
#: Range groups of A_bar the analysis offers (per (channel, mode) is the state's only).
A_BAR_GRANULARITIES = ("tensor", "channel")
#: Grids of A_bar are stored level by level only up to this many bits: a Cartesian b-bit grid has
#: (2^b - 1)^2 levels, 65,025 at 8 bits but 4.3e9 at 16.
MAX_LEVEL_BITS = 8
_K_CHUNK = 64  # steps k of A_bar^k evaluated at once (memory: modes x chunk float64 values)


def power_errors(A_bar: torch.Tensor, A_bar_q: torch.Tensor, steps: int) -> tuple[np.ndarray,
                                                                                    np.ndarray]:
    """Mean and median over modes of |A_bar_q^k - A_bar^k| / |A_bar^k|, for k = 1..steps.

    Computed as |r^k - 1| with r = A_bar_q / A_bar in float64 and polar form, so that neither
    the decay of A_bar^k nor a level at 0 gives 0/0; a mode with |r| > 1 grows like |r|^k (inf
    once that overflows float64, which the mean then reports).

    Args:
        A_bar, A_bar_q: complex tensors of the same shape (any), A_bar != 0.

    Returns:
        (mean, median), each (steps,) float64.
    """
    a = A_bar.detach().cpu().to(torch.complex128).flatten().numpy()
    aq = A_bar_q.detach().cpu().to(torch.complex128).flatten().numpy()
    r = aq / a
    with np.errstate(divide="ignore"):
        log_mag = np.log(np.abs(r))  # -inf where A_bar_q = 0: |0 - 1| = 1 at every k
    phase = np.angle(r)
    mean, median = np.empty(steps), np.empty(steps)
    for start in range(0, steps, _K_CHUNK):
        k = np.arange(start + 1, min(start + _K_CHUNK, steps) + 1, dtype=np.float64)[:, None]
        with np.errstate(over="ignore", invalid="ignore"):
            mag = np.exp(k * log_mag)  # (k modes)
            err = np.hypot(mag * np.cos(k * phase) - 1.0, mag * np.sin(k * phase))
        err = np.where(np.isnan(err), np.inf, err)  # inf * 0 in an overflowed mode
        mean[start:start + len(k)] = err.mean(axis=1)
        median[start:start + len(k)] = np.median(err, axis=1)
    return mean, median


def a_bar_config(bits: int, granularity: str, form: str = "cartesian") -> QuantConfig:
    """Full precision except A_bar, at ``bits`` with ``granularity`` ranges on the ``form`` grid."""
    return make_config("fp", overrides={"A": {"bits": bits, "granularity": granularity}},
                       a_bar_form=cast(ABarForm, form))


def stability(run: str | Path, bits: Iterable[int] = STABILITY_BITS,
              forms: Iterable[str] = A_BAR_FORMS, *, granularity: str = "tensor",
              seq_len: int | None = None, device: str = "auto", data_dir: str | None = None,
              out: str | Path | None = None, plot: str | Path | None = None) -> xr.Dataset:
    """The quantized A_bar against the unit circle, per bit width, Cartesian and polar grids.

    A_bar alone is quantized (a weight: its range is the tensor's own, no data is needed, and
    the task is loaded only for its sequence length when ``seq_len`` is None). |A_bar_q| >= 1
    makes a mode marginally stable or unstable: its state never decays, or grows until the
    state quantizer clips it. The error of A_bar_q^k, the factor the state carries from step
    j to j + k, grows with k; over a sequence of L steps it shows how far the quantized impulse
    response drifts from the trained one.

    Args:
        run: a training run folder.
        bits: bit widths of A_bar, each in 2..16.
        forms: ``cartesian`` (real and imaginary parts on one grid, the paper's scheme) and/or
            ``polar`` (log-decay and phase, every level inside the unit circle).
        granularity: ``tensor`` or ``channel`` ranges of A_bar.
        seq_len: the largest k; default the task's sequence length L.
        device: where the quantizers run.
        data_dir: data folder, only to find L.
        out, plot: write the Dataset (NetCDF) and :func:`plot_stability` (PNG) there.

    Returns:
        Dataset with ``outside_unit_circle(form, bits)`` (modes with |A_bar_q| >= 1, all layers),
        ``max_abs(form, bits)``, ``power_error(form, bits, k)`` (mean over modes of
        |A_bar_q^k - A_bar^k| / |A_bar^k|) and ``power_error_median``, the values
        ``A_bar_re/_im(layer, channel, mode)`` and
        ``A_bar_q_re/_im(form, bits, layer, channel, mode)``,
        and the grid ``levels_re/_im(form, bits, layer, level)`` of each layer's first range
        group (the whole tensor per tensor, channel 0 per channel; NaN-padded, stored up to
        MAX_LEVEL_BITS bits) with ``levels_outside_unit_circle(form, bits, layer)``.
    """
    bits_t = check_bits(bits)
    forms_t = check_names(forms, A_BAR_FORMS, "forms", "A_bar form")
    if granularity not in A_BAR_GRANULARITIES:
        raise ImssaError(f"granularity must be 'tensor' or 'channel' (ranges of A_bar), "
                         f"got {granularity!r}")
    check_count(seq_len, "seq_len", allow_none=True)
    dev = resolve_device(device)
    cfg, model = load_run(run, dev)
    if seq_len is None:
        seq_len = task_data(cfg, data_dir).seq_len
    with torch.no_grad():
        A_fp = torch.stack([s.A_bar for s in model.discrete()])  # (layers H N/2)
    n_layers, H, N2 = A_fp.shape

    level_bits = [b for b in bits_t if b <= MAX_LEVEL_BITS]
    n_levels = max([(2**b) * (2**b - 1) for b in level_bits], default=1)
    shape_fb = (len(forms_t), len(bits_t))
    A_q = np.full((*shape_fb, n_layers, H, N2), np.nan, dtype=np.complex128)
    levels = np.full((*shape_fb, n_layers, n_levels), np.nan, dtype=np.complex128)
    levels_out = np.full((*shape_fb, n_layers), np.nan)
    outside = np.zeros(shape_fb, dtype=np.int32)
    max_abs = np.zeros(shape_fb)
    err_mean = np.zeros((*shape_fb, seq_len))
    err_median = np.zeros((*shape_fb, seq_len))
    jobs = [(i, j) for i in range(len(forms_t)) for j in range(len(bits_t))]
    for i, j in progress(jobs, desc="stability", unit="config"):
        form, b = forms_t[i], bits_t[j]
        qcfg = a_bar_config(b, granularity, form)
        with torch.no_grad():
            weights = quantized_weights(prepare(copy.deepcopy(model), qcfg).eval())
            Aq = torch.stack([weights[f"blocks.{n}.ssm.A_bar"] for n in range(n_layers)])
            if b <= MAX_LEVEL_BITS:
                for layer in range(n_layers):
                    # The first range group: the whole tensor, or channel 0 alone per channel.
                    src = A_fp[layer] if granularity == "tensor" else A_fp[layer, :1]
                    grid = a_bar_levels(src, qcfg.spec(f"blocks.{layer}.ssm.A_bar"), form)[0]
                    lv = grid.cpu().to(torch.complex128).numpy()
                    levels[i, j, layer, :len(lv)] = lv
                    levels_out[i, j, layer] = int((np.abs(lv) >= 1).sum())
        aq = Aq.cpu().to(torch.complex128).numpy()
        A_q[i, j] = aq
        outside[i, j] = int((np.abs(aq) >= 1).sum())
        max_abs[i, j] = float(np.abs(aq).max())
        err_mean[i, j], err_median[i, j] = power_errors(A_fp, Aq, seq_len)

    a = A_fp.cpu().to(torch.complex128).numpy()
    dims_q = ("form", "bits", "layer", "channel", "mode")
    dims_l = ("form", "bits", "layer", "level")
    unit = {"units": "1"}
    ds = xr.Dataset(
        {"outside_unit_circle": (("form", "bits"), outside, {
            "long_name": "modes with |A_bar_q| >= 1", "units": "count",
            "description": f"over all {n_layers * H * N2} modes (layers x channels x N/2)"}),
         "max_abs": (("form", "bits"), max_abs, {"long_name": "max |A_bar_q|", **unit}),
         "power_error": (("form", "bits", "k"), err_mean, {
             "long_name": "mean relative error of A_bar_q^k", **unit,
             "description": "mean over modes of |A_bar_q^k - A_bar^k| / |A_bar^k|"}),
         "power_error_median": (("form", "bits", "k"), err_median, {
             "long_name": "median relative error of A_bar_q^k", **unit}),
         "A_bar_re": (("layer", "channel", "mode"), a.real, {"long_name": "Re A_bar", **unit}),
         "A_bar_im": (("layer", "channel", "mode"), a.imag, {"long_name": "Im A_bar", **unit}),
         "A_bar_q_re": (dims_q, A_q.real, {"long_name": "Re A_bar quantized", **unit}),
         "A_bar_q_im": (dims_q, A_q.imag, {"long_name": "Im A_bar quantized", **unit}),
         "levels_re": (dims_l, levels.real.astype(np.float32), {
             "long_name": "Re of the grid levels of A_bar", **unit,
             "description": f"first range group of each layer; NaN-padded; stored for bits <= "
                            f"{MAX_LEVEL_BITS}"}),
         "levels_im": (dims_l, levels.imag.astype(np.float32), {
             "long_name": "Im of the grid levels of A_bar", **unit}),
         "levels_outside_unit_circle": (("form", "bits", "layer"), levels_out, {
             "long_name": "grid levels with |level| >= 1 (first range group)", "units": "count",
             "description": f"NaN above {MAX_LEVEL_BITS} bits (levels not enumerated)"}),
         "fp_outside_unit_circle": ((), int((np.abs(a) >= 1).sum()), {
             "long_name": "full-precision modes with |A_bar| >= 1", "units": "count"})},
        coords={"form": ("form", list(forms_t), {"long_name": "A_bar grid"}),
                "bits": ("bits", np.array(bits_t, dtype=np.int32), {"units": "bit"}),
                "k": ("k", np.arange(1, seq_len + 1, dtype=np.int32),
                      {"long_name": "power of A_bar (steps)", "units": "step"}),
                "layer": ("layer", np.arange(n_layers, dtype=np.int32)),
                "channel": ("channel", np.arange(H, dtype=np.int32)),
                "mode": ("mode", np.arange(N2, dtype=np.int32), {"long_name": "complex mode n"}),
                "level": ("level", np.arange(n_levels, dtype=np.int32))},
        attrs=dataset_attrs("stability", cfg.task, dev, {
            "run": str(run), "train": dataclasses.asdict(cfg), "model": model.cfg.to_dict(),
            "bits": list(bits_t), "forms": list(forms_t), "granularity": granularity,
            "seq_len": seq_len, "quant": a_bar_config(bits_t[0], granularity).to_dict(),
            "task": cfg.task, "d_model": model.cfg.d_model}))
    save_outputs(ds, out, plot, plot_stability)
    return ds


def plot_stability(ds: xr.Dataset) -> Figure:
    """Rows per form: grid levels, A_bar and A_bar_q of layer 0 with the unit circle; then the
    mean relative error of A_bar_q^k against k."""
    from matplotlib.figure import Figure

    forms, bits = [str(f) for f in ds.form.values], ds.bits.values
    ncols = len(bits)
    fig = Figure(figsize=(3.2 * ncols + 0.5, 3.2 * len(forms) + 3.2), layout="constrained")
    grid = fig.add_gridspec(len(forms) + 1, ncols)
    circle = np.exp(1j * np.linspace(0, 2 * np.pi, 721))
    a = ds.A_bar_re.isel(layer=0).values.ravel() + 1j * ds.A_bar_im.isel(layer=0).values.ravel()
    for i, form in enumerate(forms):
        for j, b in enumerate(bits):
            ax = fig.add_subplot(grid[i, j])
            sel = {"form": form, "bits": b, "layer": 0}
            lv = ds.levels_re.sel(sel).values + 1j * ds.levels_im.sel(sel).values
            lv = lv[np.isfinite(lv)]
            aq = (ds.A_bar_q_re.sel(sel).values + 1j * ds.A_bar_q_im.sel(sel).values).ravel()
            ax.scatter(lv.real, lv.imag, s=0.5 if len(lv) > 2000 else 3, c="0.75", lw=0,
                       label="grid levels", rasterized=True)
            ax.plot(circle.real, circle.imag, "k-", lw=0.8)
            ax.scatter(a.real, a.imag, s=8, facecolors="none", edgecolors="C0", lw=0.6,
                       label="A_bar")
            out = np.abs(aq) >= 1
            ax.scatter(aq[~out].real, aq[~out].imag, s=8, marker="x", c="C3", lw=0.8,
                       label="A_bar_q")
            if out.any():
                ax.scatter(aq[out].real, aq[out].imag, s=22, marker="x", c="m", lw=1.2,
                           label="|A_bar_q| >= 1")
            n_out = int(ds.outside_unit_circle.sel(form=form, bits=b))
            ax.set_title(f"{form}, {b} bit: {n_out} mode(s) on/outside", fontsize=9)
            ax.set_aspect("equal")
            ax.set_xlim(-1.15, 1.15)
            ax.set_ylim(-1.15, 1.15)
            ax.tick_params(labelsize=7)
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="lower left", markerscale=1.5)
    ax = fig.add_subplot(grid[len(forms), :])
    styles = {"cartesian": "-", "polar": "--"}
    for form in forms:
        for j, b in enumerate(bits):
            y = ds.power_error.sel(form=form, bits=b).values
            ax.plot(ds.k.values, np.where(np.isfinite(y), y, np.nan), styles.get(form, ":"),
                    color=f"C{j}", label=f"{form} {b} bit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("k (steps)")
    ax.set_ylabel("mean |A_q^k - A^k| / |A^k|")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncols=2)
    fig.suptitle(f"Stability of quantized A_bar ({ds.attrs.get('task', '')}, layer 0 shown)")
    return fig


