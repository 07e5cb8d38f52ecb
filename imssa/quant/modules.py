"""Fake-quantized parts of :class:`~imssa.ssm.S4DModel`, swapped in by :func:`imssa.quant.prepare`.

Each module owns the quantizers of the tensors it holds and the activation points it computes,
in an ``nn.ModuleDict`` ``q`` keyed by the tensor's name inside the part (``weight``, ``input``,
``A_bar``, ``x``, ...); a quantizer's ``name`` is the tensor's full :mod:`imssa.names` path.
Weights and the discrete SSM are quantized once per forward, never per step (Zhao et al. 2025,
"Quantizing Small-Scale State-Space Models for Edge AI"; QS4D, Siegel et al. 2025):

- :class:`QuantLinear` (encoder, mix, decoder): weight and bias, plus the input where the graph
  has an activation point there (``encoder.input``, ``decoder.input``).
- :class:`QuantSSM` (``blocks.i.ssm``): input, A_bar, B_bar, C, D, the state x and the output.
  ``recurrent`` runs :func:`imssa.ssm.scan.ssm_scan` with the state quantized every step;
  ``conv`` (QS4D's cheaper training mode) convolves with the kernel of the quantized tensors,
  and the state, which this mode never forms, is quantized indirectly by giving the SSM input
  and the kernel half the state's bits each (:func:`half_bits`).
- :class:`QuantGELU`, :class:`QuantGLU`: the nonlinearity (hard GELU of Q-S5 where the config
  asks) and the gate, each with its output quantizer.

Noise-aware training: a module's ``noise`` (a :class:`~imssa.quant.noise.WeightNoiseConfig`) and
``noise_on`` (its tensors that get noise) perturb the fake-quantized weights at every
training-mode forward, drawn from ``noise_generator`` (None: the global RNG); eval mode is clean.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imssa.quant.noise import WeightNoiseConfig, noisy_ssm, perturb, read_noise
from imssa.quant.observer import RangeObserver
from imssa.quant.quantizer import FakeQuantizer, PolarQuantizer
from imssa.quant.spec import QuantConfig, QuantSpec
from imssa.ssm.s4d import DiagonalSSM, DiscreteSSM, check_mode, fft_conv, ssm_kernel
from imssa.ssm.scan import ReadNoise, StateQuant, ssm_scan

PARAMETERIZATIONS = ("continuous", "discrete", "frozen-a")
_STATE_CHUNK = 1 << 22  # real state values handed to an observer at once during calibration
_TINY = 1e-30  # smallest |A_bar| in the log of a signed real kernel


def hard_gelu(x: Tensor) -> Tensor:
    """GELU in the hard-sigmoid form of Q-S5 (Abreu et al. 2024): x * clip((x + 2) / 4, 0, 1)."""
    return x * torch.clamp((x + 2) / 4, 0, 1)


def half_bits(bits: int) -> int:
    """QS4D's indirect state quantization in conv mode: input and kernel get ceil(bits/2) >= 2."""
    return max(2, math.ceil(bits / 2))


