"""Guards of noise-aware training: a stability margin for A_bar, and a stop on divergence.

The margin (DESIGN.md, "The state transition on a crossbar"): a mode whose 1 - |A_bar| is below
the error the chip will make on A_bar leaves the unit circle. :func:`apply_a_margin` keeps every
mode at 1 - |A_bar| >= margin * std(A_bar's error), the std of the training noise in the mapped
domain of its form (programming and read noise, :mod:`imssa.quant.scales`), by a projection of
the continuous parameters after each update: log_A_real >= ln(-ln(1 - m)) - log_dt, i.e.
Delta * exp(log_A_real) = -ln|A_bar| >= -ln(1 - m). Only the decay moves; the phase (A_imag) and
Delta stay. In the direct form the error is sigma * max|A_bar| ~ sigma for every mode, so a
margin of k forces 1 - |A_bar| >= k sigma on all of them (slow modes are lost); in the increment
form with one scale per mode the error is sigma * max(|A_bar - 1|, |B_bar|), which a mode
dominated by its own decay satisfies by itself whenever k sigma < 1.

:func:`check_finite` stops training with an error naming the settings when the loss or a
parameter is no longer finite, before anything is saved.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.names import SSM_TENSORS
from imssa.quant.modules import QuantSSM
from imssa.quant.noise import WeightNoiseConfig
from imssa.quant.scales import conductance_scales, held_values, programming_std, real_scale
from imssa.ssm.s4d import DiagonalSSM, DiscreteSSM

MAX_MARGIN = 0.999  # the largest 1 - |A_bar| a margin may ask for (|A_bar| >= 0 always)


def a_error_std(ssm: DiscreteSSM, noise: WeightNoiseConfig) -> Tensor:
    """The std of the chip's error on each A_bar entry (H, modes) under ``noise``'s form:
    programming noise, plus read noise in quadrature; a complex entry's larger part."""
    tensors = {n: getattr(ssm, n).detach() for n in SSM_TENSORS}
    scales = conductance_scales(tensors, noise.transition, noise.granularity)
    A = tensors["A_bar"]
    held = held_values("A_bar", A, noise.transition)
    scale = torch.broadcast_to(real_scale(A, scales["A_bar"]), held.shape)
    std = torch.hypot(programming_std(held, scale, noise.sigma, noise.kind),
                      noise.read_sigma * scale)
    return std.amax(dim=-1) if A.is_complex() else std


@torch.no_grad()
def apply_a_margin(model: nn.Module, margin: float) -> int:
    """Project every noisy continuous SSM of a prepared model to 1 - |A_bar| >= margin * its
    error std (module docstring); returns how many modes were moved. Layers without noise on
    A_bar, and a margin of 0, are left alone."""
    if margin == 0:
        return 0
    moved = 0
    for m in model.modules():
        if not (isinstance(m, QuantSSM) and m.noise is not None and "A_bar" in m.noise_on):
            continue
        if not isinstance(m.params, DiagonalSSM):
            raise ImssaError("QATConfig.a_margin needs the continuous parameterization (it "
                             f"moves log_A_real); {m.q['A_bar'].name} is {m.parameterization}")
        p = m.params
        need = (margin * a_error_std(m.discrete(), m.noise)).clamp(max=MAX_MARGIN)
        floor = torch.log((-torch.log1p(-need)).clamp_min(1e-30)) - p.log_dt.unsqueeze(-1)
        low = (p.log_A_real < floor) & (need > 0)
        moved += int(low.sum())
        p.log_A_real.copy_(torch.where(low, floor.to(p.log_A_real.dtype), p.log_A_real))
    return moved


def check_finite(model: nn.Module, logits: Tensor | None, settings: str) -> None:
    """Raise an ImssaError naming ``settings`` when ``logits`` or any parameter of ``model`` is
    not finite (training diverged)."""
    bad = [n for n, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    what = (f"parameter {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            if bad else "the loss" if logits is not None and not bool(torch.isfinite(logits).all())
            else None)
    if what is not None:
        raise ImssaError(f"training diverged: {what} is no longer finite ({settings}); lower the "
                         "learning rate, or train the state transition in a form the noise "
                         "cannot destabilize (increment form, a_margin, or a bounded state)")
