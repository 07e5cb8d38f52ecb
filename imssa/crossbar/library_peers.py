"""Peers of imssa's analog S4D inference written with analog-AI libraries, and the job all peers
are timed on (the shared parts, and the plain per-step loop, are :mod:`imssa.crossbar.peers`).

- :class:`LinearS4D`: an S4D recurrence built from a library's analog linear layers, stepped
  one time step at a time as a user of that library would write it: encoder, B u, D u, mixing
  and decoder over all steps at once (they do not depend on the state), only A s and C s per
  step, each layer with its own DAC and ADC (so A s and B u are converted separately, unlike on
  imssa's shared columns). Built by :func:`aihwkit_s4d` (aihwkit's ``AnalogLinear``) or
  :func:`lightning_s4d` (aihwkit-lightning's ``AnalogLinear``), both imported lazily.
- :class:`PeerJob`: the settings of the job all of them are timed on (PCM, 8-bit DAC and ADC, a
  fresh read every step, drift time), and each contender built from them: imssa's converted
  model and the aihwkit and aihwkit-lightning peers (``benchmarks/bench_peers.py``).

``tests/test_peers.py`` pins that each equals imssa's analog model on ideal settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imssa.crossbar.convert import convert
from imssa.crossbar.peers import adc_groups, dense_ssm, point, real_weights, ssm_group
from imssa.crossbar.periphery import PeripheryConfig
from imssa.devices import PCMConfig, PCMDevice
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig
from imssa.ssm import S4DModel

LinearLayout = Literal["blockdiag", "per_channel"]
LINEAR_LAYOUTS: tuple[str, ...] = ("blockdiag", "per_channel")


# --- an S4D recurrence of a library's analog linear layers ----------------------------------
#: make(weight (out, in), bias (out,) or None, DAC point, ADC group) -> an analog linear layer.
LayerFactory = Callable[[Tensor, "Tensor | None", str, str], nn.Module]


class LinearS4D(nn.Module):
    """S4D from analog linear layers; only A s and C s are stepped per time step.

    Args:
        model: the digital model (weights).
        make: builds one analog layer (see ``LayerFactory``); called with imssa's converter
            points so the layer can take imssa's calibrated ranges.
        layout: "blockdiag" (one layer over the (H N x H N) block-diagonal A) or "per_channel"
            (H layers (N -> N), one per channel, each block-diagonal in 2x2 mode blocks).
    """

    def __init__(self, model: S4DModel, make: LayerFactory,
                 layout: LinearLayout = "blockdiag") -> None:
        super().__init__()
        if layout not in LINEAR_LAYOUTS:
            raise ImssaError(f"LinearS4D layout must be one of {LINEAR_LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.H, self.N = model.cfg.d_model, model.cfg.d_state
        w = real_weights(model)

        def dense(wb: Tensor, dac_point: str, adc_point: str) -> nn.Module:
            return make(wb[:, :-1], wb[:, -1], dac_point, adc_point)

        self.encoder, self.decoder = (dense(w[k], point(None, k, "input"), point(None, k, "output"))
                                      for k in ("encoder", "decoder"))
        self.A, self.B, self.C, self.D, self.mix = (nn.ModuleList() for _ in range(5))
        for i, lw in enumerate(w["layers"]):
            d = dense_ssm(lw)
            x, u, ab, cd = (point(i, "ssm", k) for k in ("x", "input", "state", "output"))
            if layout == "blockdiag":
                self.A.append(make(d["A"], None, x, ab))
            else:
                self.A.append(nn.ModuleList(make(torch.block_diag(*lw["A"][h]), None, x, ab)
                                            for h in range(self.H)))
            self.B.append(make(d["B"], None, u, ab))
            self.C.append(make(d["C"], None, x, cd))
            self.D.append(make(d["D"], None, u, cd))
            self.mix.append(dense(lw["mix"], point(i, "mix", "input"), point(i, "mix", "output")))

    def a_step(self, i: int, s: Tensor) -> Tensor:
        """A s for one time step of layer i. s: (B, H N) real state."""
        if self.layout == "blockdiag":
            return self.A[i](s)
        parts = s.view(s.shape[0], self.H, self.N)  # contiguous slices: lightning's Triton path
        return torch.stack([lin(parts[:, h].contiguous()) for h, lin in enumerate(self.A[i])],
                           1).flatten(1)

    def scan(self, i: int, x: Tensor) -> Tensor:
        """The SSM of layer i, stepped. x: (B, L, H) -> y (B, L, H)."""
        bu, du = self.B[i](x), self.D[i](x)  # (B L HN), (B L H): all steps at once
        s = x.new_zeros(x.shape[0], self.H * self.N)
        ys = []
        for k in range(x.shape[1]):
            s = self.a_step(i, s) + bu[:, k]  # a new, contiguous tensor
            ys.append(self.C[i](s) + du[:, k])
        return torch.stack(ys, 1)

    def forward(self, u: Tensor) -> Tensor:
        """u: (B, L, d_input) -> logits (B, classes)."""
        x = self.encoder(u)
        for i, mix in enumerate(self.mix):
            x = x + F.glu(mix(F.gelu(self.scan(i, x))), dim=-1)
        return self.decoder(x.mean(1))


# --- aihwkit ----------------------------------------------------------------------------------
def aihwkit_config(periphery: PeripheryConfig, dac_range: Tensor | float | None, *,
                   pcm_g_max: float | None = None) -> Any:
    """An aihwkit ``InferenceRPUConfig`` for one layer.

    Ideal periphery and no PCM: ``is_perfect`` (an exact product). Otherwise: DAC of
    ``dac_bits`` on a static range (``NoiseManagementType.CONSTANT`` at imssa's calibrated
    range), ADC of ``adc_bits`` on aihwkit's own output bound (not imssa's range), no bound
    management, output noise or drift compensation. ``pcm_g_max``: aihwkit's
    ``PCMLikeNoiseModel`` (programming, drift, 1/f read at drift time) plus a fresh read at
    every MVM (``w_noise_type=PCM_READ``, ``w_noise=0.0175``, StandardHWATrainingPreset).
    """
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.parameters.enums import (
        BoundManagementType,
        NoiseManagementType,
        WeightNoiseType,
    )

    cfg = InferenceRPUConfig()
    cfg.drift_compensation = None
    fw = cfg.forward
    if pcm_g_max is None and periphery.dac_bits is None and periphery.adc_bits is None:
        fw.is_perfect = True
        return cfg
    if pcm_g_max is not None:
        from aihwkit.inference import PCMLikeNoiseModel

        cfg.noise_model = PCMLikeNoiseModel(g_max=pcm_g_max)
        fw.w_noise_type = WeightNoiseType.PCM_READ
        fw.w_noise = 0.0175
    else:
        fw.w_noise = 0.0
    fw.out_noise = 0.0
    fw.bound_management = BoundManagementType.NONE
    fw.inp_res = -1 if periphery.dac_bits is None else 1 / (2**periphery.dac_bits - 2)
    fw.out_res = -1 if periphery.adc_bits is None else 1 / (2**periphery.adc_bits - 2)
    if periphery.adc_bits is None:
        fw.out_bound = -1  # no saturation
    if dac_range is not None and periphery.dac_bits is not None:
        fw.noise_management = NoiseManagementType.CONSTANT
        fw.nm_thres = float(dac_range)
    else:
        fw.noise_management = NoiseManagementType.NONE
        fw.inp_bound = -1  # no clipping
    return cfg


def aihwkit_s4d(model: S4DModel, periphery: PeripheryConfig, ranges: Mapping[str, Tensor], *,
                layout: LinearLayout = "blockdiag", pcm_g_max: float | None = None) -> LinearS4D:
    """The S4D recurrence of aihwkit ``AnalogLinear`` layers (on the CPU, aihwkit's C++ tiles).

    With PCM, program and drift it once per chip with :func:`program_aihwkit`.
    """
    from aihwkit.nn import AnalogLinear

    def make(w: Tensor, b: Tensor | None, dac_point: str, adc_point: str) -> nn.Module:
        lin = AnalogLinear(w.shape[1], w.shape[0], bias=b is not None,
                           rpu_config=aihwkit_config(periphery, ranges.get(dac_point),
                                                     pcm_g_max=pcm_g_max))
        lin.set_weights(w.cpu(), None if b is None else b.cpu())
        return lin

    cpu = {k: v.cpu() for k, v in model.state_dict().items()}
    digital = S4DModel(model.cfg)
    digital.load_state_dict(cpu)
    return LinearS4D(digital, make, layout).eval()


def analog_layers(net: nn.Module) -> list[nn.Module]:
    """The aihwkit or aihwkit-lightning analog layers of a peer."""
    return [m for m in net.modules() if type(m).__name__ == "AnalogLinear"]


@torch.no_grad()
def program_aihwkit(net: LinearS4D, t_inference: float) -> None:
    """One chip: program every aihwkit tile and drift it to t_inference (with its read)."""
    for lin in analog_layers(net):
        lin.program_analog_weights()
        lin.drift_analog_weights(t_inference)


# --- aihwkit-lightning --------------------------------------------------------------------------
def lightning_s4d(model: S4DModel, periphery: PeripheryConfig, ranges: Mapping[str, Tensor], *,
                  layout: LinearLayout = "blockdiag", out_noise: Mapping[str, float] | None = None,
                  ) -> LinearS4D:
    """The S4D recurrence of aihwkit-lightning ``AnalogLinear`` layers, on the model's device.

    Converters: the DAC of ``dac_bits`` clips at imssa's calibrated range of the layer's input
    (lightning's static input range, not learned), the ADC of ``adc_bits`` rounds on and
    saturates at imssa's range of the layer's column group (``out_bound`` = range / (input
    range x max |w|)); each layer converts on its own. ``out_noise``: per ADC group, the std of
    lightning's output noise in units of that group's imssa ADC range (A and B, C and D each add
    half the variance, so the group's sum has this std, like imssa's one draw per sensed
    column), drawn at every forward in training mode (lightning's forward noise; the peer is
    switched to train() when any is set). An ADC or output noise needs the DAC (lightning
    derives both from the input range).
    """
    from aihwkit_lightning.nn import AnalogLinear
    from aihwkit_lightning.simulator.configs import TorchInferenceRPUConfig

    out_noise = dict(out_noise or {})
    if (periphery.adc_bits is not None or out_noise) and periphery.dac_bits is None:
        raise ImssaError("lightning_s4d: an ADC or output noise needs PeripheryConfig.dac_bits "
                         "(lightning bounds its outputs relative to the DAC range)")

    def make(w: Tensor, b: Tensor | None, dac_point: str, adc_point: str) -> nn.Module:
        cfg = TorchInferenceRPUConfig()
        ir = cfg.pre_post.input_range
        w_max = float(w.abs().max().clamp_min(torch.finfo(w.dtype).tiny))
        r_in = None
        if periphery.dac_bits is not None:
            r_in = float(ranges[dac_point])
            ir.enable, ir.learn_input_range, ir.init_from_data = True, False, 0
            ir.init_value = r_in
            cfg.forward.inp_res = 1 / (2**periphery.dac_bits - 2)
        r_out = float(ranges[adc_point]) if (periphery.adc_bits is not None
                                             or adc_point in out_noise) else None
        if periphery.adc_bits is not None:
            assert r_in is not None and r_out is not None
            cfg.forward.out_res = 1 / (2**periphery.adc_bits - 2)
            cfg.forward.out_bound = r_out / (r_in * w_max)
        if out_noise.get(adc_point, 0.0) > 0:
            assert r_in is not None and r_out is not None
            # A and B (C and D) each add a share, so the group's summed noise has its std.
            share = 2 if ssm_group(adc_point) else 1
            cfg.forward.out_noise = out_noise[adc_point] * r_out / (r_in * w_max) / share**0.5
        lin = AnalogLinear(w.shape[1], w.shape[0], bias=b is not None, device=w.device,
                           dtype=w.dtype, rpu_config=cfg)
        lin.set_weights_and_biases(w, b)
        if r_in is not None:
            lin.input_range.data.fill_(r_in)
        return lin

    net = LinearS4D(model, make, layout)
    return net.train() if out_noise else net.eval()


# --- the job every contender is timed on ---------------------------------------------------------
@dataclass(frozen=True)
class PeerJob:
    """The settings of the speed comparison (issue 12's sMNIST job) and its contenders: PCM
    (aihwkit's ``PCMLikeNoiseModel`` statistics) at ``g_max`` µS, ``dac_bits`` / ``adc_bits``
    converters, a fresh read at every recurrent step, drifted to ``t_inference`` s. aihwkit gets
    its PCM model with a PCM read at every MVM (:func:`aihwkit_config`); aihwkit-lightning, which
    has no per-device read noise, its output noise of ``lightning_out_noise`` x each column
    group's ADC range (:func:`lightning_s4d`): less work per step than imssa does.
    """

    g_max: float = 25.0
    dac_bits: int = 8
    adc_bits: int = 8
    t_inference: float = 86400.0
    lightning_out_noise: float = 0.04

    def periphery(self) -> PeripheryConfig:
        return PeripheryConfig(dac_bits=self.dac_bits, adc_bits=self.adc_bits,
                               read_noise_mode="per_step")

    def device(self) -> PCMDevice:
        return PCMDevice(PCMConfig(g_max=self.g_max, read_noise_mode="per_step"))

    def imssa(self, model: S4DModel, chips: int, seed: int = 0,
              encoding: str = "differential") -> S4DModel:
        """imssa's converted model on ``chips`` chips (programmed; calibrate, then set_time)."""
        return convert(model, MappingConfig(g_max=self.g_max, encoding=encoding), self.device(),
                       self.periphery(), chips=chips, seed=seed)

    def aihwkit(self, model: S4DModel, ranges: Mapping[str, Tensor],
                layout: LinearLayout = "blockdiag") -> LinearS4D:
        """One chip of the aihwkit peer on the CPU, programmed and drifted to t_inference."""
        net = aihwkit_s4d(model, self.periphery(), ranges, layout=layout, pcm_g_max=self.g_max)
        program_aihwkit(net, self.t_inference)
        return net

    def lightning(self, model: S4DModel, ranges: Mapping[str, Tensor],
                  layout: LinearLayout = "blockdiag") -> LinearS4D:
        """The aihwkit-lightning peer on the model's device, its output noise on every ADC
        group (in training mode, where lightning draws it)."""
        noise = dict.fromkeys(adc_groups(ranges), self.lightning_out_noise)
        return lightning_s4d(model, self.periphery(), ranges, layout=layout, out_noise=noise)
