"""The state transition the chips realize: each mode's effective on-chip A_bar against the
digital one, and its error against the mode's decay 1 - |A_bar| (issue 9, item 6c).

A mode keeps its dynamics on the chip only while the error the array makes on A_bar is small
against its decay: a mode with 1 - |A_bar| = 2.5e-4 leaves the unit circle as soon as the chip
moves |A_bar| by more than that, and then its state grows until the register clips it. This
analysis reads, for a converted crossbar model (:func:`imssa.crossbar.convert`) at an inference
time, what the programmed and drifted conductances of every A_bar array hold, per chip, after
drift compensation:

    M_chip = alpha * decode(G_A) / scale (+ 1 in the increment form, where the array holds
             A_bar - 1 and the state register adds x itself),

the real map one step applies to a mode's state (a 2x2 block for a complex mode: the images of
the real pairs (1, 0) and (0, 1); 1x1 for a real one). ``A_chip`` is the complex number that
block holds (its rotation-scaling part, as :func:`imssa.mapping.reconstruct` reads it: the two
copies of Re and Im averaged), ``radius_chip`` the spectral radius of the block (the mode's
state decays only while it is < 1). The static picture: per-step read noise (zero-mean), the
converters and the register are left out; they act on top of it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from imssa.crossbar import AnalogSSM, analog_parts, convert, set_time
from imssa.devices import Device, DeviceConfig, format_time, make_device
from imssa.errors import ImssaError
from imssa.experiments.analyses.files import save_outputs
from imssa.experiments.io import environment
from imssa.experiments.simulate import SimulationConfig
from imssa.experiments.simulate.config import check_digital, check_model
from imssa.experiments.simulate.points import generator, settings
from imssa.experiments.simulate.result import check_out, check_plot_path
from imssa.experiments.train import load_run, resolve_device
from imssa.mapping import blocks_to_complex, reconstruct_units

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ANALYSIS = "transition-error"


class ChipTransition(NamedTuple):
    """The state transition of one layer on every chip, float64.

    Attributes:
        path: the layer's SSM, "blocks.i.ssm".
        A: the digital A_bar (H, modes), complex or real.
        A_chip: what the chips realize (chips, H, modes), same dtype.
        radius_chip: spectral radius of the realized per-mode map (chips, H, modes).
    """

    path: str
    A: Tensor
    A_chip: Tensor
    radius_chip: Tensor


def _realized_map(ssm: AnalogSSM) -> Tensor:
    """The real map of one step on each mode's state, (chips, H, modes, out, in), float64."""
    tile = ssm.parts["A_bar"]
    assert tile is not None
    if tile.drifted is None:
        raise ImssaError(f"{ssm.path}: call imssa.crossbar.set_time(model, t_inference) before "
                         "reading the chips' A_bar")
    g = tile.g_frozen if tile.g_frozen is not None else tile.drifted.g  # what a read sees
    units = reconstruct_units(tile.tensor, g).double()  # (z H M out_unit in_unit)
    images = tile.role.outputs(units.mT)  # (z H M in): each unit input's decoded output
    M = (torch.view_as_real(images).mT if images.is_complex() else images.unsqueeze(-2))
    alpha = ssm.alpha.get("state")  # (z 1 ...) against decoded outputs (z B H M pair)
    if alpha is not None:
        M = M * alpha[:, 0].double().unsqueeze(-1)
    if tile.tensor.offset:  # the increment form: the register adds its own content
        M = M + tile.tensor.offset * torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    return M


@torch.no_grad()
def chip_transitions(model: nn.Module) -> list[ChipTransition]:
    """A_bar of every layer whose A_bar is analog, as the chips of a converted model hold it now
    (after :func:`imssa.crossbar.set_time`), against the digital A_bar.

    Raises:
        ImssaError: not a converted model, no analog A_bar, or no inference time set.
    """
    out = []
    for part in analog_parts(model):
        if not isinstance(part, AnalogSSM) or part.parts["A_bar"] is None:
            continue
        M = _realized_map(part)
        A = part.exact.A_bar.detach().to(torch.complex128 if not part.real else torch.float64)
        A_chip = M[..., 0, 0] if part.real else blocks_to_complex(M)
        radius = torch.linalg.eigvals(M).abs().amax(-1)
        out.append(ChipTransition(part.path, A.cpu(), A_chip.cpu(), radius.cpu()))
    if not out:
        raise ImssaError("the converted model keeps every A_bar digital; convert it with A_bar "
                         "on the crossbar (drop A from digital) to read its state transition")
    return out


def _memristor(memristor: str | Device | DeviceConfig) -> Device | DeviceConfig:
    return make_device(memristor) if isinstance(memristor, str) else memristor


