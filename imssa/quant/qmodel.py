"""The fake-quantized S4D classifier, for post-training quantization (PTQ) and quantization-aware
training (QAT), following Zhao et al. 2025 ("Quantizing Small-Scale State-Space Models for Edge
AI") and QS4D (Siegel et al. 2025).

:class:`QuantizedS4D` wraps an :class:`~imssa.ssm.S4DModel` and fake-quantizes, per its
:class:`~imssa.quant.QuantConfig`, every weight, the discrete SSM tensors, the state at every
recurrent step and every activation. The quantized tensors are computed once per forward, never
per step. Two execution modes:

- ``recurrent`` (deployment, and the paper's QAT): :func:`imssa.ssm.scan.ssm_scan` with the
  state quantizer as a :class:`~imssa.ssm.scan.StateQuant`.
- ``conv`` (QS4D's cheaper training mode): the kernel K = 2 Re(sum_n C B_bar A_bar^l) is computed
  from the quantized discrete tensors and applied by FFT; the state, which this mode never forms,
  is quantized indirectly by giving the SSM input and the kernel half the state's bits each.

Parameterizations of the SSM for QAT (paper Section II): ``continuous`` trains the model's own
log_A_real, A_imag, log_dt (discretize, then quantize); ``discrete`` trains A_bar, B_bar, C
directly (initialized from the model's discretization); ``frozen-a`` trains B_bar and C with
A_bar fixed. D, the encoder, the mixing layers and the decoder are always the model's own.

:func:`calibrate` sets static activation and state ranges from data (PTQ, or before QAT).

Noise-aware training: with ``weight_noise`` set (a :class:`~imssa.quant.noise.WeightNoiseConfig`),
every training-mode forward perturbs the fake-quantized weights the crossbar holds with freshly
drawn noise (from ``noise_generator``, or the global RNG); eval mode, :meth:`quantized_weights`
and :func:`calibrate` stay clean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.quant.noise import WeightNoiseConfig, add_noise, noisy_ssm
from imssa.quant.quantizer import FakeQuantizer, PolarQuantizer, RangeObserver, hard_gelu
from imssa.quant.spec import QuantConfig, QuantSpec
from imssa.ssm.model import S4DBlock, S4DModel
from imssa.ssm.s4d import DiscreteSSM
from imssa.ssm.scan import StateQuant, ssm_scan

PARAMETERIZATIONS = ("continuous", "discrete", "frozen-a")
MODES = ("recurrent", "conv")
_STATE_CHUNK = 1 << 22  # real state values handed to an observer at once during calibration

Quantizer = FakeQuantizer | PolarQuantizer


class DiscreteParams(nn.Module):
    """Discrete SSM tensors of one layer owned for QAT, complex stored as real views (H, N/2, 2).

    A_bar is a parameter for ``discrete`` and a buffer (fixed) for ``frozen-a``.
    """

    def __init__(self, ssm: DiscreteSSM, train_A: bool):
        super().__init__()
        A_bar = torch.view_as_real(ssm.A_bar.detach().clone())  # (H N/2 2)
        if train_A:
            self.A_bar = nn.Parameter(A_bar)
        else:
            self.register_buffer("A_bar", A_bar)
        self.B_bar = nn.Parameter(torch.view_as_real(ssm.B_bar.detach().clone()))  # (H N/2 2)
        self.C = nn.Parameter(torch.view_as_real(ssm.C.detach().clone()))  # (H N/2 2)

    def complex(self) -> tuple[Tensor, Tensor, Tensor]:
        return (torch.view_as_complex(self.A_bar), torch.view_as_complex(self.B_bar),
                torch.view_as_complex(self.C))


def half_bits(bits: int) -> int:
    """QS4D's indirect state quantization in conv mode: input and kernel get ceil(bits/2) >= 2."""
    return max(2, math.ceil(bits / 2))


