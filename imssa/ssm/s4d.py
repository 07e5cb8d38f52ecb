"""S4D: the diagonal state-space layer of Gu et al. 2022 ("On the Parameterization and
Initialization of Diagonal State Space Models"), in both execution modes.

Continuous parameters per channel h and complex mode n: A = -exp(log_A_real) + i*A_imag,
Delta = exp(log_dt), input matrix B and output matrix C (complex), skip D. Zero-order hold gives
the discrete system x[k] = A_bar x[k-1] + B_bar u[k], y[k] = 2 Re(sum_n C x[k]) + D u[k].
N//2 complex modes carry a state of size N; the conjugate half is implied by the factor 2.

Convolutional mode computes the kernel K[l] = 2 Re(sum_n C B_bar A_bar^l) by a Vandermonde
product and convolves by FFT (training). Recurrent mode runs the recurrence step by step
(inference on an edge device). :class:`DiscreteSSM` holds the plain tensors both use; the helpers
:func:`zoh`, :func:`ssm_kernel` and :func:`fft_conv` are the only implementations of the three
steps in the package, and every execution variant (quantized, analog) calls them.

The SSM module interface every variant of ``blocks.i.ssm`` implements (the graph calls nothing
else): ``forward(u, mode)`` with u (..., L, H) and mode ``conv`` or ``recurrent``;
``init_state(batch)`` and ``step(u, state) -> (y, state)`` for streaming; ``discrete()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError

MODES: tuple[str, str] = ("conv", "recurrent")


def check_mode(mode: str) -> None:
    """Raise a clear error unless ``mode`` is one of :data:`MODES`."""
    if mode not in MODES:
        raise ImssaError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def zoh(A: Tensor, dt: Tensor, B: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Zero-order hold of a diagonal SSM (Gu et al. 2022, eq. 4).

    Args:
        A: (H, N/2) complex continuous state matrix; dt: (H,) step sizes; B: (H, N/2) complex.

    Returns:
        A_bar = exp(dt A), B_bar = (A_bar - 1) / A * B, and dt A (the exact log of A_bar).
    """
    dtA = A * dt.unsqueeze(-1)  # (H N/2)
    A_bar = torch.exp(dtA)
    return A_bar, (A_bar - 1) / A * B, dtA


def ssm_kernel(CB: Tensor, log_A_bar: Tensor, L: int) -> Tensor:
    """Convolution kernel K (H, L) = sum_n CB exp(l log A_bar), a Vandermonde product: 2 Re of
    it for complex modes (the conjugate half), the plain sum for real ones.

    ``log_A_bar`` is dt*A for the continuous layer (exact) or log(A_bar) for a discrete one.
    """
    vandermonde = torch.exp(log_A_bar.unsqueeze(-1) * torch.arange(L, device=CB.device))
    return readout(CB, vandermonde, "hn,hnl->hl")  # (H L)


def readout(C: Tensor, x: Tensor, spec: str = "hn,...hn->...h") -> Tensor:
    """sum_n C x over the modes: 2 Re of it for complex modes (the implied conjugate half),
    the plain sum for real modes. The one place the factor 2 lives."""
    y = torch.einsum(spec, C, x)
    return 2 * y.real if y.is_complex() else y


def fft_conv(u: Tensor, K: Tensor) -> Tensor:
    """Causal convolution along time of u (..., L, H) with a kernel K (H, L), by FFT.

    Zero-padding to 2L makes the circular FFT convolution a linear one.
    """
    L = u.shape[-2]
    n = 2 * L
    return torch.fft.irfft(torch.fft.rfft(u, n=n, dim=-2) * torch.fft.rfft(K.T, n=n, dim=0),
                           n=n, dim=-2)[..., :L, :]


