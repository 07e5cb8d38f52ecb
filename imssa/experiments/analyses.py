"""Post-training-quantization analyses of trained runs, after Zhao et al. 2025 ("Quantizing
Small-Scale State-Space Models for Edge AI"), Figs. 2, 3 and 4.

- :func:`sensitivity` (Fig. 2): test accuracy when ONE quantization target is quantized at a
  time, everything else in full precision, against its bit width, for several quantizer
  variants (granularity, symmetric or not, static or dynamic ranges, Cartesian or polar A_bar).
- :func:`stability` (Fig. 3): the quantized A_bar against the unit circle: the grid levels, how
  many modes land on or outside it, and how fast the error of A_bar_q^k grows with the step k.
- :func:`width` (Fig. 4): accuracy of the uniformly quantized model W{b}A{b} (every weight, SSM
  tensor, activation and the state at b bits) against b, for models of several widths.

Every analysis runs the model in recurrent mode (the deployed form, where the state is quantized
at every step) and returns an :class:`xarray.Dataset` with named dims, units in each variable's
attrs, the whole configuration as a JSON string in ``attrs["config"]`` and the environment
(device, library versions, date). :func:`save_dataset` writes it as NetCDF and
:func:`save_figure` the figure of ``plot_<analysis>`` as PNG, both atomically. The ``imssa
analyze`` command (:func:`add_analysis_parser`) does all three.

Static ranges are calibrated (:func:`imssa.quant.calibrate`) on ``calib_samples`` sequences drawn
with ``seed`` from the run's own training split; accuracy is measured on its test split (the
first ``limit`` test sequences for quick runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from imssa.data import Split, TaskData, load_task
from imssa.errors import ImssaError
from imssa.experiments.io import atomic_write, environment
from imssa.experiments.train import TrainConfig, accuracy, load_run, resolve_device
from imssa.quant import (
    TARGETS,
    FakeQuantizer,
    QuantConfig,
    QuantizedS4D,
    QuantSpec,
    a_bar_levels,
    calibrate,
    make_config,
)
from imssa.quant.spec import (
    A_BAR_FORMS,
    GELU_FORMS,
    GRANULARITIES,
    MAX_BITS,
    MIN_BITS,
    ABarForm,
    GeluForm,
)
from imssa.ssm import S4DModel, count_parameters

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAPER = "Zhao et al. 2025, Quantizing Small-Scale State-Space Models for Edge AI"
ANALYSES = ("sensitivity", "stability", "width")
DEFAULT_BITS = (2, 3, 4, 5, 6, 8, 10, 12, 16)
STABILITY_BITS = (4, 6, 8)
DEFAULT_TARGETS = ("A_bar", "B_bar", "C", "D", "x", "encoder_weight", "mix_weight",
                   "decoder_weight", "ssm_input", "ssm_output", "gelu_output", "mix_output",
                   "pooled")
DEFAULT_CALIB_SAMPLES = 1000
DEFAULT_BATCH_SIZE = 500
# Grids of A_bar are stored level by level only up to this many bits: a Cartesian b-bit grid has
# (2^b - 1)^2 levels, 65,025 at 8 bits but 4.3e9 at 16.
MAX_LEVEL_BITS = 8
_K_CHUNK = 64  # steps k of A_bar^k evaluated at once (memory: modes x chunk float64 values)


# --- quantizer variants of the sensitivity analysis ----------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One way to quantize a target, applied on top of its preset spec (see :func:`sensitivity`).

    Attributes:
        name: short name, the coordinate of the ``variant`` dim.
        spec: QuantSpec fields replaced in the target's spec (bits is added per bit width).
        kinds: the target kinds (``weight``, ``ssm``, ``state``, ``activation``) it applies to.
        targets: restricts it further to these target names (None: every target of ``kinds``).
        a_bar_form: the A_bar grid, ``cartesian`` or ``polar``.
        description: one line for plots and attrs.
    """

    name: str
    spec: dict[str, Any]
    kinds: tuple[str, ...]
    targets: tuple[str, ...] | None = None
    a_bar_form: str = "cartesian"
    description: str = ""

    def applies_to(self, target: str) -> bool:
        if self.targets is not None and target not in self.targets:
            return False
        return TARGETS[target].kind in self.kinds

    @property
    def granularity(self) -> str:
        return str(self.spec.get("granularity", "tensor"))

    @property
    def symmetric(self) -> str:
        """``yes``/``no``, or ``n/a`` for the polar grid (which has no zero point)."""
        if self.a_bar_form == "polar":
            return "n/a"
        return "yes" if self.spec.get("symmetric", True) else "no"

    @property
    def ranges(self) -> str:
        return "dynamic" if self.spec.get("dynamic", False) else "static"

    @property
    def rounding(self) -> str:
        return str(self.spec.get("rounding", "nearest"))