class QuantizedS4D(nn.Module):
    """An S4DModel with every quantization target of a QuantConfig fake-quantized.

    Args:
        model: the full-precision model; its parameters are shared (trained in place by QAT).
        config: what to quantize and how.
        parameterization: ``continuous``, ``discrete`` or ``frozen-a`` (see the module docstring).
        weight_noise: noise injected into the quantized weights at every training forward
            (None or sigma 0: none); may also be set later as an attribute, as may
            ``noise_generator`` (None: the global RNG of the weights' device).

    The wrapper registers ``model`` as a submodule, so ``.to(device)``, ``state_dict()`` and
    ``parameters()`` cover it; use :meth:`parameter_groups` to build the optimizer.
    """

    model: S4DModel
    discrete_params: nn.ModuleList | None
    q: nn.ModuleDict
    qb: nn.ModuleList
    weight_noise: WeightNoiseConfig | None
    noise_generator: torch.Generator | None

    def __init__(self, model: S4DModel, config: QuantConfig, *,
                 parameterization: str = "continuous",
                 weight_noise: WeightNoiseConfig | None = None):
        super().__init__()
        if not isinstance(model, S4DModel):
            raise ImssaError(f"model must be an imssa.ssm.S4DModel, got {type(model).__name__}")
        if not isinstance(config, QuantConfig):
            raise ImssaError(f"config must be a QuantConfig (see imssa.quant.make_config), got "
                             f"{type(config).__name__}")
        if parameterization not in PARAMETERIZATIONS:
            raise ImssaError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                             f"got {parameterization!r}")
        if weight_noise is not None and not isinstance(weight_noise, WeightNoiseConfig):
            raise ImssaError(f"weight_noise must be a WeightNoiseConfig or None, got "
                             f"{type(weight_noise).__name__}")
        cfg = model.cfg
        config.check_layers(cfg.n_layers)
        self.model = model
        self.config, self.parameterization = config, parameterization
        self.weight_noise, self.noise_generator = weight_noise, None
        H, N2 = cfg.d_model, cfg.d_state // 2

        self.discrete_params = None
        if parameterization != "continuous":
            with torch.no_grad():
                ssms = model.discrete()
            self.discrete_params = nn.ModuleList(
                DiscreteParams(s, train_A=parameterization == "discrete") for s in ssms)

        def fq(target: str, layer: int | None, kind: str, head: tuple[int, ...],
               mode: tuple[int, ...] | None = None) -> FakeQuantizer:
            name = target if layer is None else f"blocks.{layer}.{target}"
            return FakeQuantizer(name, config.spec(target, layer), kind, head, mode)

        self.q = nn.ModuleDict({
            "input": fq("input", None, "activation", (cfg.d_input,)),
            "encoder_weight": fq("encoder_weight", None, "weight", (H, 1)),
            "encoder_bias": fq("encoder_bias", None, "weight", (H,)),
            "pooled": fq("pooled", None, "activation", (H,)),
            "decoder_weight": fq("decoder_weight", None, "weight", (cfg.n_classes, 1)),
            "decoder_bias": fq("decoder_bias", None, "weight", (cfg.n_classes,)),
        })
        self.qb = nn.ModuleList()
        for i in range(cfg.n_layers):
            a_spec = config.spec("A_bar", i)
            qa: Quantizer = (PolarQuantizer(f"blocks.{i}.A_bar", a_spec, (H, 1))
                             if config.a_bar_form == "polar"
                             else fq("A_bar", i, "weight", (H, 1)))
            d = nn.ModuleDict({
                "ssm_input": fq("ssm_input", i, "activation", (H,)),
                "A_bar": qa,
                "B_bar": fq("B_bar", i, "weight", (H, 1)),
                "C": fq("C", i, "weight", (H, 1)),
                "D": fq("D", i, "weight", (H,)),
                "x": fq("x", i, "state", (H, 1), (H, N2)),
                "ssm_output": fq("ssm_output", i, "activation", (H,)),
                "gelu_output": fq("gelu_output", i, "activation", (H,)),
                "mix_weight": fq("mix_weight", i, "weight", (2 * H, 1)),
                "mix_bias": fq("mix_bias", i, "weight", (2 * H,)),
                "mix_output": fq("mix_output", i, "activation", (H,)),
            })
            x_spec = config.spec("x", i)
            if x_spec.bits is not None:
                half = half_bits(x_spec.bits)
                base = config.spec("ssm_input", i)
                if base.bits is not None:
                    conv_spec = replace(base, bits=min(base.bits, half))
                else:
                    conv_spec = QuantSpec(
                        bits=half, symmetric=x_spec.symmetric, calibration=x_spec.calibration,
                        percentile=x_spec.percentile,
                        granularity="tensor" if x_spec.granularity == "tensor" else "head")
                d["conv_input"] = FakeQuantizer(f"blocks.{i}.conv_input", conv_spec,
                                                "activation", (H,))
                d["kernel"] = FakeQuantizer(
                    f"blocks.{i}.kernel", QuantSpec(bits=half, symmetric=True, granularity="head",
                                                    calibration="maxabs"), "weight", (H, 1))
            self.qb.append(d)
        self.hard_gelu = config.gelu == "hard" or (
            config.gelu == "auto" and config.any_activation_quantized(cfg.n_layers))
        self._observers: dict[str, RangeObserver] | None = None

    # --- typed views of the module containers -------------------------------------------------
    def _blocks(self) -> list[S4DBlock]:
        return cast(list[S4DBlock], list(self.model.blocks))

    def _layers(self) -> list[Mapping[str, Any]]:
        """Per layer: target name -> quantizer."""
        return cast(list[Mapping[str, Any]], list(self.qb))

    def _whole(self) -> Mapping[str, Any]:
        return cast(Mapping[str, Any], self.q)

    # --- tensors ---------------------------------------------------------------------------
    def ssm_tensors(self, layer: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Full-precision (A_bar, B_bar, C) (H, N/2) complex and D (H,) of one layer."""
        block = self._blocks()[layer]
        if self.discrete_params is None:
            ssm = block.ssm.discrete()
            return ssm.A_bar, ssm.B_bar, ssm.C, block.ssm.D
        A_bar, B_bar, C = cast(DiscreteParams, self.discrete_params[layer]).complex()
        return A_bar, B_bar, C, block.ssm.D

    def quantized_ssms(self) -> list[DiscreteSSM]:
        """The fake-quantized discrete SSM of every layer (computed once per forward)."""
        out = []
        for i, qb in enumerate(self._layers()):
            A_bar, B_bar, C, D = self.ssm_tensors(i)
            out.append(DiscreteSSM(qb["A_bar"](A_bar), qb["B_bar"](B_bar), qb["C"](C),
                                   qb["D"](D)))
        return out

    def quantized_weights(self) -> dict[str, Tensor]:
        """Every stored tensor as the quantized model uses it, by name (for mapping, plots)."""
        m, q = self.model, self._whole()
        out = {"encoder.weight": q["encoder_weight"](m.encoder.weight),
               "encoder.bias": q["encoder_bias"](m.encoder.bias)}
        for i, (block, qb, ssm) in enumerate(zip(self._blocks(), self._layers(),
                                                 self.quantized_ssms())):
            out.update({f"blocks.{i}.A_bar": ssm.A_bar, f"blocks.{i}.B_bar": ssm.B_bar,
                        f"blocks.{i}.C": ssm.C, f"blocks.{i}.D": ssm.D,
                        f"blocks.{i}.mix.weight": qb["mix_weight"](block.mix.weight),
                        f"blocks.{i}.mix.bias": qb["mix_bias"](block.mix.bias)})
        out["decoder.weight"] = q["decoder_weight"](m.decoder.weight)
        out["decoder.bias"] = q["decoder_bias"](m.decoder.bias)
        return out

    def state_quant(self, layer: int) -> StateQuant | None:
        """The per-step state quantizer of one layer, as the scan takes it (None: exact state)."""
        return self._layers()[layer]["x"].state_quant()

    def quantizer(self, target: str, layer: int | None = None) -> Quantizer:
        """The quantizer of a target (``layer`` for per-layer targets, also conv_input/kernel)."""
        if layer is None:
            if target in self.q:
                return self._whole()[target]
            raise ImssaError(f"{target!r} needs a layer index, or is no whole-model target; "
                             f"whole-model targets: {', '.join(self._whole())}")
        layers = self._layers()
        if not 0 <= layer < len(layers):
            raise ImssaError(f"layer must be in 0..{len(layers) - 1}, got {layer}")
        if target not in layers[layer]:
            raise ImssaError(f"unknown per-layer target {target!r}; choose one of "
                             f"{', '.join(layers[layer])}")
        return layers[layer][target]

    def quantizers(self) -> Iterator[Quantizer]:
        """Every quantization point, whole-model ones first."""
        yield from self._whole().values()
        for qb in self._layers():
            yield from qb.values()

    def _weight_quantizers(self) -> Iterator[tuple[Quantizer, Tensor]]:
        m, q = self.model, self._whole()
        yield q["encoder_weight"], m.encoder.weight
        yield q["encoder_bias"], m.encoder.bias
        for i, (block, qb) in enumerate(zip(self._blocks(), self._layers())):
            A_bar, B_bar, C, D = self.ssm_tensors(i)
            yield from ((qb["A_bar"], A_bar), (qb["B_bar"], B_bar), (qb["C"], C), (qb["D"], D),
                        (qb["mix_weight"], block.mix.weight), (qb["mix_bias"], block.mix.bias))
        yield q["decoder_weight"], m.decoder.weight
        yield q["decoder_bias"], m.decoder.bias

    # --- ranges and training -----------------------------------------------------------------
    @torch.no_grad()
    def freeze_ranges(self) -> None:
        """Fix every range: weights at their current values, activations and state as calibrated.

        Frozen quantizers are skipped by :func:`calibrate`; the conv-mode kernel quantizer keeps
        following the kernel (it depends on the sequence length).
        """
        for q, w in self._weight_quantizers():
            if q.enabled:
                q.freeze(w)
        for q in self.quantizers():
            if q.kind in ("activation", "state") and q.enabled and not q.spec.dynamic:
                q.freeze()

    def unfreeze_ranges(self) -> None:
        """Let weight ranges follow the weights again and calibration change the others."""
        for q in self.quantizers():
            q.unfreeze()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters for the optimizer, by group.

        ``ssm``: the SSM dynamics (continuous: log_A_real, A_imag, log_dt; discrete: A_bar;
        frozen-a: none), for the small learning rate without weight decay of the reference run.
        ``other``: everything else that the forward uses. Parameters of the wrapped model that
        the parameterization leaves unused (the continuous SSM for discrete/frozen-a) are in
        neither group.
        """
        blocks = self._blocks()
        dynamics = [p for b in blocks for p in (b.ssm.log_A_real, b.ssm.A_imag, b.ssm.log_dt)]
        if self.discrete_params is None:
            skip = {id(p) for p in dynamics}
            ssm = dynamics
            owned: list[nn.Parameter] = []
        else:
            skip = {id(p) for p in dynamics}
            skip |= {id(p) for b in blocks for p in (b.ssm.B, b.ssm.C)}
            dps = cast(list[DiscreteParams], list(self.discrete_params))
            ssm = [dp.A_bar for dp in dps if isinstance(dp.A_bar, nn.Parameter)]
            owned = [p for dp in dps for p in (dp.B_bar, dp.C)]
        other = owned + [p for p in self.model.parameters() if id(p) not in skip]
        return {"ssm": [p for p in ssm if p.requires_grad],
                "other": [p for p in other if p.requires_grad]}

    # --- forward ---------------------------------------------------------------------------
    def _act(self, q: FakeQuantizer, v: Tensor, rec: dict[str, Tensor] | None) -> Tensor:
        if self._observers is not None and q.name in self._observers:
            self._observers[q.name].observe(v)
            out = v
        else:
            out = q(v)
        if rec is not None:
            rec[q.name] = out
        return out

    @torch.no_grad()
    def _observe_state(self, obs: RangeObserver, ssm: DiscreteSSM, u: Tensor) -> None:
        """Feed every state x[k] (full precision) of a calibration batch to the state observer."""
        Bsz, L, H = u.shape
        N2 = ssm.A_bar.shape[1]
        groups = math.prod(obs.group_shape)
        obs.start(Bsz * L * H * N2 * 2 // groups)
        chunk = max(1, _STATE_CHUNK // (Bsz * H * N2 * 2))
        x = ssm.init_state(Bsz)  # (B H N/2)
        steps = []
        for k in range(L):
            x = ssm.A_bar * x + ssm.B_bar * u[:, k, :, None]  # (B H N/2)
            steps.append(x)
            if len(steps) == chunk or k == L - 1:
                obs.update(torch.stack(steps, dim=1))  # (B T H N/2)
                steps = []
        obs.finish()

    def _ssm(self, i: int, ssm: DiscreteSSM, u: Tensor, mode: str,
             rec: dict[str, Tensor] | None) -> Tensor:
        """SSM output y (B, L, H) of layer i for its (quantized) input u (B, L, H)."""
        qb = self._layers()[i]
        qx: FakeQuantizer = qb["x"]
        observers = self._observers
        observing = observers is not None and qx.name in observers
        if observers is not None and observing:
            self._observe_state(observers[qx.name], ssm, u)
        if mode == "recurrent":
            if observers is not None and "conv_input" in qb \
                    and qb["conv_input"].name in observers:
                observers[qb["conv_input"].name].observe(u)
            state_quant = None if observing else qx.state_quant()
            return ssm_scan(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, u, state_quant)
        L = u.shape[1]
        K = ssm.kernel(L)  # (H L)
        u_conv = u
        if qx.enabled:
            K = qb["kernel"](K)
            u_conv = self._act(qb["conv_input"], u, rec)
        n = 2 * L  # zero-padding to 2L makes the circular FFT convolution a linear one
        y = torch.fft.irfft(torch.fft.rfft(u_conv, n=n, dim=1) * torch.fft.rfft(K.T, n=n, dim=0),
                            n=n, dim=1)[:, :L]  # (B L H)
        return y + ssm.D * u

    def _noise(self) -> WeightNoiseConfig | None:
        """The weight noise of this forward: set, non-zero and in training mode, else None."""
        noise = self.weight_noise
        if noise is not None and not isinstance(noise, WeightNoiseConfig):
            raise ImssaError(f"weight_noise must be a WeightNoiseConfig or None, got "
                             f"{type(noise).__name__}")
        if noise is None or not self.training or not noise.enabled:
            return None
        return noise

    def _noisy(self, noise: WeightNoiseConfig | None, component: str,
               *tensors: Tensor) -> tuple[Tensor, ...]:
        if noise is None or not noise.applies_to(component):
            return tensors
        return add_noise(tensors, noise, self.noise_generator)

    def _run(self, u: Tensor, mode: str, rec: dict[str, Tensor] | None) -> Tensor:
        if mode not in MODES:
            raise ImssaError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.model.check_batch(u)
        m, q = self.model, self._whole()
        noise = self._noise()  # drawn anew at every training forward, after fake quantization
        ssms = self.quantized_ssms()  # once per forward, shared by all steps
        if noise is not None:
            ssms = [noisy_ssm(s, noise, self.noise_generator) for s in ssms]
        h = self._act(q["input"], u, rec)
        h = F.linear(h, *self._noisy(noise, "encoder", q["encoder_weight"](m.encoder.weight),
                                     q["encoder_bias"](m.encoder.bias)))
        for i, (block, ssm, qb) in enumerate(zip(self._blocks(), ssms, self._layers())):
            h = self._act(qb["ssm_input"], h, rec)  # (B L H)
            y = self._act(qb["ssm_output"], self._ssm(i, ssm, h, mode, rec), rec)
            z = block.dropout(hard_gelu(y) if self.hard_gelu else F.gelu(y))
            z = self._act(qb["gelu_output"], z, rec)
            mix = F.linear(z, *self._noisy(noise, "mix", qb["mix_weight"](block.mix.weight),
                                           qb["mix_bias"](block.mix.bias)))
            h = h + self._act(qb["mix_output"], F.glu(mix, dim=-1), rec)  # (B L H)
            if rec is not None:
                rec[f"blocks.{i}.output"] = h
        p = self._act(q["pooled"], h.mean(dim=1), rec)  # (B H)
        return F.linear(p, *self._noisy(noise, "decoder", q["decoder_weight"](m.decoder.weight),
                                        q["decoder_bias"](m.decoder.bias)))

    def forward(self, u: Tensor, mode: str = "recurrent") -> Tensor:
        """Logits (B, n_classes) for inputs u (B, L, d_input), in ``recurrent`` or ``conv`` mode."""
        return self._run(u, mode, None)

    def activations(self, u: Tensor, mode: str = "recurrent") -> dict[str, Tensor]:
        """Every activation point's (fake-quantized) value by quantizer name, plus ``logits``."""
        rec: dict[str, Tensor] = {}
        rec["logits"] = self._run(u, mode, rec)
        return rec


def calibrate(qmodel: QuantizedS4D, batches: Iterable[Any], *, mode: str = "recurrent",
              max_batches: int | None = None) -> QuantizedS4D:
    """Set static activation and state ranges from data (PTQ, or the start of QAT).

    Runs the model in eval mode without gradients, weights quantized and activations and state
    in full precision, and feeds every static, unfrozen activation and state quantizer's
    observer. Deterministic: the same batches in the same order give the same ranges.

    Args:
        qmodel: the quantized model; its ranges are set in place.
        batches: tensors u (B, L, d_input) or tuples whose first item is u (a DataLoader).
        mode: forward mode used for the activations (the state is observed step by step in
            both modes).
        max_batches: stop after this many batches.

    Returns:
        qmodel, calibrated.
    """
    if mode not in MODES:
        raise ImssaError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if max_batches is not None and max_batches < 1:
        raise ImssaError(f"max_batches must be >= 1 or None, got {max_batches}")
    points = [q for q in qmodel.quantizers()
              if isinstance(q, FakeQuantizer) and q.kind in ("activation", "state")
              and q.enabled and not q.spec.dynamic and not q.frozen]
    observers = {q.name: RangeObserver(q.spec, q.group_shape) for q in points}
    device = next(qmodel.parameters()).device
    was_training = qmodel.training
    qmodel.eval()
    qmodel._observers = observers
    seen = 0
    try:
        with torch.no_grad():
            for batch in batches:
                if max_batches is not None and seen >= max_batches:
                    break
                u = batch[0] if isinstance(batch, (tuple, list)) else batch
                if not isinstance(u, Tensor):
                    raise ImssaError("calibrate: each batch must be a tensor u (B, L, d_input) or "
                                     f"a tuple starting with one, got {type(u).__name__}")
                qmodel(u.to(device), mode=mode)
                seen += 1
    finally:
        qmodel._observers = None
        qmodel.train(was_training)
    if seen == 0:
        raise ImssaError("calibrate: batches was empty; pass at least one calibration batch")
    with torch.no_grad():
        for q in points:
            lo, hi = observers[q.name].range()
            q.lo.copy_(lo)
            q.hi.copy_(hi)
            q.has_range = True
    return qmodel