@dataclass(frozen=True)
class DiscreteSSM:
    """The ZOH-discretized SSM of one layer, as plain tensors.

    Complex (S4D, N/2 modes with an implied conjugate half) or real (S4D-Real, N modes): the
    dtype of ``A_bar`` tells, and the state has the same dtype.

    Attributes:
        A_bar: (H, modes) state transition, |A_bar| < 1.
        B_bar: (H, modes) input vector.
        C: (H, modes) output vector (the factor 2 of the conjugate half is not folded in).
        D: (H,) real skip connection.
    """

    A_bar: Tensor
    B_bar: Tensor
    C: Tensor
    D: Tensor

    def init_state(self, batch: int | tuple[int, ...]) -> Tensor:
        """A zero state (*batch, H, N/2) complex on the parameters' device."""
        batch = (batch,) if isinstance(batch, int) else tuple(batch)
        return torch.zeros((*batch, *self.A_bar.shape), dtype=self.A_bar.dtype,
                           device=self.A_bar.device)

    def step(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """One recurrent step. x: (..., H, N/2) state x[k-1]; u: (..., H) input u[k].

        Returns y[k] (..., H) and the new state x[k].
        """
        x = self.advance(x, u)
        return self.output(x, u), x

    def advance(self, x: Tensor, u: Tensor) -> Tensor:
        """The state update A_bar x[k-1] + B_bar u[k]. x: (..., H, modes); u: (..., H)."""
        return self.A_bar * x + self.B_bar * u.unsqueeze(-1)

    def output(self, x: Tensor, u: Tensor) -> Tensor:
        """y[k] = readout(C, x[k]) + D u[k], (..., H)."""
        return readout(self.C, x) + self.D * u

    def scan(self, u: Tensor) -> Tensor:
        """The recurrence over a whole sequence from a zero state. u: (..., L, H) -> y (..., L, H)."""
        x = self.init_state(u.shape[:-2])
        ys = []
        for k in range(u.shape[-2]):
            y, x = self.step(x, u[..., k, :])
            ys.append(y)
        return torch.stack(ys, dim=-2)

    def kernel(self, L: int) -> Tensor:
        """Convolution kernel (H, L) of the discrete tensors (A_bar^l = exp(l log A_bar))."""
        return ssm_kernel(self.C * self.B_bar, torch.log(self.A_bar), L)

    def convolve(self, u: Tensor) -> Tensor:
        """Convolutional mode from the discrete tensors. u: (..., L, H) -> (..., L, H)."""
        return fft_conv(u, self.kernel(u.shape[-2])) + self.D * u


class DiagonalSSM(nn.Module):
    """What every diagonal SSM layer with continuous parameters shares: ZOH, both modes and
    streaming. A subclass defines the parameters and ``continuous_A``, ``input_matrix``,
    ``output_matrix`` (complex or real) and a skip ``D`` (H,), and ``log_dt`` (H,)."""

    log_dt: nn.Parameter
    D: nn.Parameter

    def continuous_A(self) -> Tensor:
        raise NotImplementedError

    def input_matrix(self) -> Tensor:
        raise NotImplementedError

    def output_matrix(self) -> Tensor:
        raise NotImplementedError

    @property
    def d_model(self) -> int:
        return self.D.shape[0]

    def _zoh(self) -> tuple[Tensor, Tensor, Tensor]:
        return zoh(self.continuous_A(), torch.exp(self.log_dt), self.input_matrix())

    def discrete(self) -> DiscreteSSM:
        """ZOH discretization: A_bar = exp(Delta A), B_bar = (A_bar - 1)/A * B."""
        A_bar, B_bar, _ = self._zoh()
        return DiscreteSSM(A_bar, B_bar, self.output_matrix(), self.D)

    def kernel(self, L: int) -> Tensor:
        """Convolution kernel (H, L); the Vandermonde product exp(Delta A l) in closed form."""
        _, B_bar, dtA = self._zoh()
        return ssm_kernel(self.output_matrix() * B_bar, dtA, L)

    def forward(self, u: Tensor, mode: str = "conv") -> Tensor:
        """u: (..., L, H) -> y: (..., L, H), by FFT convolution or step by step."""
        check_mode(mode)
        if mode == "recurrent":
            return self.discrete().scan(u)
        return fft_conv(u, self.kernel(u.shape[-2])) + self.D * u

    def init_state(self, batch: int | tuple[int, ...]) -> Any:
        """Streaming state: the discretized SSM (computed once) and a zero state."""
        ssm = self.discrete()
        return ssm, ssm.init_state(batch)

    def step(self, u: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One streaming step. u: (..., H) -> y (..., H) and the new state."""
        ssm, x = state
        y, x = ssm.step(x, u)
        return y, (ssm, x)


class S4DLayer(DiagonalSSM):
    """One S4D layer: continuous parameters, S4D-Lin initialization, both execution modes.

    Args:
        d_model: channels H.
        d_state: real state size N per channel (N/2 complex modes).
        dt_min, dt_max: range of the log-uniform initialization of Delta.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        H, N2 = d_model, d_state // 2
        self.log_dt = nn.Parameter(
            torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))  # (H)
        # S4D-Lin: A_n = -1/2 + i*pi*n
        self.log_A_real = nn.Parameter(torch.full((H, N2), math.log(0.5)))  # (H N/2)
        self.A_imag = nn.Parameter(math.pi * torch.arange(N2).float().repeat(H, 1))  # (H N/2)
        # Complex B and C stored as real views (..., 2), as in the S4 reference code.
        self.B = nn.Parameter(torch.view_as_real(torch.ones(H, N2, dtype=torch.cfloat)))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, N2, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(H))

    def continuous_A(self) -> Tensor:
        """Continuous A (H, N/2) complex, Re A < 0 by construction."""
        return torch.complex(-torch.exp(self.log_A_real), self.A_imag)

    def input_matrix(self) -> Tensor:
        """B (H, N/2) complex."""
        return torch.view_as_complex(self.B)

    def output_matrix(self) -> Tensor:
        """C (H, N/2) complex."""
        return torch.view_as_complex(self.C)
