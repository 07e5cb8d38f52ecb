"""The S4D sequence classifier of the seed paper (its Table I) and its presets.

encoder Linear(d_input -> H) -> n_layers x [S4D -> GELU -> 1x1 conv H -> 2H + GLU -> + residual]
-> mean over time -> decoder Linear(H -> n_classes). No normalization layers, so one layer with
N = 64 has exactly 2H^2 + 208H + 10 parameters for 10 classes and a scalar input.

The model runs in convolutional mode (``model(u)``, for training), recurrent mode over a whole
sequence (``model(u, mode="recurrent")``), or streaming, one sample at a time (``init_state`` +
``step``), as an edge device does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.ssm.s4d import DiagonalSSM, DiscreteSSM, S4DLayer, check_mode
from imssa.ssm.s4d_real import S4DRealLayer


@dataclass(frozen=True, kw_only=True)
class S4DConfig:
    """Architecture of an S4D classifier.

    ``d_state`` is the real state size N per channel: N/2 complex modes (``ssm="complex"``, S4D)
    or N real modes (``ssm="real"``, S4D-Real).
    """

    d_input: int = 1
    d_model: int = 64
    d_state: int = 64
    n_layers: int = 1
    n_classes: int = 10
    dropout: float = 0.0
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    ssm: str = "complex"

    def __post_init__(self) -> None:
        for name in ("d_input", "d_model", "n_layers", "n_classes"):
            if getattr(self, name) < 1:
                raise ImssaError(f"S4DConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_state < 2 or self.d_state % 2:
            raise ImssaError(f"S4DConfig.d_state must be an even number >= 2, got {self.d_state}")
        if not 0.0 <= self.dropout < 1.0:
            raise ImssaError(f"S4DConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.ssm not in SSM_KINDS:
            raise ImssaError(f"S4DConfig.ssm must be one of {', '.join(SSM_KINDS)}, got {self.ssm!r}")
        if not 0.0 < self.dt_min <= self.dt_max:
            raise ImssaError("S4DConfig needs 0 < dt_min <= dt_max, "
                             f"got dt_min={self.dt_min}, dt_max={self.dt_max}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: SSM layer kinds: the complex S4D (S4D-Lin) default and S4D-Real (imssa.ssm.s4d_real).
SSM_KINDS: dict[str, type[DiagonalSSM]] = {"complex": S4DLayer, "real": S4DRealLayer}

PRESETS: dict[str, S4DConfig] = {
    **{f"s4d-{h}": S4DConfig(d_model=h) for h in (16, 64, 256, 512)},
    # S4D-Real, N = 64 real modes per channel, 1 / 2 / 4 layers (the analog-SSM study)
    **{f"s4d-real-64x{n}": S4DConfig(d_model=64, n_layers=n, ssm="real") for n in (1, 2, 4)},
}


def preset(name: str, **overrides) -> S4DConfig:
    """The named preset, with fields replaced by ``overrides`` (e.g. d_input for another task)."""
    if name not in PRESETS:
        raise ImssaError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


class S4DBlock(nn.Module):
    """ssm -> activation (GELU) -> dropout -> mix (1x1 conv H -> 2H) -> glu, plus the residual.

    Every part is a submodule that an execution variant may replace (quantized, analog); the
    data flow is written here only. Tensors keep a leading batch shape (...), which analog
    variants extend with a chip axis.
    """

    def __init__(self, cfg: S4DConfig):
        super().__init__()
        self.ssm: nn.Module = SSM_KINDS[cfg.ssm](cfg.d_model, cfg.d_state, cfg.dt_min, cfg.dt_max)
        self.activation: nn.Module = nn.GELU()
        self.dropout = nn.Dropout(cfg.dropout)
        # A 1x1 convolution over time is a Linear on (B, L, H): the layout the model keeps.
        self.mix: nn.Module = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.glu: nn.Module = nn.GLU(dim=-1)

    def pointwise(self, u: Tensor, y: Tensor) -> Tensor:
        """Everything after the SSM, per time step. u (block input), y (SSM output): (..., H)."""
        return u + self.glu(self.mix(self.dropout(self.activation(y))))

    def forward(self, u: Tensor, mode: str = "conv") -> Tensor:
        """u: (..., L, H) -> (..., L, H)."""
        return self.pointwise(u, self.ssm(u, mode))

    def step(self, u: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One streaming step. u: (..., H) -> (..., H) and the SSM's new state."""
        y, state = self.ssm.step(u, state)
        return self.pointwise(u, y), state


