"""The crossbar as a conversion of the one graph: analog modules swapped into an S4DModel.

    model = convert(trained, MappingConfig(), PCMDevice(), PeripheryConfig(adc_bits=8),
                    chips=25, seed=0, digital=("A",))
    calibrate(model, u_train[:64])     # converter ranges, on the target weights, noiseless
    set_time(model, 86400.0)           # drift every chip to one day after programming
    logits = model(u_test, mode="recurrent")   # (chips, B, n_classes)

``encoder``, ``blocks.i.mix`` and ``decoder`` become :class:`~imssa.crossbar.AnalogLinear`,
``blocks.i.ssm`` an :class:`~imssa.crossbar.AnalogSSM`; a part kept digital is a part not
swapped. Random draws, all from the one generator of ``seed`` unless given: programming in
graph order (encoder, per block A_bar, B_bar, C, D, mix, then decoder); at ``set_time`` drift
and reads per tile in that order, then drift-compensation read-outs per column group (encoder,
decoder, then per block state, output, mix columns); at every forward pass the reads and output
noise in data-flow order, from the generator given to ``set_time``. This is the draw order of
the former ``CrossbarS4D``, so the same seed gives the same numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from imssa.crossbar.chips import AnalogPart, ChipSet, Observers, needs_range
from imssa.crossbar.linear import AnalogLinear
from imssa.crossbar.periphery import PeripheryConfig
from imssa.crossbar.settings import check_forms, normalize_per_tensor, tensor_settings
from imssa.crossbar.ssm import AnalogSSM
from imssa.crossbar.tile import check_memristor, check_window, make_generator
from imssa.devices import Device, check_time
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig, map_linear, map_ssm
from imssa.names import SSM_TENSORS, select
from imssa.ssm import S4DModel

#: The short aliases of the parts a converted model may keep digital; module paths such as
#: ``blocks.0.ssm.A_bar`` or ``blocks.1.mix`` select single tensors (imssa.names selectors).
DIGITAL_PARTS: tuple[str, ...] = ("encoder", "A", "B", "C", "D", "mix", "decoder")


def analog_names(n_layers: int) -> list[str]:
    """The tensors a crossbar holds, by module path, in graph order: the ``digital`` universe."""
    names = ["encoder"]
    for i in range(n_layers):
        names += [f"blocks.{i}.ssm.{k}" for k in SSM_TENSORS] + [f"blocks.{i}.mix"]
    return names + ["decoder"]


class _ChipOutput:
    """Forward hook of a converted model: logits (chips, B, classes), also when nothing analog
    gave them a chip axis (every part digital) or only a chip axis of 1."""

    def __init__(self, n_chips: int) -> None:
        self.n_chips = n_chips

    def __call__(self, module: nn.Module, args: tuple, out: Tensor) -> Tensor:
        out = out if out.ndim == 3 else out.unsqueeze(0)
        return out.expand(self.n_chips, *out.shape[1:])


@torch.no_grad()
def convert(model: S4DModel, mapping: MappingConfig, memristor: Device,
            periphery: PeripheryConfig | None = None, *, chips: int = 1,
            seed: int | torch.Generator = 0, digital: str | Iterable[str] = (),
            per_tensor: Mapping[str, Mapping[str, Any]] | Iterable[Any] | None = None
            ) -> S4DModel:
    """A copy of ``model`` with its parts on ``chips`` memristive chip instances.

    The model is deep-copied (``model`` itself is unchanged), put in eval mode with gradients
    off, and its analog parts replaced in place on the copy. Run it with
    ``model(u, mode="recurrent")`` -> (chips, B, classes), or stream it with
    ``model.init_state`` / ``model.step`` (logits (chips or 1, B, classes) once a part is
    analog); conv mode raises for an analog SSM. Convert on the torch device the model will run
    on: the tiles are plain tensors that ``model.to`` does not move.

    Args:
        model: the trained digital model (its dtype and device are used throughout); its SSMs
            are mapped as ``block.ssm.discrete()`` gives them (a quantized SSM module gives its
            quantized tensors).
        mapping: conductance window, tile size, encoding, the state transition's form and
            scale; the window must lie inside the memristor's.
        memristor: memristive device model (PCMDevice, GaussianDevice, ...); devices per weight
            and program-and-verify are its config's ``n_devices`` and ``verify_tol``.
        periphery: DACs, ADCs, noise, state register, drift compensation.
        chips: independent chip instances.
        seed: int or torch.Generator (on the model's device): programming, drift and noise.
        digital: imssa.names selectors of the tensors computed exactly in the digital domain
            (:data:`DIGITAL_PARTS` aliases, or paths of :func:`analog_names`).
        per_tensor: hardware settings of single tensors, {selector: {field: value}} with
            memristor-config fields (``verify_tol``, ``n_devices``, ...) and ``dac_bits``,
            ``adc_bits`` (:mod:`imssa.crossbar.settings`), e.g. ``{"A": {"verify_tol": 0.005}}``.
    """
    if isinstance(chips, bool) or not isinstance(chips, int) or chips < 1:
        raise ImssaError(f"chips must be an integer >= 1, got {chips!r}")
    check_window(mapping.g_min, mapping.g_max, check_memristor(memristor))
    periphery = periphery if periphery is not None else PeripheryConfig()
    universe = analog_names(len(model.blocks))
    kept = set(select(digital, universe, what="part to keep digital")) if digital else set()
    check_forms(mapping, periphery,
                real=any(not torch.is_complex(b.ssm.discrete().A_bar) for b in model.blocks),
                analog_A=any(f"blocks.{i}.ssm.A_bar" not in kept
                             for i in range(len(model.blocks))))
    settings = tensor_settings(normalize_per_tensor(per_tensor), universe, kept, memristor,
                               periphery)
    model = copy.deepcopy(model).eval().requires_grad_(False)
    chip_set = ChipSet(chips, memristor, periphery,
                       make_generator(seed, next(model.parameters()).device), settings)
    entry = True

    def linear(path: str, module: nn.Module) -> nn.Module:
        nonlocal entry
        if path in kept:
            return module
        part = AnalogLinear(map_linear(path, module.weight, module.bias, mapping), chip_set, entry)
        entry = False
        return part

    model.encoder = linear("encoder", model.encoder)
    for i, block in enumerate(model.blocks):
        path = f"blocks.{i}.ssm"
        analog = [k for k in SSM_TENSORS if f"{path}.{k}" not in kept]
        if analog:
            ssm = block.ssm.discrete()
            mapped = map_ssm(path, ssm, mapping)
            block.ssm = AnalogSSM(path, ssm, {k: mapped[k] for k in analog}, chip_set, entry)
            entry = False
        block.mix = linear(f"blocks.{i}.mix", block.mix)
    model.decoder = linear("decoder", model.decoder)
    model.chips = chip_set
    model.register_forward_hook(_ChipOutput(chips))
    return model


def chip_set(model: nn.Module) -> ChipSet:
    """The :class:`ChipSet` of a converted model; a clear error for any other model."""
    chips = getattr(model, "chips", None)
    if not isinstance(chips, ChipSet):
        raise ImssaError("the model is not a converted crossbar model; convert it with "
                         "imssa.crossbar.convert(model, mapping, memristor, ...)")
    return chips


def analog_parts(model: nn.Module) -> list[AnalogPart]:
    """The analog modules of a converted model, in graph order."""
    chip_set(model)
    return [m for m in model.modules() if isinstance(m, AnalogPart)]


@torch.no_grad()
def set_time(model: nn.Module, t_inference: float, generator: torch.Generator | None = None
             ) -> None:
    """Drift every chip to ``t_inference`` seconds after programming.

    Precomputes the effective arrays (and, in "per_inference" mode, draws the one read), sets
    the drift-compensation gains, and makes ``generator`` (the model's own if None) the source of
    the following forward passes' noise.
    """
    chips = chip_set(model)
    t_inference = check_time(t_inference, "t_inference")
    gen = generator if generator is not None else chips.generator
    parts = analog_parts(model)
    for part in parts:
        part.set_time(t_inference, gen)
    # the former engine's order of the compensation read-outs: encoder, decoder, then blocks
    for part in sorted(parts, key=lambda p: p.path.startswith("blocks.")):
        part.compensate(gen)
    chips.t_inference, chips.noise = float(t_inference), gen


@torch.no_grad()
def calibrate(model: nn.Module, batches: Tensor | Iterable[Tensor]) -> dict[str, Tensor]:
    """Periphery ranges from calibration inputs, on the target weights without noise, like a
    chip's periphery trimmed once at design time.

    Observes every converter of the analog modules over the batches (a recurrent pass each)
    and keeps the ranges the periphery needs: DACs (``<module>.input``, ``blocks.i.ssm.x``),
    ADCs (``<module>.output``, ``blocks.i.ssm.state``) and state registers
    (``blocks.i.ssm.register``). Given ranges (dac_range, state_clip) are kept as given.

    Args:
        batches: one input batch (B, L, d_input) or an iterable of them.

    Returns:
        The ranges by full name (also stored in each module's ``ranges``).
    """
    chips = chip_set(model)
    if isinstance(batches, Tensor):
        batches = [batches]
    obs = Observers(chips.periphery)
    n = 0
    chips.observers = obs
    try:
        for u in batches:
            model.check_input(u)
            obs.steps = u.shape[1]
            model(u, mode="recurrent")
            obs.finish()
            n += 1
    finally:
        chips.observers = None
    if not n:
        raise ImssaError("calibrate needs at least one batch of inputs (B, L, d_input)")
    ranges: dict[str, Tensor] = {}
    for part in analog_parts(model):
        part.ranges = {}
        for key, kind in part.CONVERTERS.items():
            o = obs.observers.get(f"{part.path}.{key}")
            if o is not None and needs_range(part.converter(key), kind):
                part.ranges[key] = ranges[f"{part.path}.{key}"] = o.range()[1]
    return ranges
