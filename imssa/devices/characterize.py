"""Monte-Carlo characterization of a device: conductance statistics versus target and time.

``characterize`` programs ``n_samples`` devices per target conductance, drifts them to each
inference time and reads them once, and returns means, stds and quantiles of the programmed,
drifted and read conductances as an xarray Dataset; ``plot_characterization`` draws it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from imssa.devices.base import Device, check_time, format_time
from imssa.errors import ImssaError
from imssa.files import atomic_write

QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
_UNITS = "uS"  # ASCII, so every NetCDF backend stores it


def _stats(x: torch.Tensor, q: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and quantiles over the sample axis 0 of x (n_samples, n_g)."""
    x = x.double()
    quant = torch.quantile(x, q, dim=0).T  # (n_g, n_q)
    return x.mean(0).numpy(), x.std(0).numpy(), quant.numpy()


def characterize(device: Device, g_targets: Sequence[float], t_inference_list: Sequence[float],
                 n_samples: int = 10_000, seed: int = 0,
                 quantiles: Sequence[float] = QUANTILES) -> xr.Dataset:
    """Conductance statistics of ``device`` over targets and inference times.

    Args:
        device: any :class:`Device`.
        g_targets: target conductances, µS, within [g_min, g_max].
        t_inference_list: times since programming, s (>= 0).
        n_samples: devices per target (independent chip instances).
        seed: seed of the one generator all draws come from.
        quantiles: probabilities of the reported quantiles, in [0, 1].

    Returns:
        Dataset with coords g_target (µS), t_inference (s), quantile, and variables
        ``programmed_{mean,std}`` (g_target), ``programmed_quantiles`` (g_target, quantile),
        ``{drifted,read}_{mean,std}`` (t_inference, g_target), ``{drifted,read}_quantiles``
        (t_inference, g_target, quantile), ``read_noise_std`` (t_inference, g_target; the model's
        mean read std) and ``pulses_mean`` (g_target; programming attempts per device). attrs hold
        the device class, its config as a JSON string, the seed and n_samples.
    """
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ImssaError(f"n_samples must be an integer >= 2, got {n_samples!r}")
    g_list = [float(g) for g in g_targets]
    t_list = [check_time(t, "t_inference_list entry") for t in t_inference_list]
    if not g_list or not t_list:
        raise ImssaError("g_targets and t_inference_list must each hold at least one value")
    q_list = [float(q) for q in quantiles]
    if any(not 0.0 <= q <= 1.0 for q in q_list):
        raise ImssaError(f"quantiles must lie in [0, 1], got {q_list}")

    generator = torch.Generator().manual_seed(seed)
    q = torch.tensor(q_list, dtype=torch.float64)
    g_target = torch.tensor(g_list, dtype=torch.float32).expand(n_samples, len(g_list))
    state = device.program(g_target, generator)  # (S G)
    p_mean, p_std, p_q = _stats(state.g, q)
    pulses = state.n_pulses.double().mean(dim=(0, -1)).numpy()

    fields: dict[str, list[np.ndarray]] = {k: [] for k in (
        "drifted_mean", "drifted_std", "drifted_quantiles", "read_mean", "read_std",
        "read_quantiles", "read_noise_std")}
    for t in t_list:
        drifted = device.drift(state, t, generator)
        g_read = device.read(drifted, generator)
        for name, x in (("drifted", drifted.g), ("read", g_read)):
            mean, std, quant = _stats(x, q)
            fields[f"{name}_mean"].append(mean)
            fields[f"{name}_std"].append(std)
            fields[f"{name}_quantiles"].append(quant)
        fields["read_noise_std"].append(drifted.read_std.double().mean(0).numpy())

    gt, tq, gtq = ("g_target",), ("t_inference", "g_target"), ("t_inference", "g_target",
                                                              "quantile")
    data = {
        "programmed_mean": (gt, p_mean), "programmed_std": (gt, p_std),
        "programmed_quantiles": (("g_target", "quantile"), p_q),
        "pulses_mean": (gt, pulses),
    }
    for name, value in fields.items():
        data[name] = (gtq if name.endswith("quantiles") else tq, np.stack(value))
    ds = xr.Dataset(data, coords={"g_target": g_list, "t_inference": t_list, "quantile": q_list})
    for var in ds.data_vars:
        ds[var].attrs["units"] = "1" if var == "pulses_mean" else _UNITS
    ds["g_target"].attrs.update(units=_UNITS, long_name="target conductance")
    ds["t_inference"].attrs.update(units="s", long_name="time since programming")
    ds["quantile"].attrs.update(units="1")
    ds.attrs.update(device=type(device).__name__, config=device.config.to_json(), seed=seed,
                    n_samples=n_samples,
                    title=f"{type(device).__name__} conductance statistics")
    return ds


def plot_characterization(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Draw a characterization Dataset to an image file (format from the suffix).

    Three panels over the target conductance: the programmed conductance (mean, 5-95% band),
    the read conductance per inference time (mean, 5-95% band; drifted mean dashed), and the
    relative spread std/target of the read conductance. The file is written to a temporary name
    and renamed, so a failed plot never leaves a partial file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    g = ds["g_target"].values
    logx = bool(g.min() > 0 and g.max() / g.min() > 20)
    q = list(ds["quantile"].values)

    def band(var: xr.DataArray) -> tuple[np.ndarray, np.ndarray] | None:
        if 0.05 in q and 0.95 in q:
            return var.sel(quantile=0.05).values, var.sel(quantile=0.95).values
        return None

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
    ax = axes[0]
    ax.plot(g, g, color="0.6", lw=1, ls=":", label="target")
    ax.plot(g, ds["programmed_mean"], "o-", color="k", label="programmed mean")
    if (b := band(ds["programmed_quantiles"])) is not None:
        ax.fill_between(g, *b, color="k", alpha=0.15, label="5-95 % of devices")
    ax.set(title="programmed", xlabel="target conductance (µS)", ylabel="conductance (µS)")

    colors = plt.cm.viridis(np.linspace(0, 0.9, ds.sizes["t_inference"]))
    for color, t in zip(colors, ds["t_inference"].values):
        sel = ds.sel(t_inference=t)
        label = f"t = {format_time(float(t))}"
        axes[1].plot(g, sel["read_mean"], "o-", color=color, label=label)
        axes[1].plot(g, sel["drifted_mean"], "--", color=color, lw=1)
        if (b := band(sel["read_quantiles"])) is not None:
            axes[1].fill_between(g, *b, color=color, alpha=0.12)
        with np.errstate(divide="ignore", invalid="ignore"):
            axes[2].plot(g, sel["read_std"] / g, "o-", color=color, label=label)
    axes[1].plot(g, g, color="0.6", lw=1, ls=":")
    axes[1].set(title="read (dashed: drifted mean)", xlabel="target conductance (µS)",
                ylabel="conductance (µS)")
    axes[2].set(title="relative spread of reads", xlabel="target conductance (µS)",
                ylabel="std of reads / target conductance")
    for ax in axes:
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(ds.attrs.get("title", "device characterization"))

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png",
                                                   dpi=120))
    finally:
        plt.close(fig)
    return path