class Noisy(nn.Module):
    """The weight-noise settings of a quantized part (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.noise: WeightNoiseConfig | None = None
        self.noise_on: frozenset[str] = frozenset()
        self.noise_generator: torch.Generator | None = None

    def active_noise(self) -> WeightNoiseConfig | None:
        """The noise of this forward: set, non-zero, on some tensor and in training mode."""
        noise = self.noise
        if noise is None or not self.training or not noise.enabled or not self.noise_on:
            return None
        return noise


class QuantLinear(nn.Linear, Noisy):
    """nn.Linear with fake-quantized weight and bias (and input), sharing the float parameters.

    Args:
        linear: the float layer; its ``weight`` and ``bias`` become this module's (trained in
            place by QAT).
        path: the part's path (``encoder``, ``blocks.0.mix``).
        config: the quantization config.
        input: whether the graph has an activation point at the input (``<path>.input``).
    """

    def __init__(self, linear: nn.Linear, path: str, config: QuantConfig, *, input: bool):
        Noisy.__init__(self)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        rows = self.out_features
        q = {}
        if input:
            q["input"] = FakeQuantizer(f"{path}.input", config.spec(f"{path}.input"), "activation",
                                       (self.in_features,))
        q["weight"] = FakeQuantizer(f"{path}.weight", config.spec(f"{path}.weight"), "weight",
                                    (rows, 1))
        q["bias"] = FakeQuantizer(f"{path}.bias", config.spec(f"{path}.bias"), "weight", (rows,))
        self.q = nn.ModuleDict(q)

    def float_tensors(self) -> dict[str, Tensor]:
        return {"weight": self.weight, "bias": self.bias}

    def quantized(self) -> dict[str, Tensor]:
        """Weight and bias as the crossbar holds them (clean)."""
        return {k: self.q[k](v) for k, v in self.float_tensors().items()}

    def forward(self, u: Tensor) -> Tensor:
        if "input" in self.q:
            u = self.q["input"](u)
        w = self.quantized()
        noise = self.active_noise()
        if noise is not None:  # weight and bias share the crossbar array: one scale
            w = perturb(w, noise, self.noise_generator, tuple(self.noise_on))
        return F.linear(u, w["weight"], w["bias"])


def _as_stored(t: Tensor) -> Tensor:
    return torch.view_as_real(t.detach().clone()) if t.is_complex() else t.detach().clone()


class DiscreteParams(nn.Module):
    """Discrete SSM tensors of one layer owned for QAT: complex ones stored as real views
    (H, N/2, 2), real ones (S4D-Real) as they are (H, N).

    A_bar is a parameter for ``discrete`` and a buffer (fixed) for ``frozen-a``; D (H,) is real.
    """

    def __init__(self, ssm: DiscreteSSM, train_A: bool):
        super().__init__()
        self.complex = ssm.A_bar.is_complex()
        if train_A:
            self.A_bar = nn.Parameter(_as_stored(ssm.A_bar))
        else:
            self.register_buffer("A_bar", _as_stored(ssm.A_bar))
        self.B_bar = nn.Parameter(_as_stored(ssm.B_bar))
        self.C = nn.Parameter(_as_stored(ssm.C))
        self.D = nn.Parameter(ssm.D.detach().clone())  # (H)

    def discrete(self) -> DiscreteSSM:
        view = torch.view_as_complex if self.complex else (lambda t: t)
        return DiscreteSSM(view(self.A_bar), view(self.B_bar), view(self.C), self.D)


class QuantSSM(Noisy):
    """The fake-quantized SSM of one block, implementing the SSM interface of the graph.

    Complex modes (S4D) or real ones (S4D-Real, :class:`~imssa.ssm.s4d_real.S4DRealLayer`): the
    quantizers take either; a real A_bar on the ``polar`` grid has a log-decay grid alone.

    Args:
        layer: the float diagonal SSM layer. ``continuous`` keeps it (as ``params``) and trains
            its log_A_real, (A_imag,) log_dt (discretize, then quantize); ``discrete`` owns A_bar,
            B_bar, C, D initialized from its discretization; ``frozen-a`` the same with A_bar fixed.
        path: ``blocks.<i>.ssm``.
        config: the quantization config.
        parameterization: one of :data:`PARAMETERIZATIONS`.
    """

    def __init__(self, layer: DiagonalSSM, path: str, config: QuantConfig,
                 parameterization: str):
        super().__init__()
        H, N2 = layer.log_A_real.shape
        self.parameterization = parameterization
        if parameterization == "continuous":
            self.params: DiagonalSSM | DiscreteParams = layer
        else:
            with torch.no_grad():
                self.params = DiscreteParams(layer.discrete(), parameterization == "discrete")

        def fq(name: str, kind: str, channel: tuple[int, ...], spec: QuantSpec | None = None,
               mode: tuple[int, ...] | None = None) -> FakeQuantizer:
            spec = spec if spec is not None else config.spec(f"{path}.{name}")
            return FakeQuantizer(f"{path}.{name}", spec, kind, channel, mode)

        a_spec = config.spec(f"{path}.A_bar")
        q: dict[str, nn.Module] = {
            "input": fq("input", "activation", (H,)),
            "A_bar": (PolarQuantizer(f"{path}.A_bar", a_spec, (H, 1))
                      if config.a_bar_form == "polar" else fq("A_bar", "weight", (H, 1))),
            "B_bar": fq("B_bar", "weight", (H, 1)), "C": fq("C", "weight", (H, 1)),
            "D": fq("D", "weight", (H,)), "x": fq("x", "state", (H, 1), mode=(H, N2)),
            "output": fq("output", "activation", (H,)),
        }
        x_spec = config.spec(f"{path}.x")
        if x_spec.bits is not None:
            half = half_bits(x_spec.bits)
            base = config.spec(f"{path}.input")
            conv_spec = replace(base, bits=min(base.bits, half)) if base.bits is not None else \
                QuantSpec(bits=half, symmetric=x_spec.symmetric, calibration=x_spec.calibration,
                          percentile=x_spec.percentile,
                          granularity="tensor" if x_spec.granularity == "tensor" else "channel")
            q["conv_input"] = fq("conv_input", "activation", (H,), conv_spec)
            q["kernel"] = fq("kernel", "weight", (H, 1), QuantSpec(
                bits=half, symmetric=True, granularity="channel", calibration="maxabs"))
        self.q = nn.ModuleDict(q)

    def float_tensors(self) -> dict[str, Tensor]:
        """Full-precision A_bar, B_bar, C ((H, N/2) complex or (H, N) real) and D (H,)."""
        ssm = self.params.discrete()
        return {"A_bar": ssm.A_bar, "B_bar": ssm.B_bar, "C": ssm.C, "D": ssm.D}

    def quantized(self) -> dict[str, Tensor]:
        """The fake-quantized discrete tensors (clean)."""
        return {k: self.q[k](v) for k, v in self.float_tensors().items()}

    def discrete(self) -> DiscreteSSM:
        """The discrete SSM as the quantized model uses it (clean)."""
        return DiscreteSSM(**self.quantized())

    def _forward_ssm(self) -> tuple[DiscreteSSM, ReadNoise | None]:
        """The SSM of this forward (noisy in training) and its per-step read noise."""
        ssm = self.discrete()
        noise = self.active_noise()
        if noise is None:
            return ssm, None
        return (noisy_ssm(ssm, noise, self.noise_generator, tuple(self.noise_on)),
                read_noise(ssm, noise, self.noise_generator, tuple(self.noise_on)))

    def state_quant(self) -> StateQuant | None:
        """The per-step state quantizer as the scan takes it (None: exact state, or observing)."""
        qx = self.q["x"]
        return None if qx.observer is not None else qx.state_quant()

    def forward(self, u: Tensor, mode: str = "conv") -> Tensor:
        """u: (B, L, H) -> y: (B, L, H), fake-quantized in ``recurrent`` or ``conv`` mode."""
        check_mode(mode)
        ssm, reads = self._forward_ssm()  # once per forward, shared by all steps
        u = self.q["input"](u)
        qx = self.q["x"]
        if qx.observer is not None:
            _observe_state(qx.observer, ssm, u)
        if mode == "recurrent":
            conv_input = self.q["conv_input"] if "conv_input" in self.q else None
            if conv_input is not None and conv_input.observer is not None:
                conv_input.observer.observe(u)
            y = ssm_scan(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, u, self.state_quant(), reads)
        else:
            K, u_conv = signed_kernel(ssm, u.shape[-2]), u  # K: (H L)
            if qx.enabled:
                K, u_conv = self.q["kernel"](K), self.q["conv_input"](u)
            y = fft_conv(u_conv, K) + ssm.D * u
        return self.q["output"](y)

    def init_state(self, batch: int | tuple[int, ...]) -> Any:
        """Streaming state: the quantized discrete SSM (computed once) and a zero state."""
        ssm = self.discrete()
        return ssm, ssm.init_state(batch)

    def step(self, u: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One streaming step, the state quantized as in recurrent mode. u: (..., H)."""
        ssm, x = state
        u = self.q["input"](u)
        x = ssm.advance(x, u)
        sq = self.state_quant()
        if sq is not None:
            x = sq(x)
        return self.q["output"](ssm.output(x, u)), (ssm, x)


