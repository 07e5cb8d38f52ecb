"""The conductance scale of every tensor a crossbar holds, in the state-transition form chosen:
the one place it is computed (noise-aware training draws its noise relative to it; the analog
mapping can import it).

A crossbar holds a tensor as conductances g = |w| / w_max * g_max (a differential pair per
signed value); w_max, the weight that g_max stands for, is the *scale* here. It is taken over
the values the array holds (DESIGN.md, "The state transition on a crossbar"):

- ``direct``: the array holds A_bar itself (and B_bar, C, D, the dense weights).
- ``increment``: the array holds A_bar - 1 and the state register adds x, exactly:
  x[k] = x[k-1] + ((A_bar - 1) x[k-1] + B_bar u[k]). A mode's A_bar - 1 and B_bar sit on the
  same output column, so they share one scale: max(|A_bar - 1|, |B_bar|) over the group.

and over a group of entries (``granularity``, the words of :mod:`imssa.names`):

- ``tensor``: one scale per array (a dense layer's weight and bias are one array: the bias is
  its last row at input 1);
- ``channel``: one per output channel (an output row of a dense weight with its bias entry, a
  channel h of an SSM tensor, over its modes);
- ``mode``: one per (channel, mode) of A_bar and B_bar; C, D and dense layers, which have no
  modes, per channel.

A complex value counts as its real and imaginary parts (two conductances): its magnitude here is
max(|Re|, |Im|). The mapped error of an entry is then sigma * scale (Gaussian programming error
relative to g_max), or the PCM programming std at the mapped conductance
(:func:`programming_std`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from imssa.devices.pcm import PCMConfig, PCMDevice
from imssa.errors import ImssaError
from imssa.names import GRANULARITIES

#: How A_bar sits on the array: the words of :class:`imssa.mapping.MappingConfig`'s ``transition``.
Transition = Literal["direct", "increment"]
TRANSITIONS: tuple[str, ...] = get_args(Transition)
NOISE_KINDS = ("gaussian", "pcm")
PCM_DEVICE = PCMDevice(PCMConfig())  # the fitted device; sigma_P / g_max is independent of g_max
_MODES = ("A_bar", "B_bar")  # the tensors with one entry per (channel, mode)


def _real(t: Tensor) -> Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


def held_values(name: str, t: Tensor, transition: str) -> Tensor:
    """The values the array holds for tensor ``name`` (A_bar - 1 for A_bar in the increment
    form), as a real view (complex: (..., 2))."""
    return _real(t - 1 if name == "A_bar" and transition == "increment" else t)


def _keep(name: str, granularity: str) -> int:
    """Leading dims that keep their own scale: 0 per tensor, 1 per channel, 2 per mode."""
    if granularity == "tensor":
        return 0
    return 2 if granularity == "mode" and name in _MODES else 1


def _group_max(v: Tensor, keep: int) -> Tensor:
    """max |v| over every dim after the first ``keep`` (shape v.shape[:keep])."""
    if v.numel() == 0:
        return torch.zeros(v.shape[:keep], dtype=v.dtype, device=v.device)
    dims = tuple(range(keep, v.ndim))
    return v.abs().amax(dim=dims) if dims else v.abs()


def arrays(names: Sequence[str], transition: str) -> list[list[str]]:
    """The tensors that share one array (hence a scale): weight with bias; A_bar with B_bar in
    the increment form; every other tensor alone."""
    groups: list[list[str]] = []
    for shared in (("weight", "bias"), _MODES if transition == "increment" else ()):
        group = [n for n in names if n in shared]
        if group:
            groups.append(group)
    grouped = {n for g in groups for n in g}
    return groups + [[n] for n in names if n not in grouped]


def check_form(transition: str, granularity: str, where: str = "WeightNoiseConfig") -> None:
    """Raise unless the state-transition form and the granularity are known words."""
    if transition not in TRANSITIONS:
        raise ImssaError(f"{where}.transition must be one of {', '.join(TRANSITIONS)}, "
                         f"got {transition!r}")
    if granularity not in GRANULARITIES:
        raise ImssaError(f"{where}.granularity must be one of {', '.join(GRANULARITIES)}, "
                         f"got {granularity!r}")


def conductance_scales(tensors: Mapping[str, Tensor], transition: str = "direct",
                       granularity: str = "tensor") -> dict[str, Tensor]:
    """The scale w_max of every tensor of one part (module docstring), detached.

    Args:
        tensors: a dense part's ``weight`` (out, in) and ``bias`` (out,), or an SSM layer's
            ``A_bar``, ``B_bar``, ``C`` ((H, modes), complex or real) and ``D`` (H,), or any
            subset; another name is a tensor of its own (channel = its first axis).
        transition: ``direct`` or ``increment``.
        granularity: ``tensor``, ``channel`` or ``mode``.

    Returns:
        name -> scale >= 0, broadcastable to the tensor (a complex tensor's shape, both parts
        sharing it); 0 where the group holds only zeros.
    """
    check_form(transition, granularity, "conductance_scales")
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for group in arrays(list(tensors), transition):
            keeps = {n: _keep(n, granularity) for n in group}
            maxima = [_group_max(held_values(n, tensors[n].detach(), transition), keeps[n])
                      for n in group]
            try:
                shared = torch.stack(torch.broadcast_tensors(*maxima)).amax(dim=0)
            except RuntimeError:
                shapes = ", ".join(f"{n} {tuple(tensors[n].shape)}" for n in group)
                raise ImssaError(f"conductance_scales: {shapes} share one array but their "
                                 "channels do not match") from None
            for n in group:
                t = tensors[n]
                out[n] = shared.reshape(shared.shape + (1,) * (t.ndim - keeps[n]))
    return out


def programming_std(held: Tensor, scale: Tensor, sigma: float, kind: str) -> Tensor:
    """The std of the programming error of each held value, in the tensor's own units.

    ``gaussian``: sigma * scale (sigma relative to g_max). ``pcm``: the fitted PCM device's
    programming std sigma_P at the mapped conductance g_T = |held| / scale * g_max, times sigma,
    back in weight units: sigma * sigma_P(g_T) / g_max * scale (:meth:`PCMDevice.programming_std`;
    the ratio does not depend on g_max). 0 where the scale is 0.

    Args:
        held: the held values as a real view (:func:`held_values`).
        scale: their scale, broadcastable to ``held`` (a complex tensor's with a trailing 1).
    """
    if kind not in NOISE_KINDS:
        raise ImssaError(f"programming_std: kind must be one of {', '.join(NOISE_KINDS)}, "
                         f"got {kind!r}")
    scale = torch.broadcast_to(scale, held.shape)
    if kind == "gaussian":
        return sigma * scale
    g_max = PCM_DEVICE.config.g_max
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    std = sigma * PCM_DEVICE.programming_std(held.abs() / safe * g_max) / g_max * scale
    return torch.where(scale > 0, std, torch.zeros_like(std))


def real_scale(t: Tensor, scale: Tensor) -> Tensor:
    """A scale of :func:`conductance_scales` shaped for the real view of ``t``."""
    return scale.unsqueeze(-1) if t.is_complex() else scale