_ALL_KINDS = ("weight", "ssm", "state", "activation")
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("tensor-sym", {"granularity": "tensor", "symmetric": True}, _ALL_KINDS,
            description="one range per tensor, signed symmetric grid"),
    Variant("tensor-asym", {"granularity": "tensor", "symmetric": False}, _ALL_KINDS,
            description="one range per tensor, unsigned grid with a zero point"),
    Variant("head-sym", {"granularity": "head", "symmetric": True}, _ALL_KINDS,
            description="one range per head (weight row, activation channel), symmetric grid"),
    Variant("head-asym", {"granularity": "head", "symmetric": False}, _ALL_KINDS,
            description="one range per head, grid with a zero point"),
    Variant("mode-sym", {"granularity": "mode", "symmetric": True}, ("state",),
            description="state only: one static range per (head, mode), symmetric grid"),
    Variant("mode-asym", {"granularity": "mode", "symmetric": False}, ("state",),
            description="state only: one static range per (head, mode), grid with a zero point"),
    Variant("head-sym-sr", {"granularity": "head", "symmetric": True, "rounding": "stochastic"},
            ("state",), description="state only: per head, symmetric, stochastic rounding"),
    Variant("mode-sym-sr", {"granularity": "mode", "symmetric": True, "rounding": "stochastic"},
            ("state",),
            description="state only: per (head, mode), symmetric, stochastic rounding"),
    Variant("dynamic-tensor", {"granularity": "tensor", "symmetric": False, "dynamic": True},
            ("activation",),
            description="activations only: range of each input sample, per tensor"),
    Variant("dynamic-head", {"granularity": "head", "symmetric": False, "dynamic": True},
            ("activation",),
            description="activations only: range of each input sample, per channel"),
    Variant("polar-tensor", {"granularity": "tensor"}, ("ssm",), ("A_bar",), "polar",
            description="A_bar only: log-decay and phase grid inside the unit circle, per tensor"),
    Variant("polar-head", {"granularity": "head"}, ("ssm",), ("A_bar",), "polar",
            description="A_bar only: log-decay and phase grid inside the unit circle, per head"),
)}


def target_config(target: str, bits: int, variant: str = "tensor-sym",
                  gelu: str = "exact") -> QuantConfig:
    """Full precision except ``target``, quantized at ``bits`` bits in ``variant``.

    The target keeps its preset's calibration (weights and SSM tensors min/max of the tensor,
    activations and the state the 99.999th percentile of calibration data); the variant replaces
    granularity, symmetry and dynamic ranges. Raises ImssaError when the variant does not apply.
    """
    _check_targets([target])
    v = _variant(variant)
    if not v.applies_to(target):
        raise ImssaError(f"variant {variant!r} does not apply to target {target!r} "
                         f"({TARGETS[target].kind}): {v.description}")
    cfg = make_config("fp", overrides={target: {**v.spec, "bits": bits}},
                      a_bar_form="polar" if v.a_bar_form == "polar" else None)
    return dataclasses.replace(cfg, gelu=cast(GeluForm, gelu))


def uniform_config(bits: int, a_bar_form: str = "cartesian", gelu: str = "auto") -> QuantConfig:
    """W{b}A{b}: every weight, SSM tensor, activation and the state at ``bits``, as the presets.

    Specs as :func:`imssa.quant.make_config`'s ``W8A8``/``W4A6`` (weights symmetric per tensor,
    activations asymmetric with percentile ranges, the input in full precision), so
    ``uniform_config(8) == make_config("W8A8")``.
    """
    _check_bits([bits])
    overrides: dict[str, dict[str, Any] | QuantSpec] = {
        name: {"bits": bits} for name in TARGETS if name != "input"}
    cfg = make_config("fp", overrides=overrides, a_bar_form=cast(ABarForm, a_bar_form))
    return dataclasses.replace(cfg, gelu=cast(GeluForm, gelu))


