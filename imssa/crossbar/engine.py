"""The recurrent crossbar engine: a whole S4D classifier on analog tiles, chips x batch at once.

Data flow of one inference (``CrossbarS4D.forward``), everything vectorized over chip instances
(leading dim z) and sequences (B):

    u (B, L, d_in) -> DAC -> encoder tiles -> ADC                      x (z, B, L, H)
    per layer, for k = 1..L (the only Python loop, or one fused Triton launch: scan_backend):
        state columns:  s[k] = register(decode(ADC(A DAC(s[k-1]) + B DAC(u[k]))) * alpha)
        output columns: y[k] = sum_pieces ADC(C DAC(s[k]) + D DAC(u[k])) * alpha
    GELU (digital) -> DAC -> mixing tiles (H -> 2H) -> ADC -> GLU, residual (digital)
    mean over time -> DAC -> decoder tiles -> ADC                      logits (z, B, classes)

A and B drive the same state columns, so their currents add before the ADC; C and D likewise
share the output columns (D on the first piece when C's columns span several tiles). The state
is held as real pairs (z, B, H, N/2, 2) in a digital register (optional clipping and
quantization) and fed back through the DACs. Programming error and drift are drawn once per chip
(:class:`~imssa.crossbar.tile.AnalogTile`); ``set_time`` folds them, and for "per_inference"
read noise one read of every device, into effective per-chip arrays, so a step is a handful of
elementwise products and sums: the 2x4 (polarity) or 2x2 (differential) real matrix of every mode
for A, its read-noise variances applied to DAC(s)^2 for the per-output read noise, one Gaussian
draw per sensed column, the ADC rounding, and the same for C.

Parts can stay digital (``digital=("A",)`` keeps A_bar exact, applied to the register value).
Periphery ranges are calibrated once (``calibrate``) on the target weights, like a chip trimmed
at design time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from imssa.crossbar.periphery import PeripheryConfig, dac, register, sense
from imssa.crossbar.tile import AnalogTile, SensedArrays, check_window, compensation, make_generator
from imssa.devices import Device
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig, map_model
from imssa.quant import RangeObserver
from imssa.ssm import DiscreteSSM, S4DModel
from imssa.ssm.scan import choose_backend

DIGITAL_PARTS: tuple[str, ...] = ("encoder", "A", "B", "C", "D", "mix", "decoder")
#: Dense layers run over all time steps at once, in chunks of rows holding at most this many
#: output elements (chips x rows x columns), to bound the memory of long sequences.
DENSE_CHUNK_ELEMENTS = 2**26
SCAN_BACKENDS: tuple[str, str, str] = ("auto", "triton", "torch")


def scan_backend(x: Tensor) -> str:
    """"triton" or "torch": what runs the recurrent loop of a layer whose parts A, B, C, D are all
    analog, in a forward pass, for the layer input x. "triton" is one launch of the fused kernel
    (:mod:`imssa.crossbar.scan_triton`, same arithmetic, its own random draws), "torch" the step
    loop of ``_Pass.scan``. The environment variable ``IMSSA_CROSSBAR_SCAN`` chooses:

    - unset or ``auto``: Triton for float32 tensors on CUDA when triton imports, else torch;
    - ``triton``: Triton for float32 tensors, also on CPU in Triton's interpreter (set
      ``TRITON_INTERPRET=1`` before triton is first imported; for tests);
    - ``torch``: always the loop.
    """
    backend = choose_backend("IMSSA_CROSSBAR_SCAN", SCAN_BACKENDS,
                             x.dtype == torch.float32 and x.numel() > 0, x.is_cuda)
    if backend == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ImssaError("IMSSA_CROSSBAR_SCAN=triton needs CUDA tensors, or TRITON_INTERPRET=1 "
                         "to run the kernel in Triton's interpreter on CPU")
    return backend


def _part(name: str) -> str:
    """Mapped tensor name -> part name: "layers.0.A" -> "A", "encoder" -> "encoder"."""
    return name.rsplit(".", 1)[-1]


class _Observers:
    """Range observers of one calibration pass, started lazily with the values per group."""

    def __init__(self, periphery: PeripheryConfig) -> None:
        self.periphery, self.steps = periphery, 1  # steps: sequence length of the batch
        self.observers: dict[str, RangeObserver] = {}
        self.open: set[str] = set()

    def __call__(self, name: str, v: Tensor, shape: tuple[int, ...] = (),
                 total: int | None = None) -> None:
        """Observe ``v`` at point ``name``; ``total``: values the point gets in the whole batch
        (v's own count if None; steps x v's for a per-step point)."""
        obs = self.observers.get(name)
        if obs is None:
            obs = self.observers[name] = self.periphery.observer(shape)
        if name not in self.open:
            obs.start((v.numel() if total is None else total) // math.prod(shape))
            self.open.add(name)
        obs.update(v)

    def finish(self) -> None:
        for name in self.open:
            self.observers[name].finish()
        self.open.clear()


class CrossbarS4D:
    """An S4D classifier programmed on ``n_chips`` memristive chip instances.

    Args:
        model: the trained digital model (its dtype and device are used throughout).
        mapping: conductance window, tile size, encoding; the window must lie inside the
            device's.
        device: device model (PCMDevice, GaussianDevice, ...); devices per weight and
            program-and-verify are its config's ``n_devices`` and ``verify_tol``.
        periphery: DACs, ADCs, noise, state register, drift compensation.
        n_chips: independent chip instances.
        seed: int or torch.Generator (on the model's device): programming, drift and noise.
        discrete: per-layer DiscreteSSMs to map instead of ``model.discrete()`` (e.g. quantized).
        digital: parts computed exactly in the digital domain, from DIGITAL_PARTS.

    Use: ``xbar.calibrate(u_cal)`` when ``periphery.needs_calibration``, ``xbar.set_time(t)``,
    then ``xbar(u)`` -> logits (chips, B, n_classes).
    """

    def __init__(self, model: S4DModel, mapping: MappingConfig, device: Device,
                 periphery: PeripheryConfig | None = None, *, n_chips: int = 1,
                 seed: int | torch.Generator = 0, discrete: list[DiscreteSSM] | None = None,
                 digital: Iterable[str] = ()) -> None:
        digital = tuple(digital)
        unknown = [p for p in digital if p not in DIGITAL_PARTS]
        if unknown:
            raise ImssaError(f"digital parts {unknown} are unknown; choose from "
                             f"{', '.join(DIGITAL_PARTS)}")
        if isinstance(n_chips, bool) or not isinstance(n_chips, int) or n_chips < 1:
            raise ImssaError(f"n_chips must be an integer >= 1, got {n_chips!r}")
        if not isinstance(device, Device):
            raise ImssaError(f"device must be an imssa Device (e.g. make_device('pcm')), got "
                             f"{type(device).__name__}")
        check_window(mapping.g_min, mapping.g_max, device)
        self.model = model.eval()
        self.periphery = periphery if periphery is not None else PeripheryConfig()
        self.device, self.n_chips, self.digital = device, n_chips, digital
        self.mapped = map_model(model, mapping, discrete)
        with torch.no_grad():
            ssms = model.discrete() if discrete is None else list(discrete)
            self.ssms = [DiscreteSSM(*(t.detach() for t in (s.A_bar, s.B_bar, s.C, s.D)))
                         for s in ssms]
        param = model.encoder.weight
        self.generator = make_generator(seed, param.device)
        self.tiles: dict[str, AnalogTile] = {
            name: AnalogTile(t, device, self.periphery, n_chips=n_chips, seed=self.generator)
            for name, t in self.mapped.tensors().items() if _part(name) not in digital}
        self.ranges: dict[str, Tensor] = {}
        self.alpha: dict[str, Tensor | None] = {}
        self.t_inference: float | None = None

    # --- column groups ----------------------------------------------------------------------
    def _groups(self) -> dict[str, list[AnalogTile]]:
        """Analog tiles by the output columns they share (one ADC range and gain each)."""
        groups = {"encoder": ["encoder"], "decoder": ["decoder"]}
        for i in range(len(self.ssms)):
            p = f"layers.{i}."
            groups |= {p + "AB": [p + "A", p + "B"], p + "CD": [p + "C", p + "D"],
                       p + "mix": [p + "mix"]}
        return {g: [self.tiles[n] for n in names if n in self.tiles]
                for g, names in groups.items()}

    # --- time and calibration -----------------------------------------------------------------
    @torch.no_grad()
    def set_time(self, t_inference: float, generator: torch.Generator | None = None) -> None:
        """Drift every chip to ``t_inference`` seconds after programming and precompute the
        effective arrays (and, in "per_inference" mode, draw the one read); sets the drift
        compensation gains."""
        gen = generator if generator is not None else self.generator
        for tile in self.tiles.values():
            tile.set_time(t_inference, gen)
        mode = self.periphery.drift_compensation
        self.alpha = {g: compensation(tiles, mode, gen) if tiles and mode != "none" else None
                      for g, tiles in self._groups().items()}
        self.t_inference = float(t_inference)

    @torch.no_grad()
    def calibrate(self, batches: Tensor | Iterable[Tensor]) -> dict[str, Tensor]:
        """Periphery ranges from calibration inputs, on the target weights without noise.

        DAC ranges per driven signal ("input", "layers.i.u", "layers.i.x", "layers.i.z",
        "pooled"), ADC ranges per column group ("encoder", "layers.i.AB", "layers.i.CD",
        "layers.i.mix", "decoder"), state register ranges ("layers.i.state"); only those the
        periphery needs. Given ranges (dac_range, state_clip) are kept.

        Args:
            batches: one input batch (B, L, d_input) or an iterable of them.
        """
        if isinstance(batches, Tensor):
            batches = [batches]
        obs = _Observers(self.periphery)
        for u in batches:
            self.model.check_input(u)
            obs.steps = u.shape[1]
            self._run(u, "target", quantize=False, observe=obs, generator=None)
            obs.finish()
        if not obs.observers:
            raise ImssaError("calibrate needs at least one batch of inputs (B, L, d_input)")
        cfg = self.periphery
        ranges = {name: o.range()[1] for name, o in obs.observers.items()}
        keep = {"dac": cfg.needs_dac_ranges, "adc": cfg.needs_adc_ranges,
                "state": cfg.needs_state_ranges}
        self.ranges = {name: r for name, r in ranges.items() if keep[self._kind(name)]}
        return self.ranges

    @staticmethod
    def _kind(name: str) -> str:
        last = name.rsplit(".", 1)[-1]
        if last in ("AB", "CD", "mix", "encoder", "decoder"):
            return "adc"
        return "state" if last == "state" else "dac"

    def _range(self, name: str, ref: Tensor) -> Tensor | None:
        """A converter range: calibrated, or the given one, or None where none is needed."""
        cfg = self.periphery
        kind = self._kind(name)
        given = {"dac": cfg.dac_range, "state": cfg.state_clip, "adc": None}[kind]
        if given is not None:
            return torch.tensor(given, dtype=ref.dtype, device=ref.device)
        needed = {"dac": cfg.needs_dac_ranges, "state": cfg.needs_state_ranges,
                  "adc": cfg.needs_adc_ranges}[kind]
        if not needed:
            return None
        if name not in self.ranges:
            raise ImssaError(f"the periphery needs calibrated ranges ({name!r} is missing): call "
                             "calibrate(u) with a few training sequences before the forward pass")
        return self.ranges[name]

    # --- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, u: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Recurrent inference on every chip. u: (B, L, d_input) -> logits (chips, B, classes).

        ``generator`` draws the per-step read noise and output noise (the instance's if None).
        """
        if self.t_inference is None and self.tiles:
            raise ImssaError("call set_time(t_inference) before the forward pass")
        self.model.check_input(u)
        gen = generator if generator is not None else self.generator
        logits = self._run(u, "now", quantize=True, observe=None, generator=gen)
        return logits.expand(self.n_chips, *logits.shape[1:])

    __call__ = forward

    def _run(self, u: Tensor, which: str, *, quantize: bool, observe: _Observers | None,
             generator: torch.Generator | None) -> Tensor:
        """One pass. ``which``: "now" (per-chip arrays) or "target" (calibration, one chip)."""
        ctx = _Pass(self, which, quantize, observe, generator)
        model = self.model
        x = ctx.dense("encoder", "input", u.unsqueeze(0), model.encoder)  # (z B L H)
        for i, (block, ssm) in enumerate(zip(model.blocks, self.ssms)):
            y = ctx.scan(i, ssm, x)
            m = ctx.dense(f"layers.{i}.mix", f"layers.{i}.z", F.gelu(y), block.mix)
            x = x + F.glu(m, dim=-1)
        return ctx.dense("decoder", "pooled", x.mean(dim=2), model.decoder)


class _Pass:
    """The state of one forward or calibration pass over a :class:`CrossbarS4D`."""

    def __init__(self, xbar: CrossbarS4D, which: str, quantize: bool,
                 observe: _Observers | None, generator: torch.Generator | None) -> None:
        self.xbar, self.which, self.quantize, self.observe = xbar, which, quantize, observe
        self.generator = generator
        self.cfg = xbar.periphery
        self.granularity = self.cfg.adc_granularity
        self.ranges: dict[str, Tensor | None] = {}  # resolved once per pass, not per step

    def range(self, name: str, ref: Tensor) -> Tensor | None:
        if name not in self.ranges:
            self.ranges[name] = self.xbar._range(name, ref)
        return self.ranges[name]

    def arrays(self, tile: AnalogTile) -> SensedArrays:
        arrays = tile.now if self.which == "now" else tile.target
        assert arrays is not None
        return arrays

    def alpha(self, group: str) -> Tensor | None:
        return self.xbar.alpha.get(group) if self.which == "now" else None

    def steps(self, v: Tensor) -> int | None:
        """Values a per-step point receives over the sequence, for the observers."""
        return v.numel() * self.observe.steps if self.observe is not None else None

    def dac(self, signal: str, v: Tensor, total: int | None = None) -> Tensor:
        if self.observe is not None:
            self.observe(signal, v, total=total)
        if not self.quantize:
            return v
        return dac(v, self.range(signal, v), self.cfg.dac_bits)

    def adc(self, group: str, tile: AnalogTile, mean: Tensor, var: Tensor | None,
            total: int | None = None) -> Tensor:
        if self.observe is not None:
            self.observe(group, mean, tile.range_shape(self.granularity), total)
        if not self.quantize:
            return mean
        return sense(mean, var, self.range(group, mean), self.cfg, self.generator)

    def register(self, name: str, s: Tensor) -> Tensor:
        if self.observe is not None:
            self.observe(name, s, total=self.steps(s))
        if not self.quantize:
            return s
        return register(s, self.range(name, s), self.cfg)

    def dense(self, name: str, signal: str, x: Tensor, layer: Any) -> Tensor:
        """A dense layer on its tiles (or digital). x: (z|1, *batch, in) -> (z|1, *batch, out)."""
        tile = self.xbar.tiles.get(name)
        if tile is None:
            return layer(x)
        batch = x.shape[1:-1]
        v = self.dac(signal, x.reshape(x.shape[0], -1, x.shape[-1]))  # (z|1 N in)
        W = self.arrays(tile).W
        N, per_row = v.shape[1], W.shape[0] * W.shape[1] * W.shape[3]  # z * P * out
        rows = max(1, DENSE_CHUNK_ELEMENTS // per_row)
        ys = []
        for v_chunk in v.split(rows, dim=1):
            mean, var = tile.sense(v_chunk, self.arrays(tile))
            ys.append(tile.decode(self.adc(name, tile, mean, var, total=per_row * N)))
        y = torch.cat(ys, 1) if len(ys) > 1 else ys[0]
        alpha = self.alpha(name)
        if alpha is not None:
            y = y * alpha
        return y.reshape(y.shape[0], *batch, y.shape[-1])

    def scan(self, i: int, ssm: DiscreteSSM, x: Tensor) -> Tensor:
        """The SSM of layer i, step by step. x: (z|1, B, L, H) -> y (z', B, L, H)."""
        p = f"layers.{i}."
        tiles = self.xbar.tiles
        tA, tB, tC, tD = (tiles.get(p + k) for k in "ABCD")
        arrays = {k: self.arrays(t) for k, t in zip("ABCD", (tA, tB, tC, tD)) if t is not None}
        alpha_ab, alpha_cd = self.alpha(p + "AB"), self.alpha(p + "CD")
        if (self.observe is None and self.quantize and len(arrays) == 4  # A, B, C, D analog
                and scan_backend(x) == "triton"):
            from imssa.crossbar.scan_triton import crossbar_scan

            return crossbar_scan(self.dac(p + "u", x), *arrays.values(), alpha_ab, alpha_cd,
                                 {k: self.range(p + k, x) for k in ("AB", "CD", "x", "state")},
                                 self.cfg, self.generator)
        state_tile = tA if tA is not None else tB
        out_tile = tC if tC is not None else tD
        # digital parts as real pairs
        A_r, A_i = ssm.A_bar.real, ssm.A_bar.imag  # (H N2)
        B_r, B_i = ssm.B_bar.real, ssm.B_bar.imag
        C_r, C_i = 2 * ssm.C.real, 2 * ssm.C.imag

        _, B, L, H = x.shape
        N2 = ssm.A_bar.shape[1]
        u_d = self.dac(p + "u", x) if (tB is not None or tD is not None) else x  # all steps
        s = s_d = x.new_zeros(1, B, H, N2, 2)  # the DAC maps the zero state to zero
        ys = []
        for k in range(L):
            uk, udk = x[:, :, k], u_d[:, :, k]  # (z|1 B H)
            # state columns: s[k] = A s[k-1] + B u[k]
            mean: Tensor | None = None
            var: Tensor | None = None
            if tB is not None:
                mean, var = tB.sense(udk, arrays["B"])
            if tA is not None:  # A's currents add to B's on the same state columns
                mean, var = tA.sense(s_d, arrays["A"], (mean, var))
            s_new = None
            if mean is not None:
                assert state_tile is not None
                s_new = state_tile.decode(self.adc(p + "AB", state_tile, mean, var,
                                                   self.steps(mean)))
                if alpha_ab is not None:
                    s_new = s_new * alpha_ab
            digital = []
            if tA is None:
                s_r, s_i = s[..., 0], s[..., 1]
                digital.append(torch.stack([A_r * s_r - A_i * s_i, A_i * s_r + A_r * s_i], -1))
            if tB is None:
                digital.append(torch.stack([B_r * uk[..., None], B_i * uk[..., None]], -1))
            for d in digital:
                s_new = d if s_new is None else s_new + d
            assert s_new is not None
            s = self.register(p + "state", s_new)
            if tA is not None or tC is not None:
                s_d = self.dac(p + "x", s, self.steps(s))
            # output columns: y[k] = C s[k] + D u[k]
            mean = var = None
            for t, key, v in ((tC, "C", s_d), (tD, "D", udk)):
                if t is None:
                    continue
                m_t, v_t = t.sense(v, arrays[key])
                if mean is None:
                    mean, var = m_t, v_t
                    continue
                mean[..., :1] += m_t  # D drives the first piece of C's output columns
                if v_t is not None:
                    var = torch.zeros_like(mean) if var is None else var
                    var[..., :1] += v_t
            y: Tensor | None = None
            if mean is not None:
                assert out_tile is not None
                y = self.adc(p + "CD", out_tile, mean, var, self.steps(mean)).sum(-1)
                if alpha_cd is not None:
                    y = y * alpha_cd
            if tC is None:
                yc = (C_r * s[..., 0] - C_i * s[..., 1]).sum(-1)
                y = yc if y is None else y + yc
            if tD is None:
                y = ssm.D * uk if y is None else y + ssm.D * uk
            assert y is not None
            ys.append(y)
        return torch.stack(ys, 2)
