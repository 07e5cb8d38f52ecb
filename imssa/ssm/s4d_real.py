"""S4D-Real: the diagonal SSM with real modes (Gu et al. 2022, "On the Parameterization and
Initialization of Diagonal State Space Models", the S4D-Real initialization A_n = -(n + 1)).

A real mode does not rotate: its state transition A_bar = exp(Delta A) is a number in (0, 1), and
on a crossbar it needs one differential pair instead of the 4x4 block of a complex mode. In the
increment form (the array holds A_bar - 1) its programming error stays relative to its own decay,
which is why it is the co-design choice of memristive SSM hardware (docs/architecture.md, "The
state transition on a crossbar"). N real modes per channel carry a state of size N, the same
memory as the complex layer's N/2 complex modes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from imssa.ssm.s4d import DiagonalSSM


class S4DRealLayer(DiagonalSSM):
    """One S4D-Real layer: A = -exp(log_A_real) real, real B, C, skip D; both execution modes.

    Args:
        d_model: channels H.
        d_state: real modes N per channel (the state size).
        dt_min, dt_max: range of the log-uniform initialization of Delta.
    """

    def __init__(self, d_model: int, d_state: int = 64, dt_min: float = 1e-3,
                 dt_max: float = 1e-1):
        super().__init__()
        H, N = d_model, d_state
        self.log_dt = nn.Parameter(
            torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))  # (H)
        # S4D-Real: A_n = -(n + 1)
        self.log_A_real = nn.Parameter(torch.log(torch.arange(1, N + 1).float()).repeat(H, 1))
        self.B = nn.Parameter(torch.ones(H, N))  # (H N)
        self.C = nn.Parameter(torch.randn(H, N))  # (H N)
        self.D = nn.Parameter(torch.randn(H))

    def continuous_A(self) -> Tensor:
        """Continuous A (H, N) real, A < 0 by construction."""
        return -torch.exp(self.log_A_real)

    def input_matrix(self) -> Tensor:
        return self.B

    def output_matrix(self) -> Tensor:
        return self.C