# --- input checks --------------------------------------------------------------------------------
def _check_bits(bits: Iterable[Any], name: str = "bits") -> tuple[int, ...]:
    out = []
    for b in bits:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) \
                or not MIN_BITS <= int(b) <= MAX_BITS:
            raise ImssaError(f"{name} must be integers in {MIN_BITS}..{MAX_BITS}, got {b!r}")
        out.append(int(b))
    if not out:
        raise ImssaError(f"{name} is empty; give at least one bit width in {MIN_BITS}..{MAX_BITS}")
    return tuple(sorted(set(out)))


def _check_names(values: Iterable[str], valid: Sequence[str], what: str) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(values))  # unique, in the given order
    if not out:
        raise ImssaError(f"no {what} given; choose from {', '.join(valid)}")
    unknown = [v for v in out if v not in valid]
    if unknown:
        raise ImssaError(f"unknown {what} {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(valid)}")
    return out


def _check_targets(targets: Iterable[str]) -> tuple[str, ...]:
    return _check_names(targets, list(TARGETS), "quantization target(s)")


def _variant(name: str) -> Variant:
    return VARIANTS[_check_names([name], list(VARIANTS), "variant(s)")[0]]


def _check_positive(value: int | None, name: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ImssaError(f"{name} must be a positive integer{' or None' if allow_none else ''}, "
                         f"got {value!r}")


def _check_choice(value: str, valid: Sequence[str], name: str) -> None:
    if value not in valid:
        raise ImssaError(f"{name} must be one of {', '.join(valid)}, got {value!r}")


# --- data and evaluation -------------------------------------------------------------------------
@dataclass
class _Context:
    """One run ready for PTQ: model on the device, calibration batches, test split."""

    run: Path
    cfg: TrainConfig
    model: S4DModel
    calib: list[torch.Tensor]
    test: Split
    seq_len: int
    device: torch.device
    batch_size: int
    info: dict[str, Any] = field(default_factory=dict)


def _task_data(cfg: TrainConfig, data_dir: str | None, cache: dict | None = None) -> TaskData:
    key = (cfg.task, data_dir or cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.limit)
    if cache is not None and key in cache:
        return cache[key]
    data = load_task(cfg.task, key[1], val_fraction=cfg.val_fraction, seed=cfg.seed,
                     limit=cfg.limit)
    if cache is not None:
        cache[key] = data
    return data


def _context(run: str | Path, device: torch.device, data_dir: str | None, limit: int | None,
             calib_samples: int, seed: int, batch_size: int,
             cache: dict | None = None) -> _Context:
    """Load a run, its data split as in training, the calibration batches and the test split."""
    cfg, model = load_run(run, device)
    data = _task_data(cfg, data_dir, cache)
    n_train = len(data.train)
    if n_train == 0:
        raise ImssaError(f"{run}: the training split is empty, nothing to calibrate on")
    # A fixed random subset of the training split, so every configuration sees the same batches.
    order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed))
    calib_x = data.train.x[order[:calib_samples]].to(device)
    calib = list(calib_x.split(batch_size))
    n_test = len(data.test) if limit is None else min(limit, len(data.test))
    test = Split(data.test.x[:n_test].to(device), data.test.y[:n_test].to(device))
    info = {"task": cfg.task, "d_model": model.cfg.d_model, "seed": cfg.seed,
            "calib_samples": len(calib_x), "test_samples": n_test,
            "parameters": count_parameters(model)}
    return _Context(Path(run), cfg, model, calib, test, data.seq_len, device, batch_size, info)


def _needs_calibration(qmodel: QuantizedS4D) -> bool:
    return any(isinstance(q, FakeQuantizer) and q.kind in ("activation", "state") and q.enabled
               and not q.spec.dynamic and not q.frozen for q in qmodel.quantizers())


def ptq_accuracy(ctx: _Context, config: QuantConfig) -> float:
    """Test accuracy (fraction) of the run quantized by ``config``, calibrated, in recurrent mode."""
    qmodel = QuantizedS4D(ctx.model, config).to(ctx.device).eval()
    if _needs_calibration(qmodel):
        calibrate(qmodel, ctx.calib)
    return accuracy(lambda u: qmodel(u, mode="recurrent"), ctx.test, ctx.device, ctx.batch_size)


