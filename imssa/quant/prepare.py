"""Quantization as a conversion of the one graph, torchao-style: :func:`prepare` swaps
fake-quantized parts into an :class:`~imssa.ssm.S4DModel` in place, and module-level functions
calibrate, freeze and inspect the prepared model. ``model(u, mode)`` runs it; the data flow is
the graph's own (PTQ and QAT of Zhao et al. 2025; QS4D, Siegel et al. 2025, for conv mode).

Parameterizations of the SSM for QAT (paper Section II): ``continuous`` trains the model's own
log_A_real, A_imag, log_dt (discretize, then quantize); ``discrete`` trains A_bar, B_bar, C, D
directly (initialized from the model's discretization); ``frozen-a`` trains B_bar, C and D with
A_bar fixed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.names import activation_names, tensor_names
from imssa.quant.modules import (
    PARAMETERIZATIONS,
    QUANT_MODULES,
    QuantGELU,
    QuantGLU,
    QuantLinear,
    QuantSSM,
)
from imssa.quant.noise import WeightNoiseConfig, noise_targets
from imssa.quant.observer import RangeObserver
from imssa.quant.quantizer import FakeQuantizer, Quantizer
from imssa.quant.spec import QuantConfig
from imssa.ssm.model import SSM_KINDS, S4DModel
from imssa.ssm.s4d import DiagonalSSM, check_mode


def prepare(model: S4DModel, config: QuantConfig, *, parameterization: str = "continuous",
            weight_noise: WeightNoiseConfig | None = None) -> S4DModel:
    """Swap fake-quantized parts into ``model`` in place and return it.

    ``encoder``, ``blocks.i.mix``, ``decoder`` become :class:`QuantLinear` (sharing the float
    parameters), ``blocks.i.ssm`` a :class:`QuantSSM`; ``blocks.i.activation`` and
    ``blocks.i.glu`` get their output quantizers where the config quantizes them (and the
    activation the hard GELU where ``config.gelu`` asks); a part left in full precision stays.

    Args:
        model: a float S4DModel (not yet prepared).
        config: what to quantize and how.
        parameterization: one of :data:`PARAMETERIZATIONS` (module docstring).
        weight_noise: noise injected into the quantized weights at every training forward
            (:func:`set_weight_noise`); None: none.
    """
    if not isinstance(model, S4DModel):
        raise ImssaError(f"model must be an imssa.ssm.S4DModel, got {type(model).__name__}")
    if not isinstance(config, QuantConfig):
        raise ImssaError(f"config must be a QuantConfig (see imssa.quant.make_config), got "
                         f"{type(config).__name__}")
    if parameterization not in PARAMETERIZATIONS:
        raise ImssaError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                         f"got {parameterization!r}")
    parts = [model.encoder, model.decoder, *(m for b in model.blocks for m in (b.ssm, b.mix))]
    if not (all(isinstance(m, nn.Linear) and not isinstance(m, QuantLinear) for m in parts[:2])
            and all(type(b.ssm) in SSM_KINDS.values() and type(b.mix) is nn.Linear
                    for b in model.blocks)):
        raise ImssaError("prepare needs a float S4DModel (nn.Linear encoder, mixing and decoder, "
                         "S4DLayer or S4DRealLayer SSMs); this one is already prepared or "
                         "converted")
    n = model.cfg.n_layers
    config.check_layers(n)
    hard = config.hard_gelu(n)
    H = model.cfg.d_model
    device = model.decoder.weight.device
    model.encoder = QuantLinear(model.encoder, "encoder", config, input=True)
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        block.ssm = QuantSSM(block.ssm, f"{p}.ssm", config, parameterization)
        block.mix = QuantLinear(block.mix, f"{p}.mix", config, input=False)
        act, glu = config.spec(f"{p}.activation.output"), config.spec(f"{p}.glu.output")
        if hard or act.enabled:
            block.activation = QuantGELU(f"{p}.activation", act, H, hard)
        if glu.enabled:
            block.glu = QuantGLU(f"{p}.glu", glu, H)
    model.decoder = QuantLinear(model.decoder, "decoder", config, input=True)
    model.to(device)
    model.quant_config = config
    model.parameterization = parameterization
    set_weight_noise(model, weight_noise)
    return model


def _check_prepared(model: nn.Module) -> None:
    if not any(isinstance(m, QUANT_MODULES) for m in model.modules()):
        raise ImssaError("the model has no quantized parts; call imssa.quant.prepare(model, "
                         "config) first")


def set_weight_noise(model: S4DModel, noise: WeightNoiseConfig | None,
                     generator: torch.Generator | None = None) -> None:
    """Inject ``noise`` into the tensors its components select at every training forward
    (None or sigma 0: none), drawn from ``generator`` (None: the global RNG)."""
    if noise is not None and not isinstance(noise, WeightNoiseConfig):
        raise ImssaError(f"weight_noise must be a WeightNoiseConfig or None, got "
                         f"{type(noise).__name__}")
    picked = set(noise_targets(noise, tensor_names(model.cfg.n_layers))) if noise else set()
    for path, module in model.named_modules():
        if isinstance(module, (QuantLinear, QuantSSM)):
            module.noise, module.noise_generator = noise, generator
            module.noise_on = frozenset(t for t in module.float_tensors()
                                        if f"{path}.{t}" in picked)


def quantizers(model: nn.Module) -> dict[str, Quantizer]:
    """Every quantizer of a prepared model by its tensor's path, in graph order (with the
    conv-mode quantizers ``blocks.i.ssm.conv_input`` and ``blocks.i.ssm.kernel``)."""
    _check_prepared(model)
    return {q.name: q for m in model.modules() if isinstance(m, QUANT_MODULES)
            for q in m.q.values()}


def quantized_weights(model: S4DModel) -> dict[str, Tensor]:
    """Every stored tensor as the quantized model uses it (clean), by path (for mapping, plots)."""
    _check_prepared(model)
    out: dict[str, Tensor] = {}
    for name in tensor_names(model.cfg.n_layers):
        path, _, tensor = name.rpartition(".")
        part = model.get_submodule(path)
        if isinstance(part, (QuantLinear, QuantSSM)):
            out[name] = part.quantized()[tensor]
        elif isinstance(part, nn.Linear):
            out[name] = getattr(part, tensor)
        else:
            out[name] = getattr(part.discrete(), tensor)
    return out


def _weight_pairs(model: nn.Module) -> Iterable[tuple[Any, Tensor]]:
    for m in model.modules():
        if isinstance(m, (QuantLinear, QuantSSM)):
            for name, tensor in m.float_tensors().items():
                yield m.q[name], tensor


@torch.no_grad()
def freeze_ranges(model: nn.Module) -> None:
    """Fix every range: weights at their current values, activations and state as calibrated.

    Frozen quantizers are skipped by :func:`calibrate`; the conv-mode kernel quantizer keeps
    following the kernel (it depends on the sequence length).
    """
    _check_prepared(model)
    for q, w in _weight_pairs(model):
        if q.enabled:
            q.freeze(w)
    for q in quantizers(model).values():
        if q.kind in ("activation", "state") and q.enabled and not q.spec.dynamic:
            q.freeze()


def unfreeze_ranges(model: nn.Module) -> None:
    """Let weight ranges follow the weights again and calibration change the others."""
    for q in quantizers(model).values():
        q.unfreeze()


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters for the optimizer, by group.

    ``ssm``: the SSM dynamics (continuous: log_A_real, A_imag (complex modes), log_dt;
    discrete: A_bar; frozen-a: none), for the small learning rate without weight decay of the
    reference run.
    ``other``: every other trainable parameter.
    """
    _check_prepared(model)
    ssm: list[nn.Parameter] = []
    for m in model.modules():
        if isinstance(m, QuantSSM):
            p = m.params
            ssm += ([t for t in (p.log_A_real, getattr(p, "A_imag", None), p.log_dt)
                     if t is not None] if isinstance(p, DiagonalSSM)
                    else [p.A_bar] if isinstance(p.A_bar, nn.Parameter) else [])
    ids = {id(p) for p in ssm}
    return {"ssm": [p for p in ssm if p.requires_grad],
            "other": [p for p in model.parameters() if p.requires_grad and id(p) not in ids]}


