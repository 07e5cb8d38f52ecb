"""The recurrent scan of a diagonal SSM with the state fake-quantized at every step.

x[k] = Q(A_bar x[k-1] + B_bar u[k]),  y[k] = 2 Re(sum_n C x[k]) + D u[k]

for complex modes (S4D; the factor 2 is the implied conjugate half), y[k] = sum_n C x[k] + D u[k]
for real ones (S4D-Real): :func:`imssa.ssm.s4d.readout` is the readout. Q rounds the state (real
and imaginary parts of a complex one) to one integer grid per (channel, mode) and clips it to
[qmin, qmax] (the state bound); gradients pass straight through inside the range (STE). Rounding
is to nearest, or stochastic (floor(v / scale + U), U ~ Uniform[0, 1) drawn per element and
step: unbiased, so slow modes whose per-step change is below half a step still integrate).
``ssm_scan`` is the single entry point quantization-aware training and quantized inference use.

Two implementations compute the same function: ``ssm_scan_reference``, a per-step PyTorch loop
(autograd through every step; the specification, and the CPU path), and fused Triton kernels with
their own backward (:mod:`imssa.ssm.scan_triton`), one launch per sequence batch instead of about
ten per step. ``ssm_scan`` picks one; the environment variable ``IMSSA_SCAN`` overrides the choice:

- unset or ``auto``: Triton for float32/complex64 tensors on CUDA when triton imports, else the
  reference (the fused kernels are complex64-only: real modes, and per-step read noise, always
  take the reference);
- ``triton``: Triton wherever the dtypes allow, also on CPU (set ``TRITON_INTERPRET=1`` before
  triton is first imported to run the kernels in Triton's interpreter, for tests); complex128
  still takes the reference;
- ``reference``: always the reference.

``IMSSA_FAKE_QUANT`` (same values, same rules) chooses how :func:`ste_quantize` fake-quantizes
a contiguous float32 tensor (weights, SSM tensors, activation points; complex ones through their
real view): one fused Triton kernel each way (:func:`imssa.ssm.scan_triton.fake_quantize_triton`),
or torch's ops (``reference``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

from imssa.errors import ImssaError
from imssa.ssm.s4d import readout

SCAN_BACKENDS: tuple[str, str, str] = ("auto", "triton", "reference")


@dataclass(frozen=True)
class StateQuant:
    """Fake quantization of the state (complex: real and imaginary parts share scale and zero).

    Attributes:
        scale: broadcastable to (H, N/2), > 0. A constant: no gradient flows to it.
        zero_point: same shape as scale, integer-valued. A constant too.
        qmin, qmax: integer range; values outside are clipped (the state bound).
        stochastic: round up with probability equal to the fraction (torch's global RNG on the
            reference path, a seed drawn from it on the Triton path) instead of to nearest.
    """

    scale: Tensor
    zero_point: Tensor
    qmin: int
    qmax: int
    stochastic: bool = False

    def __post_init__(self) -> None:
        if int(self.qmin) != self.qmin or int(self.qmax) != self.qmax or self.qmin >= self.qmax:
            raise ImssaError(f"StateQuant needs integers qmin < qmax, got qmin={self.qmin}, "
                             f"qmax={self.qmax}")

    def __call__(self, x: Tensor) -> Tensor:
        """Fake-quantize a real or complex state with a straight-through gradient inside the
        range."""
        return ste_quantize(x, self.scale, self.zero_point, self.qmin, self.qmax, self.stochastic)

    def bounds(self) -> tuple[Tensor, Tensor]:
        """The clip range [lo, hi] of the dequantized values, broadcastable to (H, N/2)."""
        s, zp = self.scale.detach(), self.zero_point.detach()
        return (self.qmin - zp) * s, (self.qmax - zp) * s


def ste_quantize(v: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int,
                 stochastic: bool = False) -> Tensor:
    """Fake-quantize a real or complex tensor with a straight-through gradient: the one
    implementation of the package (state, weights and activations; :mod:`imssa.quant` calls it).

    Code q = clamp(round(v / s) + z, qmin, qmax) (``torch.round``: half to even; stochastic:
    floor(v / s + U), U ~ Uniform[0, 1) from torch's global RNG), value (q - z) * s. The
    straight-through estimator (Bengio et al. 2013) passes the gradient unchanged on the closed
    range [(qmin - z) s, (qmax - z) s] and zeroes it where v is clipped. A complex v quantizes
    its real and imaginary parts on the same grid in one pass over its real view (half the
    kernels of two passes; recurrent QAT at small batches is bound by kernel launches). scale
    and zero point are constants: no gradient flows to them.
    """
    s, zp = scale.detach(), zero_point.detach()
    if not stochastic and _fused_quantizer(v, s, zp):
        from imssa.ssm.scan_triton import fake_quantize_triton

        return fake_quantize_triton(v, s, zp, qmin, qmax)
    if v.is_complex():
        out = ste_quantize(torch.view_as_real(v), s.unsqueeze(-1), zp.unsqueeze(-1), qmin, qmax,
                           stochastic)
        return torch.view_as_complex(out.contiguous())
    r = v.detach() / s
    r = torch.floor(r + torch.rand_like(r)) if stochastic else torch.round(r)
    vq = (torch.clamp(r + zp, qmin, qmax) - zp) * s  # exactly on the grid
    # the value is vq exactly (v_clipped - v_clipped.detach() is exactly 0); the gradient is
    # that of the clip: 1 on the range, 0 where clipped
    v_clipped = torch.clamp(v, (qmin - zp) * s, (qmax - zp) * s)
    return vq + (v_clipped - v_clipped.detach())


def _fused_quantizer(v: Tensor, s: Tensor, zp: Tensor) -> bool:
    """Whether ``ste_quantize`` takes the fused Triton kernel: a contiguous float32 tensor of at
    most 4 dims on a float32 grid that broadcasts to it, as ``IMSSA_FAKE_QUANT`` chooses (auto:
    on CUDA; triton: also on CPU, in Triton's interpreter for tests)."""
    if not (v.dtype == s.dtype == zp.dtype == torch.float32 and v.is_contiguous()
            and 0 < v.numel() and v.ndim <= 4 and s.device == v.device == zp.device):
        return False
    try:
        if torch.broadcast_shapes(v.shape, s.shape, zp.shape) != v.shape:
            return False
    except RuntimeError:
        return False
    return choose_backend("IMSSA_FAKE_QUANT", SCAN_BACKENDS, True, v.is_cuda) == "triton"


@dataclass(frozen=True)
class ReadNoise:
    """Per-step read noise of the array that holds A_bar and B_bar: every step reads
    A_bar + std_A z and B_bar + std_B z' with fresh z, z' ~ N(0, 1) per entry (real and
    imaginary parts independent), a constant for autograd.

    Attributes:
        std_A, std_B: real tensors broadcastable to (H, modes), in the tensors' own units.
        generator: source of the draws; None: torch's global RNG.
    """

    std_A: Tensor
    std_B: Tensor
    generator: torch.Generator | None = None

    def draw(self, t: Tensor, std: Tensor, batch: int) -> Tensor:
        """t perturbed for one step, one draw per batch element: (B, *t.shape)."""
        real = torch.view_as_real(t) if t.is_complex() else t
        z = torch.randn((batch, *real.shape), generator=self.generator, dtype=real.dtype,
                        device=real.device)
        noise = z * (std.unsqueeze(-1) if t.is_complex() else std)
        return t + (torch.view_as_complex(noise) if t.is_complex() else noise)


def ssm_scan_reference(A_bar: Tensor, B_bar: Tensor, C: Tensor, D: Tensor, u: Tensor,
                       state_quant: StateQuant | None = None,
                       read_noise: ReadNoise | None = None) -> Tensor:
    """Plain per-step PyTorch loop (autograd through every step). u: (B, L, H) -> y: (B, L, H).

    Complex or real modes (the dtype of A_bar); ``read_noise`` perturbs A_bar and B_bar afresh
    at every step (:class:`ReadNoise`).
    """
    x = torch.zeros((u.shape[0], *A_bar.shape), dtype=A_bar.dtype, device=u.device)  # (B H N)
    ys = []
    for k in range(u.shape[1]):
        A, Bb = A_bar, B_bar
        if read_noise is not None:
            A = read_noise.draw(A_bar, read_noise.std_A, u.shape[0])  # (B H N)
            Bb = read_noise.draw(B_bar, read_noise.std_B, u.shape[0])
        x = A * x + Bb * u[:, k, :, None]
        if state_quant is not None:
            x = state_quant(x)
        ys.append(readout(C, x, "hn,bhn->bh"))
    return torch.stack(ys, dim=1) + D * u


def scan_backend(A_bar: Tensor, B_bar: Tensor, C: Tensor, u: Tensor) -> str:
    """``"triton"`` or ``"reference"``: what ``ssm_scan`` runs for these inputs (see module doc)."""
    eligible = (all(t.dtype == torch.complex64 for t in (A_bar, B_bar, C))
                and u.dtype == torch.float32
                and u.shape[0] * u.shape[1] > 0)  # nothing to scan: the reference returns it
    return choose_backend("IMSSA_SCAN", SCAN_BACKENDS, eligible, u.is_cuda)


def choose_backend(env: str, backends: tuple[str, str, str], eligible: bool, cuda: bool) -> str:
    """``"triton"`` or the fallback ``backends[2]``, as the environment variable ``env`` chooses
    among ``backends`` = (auto, triton, fallback): auto takes Triton for eligible CUDA tensors
    when triton imports; triton takes it wherever the tensors are eligible (on CPU in Triton's
    interpreter); the fallback always. A bad value, or triton forced but not importable, raises
    an error naming ``env``."""
    fallback = backends[2]
    choice = os.environ.get(env, "auto").strip().lower() or "auto"
    if choice not in backends:
        raise ImssaError(f"environment variable {env}={choice!r}; allowed: {', '.join(backends)}")
    if choice == fallback or not eligible or (choice == "auto" and not cuda):
        return fallback
    if not _triton_available():
        if choice == "triton":
            raise ImssaError(f"{env}=triton but triton cannot be imported; install triton or "
                             f"unset {env}")
        return fallback
    return "triton"


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check_shapes(A_bar: Tensor, B_bar: Tensor, C: Tensor, D: Tensor, u: Tensor) -> None:
    if A_bar.ndim != 2:
        raise ImssaError(f"A_bar must have shape (H, modes), got {tuple(A_bar.shape)}")
    H = A_bar.shape[0]
    for name, t in (("B_bar", B_bar), ("C", C)):
        if t.shape != A_bar.shape:
            raise ImssaError(f"{name} must have the shape of A_bar {tuple(A_bar.shape)}, "
                             f"got {tuple(t.shape)}")
        if t.is_complex() != A_bar.is_complex():
            raise ImssaError(f"{name} must be {'complex' if A_bar.is_complex() else 'real'} like "
                             f"A_bar, got {t.dtype}")
    if D.shape != (H,):
        raise ImssaError(f"D must have shape (H,) = ({H},), got {tuple(D.shape)}")
    if u.ndim != 3 or u.shape[-1] != H:
        raise ImssaError(f"u must have shape (B, L, H) with H = {H}, got {tuple(u.shape)}")


def ssm_scan(A_bar: Tensor, B_bar: Tensor, C: Tensor, D: Tensor, u: Tensor,
             state_quant: StateQuant | None = None,
             read_noise: ReadNoise | None = None) -> Tensor:
    """Recurrent SSM output y (B, L, H) for input u (B, L, H), the state quantized every step.

    Gradients flow to A_bar, B_bar, C, D and u (for complex tensors, dL/dRe + i dL/dIm, as
    PyTorch's autograd gives), not to the quantizer's scale and zero point.

    Args:
        A_bar, B_bar, C: (H, N/2) complex, or (H, N) real (S4D-Real). D: (H,) real.
        u: (B, L, H) real.
        state_quant: fake quantization of the state after every step; None keeps it exact.
        read_noise: per-step read noise of A_bar and B_bar (the reference scan only).
    """
    _check_shapes(A_bar, B_bar, C, D, u)
    if read_noise is not None or scan_backend(A_bar, B_bar, C, u) == "reference":
        return ssm_scan_reference(A_bar, B_bar, C, D, u, state_quant, read_noise)
    from imssa.ssm.scan_triton import ssm_scan_triton

    if state_quant is None:
        return ssm_scan_triton(A_bar, B_bar, C, D, u)
    shape = A_bar.shape
    return ssm_scan_triton(A_bar, B_bar, C, D, u,
                           torch.broadcast_to(state_quant.scale, shape),
                           torch.broadcast_to(state_quant.zero_point, shape),
                           state_quant.qmin, state_quant.qmax, state_quant.stochastic)