class S4DModel(nn.Module):
    """S4D sequence classifier. Inputs (B, L, d_input), outputs logits (..., B, n_classes).

    The one graph of the package: encoder -> blocks -> mean over time -> decoder, in ``conv``
    mode (training), ``recurrent`` mode (each layer's SSM step by step over the whole sequence)
    or streaming (``init_state`` + ``step``). Quantization (:func:`imssa.quant.prepare`) and the
    crossbar (:func:`imssa.crossbar.convert`) replace its parts in place.
    """

    def __init__(self, cfg: S4DConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder: nn.Module = nn.Linear(cfg.d_input, cfg.d_model)
        self.blocks = nn.ModuleList(S4DBlock(cfg) for _ in range(cfg.n_layers))
        self.decoder: nn.Module = nn.Linear(cfg.d_model, cfg.n_classes)

    def check_input(self, u: Tensor) -> None:
        """Raise a clear error for inputs the model cannot take (shape, dtype, NaN, empty)."""
        if not isinstance(u, Tensor):
            raise ImssaError(f"input must be a torch.Tensor (batch, length, {self.cfg.d_input}), "
                             f"got {type(u).__name__}")
        if u.ndim != 3 or u.shape[-1] != self.cfg.d_input:
            raise ImssaError(f"input must have shape (batch, length, {self.cfg.d_input}), "
                             f"got {tuple(u.shape)}; a single sequence needs a batch axis "
                             "(u.unsqueeze(0)) and a 1-D signal a feature axis (u.unsqueeze(-1))")
        if u.shape[0] == 0 or u.shape[1] == 0:
            raise ImssaError(f"input of shape {tuple(u.shape)} is empty: the model needs at least "
                             "one sequence of at least one time step")
        self._check_values(u)

    def _check_values(self, u: Tensor) -> None:
        """dtype (floating, the model's own) and finiteness of an input."""
        if not torch.is_floating_point(u):
            raise ImssaError(f"input must be a floating-point tensor, got {u.dtype}")
        weight = getattr(self.encoder, "weight", None)
        if isinstance(weight, Tensor) and u.dtype != weight.dtype:
            raise ImssaError(f"input is {u.dtype} but the model is {weight.dtype}; cast one to "
                             f"the other (u.to({weight.dtype}) or model.to({u.dtype}))")
        if not torch.isfinite(u).all():
            raise ImssaError("input contains NaN or infinite values; clean or impute them first")

    def check_batch(self, u: Tensor) -> None:
        """``check_input`` in eval mode; in training only the shape, since a NaN check
        synchronizes the GPU every step and datasets are checked once when loaded."""
        if not self.training or u.ndim != 3 or u.shape[-1] != self.cfg.d_input:
            self.check_input(u)

    def forward(self, u: Tensor, mode: str = "conv") -> Tensor:
        """u: (B, L, d_input) -> logits (B, n_classes), or (chips, B, n_classes) once analog.

        ``recurrent`` equals stepping the whole model sample by sample (``step``), only faster,
        because layer l's outputs over time depend on layer l-1's outputs alone.
        """
        check_mode(mode)
        self.check_batch(u)
        x = self.encoder(u)  # (... B L H)
        for block in self.blocks:
            x = block(x, mode)
        return self.decoder(x.mean(dim=-2))

    def discrete(self) -> list[DiscreteSSM]:
        """The discretized SSM of every layer, as plain tensors."""
        return [block.ssm.discrete() for block in self.blocks]

    # --- streaming -------------------------------------------------------------------------
    def init_state(self, batch: int) -> dict:
        """Streaming state: each layer's SSM state, the running feature sum, the steps seen."""
        return {"ssm": [block.ssm.init_state(batch) for block in self.blocks],
                "sum": 0.0, "steps": 0}

    def step(self, u: Tensor, state: dict) -> tuple[Tensor, dict]:
        """Feed one sample u (B, d_input); returns logits of the sequence so far and the new state."""
        if not isinstance(state, dict) or len(state.get("ssm", ())) != len(self.blocks):
            raise ImssaError("step: state must come from model.init_state(batch) or an earlier "
                             f"step of this {len(self.blocks)}-layer model")
        if not isinstance(u, Tensor) or u.ndim < 2 or u.shape[-1] != self.cfg.d_input:
            raise ImssaError(f"step: input must be one time step of shape (batch, "
                             f"{self.cfg.d_input}), got {getattr(u, 'shape', type(u).__name__)}")
        self._check_values(u)
        x = self.encoder(u)  # (... B H)
        new = []
        for block, s in zip(self.blocks, state["ssm"]):
            x, s = block.step(x, s)
            new.append(s)
        total, steps = state["sum"] + x, state["steps"] + 1
        return self.decoder(total / steps), {"ssm": new, "sum": total, "steps": steps}


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, counting a complex number as two."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