def calibrate(model: S4DModel, batches: Iterable[Any], *, mode: str = "recurrent",
              max_batches: int | None = None) -> S4DModel:
    """Set static activation and state ranges from data (PTQ, or the start of QAT).

    Runs the model in eval mode without gradients, weights quantized and activations and state
    in full precision, and feeds every static, unfrozen activation and state quantizer's
    observer. Deterministic: the same batches in the same order give the same ranges.

    Args:
        model: a prepared model; its ranges are set in place.
        batches: tensors u (B, L, d_input) or tuples whose first item is u (a DataLoader).
        mode: forward mode used for the activations (the state is observed step by step in
            both modes).
        max_batches: stop after this many batches.

    Returns:
        model, calibrated.
    """
    check_mode(mode)
    if max_batches is not None and max_batches < 1:
        raise ImssaError(f"max_batches must be >= 1 or None, got {max_batches}")
    points = [q for q in quantizers(model).values()
              if isinstance(q, FakeQuantizer) and q.calibrated]
    for q in points:
        q.observer = RangeObserver(q.spec, q.group_shape)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
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
                model(u.to(device), mode=mode)
                seen += 1
        if seen == 0:
            raise ImssaError("calibrate: batches was empty; pass at least one calibration batch")
        with torch.no_grad():
            for q in points:
                lo, hi = q.observer.range()  # type: ignore[union-attr]
                q.lo.copy_(lo)
                q.hi.copy_(hi)
                q.has_range = True
    finally:
        for q in points:
            q.observer = None
        model.train(was_training)
    return model


def activations(model: S4DModel, u: Tensor, mode: str = "recurrent") -> dict[str, Tensor]:
    """Every activation point's value (as the next part sees it) by path, plus ``logits``.

    Inputs are recorded after their quantizer where the part has one; outputs are the parts'.
    """
    rec: dict[str, Tensor] = {}
    hooks = []

    def keep(name: str):
        return lambda module, args, out: rec.__setitem__(name, out)

    for name in activation_names(model.cfg.n_layers):
        path, _, point = name.rpartition(".")
        part = model.get_submodule(path)
        q = getattr(part, "q", {})
        if point == "input" and "input" in q:
            hooks.append(q["input"].register_forward_hook(keep(name)))
        elif point == "input":
            hooks.append(part.register_forward_pre_hook(
                lambda module, args, name=name: rec.__setitem__(name, args[0])))
        else:
            hooks.append(part.register_forward_hook(keep(name)))
    try:
        rec["logits"] = model(u, mode=mode)
    finally:
        for h in hooks:
            h.remove()
    return rec


def float_state_dict(model: S4DModel) -> dict[str, Tensor]:
    """The state dict of the float S4DModel a ``continuous`` prepared model trains in place
    (its parameters; the quantizers' ranges left out), so the folder doubles as a float run."""
    if getattr(model, "parameterization", "continuous") != "continuous":
        raise ImssaError("float_state_dict needs the continuous parameterization: a discrete "
                         "one has no continuous SSM")
    return {k.replace(".ssm.params.", ".ssm."): v for k, v in model.state_dict().items()
            if ".q." not in k and not k.startswith("q.")}