def transition_error(run: str | Path, memristor: str | Device | DeviceConfig = "pcm",
                     config: SimulationConfig | None = None, *, device: str | None = None,
                     out: str | Path | None = None, plot: str | Path | None = None
                     ) -> xr.Dataset:
    """Each mode's A_bar on chip against digital, and its error against 1 - |A_bar|.

    The chips are those :func:`imssa.experiments.simulate.simulate` programs for the same run,
    memristor and config (the same seeds: programming from (seed, setting 0), drift and
    compensation read-outs from (seed, 0, time)), so the modes read here are the modes that
    simulation runs. No data is needed: A_bar is a weight. Uses ``config``'s ``t_inference``,
    ``chips``, ``mapping`` (transition form and scale), ``window``, ``periphery`` (drift
    compensation), ``digital``, ``per_tensor`` and ``seed``.

    Args:
        run: a training run folder.
        memristor: a memristor name (``pcm``, ``gaussian``, ...), Device or DeviceConfig.
        config: the simulation settings (default :class:`SimulationConfig`).
        device: the torch device; None takes ``config.device``.
        out, plot: write the Dataset (NetCDF) and :func:`plot_transition_error` (PNG) there.

    Returns:
        Dataset over (t_inference, chip, layer, channel, mode): ``A_re``, ``A_im`` and
        ``decay`` = 1 - |A_bar| (digital); ``A_chip_re``, ``A_chip_im``, ``radius_chip``
        (spectral radius of the realized map), ``error`` = |A_chip - A_bar|,
        ``magnitude_error`` = |A_chip| - |A_bar|; per (t_inference, chip) the counts
        ``broken`` (modes with error >= decay) and ``unstable`` (radius_chip >= 1).
    """
    config = config if config is not None else SimulationConfig()
    if not isinstance(config, SimulationConfig):
        raise ImssaError(f"config must be a SimulationConfig, got {type(config).__name__}")
    if out is not None:  # the files are checked before any work
        check_out(out)
    if plot is not None:
        check_plot_path(plot)
    setting = settings(_memristor(memristor), config, None)[0]
    dev = resolve_device(config.device if device is None else device)
    train_cfg, model = load_run(run, dev)
    check_digital(config.digital, len(model.blocks))
    check_model(config, model, [setting])
    chips = convert(model, setting.mapping, setting.memristor, config.periphery,
                    chips=config.chips, seed=generator(dev, config.seed, setting.index),
                    digital=config.digital, per_tensor=config.per_tensor)
    per_time = []
    for j, t in enumerate(config.t_inference):
        set_time(chips, t, generator(dev, config.seed, setting.index, j))
        per_time.append(chip_transitions(chips))
    ds = _dataset(per_time, config)
    ds.attrs.update({
        "title": "imssa transition-error analysis", "analysis": ANALYSIS,
        "task": train_cfg.task, "run": str(run), "model_config": json.dumps(model.cfg.to_dict()),
        "config": json.dumps({"train": dataclasses.asdict(train_cfg),
                              "simulation": config.to_dict(),
                              "memristor": setting.memristor.config.to_dict(),
                              "memristor_name": repr(setting.memristor),
                              "mapping": setting.mapping.to_dict()}, sort_keys=True),
        **environment(dev)})
    save_outputs(ds, out, plot, plot_transition_error)
    return ds


def _dataset(per_time: list[list[ChipTransition]], config: SimulationConfig) -> xr.Dataset:
    first = per_time[0]
    A = torch.stack([t.A for t in first]).to(torch.complex128).numpy()  # (layer H M)
    A_chip = np.stack([torch.stack([t.A_chip for t in layers], 1).to(torch.complex128).numpy()
                       for layers in per_time])  # (time z layer H M)
    radius = np.stack([torch.stack([t.radius_chip for t in layers], 1).numpy()
                       for layers in per_time])
    decay = 1.0 - np.abs(A)
    error = np.abs(A_chip - A)
    dims = ("t_inference", "chip", "layer", "channel", "mode")
    one = {"units": "1"}
    layers = [int(t.path.split(".")[1]) for t in first]
    return xr.Dataset(
        {"A_re": (dims[2:], A.real, {"long_name": "Re A_bar (digital)", **one}),
         "A_im": (dims[2:], A.imag, {"long_name": "Im A_bar (digital)", **one}),
         "decay": (dims[2:], decay, {"long_name": "1 - |A_bar|", **one,
                                     "description": "the decay per step of the digital mode"}),
         "A_chip_re": (dims, A_chip.real, {"long_name": "Re A_bar on chip", **one}),
         "A_chip_im": (dims, A_chip.imag, {"long_name": "Im A_bar on chip", **one}),
         "radius_chip": (dims, radius, {
             "long_name": "spectral radius of the realized map", **one,
             "description": "the mode's state decays on the chip only while it is < 1"}),
         "error": (dims, error, {"long_name": "|A_chip - A_bar|", **one}),
         "magnitude_error": (dims, np.abs(A_chip) - np.abs(A), {
             "long_name": "|A_chip| - |A_bar|", **one}),
         "broken": (dims[:2], (error >= decay).sum(axis=(2, 3, 4)).astype(np.int32), {
             "long_name": "modes with |A_chip - A_bar| >= 1 - |A_bar|", "units": "count"}),
         "unstable": (dims[:2], (radius >= 1).sum(axis=(2, 3, 4)).astype(np.int32), {
             "long_name": "modes with spectral radius >= 1 on chip", "units": "count"})},
        coords={"t_inference": ("t_inference", np.asarray(config.t_inference), {"units": "s"}),
                "chip": ("chip", np.arange(config.chips, dtype=np.int32)),
                "layer": ("layer", np.asarray(layers, dtype=np.int32)),
                "channel": ("channel", np.arange(A.shape[1], dtype=np.int32)),
                "mode": ("mode", np.arange(A.shape[2], dtype=np.int32))})