def signed_kernel(ssm: DiscreteSSM, L: int) -> Tensor:
    """The convolution kernel (H, L) of ``ssm`` (:meth:`DiscreteSSM.kernel`), also where noise
    has pushed a real A_bar to or below 0 (a fast mode programmed directly): A_bar^l is then
    sign^l |A_bar|^l, through :func:`imssa.ssm.s4d.ssm_kernel` for each sign."""
    A = ssm.A_bar
    if A.is_complex() or not bool((A <= 0).any()):
        return ssm.kernel(L)
    log_mag = torch.log(A.abs().clamp_min(_TINY))  # A_bar = 0: A^0 = 1, A^l ~ 0 after
    neg = (A < 0).to(A.dtype)
    CB = ssm.C * ssm.B_bar
    alternating = 1 - 2 * (torch.arange(L, device=A.device) % 2).to(A.dtype)  # (-1)^l
    return ssm_kernel(CB * (1 - neg), log_mag, L) + alternating * ssm_kernel(CB * neg, log_mag, L)


@torch.no_grad()
def _observe_state(obs: RangeObserver, ssm: DiscreteSSM, u: Tensor) -> None:
    """Feed every state x[k] (full precision) of a calibration batch to the state observer."""
    Bsz, L, H = u.shape
    N2 = ssm.A_bar.shape[1]
    parts = 2 if ssm.A_bar.is_complex() else 1
    obs.start(Bsz * L * H * N2 * parts // math.prod(obs.group_shape))
    chunk = max(1, _STATE_CHUNK // (Bsz * H * N2 * parts))
    x = ssm.init_state(Bsz)  # (B H N/2)
    steps = []
    for k in range(L):
        x = ssm.advance(x, u[:, k])  # (B H N/2)
        steps.append(x)
        if len(steps) == chunk or k == L - 1:
            obs.update(torch.stack(steps, dim=1))  # (B T H N/2)
            steps = []
    obs.finish()


class QuantPointwise(nn.Module):
    """A pointwise part of the block followed by its ``<path>.output`` quantizer (H channels)."""

    def __init__(self, path: str, spec: QuantSpec, channels: int):
        super().__init__()
        self.q = nn.ModuleDict({"output": FakeQuantizer(f"{path}.output", spec, "activation",
                                                        (channels,))})

    def fn(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, u: Tensor) -> Tensor:
        return self.q["output"](self.fn(u))


class QuantGELU(QuantPointwise):
    """GELU, exact or in the hard form of Q-S5 (``hard``), with its output quantizer."""

    def __init__(self, path: str, spec: QuantSpec, channels: int, hard: bool):
        super().__init__(path, spec, channels)
        self.hard = hard

    def fn(self, u: Tensor) -> Tensor:
        return hard_gelu(u) if self.hard else F.gelu(u)


class QuantGLU(QuantPointwise):
    """GLU over the last axis (the mixing layer's 2H outputs -> H) with its output quantizer."""

    def fn(self, u: Tensor) -> Tensor:
        return F.glu(u, dim=-1)


QUANT_MODULES = (QuantLinear, QuantSSM, QuantPointwise)
