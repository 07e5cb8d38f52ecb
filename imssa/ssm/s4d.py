"""S4D: the diagonal state-space layer of Gu et al. 2022 ("On the Parameterization and
Initialization of Diagonal State Space Models"), in both execution modes.

Continuous parameters per channel h and complex mode n: A = -exp(log_A_real) + i*A_imag,
Delta = exp(log_dt), input matrix B and output matrix C (complex), skip D. Zero-order hold gives
the discrete system x[k] = A_bar x[k-1] + B_bar u[k], y[k] = 2 Re(sum_n C x[k]) + D u[k].
N//2 complex modes carry a state of size N; the conjugate half is implied by the factor 2.

Convolutional mode computes the kernel K[l] = 2 Re(sum_n C B_bar A_bar^l) by a Vandermonde
product and convolves by FFT (training). Recurrent mode runs the recurrence step by step
(inference on an edge device, quantization, crossbars); :class:`DiscreteSSM` holds the plain
tensors both use, and ``scan`` takes an optional ``state_fn`` applied to the state after every
step so that quantized and analog versions reuse the same recurrence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

StateFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class DiscreteSSM:
    """The ZOH-discretized SSM of one layer, as plain tensors.

    Attributes:
        A_bar: (H, N/2) complex state transition, |A_bar| < 1.
        B_bar: (H, N/2) complex input vector.
        C: (H, N/2) complex output vector (the factor 2 of the conjugate half is not folded in).
        D: (H,) real skip connection.
    """

    A_bar: Tensor
    B_bar: Tensor
    C: Tensor
    D: Tensor

    def init_state(self, batch: int) -> Tensor:
        """A zero state (batch, H, N/2) complex on the parameters' device."""
        return torch.zeros((batch, *self.A_bar.shape), dtype=self.A_bar.dtype,
                           device=self.A_bar.device)

    def step(self, x: Tensor, u: Tensor, state_fn: StateFn | None = None) -> tuple[Tensor, Tensor]:
        """One recurrent step.

        Args:
            x: (B, H, N/2) complex state x[k-1].
            u: (B, H) real input u[k].
            state_fn: applied to the new state (quantization, clipping, analog noise).

        Returns:
            y: (B, H) real output y[k]; x: (B, H, N/2) new state x[k].
        """
        x = self.A_bar * x + self.B_bar * u.unsqueeze(-1)  # (B H N/2)
        if state_fn is not None:
            x = state_fn(x)
        y = 2 * torch.einsum("hn,bhn->bh", self.C, x).real + self.D * u  # (B H)
        return y, x

    def scan(self, u: Tensor, x0: Tensor | None = None,
             state_fn: StateFn | None = None) -> tuple[Tensor, Tensor]:
        """Run the recurrence over a whole sequence.

        Args:
            u: (B, L, H) real input.
            x0: (B, H, N/2) complex initial state; zeros if None.

        Returns:
            y: (B, L, H) real output; x: (B, H, N/2) final state.
        """
        x = self.init_state(u.shape[0]) if x0 is None else x0
        ys = []
        for k in range(u.shape[1]):
            y, x = self.step(x, u[:, k], state_fn)
            ys.append(y)
        return torch.stack(ys, dim=1), x

    def kernel(self, L: int) -> Tensor:
        """Convolution kernel K (H, L) = 2 Re(sum_n C B_bar A_bar^l), by powers of A_bar."""
        powers = self.A_bar.unsqueeze(-1) ** torch.arange(L, device=self.A_bar.device)  # (H N/2 L)
        return 2 * torch.einsum("hn,hnl->hl", self.C * self.B_bar, powers).real


class S4DLayer(nn.Module):
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

    @property
    def d_model(self) -> int:
        return self.D.shape[0]

    def continuous_A(self) -> Tensor:
        """Continuous A (H, N/2) complex, Re A < 0 by construction."""
        return torch.complex(-torch.exp(self.log_A_real), self.A_imag)

    def discrete(self) -> DiscreteSSM:
        """ZOH discretization: A_bar = exp(Delta A), B_bar = (A_bar - 1)/A * B."""
        A = self.continuous_A()  # (H N/2)
        dtA = A * torch.exp(self.log_dt).unsqueeze(-1)  # (H N/2)
        A_bar = torch.exp(dtA)
        B_bar = (A_bar - 1) / A * torch.view_as_complex(self.B)
        return DiscreteSSM(A_bar, B_bar, torch.view_as_complex(self.C), self.D)

    def kernel(self, L: int) -> Tensor:
        """Convolution kernel (H, L); the Vandermonde product exp(Delta A l) in closed form."""
        A = self.continuous_A()
        dtA = A * torch.exp(self.log_dt).unsqueeze(-1)  # (H N/2)
        B_bar = (torch.exp(dtA) - 1) / A * torch.view_as_complex(self.B)
        CB = torch.view_as_complex(self.C) * B_bar  # (H N/2)
        vandermonde = torch.exp(dtA.unsqueeze(-1) * torch.arange(L, device=A.device))  # (H N/2 L)
        return 2 * torch.einsum("hn,hnl->hl", CB, vandermonde).real

    def forward(self, u: Tensor) -> Tensor:
        """Convolutional mode. u: (B, L, H) -> y: (B, L, H)."""
        L = u.shape[1]
        K = self.kernel(L)  # (H L)
        n = 2 * L  # zero-padding to 2L makes the circular FFT convolution a linear one
        y = torch.fft.irfft(torch.fft.rfft(u, n=n, dim=1) * torch.fft.rfft(K.T, n=n, dim=0),
                            n=n, dim=1)[:, :L]  # (B L H)
        return y + self.D * u
