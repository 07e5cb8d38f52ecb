"""Training throughput: imssa's S4D against a plain PyTorch S4D written here, same run, same data.

The plain model follows the layout of the S4 reference's minimal S4D ((B, H, L) tensors, Conv1d
mixing, transposes around it); both have 2H^2 + 208H + 10 parameters. Each step is one AdamW
update on a batch of sMNIST-shaped inputs (random, since throughput does not depend on values).

    python benchmarks/bench_train.py --model s4d-64 --batch-size 64
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from imssa.experiments.io import environment, write_json
from imssa.experiments.train import TrainConfig, make_optimizer
from imssa.ssm import S4DModel, count_parameters, preset


class PlainS4D(nn.Module):
    """A straightforward S4D classifier: (B, H, L) layout, Conv1d + GLU mixing."""

    def __init__(self, H: int, N: int = 64, n_classes: int = 10):
        super().__init__()
        self.encoder = nn.Linear(1, H)
        log_dt = torch.rand(H) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(H, N // 2)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(N // 2).float().repeat(H, 1))
        self.B = nn.Parameter(torch.view_as_real(torch.ones(H, N // 2, dtype=torch.cfloat)))
        self.C = nn.Parameter(torch.view_as_real(torch.randn(H, N // 2, dtype=torch.cfloat)))
        self.D = nn.Parameter(torch.randn(H))
        self.mix = nn.Conv1d(H, 2 * H, 1)
        self.decoder = nn.Linear(H, n_classes)

    def forward(self, u):
        x = self.encoder(u).transpose(1, 2)  # (B H L)
        L = x.shape[-1]
        dt = torch.exp(self.log_dt)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt[:, None]
        C = torch.view_as_complex(self.C) * torch.view_as_complex(self.B) * (torch.exp(dtA) - 1) / A
        K = 2 * torch.einsum("hn,hnl->hl", C, torch.exp(dtA[:, :, None] * torch.arange(L, device=u.device))).real
        y = torch.fft.irfft(torch.fft.rfft(x, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        y = y + x * self.D[:, None]
        z = F.glu(self.mix(F.gelu(y)), dim=1) + x
        return self.decoder(z.mean(-1))


def time_training(model: nn.Module, opt: torch.optim.Optimizer, batches: list, steps: int,
                  device: torch.device) -> float:
    """Samples per second over ``steps`` AdamW steps, after a warm-up."""
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for x, y in batches[:5]:
        step(x, y)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    sync()
    return steps * batches[0][0].shape[0] / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="s4d-64")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--length", type=int, default=784)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    batches = [(torch.randn(args.batch_size, args.length, 1, device=device),
                torch.randint(0, 10, (args.batch_size,), device=device)) for _ in range(8)]
    cfg = TrainConfig(model=args.model)
    imssa_model = S4DModel(preset(args.model)).to(device)
    plain = PlainS4D(imssa_model.cfg.d_model).to(device)
    assert count_parameters(plain) == count_parameters(imssa_model)
    contenders = {"imssa": (imssa_model, make_optimizer(imssa_model, cfg)),
                  "plain_pytorch": (plain, make_optimizer(plain, cfg))}
    rates: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.repeats):  # interleaved, so clock drift hits both alike
        for name, (model, opt) in contenders.items():
            rates[name].append(time_training(model, opt, batches, args.steps, device))
    best = {k: max(v) for k, v in rates.items()}
    ratio = best["imssa"] / best["plain_pytorch"]
    print(f"\n{args.model}, batch {args.batch_size}, L={args.length}, {device}")
    print(f"{'implementation':<16}{'samples/s (best of ' + str(args.repeats) + ')':>28}")
    for name, r in best.items():
        print(f"{name:<16}{r:>28.0f}")
    print(f"ratio imssa / plain: {ratio:.2f}")
    env = environment(device)
    slug = env["device_name"].replace(" ", "_").replace("/", "_")
    write_json({"benchmark": "train_throughput", "model": args.model,
                "batch_size": args.batch_size, "length": args.length, "steps": args.steps,
                "samples_per_second": rates, "best": best, "ratio_imssa_over_plain": ratio,
                "command": "python " + shlex.join(sys.argv), **env},
               Path(args.out) / f"train_{args.model}_{slug}.json")


if __name__ == "__main__":
    main()
