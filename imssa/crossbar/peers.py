"""Peers of imssa's analog S4D inference: the same computation written as others would write it.

The crossbar benchmark (``benchmarks/bench_crossbar.py``) times imssa against these, and
``tests/test_peers.py`` pins that each computes what imssa computes: on ideal devices and ideal
converters every peer equals imssa's analog model to 1e-6 in float32, so a speed ratio compares
one computation written two ways. All peers take imssa's configs (mapping, device, periphery)
and imssa's calibrated converter ranges (what :func:`imssa.crossbar.calibrate` returns, by full
name: ``encoder.input``, ``blocks.0.ssm.state``, ...).

- :class:`PlainLoop`: the naive per-step PyTorch loop of one chip. Every weight is a
  differential conductance pair (tensor-wise w_max -> g_max), programmed and drifted once;
  every time step every layer is a matrix-vector product with freshly read weights (the
  weight plus read std x randn, per device), then DAC/ADC rounding with imssa's converters.
  Dense layers carry their bias as a last input row driven by 1, inside the ADC, as imssa's
  tiles do; A and B share the state columns' ADC, C and D the output columns'.
- The library peers (:class:`imssa.crossbar.library_peers.LinearS4D`, built from aihwkit's and
  aihwkit-lightning's analog linear layers) and :class:`~imssa.crossbar.library_peers.PeerJob`,
  the job every contender is timed on, live in :mod:`imssa.crossbar.library_peers`; this module
  holds what they share (converter points, the network's real weights) and the plain loop.

Real layouts (H channels, N2 = N/2 modes): the state is (B, H, N2, 2) real pairs ("blocks") or
the flat (B, H N2 2) vector ("dense"); A is the (H, N2, 2, 2) rotation-scaling blocks
[[a_r, -a_i], [a_i, a_r]] of A_bar (or the (H N x H N) block-diagonal matrix), B_bar its
(H, N2, 2) pairs, C the pairs 2 (C_r, -C_i) of y = 2 Re(C x), D the diagonal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imssa.crossbar.linear import AnalogLinear
from imssa.crossbar.periphery import PeripheryConfig, dac, sense
from imssa.crossbar.ssm import AnalogSSM
from imssa.crossbar.tile import check_window
from imssa.devices import Device
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig, complex_to_blocks
from imssa.ssm import S4DModel

PlainLayout = Literal["blocks", "dense"]
PlainNoise = Literal["shared", "per_sequence"]
PLAIN_LAYOUTS: tuple[str, ...] = ("blocks", "dense")
PLAIN_NOISES: tuple[str, ...] = ("shared", "per_sequence")


# --- imssa's converter points (the keys of imssa.crossbar.calibrate's ranges) ----------------
def point(layer: int | None, module: str, key: str) -> str:
    """The full name of a converter range in imssa's calibration, ``<module path>.<key>``:
    ``module`` "encoder" or "decoder" (layer None), or "ssm" or "mix" of block ``layer``. Keys:
    DACs "input" (and the SSM's fed-back state "x"), ADCs "output" (and the SSM's "state")."""
    return f"{module}.{key}" if layer is None else f"blocks.{layer}.{module}.{key}"


#: The keys of ADC column groups in imssa's analog modules (the others are DACs and registers).
ADC_GROUPS: tuple[str, ...] = tuple(sorted({k for part in (AnalogLinear, AnalogSSM)
                                            for k, kind in part.CONVERTERS.items() if kind == "adc"}))


def adc_groups(ranges: Mapping[str, Tensor]) -> list[str]:
    """The keys of ``ranges`` that are ADC column groups (the others are DACs and registers)."""
    return [k for k in ranges if k.rsplit(".", 1)[-1] in ADC_GROUPS]


def ssm_group(name: str) -> bool:
    """Whether a converter range belongs to an SSM (``blocks.i.ssm.<key>``)."""
    return name.split(".")[-2:-1] == ["ssm"]


# --- the network's real weights -------------------------------------------------------------
def real_weights(model: S4DModel) -> dict[str, Any]:
    """The real tensors a peer multiplies with: dense layers as (out, in + 1) with the bias as
    the last column; per layer the SSM in the compact "blocks" layout (module docstring)."""
    with torch.no_grad():
        def dense(lin: nn.Module) -> Tensor:
            return torch.cat([lin.weight, lin.bias.unsqueeze(1)], 1).detach().clone()

        layers = []
        for block, ssm in zip(model.blocks, model.discrete()):
            B, C = ssm.B_bar.detach(), ssm.C.detach()
            layers.append({"A": complex_to_blocks(ssm.A_bar.detach()),  # (H N2 2 2)
                           "B": torch.stack([B.real, B.imag], -1),  # (H N2 2)
                           "C": 2 * torch.stack([C.real, -C.imag], -1),  # (H N2 2)
                           "D": ssm.D.detach().clone(), "mix": dense(block.mix)})
        return {"encoder": dense(model.encoder), "decoder": dense(model.decoder),
                "layers": layers}


def dense_ssm(layer: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The SSM of one layer as dense matrices on the flat real state (H N2 2,)."""
    A, B, C, D = layer["A"], layer["B"], layer["C"], layer["D"]
    H, N2 = A.shape[:2]
    return {"A": torch.block_diag(*A.reshape(H * N2, 2, 2)),  # (H N x H N)
            "B": torch.block_diag(*B.reshape(H, N2 * 2, 1)),  # (H N x H)
            "C": torch.block_diag(*C.reshape(H, 1, N2 * 2)),  # (H x H N)
            "D": torch.diag(D)}