def summary(ds: xr.Dataset) -> str:
    """One line per inference time: broken and unstable modes (mean over chips), median
    error / decay."""
    n = ds.sizes["layer"] * ds.sizes["channel"] * ds.sizes["mode"]
    lines = []
    for t in ds.t_inference.values:
        sel = ds.sel(t_inference=t)
        ratio = float((sel.error / sel.decay.where(sel.decay > 0)).median())
        lines.append(f"t = {format_time(float(t))}: {float(sel.broken.mean()):.1f} of {n} modes "
                     f"with |A_chip - A_bar| >= 1 - |A_bar|, {float(sel.unstable.mean()):.1f} "
                     f"unstable (spectral radius >= 1), mean of {ds.sizes['chip']} chips; "
                     f"median error / decay {ratio:.3g}")
    return "\n".join(lines)


def plot_transition_error(ds: xr.Dataset, times: Iterable[float] | None = None) -> Figure:
    """Per inference time: every mode of every chip, |A_chip - A_bar| against 1 - |A_bar|
    (log-log) with the line error = decay; modes above it break, those unstable on the chip
    (spectral radius >= 1) in red. Exact zeros (ideal devices) are drawn at the axis floor."""
    from matplotlib.figure import Figure

    times = list(ds.t_inference.values if times is None else times)
    fig = Figure(figsize=(4.2 * len(times) + 0.4, 4.2), layout="constrained")
    axes = fig.subplots(1, len(times), squeeze=False)[0]
    decay = ds.decay.broadcast_like(ds.error.isel(t_inference=0)).values.ravel()
    ok = decay > 0  # a digital mode on or outside the unit circle has no decay to compare
    x_lim = (decay[ok].min() / 2, 1.5) if ok.any() else (1e-6, 1.5)
    for ax, t in zip(axes, times):
        sel = ds.sel(t_inference=t)
        err, rad = sel.error.values.ravel(), sel.radius_chip.values.ravel()
        floor = max(1e-12, float(np.min(err[err > 0], initial=1.0)) / 10)
        y = np.maximum(err, floor)
        bad = rad >= 1
        ax.scatter(decay[ok & ~bad], y[ok & ~bad], s=4, alpha=0.4, lw=0, c="C0",
                   label="stable on chip", rasterized=True)
        if (ok & bad).any():
            ax.scatter(decay[ok & bad], y[ok & bad], s=6, alpha=0.7, lw=0, c="C3",
                       label="unstable on chip (radius >= 1)", rasterized=True)
        ax.plot(x_lim, x_lim, "k--", lw=1, label="error = decay")
        ax.set(xscale="log", yscale="log", xlim=x_lim, xlabel="1 - |A_bar| (digital decay per step)",
               ylabel="|A_bar on chip - A_bar|")
        ax.set_title(f"t = {format_time(float(t))}: {float(sel.broken.mean()):.0f} broken, "
                     f"{float(sel.unstable.mean()):.0f} unstable (mean/chip)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    mapping = json.loads(ds.attrs.get("config", "{}")).get("mapping", {})
    scale = mapping.get("transition_scale") or f"per {mapping.get('granularity', 'tensor')}"
    fig.suptitle(f"A_bar on chip, {ds.attrs.get('task', '')}, {mapping.get('transition', '')} "
                 f"form, scale {scale}, {ds.sizes['chip']} chips", fontsize=10)
    return fig
