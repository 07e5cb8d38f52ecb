"""One training update (forward, cross-entropy, backward, optional gradient clip, optimizer step)
recorded once as a CUDA graph and replayed for every batch of the same shape.

Why: recurrent QAT of ``s4d-64`` W4A6 at batch 64 is bound by the host, not the GPU. One update
issues about 600 small kernels (every fake quantizer of a weight, the SSM tensors and the
activation points, their straight-through backward, the optimizer) around the two fused scan
kernels (about 1.5 ms for the 784 steps of a batch of 64, forward and backward). In eager mode
each kernel costs several microseconds of Python, dispatch and launch, about 10-12 ms an update
(9.8-12.9 s an sMNIST epoch on an H200), and the time barely grows with the batch. A replayed
graph launches the same kernels, on the same memory, in the same order, with one host call.

Replaying the recorded kernels computes what the eager update computes (the same kernels on the
same values; tested on CUDA). Requirements, checked where they can be:

- CUDA tensors, and a batch of the recorded shape; a batch of another shape (the last, partial
  batch of an epoch) runs eagerly on the same parameters and optimizer;
- an Adam or AdamW optimizer built with ``capturable=True`` and its learning rates as tensors
  (moved to the device when the graph is recorded; a schedule then changes them in place, and
  the replayed kernels read the new value);
- nothing in the update synchronizes with the host: the stochastic rounding of the state on the
  Triton scan draws its Philox key on the host and is refused, as is active weight noise.

The recording runs ``warmup`` eager updates first (Triton compiles its kernels, the optimizer
creates its state), on a side stream as CUDA graphs require. Those updates are undone: the
parameters, the optimizer's state and the RNG states are restored afterwards, so the first call
trains exactly as the first eager update would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.quant.modules import Noisy
from imssa.quant.quantizer import FakeQuantizer


class TrainStep:
    """``step(u, y)``: one update of ``model`` on the batch (u, y); returns the loss (detached).

    Args:
        model: the (prepared) model, on the device of the batches.
        forward: u -> logits, e.g. ``lambda u: model(u, mode="recurrent")``.
        optimizer: the optimizer of ``model``'s parameters.
        grad_clip: max gradient norm (``nn.utils.clip_grad_norm_``), None for none.
        graph: record and replay a CUDA graph (CUDA only); False: always eager.
        warmup: eager updates before recording (undone afterwards).
    """

    def __init__(self, model: nn.Module, forward: Callable[[Tensor], Tensor],
                 optimizer: torch.optim.Optimizer, grad_clip: float | None = None,
                 graph: bool = True, warmup: int = 3):
        self.model, self.forward, self.optimizer = model, forward, optimizer
        self.grad_clip, self.graph, self.warmup = grad_clip, graph, warmup
        self._graph: torch.cuda.CUDAGraph | None = None
        self._u: Tensor | None = None
        self._y: Tensor | None = None
        self._loss: Tensor | None = None
        if graph:
            _check_graphable(model, optimizer)

    def eager(self, u: Tensor, y: Tensor) -> Tensor:
        """The update as plain PyTorch runs it; returns the loss (not detached)."""
        loss = F.cross_entropy(self.forward(u), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss

    def __call__(self, u: Tensor, y: Tensor) -> Tensor:
        if not (self.graph and u.is_cuda):
            return self.eager(u, y).detach()
        if self._graph is None:
            self._record(u, y)
        assert self._u is not None and self._y is not None and self._loss is not None
        if u.shape != self._u.shape or y.shape != self._y.shape:
            return self.eager(u, y).detach()
        self._u.copy_(u)
        self._y.copy_(y)
        self._graph.replay()  # type: ignore[union-attr]
        return self._loss.clone()

    def _record(self, u: Tensor, y: Tensor) -> None:
        device = u.device
        self._u, self._y = u.clone(), y.clone()
        params = list(self.model.parameters())
        saved = [p.detach().clone() for p in params]
        had_state = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()}
                     for p, st in self.optimizer.state.items()}
        cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.eager(self._u, self._y)
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():  # undo the warm-up: parameters, optimizer state, RNG
            for p, s in zip(params, saved):
                p.copy_(s)
            for p, st in self.optimizer.state.items():  # state the warm-up created: zeros,
                for k, v in st.items():  # as Adam starts (step 0, zero moments)
                    if not torch.is_tensor(v):
                        continue
                    if p in had_state:
                        v.copy_(had_state[p][k])
                    else:
                        v.zero_()
        torch.set_rng_state(cpu_rng)
        torch.cuda.set_rng_state(cuda_rng, device)
        for group in self.optimizer.param_groups:  # e.g. loaded from a checkpoint on the CPU
            if group["lr"].device != device:
                group["lr"] = group["lr"].to(device)
        self.optimizer.zero_grad(set_to_none=True)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._loss = self.eager(self._u, self._y).detach()
        self._graph = graph


def graph_blocker(model: nn.Module) -> str | None:
    """Why a CUDA graph cannot replay an update of ``model`` (None: it can): stochastic state
    rounding (its Philox key is drawn on the host every update) or active weight noise."""
    for name, m in model.named_modules():
        if isinstance(m, FakeQuantizer) and m.kind == "state" and m.enabled \
                and m.spec.rounding == "stochastic":
            return f"{m.name} rounds stochastically, whose Philox key is drawn on the host"
        if isinstance(m, Noisy) and m.noise is not None and m.noise.enabled and m.noise_on:
            return f"{name} has weight noise"
    return None


def _check_graphable(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Refuse, with the setting to change, what a CUDA graph of the update cannot replay."""
    blocker = graph_blocker(model)
    if blocker is not None:
        raise ImssaError(f"TrainStep(graph=True): {blocker}; pass graph=False")
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        raise ImssaError(f"TrainStep(graph=True) needs Adam or AdamW, got "
                         f"{type(optimizer).__name__}; pass graph=False")
    for group in optimizer.param_groups:
        if not group["capturable"]:
            raise ImssaError("TrainStep(graph=True) needs an optimizer built with "
                             "capturable=True")
        if not torch.is_tensor(group["lr"]):
            raise ImssaError("TrainStep(graph=True) needs the learning rate as a tensor "
                             "(lr=torch.tensor(lr, device='cuda')), so a schedule reaches the "
                             "replayed update")