# --- the plain per-step loop -----------------------------------------------------------------
def program_pair(w: Tensor, mapping: MappingConfig, device: Device, t_inference: float,
                 generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """One chip's copy of w: a differential pair per weight, g = g_min + |w| / w_max (g_max -
    g_min) on the device of w's sign and g_min on the other (w_max = max |w| of the tensor),
    programmed and drifted to t_inference.

    Returns:
        the effective weight (G+ - G-) / scale and the std of one read of it (weight units), or
        None for the std when the devices read noiselessly.
    """
    w_max = w.abs().amax().clamp_min(torch.finfo(w.dtype).tiny)
    span = mapping.g_max - mapping.g_min
    g = mapping.g_min + w.abs() / w_max * span
    g_min = torch.full_like(g, mapping.g_min)
    pair = torch.stack([torch.where(w > 0, g, g_min), torch.where(w < 0, g, g_min)])
    d = device.program_and_drift(pair, t_inference, generator)
    scale = span / w_max
    std = d.read_std.square().sum(0).sqrt() / scale
    return (d.g[0] - d.g[1]) / scale, (std if bool(std.any()) else None)


class PlainLoop:
    """The naive per-step inference of one chip, every layer a product with read weights.

    Args:
        model: the digital model (weights, dtype and torch device).
        mapping: conductance window (g_min, g_max); pairs are per tensor (its granularity and
            the SSM encoding are not modelled: every weight is one differential pair).
        device: the memristive device model; programming and drift drawn once at construction.
        periphery: DAC and ADC bits and output noise (state register, per-column ADC ranges and
            drift compensation are not modelled: ImssaError).
        ranges: imssa's calibrated converter ranges (:func:`imssa.crossbar.calibrate`).
        t_inference: seconds after programming.
        generator: programming, drift and every read.
        layout: "blocks" (A as 2x2 blocks per mode, B, C, D per channel) or "dense" (every
            layer one dense matrix; A the block-diagonal (H N x H N) matrix).
        noise: "per_sequence" (a read of every device per sequence and step: independent
            inferences, imssa's statistics) or "shared" (one read per step for the whole batch;
            cheaper, correlates the batch).
    """

    def __init__(self, model: S4DModel, mapping: MappingConfig, device: Device,
                 periphery: PeripheryConfig, ranges: Mapping[str, Tensor], t_inference: float,
                 generator: torch.Generator, *, layout: PlainLayout = "blocks",
                 noise: PlainNoise = "per_sequence") -> None:
        if layout not in PLAIN_LAYOUTS:
            raise ImssaError(f"PlainLoop layout must be one of {PLAIN_LAYOUTS}, got {layout!r}")
        if noise not in PLAIN_NOISES:
            raise ImssaError(f"PlainLoop noise must be one of {PLAIN_NOISES}, got {noise!r}")
        unsupported = {"state_bits": periphery.state_bits, "state_clip": periphery.state_clip}
        unsupported = {k: v for k, v in unsupported.items() if v is not None}
        if periphery.adc_granularity != "tensor":
            unsupported["adc_granularity"] = periphery.adc_granularity
        if periphery.drift_compensation != "none":
            unsupported["drift_compensation"] = periphery.drift_compensation
        if unsupported:
            raise ImssaError(f"PlainLoop does not model PeripheryConfig {unsupported}")
        check_window(mapping.g_min, mapping.g_max, device)
        self.periphery, self.ranges, self.generator = periphery, ranges, generator
        self.layout, self.noise = layout, noise
        weights = real_weights(model)

        def program(w: Tensor) -> tuple[Tensor, Tensor | None]:
            return program_pair(w, mapping, device, t_inference, generator)

        self.encoder, self.decoder = program(weights["encoder"]), program(weights["decoder"])
        self.layers = []
        for lw in weights["layers"]:
            ssm = dense_ssm(lw) if layout == "dense" else lw
            self.layers.append({k: program(ssm[k]) for k in "ABCD"} | {"mix": program(lw["mix"])})
        self.H, self.N2 = model.cfg.d_model, model.cfg.d_state // 2

    def read(self, w: tuple[Tensor, Tensor | None], batch: int) -> Tensor:
        """One read of every device of a weight tensor (per sequence too, for "per_sequence")."""
        W, std = w
        if std is None:
            return W
        shape = W.shape if self.noise == "shared" else (batch, *W.shape)
        return W + std * torch.randn(shape, generator=self.generator, dtype=W.dtype,
                                     device=W.device)

    @staticmethod
    def mv(W: Tensor, v: Tensor) -> Tensor:
        """Matrix-vector products: W (out, in), or one per sequence (B, out, in); v (B, in)."""
        return v @ W.T if W.ndim == 2 else torch.einsum("boi,bi->bo", W, v)

    def dac(self, v: Tensor, name: str) -> Tensor:
        return dac(v, self.ranges.get(name), self.periphery.dac_bits)

    def adc(self, v: Tensor, name: str) -> Tensor:
        """Output noise and the ADC of a column group (identity when both are ideal)."""
        cfg = self.periphery
        if cfg.adc_bits is None and cfg.output_noise == 0:
            return v
        return sense(v, None, self.ranges.get(name), cfg, self.generator)

    def dense(self, w: tuple[Tensor, Tensor | None], v: Tensor, dac_name: str,
              adc_name: str) -> Tensor:
        """A dense layer with its bias row driven by 1 (not through the DAC). v: (B, in)."""
        v = torch.cat([self.dac(v, dac_name), torch.ones_like(v[:, :1])], 1)
        return self.adc(self.mv(self.read(w, v.shape[0]), v), adc_name)

    def init_state(self, batch: int, like: Tensor) -> dict[str, Any]:
        shape = (batch, self.H, self.N2, 2) if self.layout == "blocks" else (batch,
                                                                               self.H * self.N2 * 2)
        return {"s": [like.new_zeros(shape) for _ in self.layers], "sum": 0.0, "steps": 0}

    def step(self, uk: Tensor, st: dict[str, Any]) -> None:
        """One time step of the whole network, updating ``st`` in place. uk: (B, d_input)."""
        b = uk.shape[0]
        x = self.dense(self.encoder, uk, point(None, "encoder", "input"),
                       point(None, "encoder", "output"))
        for i, lw in enumerate(self.layers):
            ud = self.dac(x, point(i, "ssm", "input"))
            sd = self.dac(st["s"][i], point(i, "ssm", "x"))
            A, B, C, D = (self.read(lw[k], b) for k in "ABCD")
            if self.layout == "blocks":  # A (b?) H N2 2 2, B and C (b?) H N2 2, D (b?) H
                eq_a, eq_c = (("hmij,bhmj->bhmi", "hmj,bhmj->bh") if A.ndim == 4 else
                              ("bhmij,bhmj->bhmi", "bhmj,bhmj->bh"))
                s = self.adc(torch.einsum(eq_a, A, sd) + B * ud[..., None, None],
                             point(i, "ssm", "state"))
                y = self.adc(torch.einsum(eq_c, C, self.dac(s, point(i, "ssm", "x"))) + D * ud,
                             point(i, "ssm", "output"))
            else:
                s = self.adc(self.mv(A, sd) + self.mv(B, ud), point(i, "ssm", "state"))
                y = self.adc(self.mv(C, self.dac(s, point(i, "ssm", "x"))) + self.mv(D, ud),
                             point(i, "ssm", "output"))
            st["s"][i] = s
            m = self.dense(lw["mix"], F.gelu(y), point(i, "mix", "input"),
                           point(i, "mix", "output"))
            x = x + F.glu(m, dim=-1)
        st["sum"] = st["sum"] + x
        st["steps"] += 1

    def finish(self, st: dict[str, Any]) -> Tensor:
        """Logits (B, classes) of the sequence so far: mean over steps -> decoder."""
        return self.dense(self.decoder, st["sum"] / st["steps"], point(None, "decoder", "input"),
                          point(None, "decoder", "output"))

    @torch.no_grad()
    def __call__(self, u: Tensor) -> Tensor:
        """Recurrent inference of the chip. u: (B, L, d_input) -> logits (B, classes)."""
        st = self.init_state(u.shape[0], u)
        for k in range(u.shape[1]):
            self.step(u[:, k], st)
        return self.finish(st)