def _attrs(analysis: str, task: str, device: torch.device,
           config: dict[str, Any]) -> dict[str, Any]:
    """Dataset attrs: what it is, the configuration as JSON (NetCDF rejects dicts), environment."""
    return {"title": f"imssa {analysis} analysis", "analysis": analysis, "task": task,
            "source_paper": PAPER, "config": json.dumps(config, sort_keys=True),
            **environment(device)}


# --- 1. sensitivity (Fig. 2) ---------------------------------------------------------------------
def sensitivity(run: str | Path, bits: Iterable[int] = DEFAULT_BITS,
                targets: Iterable[str] = DEFAULT_TARGETS,
                variants: Iterable[str] = tuple(VARIANTS), *, device: str = "auto",
                data_dir: str | None = None, limit: int | None = None,
                calib_samples: int = DEFAULT_CALIB_SAMPLES, seed: int = 0,
                batch_size: int = DEFAULT_BATCH_SIZE, gelu: str = "exact",
                out: str | Path | None = None, plot: str | Path | None = None) -> xr.Dataset:
    """PTQ accuracy when one target is quantized at a time, against bits, per quantizer variant.

    Every other target stays in full precision (``make_config("fp")`` with one override). The
    variants (:data:`VARIANTS`) replace granularity (per tensor / per head; per (head, mode) for
    the state), symmetry, static or dynamic ranges and the A_bar grid on top of the target's
    preset spec. Not every pair exists, and those are NaN:

    - ``dynamic`` ranges (from each input sample) exist for activations only: weights and SSM
      tensors always take their range from the tensor itself, and the state x needs one fixed
      grid for the whole scan. The state's range variants are therefore its static
      granularities: one calibrated range per tensor, per head or per (head, mode)
      (``tensor-*``, ``head-*``, ``mode-*``).
    - ``polar-*`` apply to A_bar only (log-decay and phase grid inside the unit circle); its
      Cartesian grid is the ``tensor-*``/``head-*`` variants.

    Args:
        run: a training run folder (``imssa train --out RUN``).
        bits: bit widths, each in 2..16.
        targets: quantization targets (names of :data:`imssa.quant.TARGETS`).
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
    bits_t = _check_bits(bits)
    targets_t = _check_targets(targets)
    variants_t = _check_names(variants, list(VARIANTS), "variant(s)")
    _check_choice(gelu, GELU_FORMS, "gelu")
    _check_positive(limit, "limit", allow_none=True)
    _check_positive(calib_samples, "calib_samples")
    _check_positive(batch_size, "batch_size")
    jobs = [(i, j, k) for i, t in enumerate(targets_t) for j, v in enumerate(variants_t)
            if VARIANTS[v].applies_to(t) for k in range(len(bits_t))]
    if not jobs:
        raise ImssaError(f"none of the variants {', '.join(variants_t)} applies to the targets "
                         f"{', '.join(targets_t)}; see imssa.experiments.analyses.VARIANTS")
    dev = resolve_device(device)
    ctx = _context(run, dev, data_dir, limit, calib_samples, seed, batch_size)

    shape = (len(targets_t), len(variants_t), len(bits_t))
    acc = np.full(shape, np.nan)
    seconds = np.full(shape, np.nan)
    fp = ptq_accuracy(ctx, dataclasses.replace(make_config("fp"), gelu=cast(GeluForm, gelu)))
    bar = tqdm(jobs, desc="sensitivity", unit="config")
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
            "target_kind": ("target", [TARGETS[t].kind for t in targets_t]),
            "granularity": ("variant", [v.granularity for v in vs]),
            "symmetric": ("variant", [v.symmetric for v in vs]),
            "ranges": ("variant", [v.ranges for v in vs]),
            "rounding": ("variant", [v.rounding for v in vs]),
            "a_bar_form": ("variant", [v.a_bar_form for v in vs]),
            "variant_description": ("variant", [v.description for v in vs]),
        },
        attrs=_attrs("sensitivity", ctx.cfg.task, dev, {
            "run": str(ctx.run), "train": dataclasses.asdict(ctx.cfg),
            "model": ctx.model.cfg.to_dict(), "base_quant": make_config("fp").to_dict(),
            "variants": {v.name: dataclasses.asdict(v) for v in vs},
            "bits": list(bits_t), "targets": list(targets_t), "gelu": gelu,
            "mode": "recurrent", "seed": seed, "limit": limit, "batch_size": batch_size,
            **ctx.info}))
    _save(ds, out, plot, plot_sensitivity)
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


# --- 2. stability (Fig. 3) -----------------------------------------------------------------------
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
        granularity: ``tensor`` or ``head`` ranges of A_bar.
        seq_len: the largest k; default the task's sequence length L.
        device: where the quantizers run.
        data_dir: data folder, only to find L.
        out, plot: write the Dataset (NetCDF) and :func:`plot_stability` (PNG) there.

    Returns:
        Dataset with ``outside_unit_circle(form, bits)`` (modes with |A_bar_q| >= 1, all layers),
        ``max_abs(form, bits)``, ``power_error(form, bits, k)`` (mean over modes of
        |A_bar_q^k - A_bar^k| / |A_bar^k|) and ``power_error_median``, the values
        ``A_bar_re/_im(layer, head, mode)`` and ``A_bar_q_re/_im(form, bits, layer, head, mode)``,
        and the grid ``levels_re/_im(form, bits, layer, level)`` of each layer's first range
        group (the whole tensor per tensor, head 0 per head; NaN-padded, stored up to
        MAX_LEVEL_BITS bits) with ``levels_outside_unit_circle(form, bits, layer)``.
    """
    bits_t = _check_bits(bits)
    forms_t = _check_names(forms, A_BAR_FORMS, "A_bar form(s)")
    if granularity not in ("tensor", "head"):
        raise ImssaError(f"granularity of A_bar must be 'tensor' or 'head', got {granularity!r}")
    _check_positive(seq_len, "seq_len", allow_none=True)
    dev = resolve_device(device)
    cfg, model = load_run(run, dev)
    if seq_len is None:
        seq_len = _task_data(cfg, data_dir).seq_len
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
    for i, j in tqdm(jobs, desc="stability", unit="config"):
        form, b = forms_t[i], bits_t[j]
        qcfg = make_config("fp", overrides={"A_bar": {"bits": b, "granularity": granularity}},
                           a_bar_form=cast(ABarForm, form))
        qmodel = QuantizedS4D(model, qcfg).to(dev).eval()
        with torch.no_grad():
            Aq = torch.stack([s.A_bar for s in qmodel.quantized_ssms()])  # (layers H N/2)
            if b <= MAX_LEVEL_BITS:
                for layer in range(n_layers):
                    # The first range group: the whole tensor, or head 0 alone for per-head.
                    src = A_fp[layer] if granularity == "tensor" else A_fp[layer, :1]
                    grid = a_bar_levels(src, qcfg.spec("A_bar", layer), form)[0]
                    lv = grid.cpu().to(torch.complex128).numpy()
                    levels[i, j, layer, :len(lv)] = lv
                    levels_out[i, j, layer] = int((np.abs(lv) >= 1).sum())
        aq = Aq.cpu().to(torch.complex128).numpy()
        A_q[i, j] = aq
        outside[i, j] = int((np.abs(aq) >= 1).sum())
        max_abs[i, j] = float(np.abs(aq).max())
        err_mean[i, j], err_median[i, j] = power_errors(A_fp, Aq, seq_len)

    a = A_fp.cpu().to(torch.complex128).numpy()
    dims_q = ("form", "bits", "layer", "head", "mode")
    dims_l = ("form", "bits", "layer", "level")
    unit = {"units": "1"}
    ds = xr.Dataset(
        {"outside_unit_circle": (("form", "bits"), outside, {
            "long_name": "modes with |A_bar_q| >= 1", "units": "count",
            "description": f"over all {n_layers * H * N2} modes (layers x heads x N/2)"}),
         "max_abs": (("form", "bits"), max_abs, {"long_name": "max |A_bar_q|", **unit}),
         "power_error": (("form", "bits", "k"), err_mean, {
             "long_name": "mean relative error of A_bar_q^k", **unit,
             "description": "mean over modes of |A_bar_q^k - A_bar^k| / |A_bar^k|"}),
         "power_error_median": (("form", "bits", "k"), err_median, {
             "long_name": "median relative error of A_bar_q^k", **unit}),
         "A_bar_re": (("layer", "head", "mode"), a.real, {"long_name": "Re A_bar", **unit}),
         "A_bar_im": (("layer", "head", "mode"), a.imag, {"long_name": "Im A_bar", **unit}),
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
                "head": ("head", np.arange(H, dtype=np.int32)),
                "mode": ("mode", np.arange(N2, dtype=np.int32), {"long_name": "complex mode n"}),
                "level": ("level", np.arange(n_levels, dtype=np.int32))},
        attrs=_attrs("stability", cfg.task, dev, {
            "run": str(run), "train": dataclasses.asdict(cfg), "model": model.cfg.to_dict(),
            "bits": list(bits_t), "forms": list(forms_t), "granularity": granularity,
            "seq_len": seq_len, "quant": make_config(
                "fp", overrides={"A_bar": {"bits": bits_t[0], "granularity": granularity}}
            ).to_dict(), "task": cfg.task, "d_model": model.cfg.d_model}))
    _save(ds, out, plot, plot_stability)
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


# --- 3. width (Fig. 4) ---------------------------------------------------------------------------
def width(runs: Sequence[str | Path], bits: Iterable[int] = DEFAULT_BITS, *,
          a_bar_form: str = "cartesian", gelu: str = "auto", device: str = "auto",
          data_dir: str | None = None, limit: int | None = None,
          calib_samples: int = DEFAULT_CALIB_SAMPLES, seed: int = 0,
          batch_size: int = DEFAULT_BATCH_SIZE, out: str | Path | None = None,
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
    bits_t = _check_bits(bits)
    _check_choice(a_bar_form, A_BAR_FORMS, "a_bar_form")
    _check_choice(gelu, GELU_FORMS, "gelu")
    _check_positive(limit, "limit", allow_none=True)
    _check_positive(calib_samples, "calib_samples")
    _check_positive(batch_size, "batch_size")
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
    bar = tqdm(total=len(headers) * (len(bits_t) + 1), desc="width", unit="config")
    for path, cfg, d_model, n_params in headers:
        i, s = d_models.index(d_model), seeds.index(cfg.seed)
        ctx = _context(path, dev, data_dir, limit, calib_samples, seed, batch_size, cache)
        infos.append({"run": path, **ctx.info})
        run_names[i, s], params[i] = path, n_params
        bar.set_postfix_str(f"d_model={d_model} seed={cfg.seed} fp")
        fp[i, s] = ptq_accuracy(ctx, dataclasses.replace(make_config("fp"), gelu="exact"))
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
        attrs=_attrs("width", tasks[0], dev, {
            "runs": infos, "train": [dataclasses.asdict(h[1]) for h in headers],
            "bits": list(bits_t), "a_bar_form": a_bar_form, "gelu": gelu,
            "quant_example": uniform_config(bits_t[0], a_bar_form, gelu).to_dict(),
            "mode": "recurrent", "seed": seed, "limit": limit, "batch_size": batch_size,
            "calib_samples": calib_samples, "task": tasks[0]}))
    _save(ds, out, plot, plot_width)
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


# --- files ---------------------------------------------------------------------------------------
def save_dataset(ds: xr.Dataset, path: str | Path) -> None:
    """Write ``ds`` as NetCDF (scipy engine, NETCDF3_64BIT) atomically."""
    atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="scipy"))


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> None:
    """Write a matplotlib figure as PNG (Agg) atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # render with Agg whatever pyplot's backend is
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))


def _save(ds: xr.Dataset, out: str | Path | None, plot: str | Path | None, plotter) -> None:
    if out is not None:
        save_dataset(ds, out)
    if plot is not None:
        save_figure(plotter(ds), plot)


# --- command line --------------------------------------------------------------------------------
def parse_bits(text: str) -> tuple[int, ...]:
    """``"2,4,6,8"`` or ranges ``"2-8,10,12"`` -> sorted unique bit widths, checked."""
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ImssaError(f"--bits: cannot read {part!r} in {text!r}; give integers and "
                             f"ranges in {MIN_BITS}..{MAX_BITS}, e.g. '2,4,6,8' or '2-8'") from None
    return _check_bits(out, "--bits")


def _names(text: str, valid: Sequence[str], option: str) -> tuple[str, ...]:
    if text.strip() == "all":
        return tuple(valid)
    return _check_names([t.strip() for t in text.split(",") if t.strip()], valid,
                        f"{option} value(s)")


def _plot_path(args: argparse.Namespace) -> Path | None:
    if args.no_plot:
        return None
    return Path(args.plot) if args.plot else Path(args.out).with_suffix(".png")


def _written(args: argparse.Namespace, plot: Path | None) -> None:
    print(f"wrote {args.out}" + (f" and {plot}" if plot else ""))


def _percent_table(da: xr.DataArray, rows: str) -> str:
    bits = [int(b) for b in da.bits.values]
    lines = [f"{rows:>16} " + " ".join(f"{b:>6}" for b in bits)]
    for r in da[rows].values:
        vals = da.sel({rows: r}).values
        lines.append(f"{str(r):>16} " + " ".join(
            f"{100 * v:6.1f}" if np.isfinite(v) else f"{'-':>6}" for v in vals))
    return "\n".join(lines)


def _sensitivity_cmd(args: argparse.Namespace) -> None:
    plot = _plot_path(args)
    ds = sensitivity(args.run, parse_bits(args.bits), _names(args.targets, list(TARGETS),
                                                             "--targets"),
                     _names(args.variants, list(VARIANTS), "--variants"), device=args.device,
                     data_dir=args.data_dir, limit=args.limit, calib_samples=args.calib_samples,
                     seed=args.seed, batch_size=args.batch_size, gelu=args.gelu, out=args.out,
                     plot=plot)
    print(f"full precision (recurrent): {100 * float(ds.fp_accuracy):.2f} %")
    for v in ds.variant.values:
        da = ds.accuracy.sel(variant=v)
        if np.isfinite(da.values).any():
            print(f"\n{v} ({ds.variant_description.sel(variant=v).item()}), accuracy %:")
            print(_percent_table(da.dropna("target", how="all"), "target"))
    _written(args, plot)


def _stability_cmd(args: argparse.Namespace) -> None:
    plot = _plot_path(args)
    ds = stability(args.run, parse_bits(args.bits), _names(args.forms, A_BAR_FORMS, "--forms"),
                   granularity=args.granularity, seq_len=args.seq_len, device=args.device,
                   data_dir=args.data_dir, out=args.out, plot=plot)
    k_last = int(ds.k[-1])
    for f in ds.form.values:
        for b in ds.bits.values:
            sel = {"form": f, "bits": b}
            print(f"{str(f):>9} {int(b):2d} bit: {int(ds.outside_unit_circle.sel(sel)):4d} "
                  f"mode(s) with |A_q| >= 1, max |A_q| {float(ds.max_abs.sel(sel)):.6f}, "
                  f"error of A^k at k=1 {float(ds.power_error.sel(sel).isel(k=0)):.2e}, "
                  f"k={k_last} {float(ds.power_error.sel(sel).isel(k=-1)):.2e}")
    _written(args, plot)


def _width_cmd(args: argparse.Namespace) -> None:
    plot = _plot_path(args)
    ds = width(args.runs, parse_bits(args.bits), a_bar_form=args.a_bar_form, gelu=args.gelu,
               device=args.device, data_dir=args.data_dir, limit=args.limit,
               calib_samples=args.calib_samples, seed=args.seed, batch_size=args.batch_size,
               out=args.out, plot=plot)
    print("accuracy % of W{b}A{b} (mean over runs of each width):")
    print(_percent_table(ds.accuracy, "d_model"))
    print("full precision: " + ", ".join(
        f"{int(h)} heads {100 * float(ds.fp_accuracy.sel(d_model=h)):.2f} %"
        for h in ds.d_model.values))
    _written(args, plot)


def _add_io(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="NetCDF file to write (FILE.nc)")
    p.add_argument("--plot", default=None, help="PNG figure to write (default: --out with .png)")
    p.add_argument("--no-plot", action="store_true", help="write no figure")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto (default)")
    p.add_argument("--data-dir", default=None,
                   help="folder with the dataset files (default: the run's, else $IMSSA_DATA_DIR)")


def _add_ptq(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=None,
                   help="evaluate on the first LIMIT test sequences only (quick runs)")
    p.add_argument("--calib-samples", type=int, default=DEFAULT_CALIB_SAMPLES,
                   help=f"training sequences for static ranges (default {DEFAULT_CALIB_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration subset")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"sequences per forward pass (default {DEFAULT_BATCH_SIZE})")


def add_analysis_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``imssa analyze {sensitivity,stability,width}`` on the CLI's subparsers.

    Each handler is ``args.func(args)``; bad input raises ImssaError, which ``imssa.cli.main``
    prints as one line.
    """
    parser = subparsers.add_parser(
        "analyze", help="quantization analyses of trained runs (sensitivity, stability, width)",
        description="Post-training-quantization analyses after Zhao et al. 2025 (Figs. 2-4). "
        "Each writes an xarray Dataset as NetCDF (--out) and a PNG figure.")
    sub = parser.add_subparsers(dest="analysis", required=True, metavar="ANALYSIS")
    bits_help = "bit widths, e.g. '2,4,6,8' or '2-8,10' (each in {}..{}; default {})"

    p = sub.add_parser("sensitivity", help="accuracy with one target quantized at a time",
                       description="PTQ test accuracy (recurrent mode) when one quantization "
                       "target is quantized at a time, for each bit width and quantizer variant.")
    p.add_argument("run", help="run folder written by `imssa train`")
    p.add_argument("--bits", default=",".join(map(str, DEFAULT_BITS)),
                   help=bits_help.format(MIN_BITS, MAX_BITS, ",".join(map(str, DEFAULT_BITS))))
    p.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                   help=f"comma-separated targets or 'all' ({', '.join(TARGETS)}); default "
                   f"{','.join(DEFAULT_TARGETS)}")
    p.add_argument("--variants", default="all",
                   help=f"comma-separated quantizer variants or 'all' (default): "
                   f"{', '.join(VARIANTS)}")
    p.add_argument("--gelu", default="exact", choices=GELU_FORMS,
                   help="exact (default): the trained GELU; auto: hard GELU when an activation "
                   "is quantized")
    _add_ptq(p)
    _add_io(p)
    p.set_defaults(func=_sensitivity_cmd)

    p = sub.add_parser("stability", help="quantized A_bar against the unit circle",
                       description="Grid levels and quantized values of A_bar against the unit "
                       "circle, modes with |A_bar_q| >= 1 and the error of A_bar_q^k up to the "
                       "sequence length, for Cartesian and polar grids.")
    p.add_argument("run", help="run folder written by `imssa train`")
    p.add_argument("--bits", default=",".join(map(str, STABILITY_BITS)),
                   help=bits_help.format(MIN_BITS, MAX_BITS, ",".join(map(str, STABILITY_BITS))))
    p.add_argument("--forms", default="all", help="cartesian, polar or all (default)")
    p.add_argument("--granularity", default="tensor", choices=GRANULARITIES[:2],
                   help="ranges of A_bar per tensor (default) or per head")
    p.add_argument("--seq-len", type=int, default=None,
                   help="largest power k of A_bar (default: the task's sequence length)")
    _add_io(p)
    p.set_defaults(func=_stability_cmd)

    p = sub.add_parser("width", help="accuracy of W{b}A{b} against bits for several widths",
                       description="PTQ test accuracy (recurrent mode) of the model with every "
                       "weight, activation and the state at b bits, for runs of several widths "
                       "(runs of one width with different seeds are averaged).")
    p.add_argument("runs", nargs="+", help="run folders written by `imssa train`")
    p.add_argument("--bits", default=",".join(map(str, DEFAULT_BITS)),
                   help=bits_help.format(MIN_BITS, MAX_BITS, ",".join(map(str, DEFAULT_BITS))))
    p.add_argument("--a-bar-form", default="cartesian", choices=A_BAR_FORMS,
                   help="grid of A_bar (default cartesian, the paper's)")
    p.add_argument("--gelu", default="auto", choices=GELU_FORMS,
                   help="auto (default): hard GELU as an integer model; exact: trained GELU")
    _add_ptq(p)
    _add_io(p)
    p.set_defaults(func=_width_cmd)
    return parser
