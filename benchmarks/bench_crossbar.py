"""Crossbar inference speed: the sMNIST test set through s4d-64 on PCM crossbars, many chips,
read noise at every step -- imssa against a plain per-step PyTorch loop and aihwkit, same run.

The job (the project's target): 10,000 test sequences x 784 steps x 10 chip instances, PCM
(aihwkit's PCMLikeNoiseModel statistics), 8-bit DACs and ADCs, a fresh read of every device at
every recurrent step, drifted to ``--t-inference``. Weights are random (a fresh s4d-64); speed
does not depend on them. Contenders:

imssa          ``CrossbarS4D`` over all chips at once (chips x batch vectorized, per-sensed-output
               read noise), timed on ``--sequences`` sequences; extrapolated linearly to the
               full job where fewer sequences, chips or steps were run.
plain_pytorch  the same recurrent inference written naively: chips in a Python loop, every time
               step every layer as a matrix-vector product with noisy weights (programming
               error and drift drawn once per chip; read noise = torch.randn of each weight's
               shape added at every step), DAC/ADC rounding with imssa's calibrated ranges.
               Variants layout:noise (``--plain-variants``). Layouts: "blocks" (A as the
               (H, N/2, 2, 2) real 2x2 blocks of its modes, B and C per channel, D diagonal) and
               "dense" (every layer a dense matrix, A the (H N x H N) block-diagonal real
               matrix). Noise: "shared" (one read of the devices per step for the whole batch,
               the literal naive form; cheaper, but it correlates the batch) and "per_sequence"
               (a read per sequence and step, randn of (batch, *weight shape): independent
               inferences, the statistics imssa and aihwkit simulate). Timed over
               ``--plain-steps`` steps, extrapolated per step.
aihwkit        the s4d recurrence built from aihwkit ``AnalogLinear`` layers
               (``InferenceRPUConfig``; ``PCMLikeNoiseModel`` for programming error, drift and
               its 1/f read at drift time; per-MVM PCM read noise ``w_noise_type=PCM_READ``,
               ``w_noise=0.0175`` as in aihwkit's StandardHWATrainingPreset; 8-bit DAC/ADC;
               static DAC ranges = imssa's calibrated ones via ``NoiseManagementType.CONSTANT``;
               no bound management, output noise or drift compensation, like imssa here),
               programmed and drifted once per chip (``program_analog_weights``,
               ``drift_analog_weights``) and stepped one time step at a time on the CPU, as a
               user steps a recurrence in aihwkit. Layouts of A: "blockdiag" (one AnalogLinear
               over the (H N x H N) real block-diagonal matrix, tiled 512 x 512 by aihwkit)
               and "per_channel" (H AnalogLinear(N -> N), one per channel). B u and D u, which
               do not depend on the state, run over all steps at once, like the encoder and
               mixing layers; only A and C are stepped. Timed over ``--aihwkit-steps`` steps on
               one chip per batch size in ``--aihwkit-batch``; extrapolated to the full job.

Reported: seconds for the full 10,000 x 784 x 10-chip job (setup = programming / calibration,
plus run), extrapolated where marked, and the ratio to imssa; the JSON keeps every raw timing.
aihwkit runs on the CPU with the process's torch threads (``--threads``); on a GPU host it gets
that host's cores.

    python benchmarks/bench_crossbar.py                                # GPU: the full job
    python benchmarks/bench_crossbar.py --device cpu --sequences 64 --chips 2 --batch-size 64
    python benchmarks/bench_crossbar.py --quick                        # CPU smoke run
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from imssa.crossbar import CrossbarS4D, PeripheryConfig
from imssa.devices import PCMConfig, PCMDevice
from imssa.experiments.io import environment, write_json
from imssa.mapping import MappingConfig
from imssa.ssm import S4DModel, preset

FULL_SEQUENCES = 10_000  # the sMNIST test set
FULL_LENGTH = 784
FULL_CHIPS = 10
G_MAX = 25.0  # µS, imssa's MappingConfig and aihwkit's PCMLikeNoiseModel default
DAC_BITS = ADC_BITS = 8
TARGET_S = 60.0  # the project's goal for the full job on one H100/H200
PLAIN_VARIANTS = ("blocks:shared", "blocks:per_sequence", "dense:shared", "dense:per_sequence")


# --- helpers -------------------------------------------------------------------------------------
def device_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def make_sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def quantize(v: Tensor, r: Tensor | float, bits: int) -> Tensor:
    """A b-bit converter on [-r, r]: round to the narrow signed grid and saturate."""
    q = 2 ** (bits - 1) - 1
    step = r / q
    return torch.round(v / step).clamp_(-q, q).mul_(step)


def build_model(name: str, device: torch.device) -> S4DModel:
    torch.manual_seed(0)
    return S4DModel(preset(name)).to(device).eval()


# --- imssa ---------------------------------------------------------------------------------------
def periphery() -> PeripheryConfig:
    return PeripheryConfig(dac_bits=DAC_BITS, adc_bits=ADC_BITS, read_noise_mode="per_step")


def run_imssa(model: S4DModel, u: Tensor, args, device: torch.device) -> tuple[dict, CrossbarS4D]:
    sync = make_sync(device)
    sync()
    t0 = time.perf_counter()
    xbar = CrossbarS4D(model, MappingConfig(g_max=G_MAX), PCMDevice(PCMConfig(g_max=G_MAX)),
                       periphery(), n_chips=args.chips, seed=0)
    sync()
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    xbar.calibrate(u[:args.calibration_sequences])
    sync()
    t_cal = time.perf_counter() - t0
    t0 = time.perf_counter()
    xbar.set_time(args.t_inference)
    sync()
    t_time = time.perf_counter() - t0
    gen = torch.Generator(device=device).manual_seed(1)
    xbar(u[:min(2, len(u)), :min(32, u.shape[1])], gen)  # warm-up: allocator, kernels
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = []
    sync()
    t0 = time.perf_counter()
    for ub in u.split(args.batch_size):
        tb = time.perf_counter()
        logits = xbar(ub, gen)
        sync()
        batches.append(time.perf_counter() - tb)
    t_run = time.perf_counter() - t0
    assert logits.shape == (args.chips, ub.shape[0], model.cfg.n_classes)
    n_seq, L = u.shape[0], u.shape[1]
    rate = n_seq * args.chips / t_run  # sequence x chip per second at length L
    # Setup scales with chips (programming), the run with sequences x chips x steps.
    setup = t_build + t_cal + t_time
    setup_full = (t_build + t_time) * FULL_CHIPS / args.chips + t_cal
    run_full = FULL_SEQUENCES * FULL_CHIPS / rate * FULL_LENGTH / L
    extrapolated = (n_seq, args.chips, L) != (FULL_SEQUENCES, FULL_CHIPS, FULL_LENGTH)
    return {
        "implementation": "imssa", "layout": "CrossbarS4D", "noise": "per_sequence",
        "device": str(device),
        "measured": f"{n_seq} seq x {args.chips} chips x {L} steps, batch {args.batch_size}",
        "sequences": n_seq, "chips": args.chips, "length": L, "batch_size": args.batch_size,
        "build_s": t_build, "calibrate_s": t_cal, "set_time_s": t_time, "setup_s": setup,
        "run_s": t_run, "batch_s": batches,
        "sequence_chips_per_s": rate, "sequence_chip_steps_per_s": rate * L,
        "full_setup_s": setup_full, "full_run_s": run_full, "full_total_s": setup_full + run_full,
        "peak_memory_gb": (torch.cuda.max_memory_allocated(device) / 2**30
                           if device.type == "cuda" else None),
        "extrapolated": extrapolated,
        "extrapolation": ("measured directly" if not extrapolated else
                          "run: full = 10000 x 10 / (sequence x chips per second) x 784 / length;"
                          " build + set_time scaled by 10 / chips; calibration once"),
    }, xbar


# --- plain per-step PyTorch loop ---------------------------------------------------------------
def target_weights(model: S4DModel) -> list[dict[str, Tensor]]:
    """Per layer of the network, the real weight tensors the naive loop multiplies with.

    Compact ("blocks") layout; ``dense_weights`` expands it.
    """
    with torch.no_grad():
        enc, dec = model.encoder, model.decoder
        layers = []
        for block, ssm in zip(model.blocks, model.discrete()):
            a_r, a_i = ssm.A_bar.real, ssm.A_bar.imag  # (H N2)
            A = torch.stack([torch.stack([a_r, -a_i], -1), torch.stack([a_i, a_r], -1)], -2)
            B = torch.stack([ssm.B_bar.real, ssm.B_bar.imag], -1)  # (H N2 2)
            C = torch.stack([2 * ssm.C.real, -2 * ssm.C.imag], -1)  # y = sum C . (s_r, s_i)
            layers.append({"A": A, "B": B, "C": C, "D": ssm.D.detach().clone(),
                           "mix": block.mix.weight.detach().clone(),
                           "mix_b": block.mix.bias.detach().clone()})
        return [{"encoder": enc.weight.detach().clone(), "encoder_b": enc.bias.detach().clone(),
                 "decoder": dec.weight.detach().clone(), "decoder_b": dec.bias.detach().clone()},
                *layers]


def dense_weights(compact: dict[str, Tensor]) -> dict[str, Tensor]:
    """The SSM of one layer as dense matrices on the real state vector (H N2 2,)."""
    A, B, C, D = compact["A"], compact["B"], compact["C"], compact["D"]
    H, N2 = A.shape[:2]
    blocks = A.reshape(H * N2, 2, 2)
    return {"A": torch.block_diag(*blocks),  # (H N x H N)
            "B": torch.block_diag(*B.reshape(H, N2 * 2, 1)),  # (H N x H)
            "C": torch.block_diag(*C.reshape(H, 1, N2 * 2)),  # (H x H N)
            "D": torch.diag(D), "mix": compact["mix"], "mix_b": compact["mix_b"]}


def program_plain(w: Tensor, device_model: PCMDevice, t: float,
                  gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """One chip: a differential PCM pair per weight (tensor-wise w_max -> g_max), programmed and
    drifted to t. Returns the effective weight and the std of one read of it (weight units)."""
    w_max = w.abs().max().clamp_min(1e-12)
    g = w.abs() / w_max * G_MAX
    zero = torch.zeros_like(g)
    pos = device_model.program_and_drift(torch.where(w > 0, g, zero), t, gen)
    neg = device_model.program_and_drift(torch.where(w < 0, g, zero), t, gen)
    scale = w_max / G_MAX
    return (pos.g - neg.g) * scale, (pos.read_std.square() + neg.read_std.square()).sqrt() * scale


class PlainLoop:
    """The naive per-step inference of one chip (weights as the chip holds them).

    noise "shared": one read of every device per step, shared by the batch (a randn of each
    weight's shape per step); "per_sequence": every sequence of the batch gets its own read of
    every device (a randn of (batch, *weight shape) per step), i.e. independent inferences, as
    imssa draws them.
    """

    NOISY = ("encoder", "decoder", "A", "B", "C", "D", "mix")

    def __init__(self, model: S4DModel, layout: str, noise: str, ranges: dict[str, Tensor],
                 t: float, gen: torch.Generator) -> None:
        self.layout, self.noise, self.gen, self.ranges = layout, noise, gen, ranges
        top, *layers = target_weights(model)
        if layout == "dense":
            layers = [dense_weights(lw) for lw in layers]
        dev = PCMDevice(PCMConfig(g_max=G_MAX))
        self.top = {k: (program_plain(v, dev, t, gen) if k in self.NOISY else v)
                    for k, v in top.items()}
        self.layers = [{k: (program_plain(v, dev, t, gen) if k in self.NOISY else v)
                        for k, v in lw.items()} for lw in layers]
        self.H = model.cfg.d_model
        self.N2 = model.cfg.d_state // 2

    def r(self, name: str) -> Tensor | float:
        return self.ranges.get(name, 1.0)

    def read(self, wv: tuple[Tensor, Tensor], batch: int) -> Tensor:
        """One read of every device: the weight plus a randn of its shape (per sequence too)."""
        w, std = wv
        shape = w.shape if self.noise == "shared" else (batch, *w.shape)
        return w + std * torch.randn(shape, generator=self.gen, dtype=w.dtype, device=w.device)

    @staticmethod
    def mv(W: Tensor, v: Tensor) -> Tensor:
        """Matrix-vector products: W (out, in) or per sequence (B, out, in); v (B, in)."""
        return v @ W.T if W.ndim == 2 else torch.einsum("boi,bi->bo", W, v)

    def init(self, batch: int, like: Tensor) -> dict:
        H, N2 = self.H, self.N2
        shape = (batch, H, N2, 2) if self.layout == "blocks" else (batch, H * N2 * 2)
        return {"s": [like.new_zeros(shape) for _ in self.layers],
                "sum": like.new_zeros(batch, H)}

    def step(self, uk: Tensor, st: dict) -> None:
        """One time step of the whole network. uk: (B, d_input)."""
        dac = lambda v, n: quantize(v, self.r(n), DAC_BITS)  # noqa: E731
        adc = lambda v, n: quantize(v, self.r(n), ADC_BITS)  # noqa: E731
        b = uk.shape[0]
        x = adc(self.mv(self.read(self.top["encoder"], b), dac(uk, "input")), "encoder") \
            + self.top["encoder_b"]
        for i, lw in enumerate(self.layers):
            p = f"layers.{i}."
            xd = dac(x, p + "u")
            sd = dac(st["s"][i], p + "x")
            A, B, C, D = (self.read(lw[k], b) for k in "ABCD")
            if self.layout == "blocks":  # A (b?) H N2 2 2, B and C (b?) H N2 2, D (b?) H
                eq_a, eq_c = (("hmij,bhmj->bhmi", "hmj,bhmj->bh") if A.ndim == 4 else
                              ("bhmij,bhmj->bhmi", "bhmj,bhmj->bh"))
                s = adc(torch.einsum(eq_a, A, sd) + B * xd[..., None, None], p + "AB")
                y = adc(torch.einsum(eq_c, C, dac(s, p + "x")) + D * xd, p + "CD")
            else:
                s = adc(self.mv(A, sd) + self.mv(B, xd), p + "AB")
                y = adc(self.mv(C, dac(s, p + "x")) + self.mv(D, xd), p + "CD")
            st["s"][i] = s
            m = adc(self.mv(self.read(lw["mix"], b), dac(F.gelu(y), p + "z")), p + "mix") \
                + lw["mix_b"]
            x = x + F.glu(m, dim=-1)
        st["sum"] = st["sum"] + x

    def finish(self, st: dict, steps: int) -> Tensor:
        pooled = quantize(st["sum"] / steps, self.r("pooled"), DAC_BITS)
        W = self.read(self.top["decoder"], pooled.shape[0])
        return quantize(self.mv(W, pooled), self.r("decoder"), ADC_BITS) + self.top["decoder_b"]


def run_plain(model: S4DModel, u: Tensor, ranges: dict[str, Tensor], variant: str, args,
              device: torch.device) -> dict:
    layout, noise = variant.split(":")
    sync = make_sync(device)
    batch = min(args.batch_size, u.shape[0])
    ub = u[:batch]
    setup, per_step = [], []
    for c in range(args.chips):  # chips in a Python loop, as a user would
        gen = torch.Generator(device=device).manual_seed(100 + c)
        sync()
        t0 = time.perf_counter()
        loop = PlainLoop(model, layout, noise, ranges, args.t_inference, gen)
        sync()
        setup.append(time.perf_counter() - t0)
        st = loop.init(batch, ub)
        for k in range(min(2, ub.shape[1])):  # warm-up
            loop.step(ub[:, k], st)
        steps = min(args.plain_steps, ub.shape[1])
        sync()
        t0 = time.perf_counter()
        for k in range(steps):
            loop.step(ub[:, k], st)
        sync()
        per_step.append((time.perf_counter() - t0) / steps)
        logits = loop.finish(st, steps)
        assert logits.shape == (batch, model.cfg.n_classes)
        del loop, st
    step_s = statistics.median(per_step)
    n_batches = math.ceil(FULL_SEQUENCES / batch)
    run_full = FULL_CHIPS * n_batches * FULL_LENGTH * step_s
    setup_full = FULL_CHIPS * statistics.median(setup)
    return {
        "implementation": "plain_pytorch", "layout": layout, "noise": noise,
        "device": str(device),
        "measured": f"{steps} steps x {args.chips} chips, batch {batch}",
        "batch_size": batch, "chips": args.chips, "timed_steps_per_chip": steps,
        "setup_s_per_chip": setup, "step_s_per_chip": per_step, "step_s": step_s,
        "full_setup_s": setup_full, "full_run_s": run_full, "full_total_s": setup_full + run_full,
        "extrapolated": True,
        "extrapolation": (f"run: 10 chips x ceil(10000 / {batch}) batches x 784 steps x median "
                          "seconds per step (one chip, one batch); setup: 10 x median per chip; "
                          "the final decoder read (once per sequence) is not counted"),
    }


# --- aihwkit -------------------------------------------------------------------------------------
def aihwkit_config(dac_range: Tensor | float | None):
    from aihwkit.inference import PCMLikeNoiseModel
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.parameters.enums import (
        BoundManagementType,
        NoiseManagementType,
        WeightNoiseType,
    )

    cfg = InferenceRPUConfig()
    cfg.noise_model = PCMLikeNoiseModel(g_max=G_MAX)  # programming, drift, 1/f read noise
    cfg.drift_compensation = None  # imssa's periphery here has none either
    fw = cfg.forward
    fw.inp_res = 1 / (2**DAC_BITS - 2)  # 8-bit DAC: 254 steps over [-bound, bound]
    fw.out_res = 1 / (2**ADC_BITS - 2)  # 8-bit ADC
    fw.out_noise = 0.0  # imssa's output_noise is 0 here
    fw.w_noise_type = WeightNoiseType.PCM_READ  # fresh read noise at every MVM (= every step)
    fw.w_noise = 0.0175  # aihwkit's StandardHWATrainingPreset value
    fw.bound_management = BoundManagementType.NONE  # saturating ADC, no re-runs
    if dac_range is not None:  # a static DAC range, like imssa's calibrated one
        fw.noise_management = NoiseManagementType.CONSTANT
        fw.nm_thres = float(dac_range)
    return cfg


class AihwkitS4D(torch.nn.Module):
    """s4d from aihwkit AnalogLinear layers; the recurrence is stepped by the caller."""

    def __init__(self, model: S4DModel, layout: str, ranges: dict[str, Tensor]) -> None:
        super().__init__()
        from aihwkit.nn import AnalogLinear

        self.layout = layout
        cfg_m = model.cfg
        H, N2 = cfg_m.d_model, cfg_m.d_state // 2
        self.H, self.N = H, 2 * N2
        top, *layers = target_weights(model)

        def linear(w: Tensor, b: Tensor | None, signal: str) -> AnalogLinear:
            lin = AnalogLinear(w.shape[1], w.shape[0], bias=b is not None,
                               rpu_config=aihwkit_config(ranges.get(signal)))
            lin.set_weights(w.cpu(), None if b is None else b.cpu())
            return lin

        self.encoder = linear(top["encoder"], top["encoder_b"], "input")
        self.decoder = linear(top["decoder"], top["decoder_b"], "pooled")
        self.A, self.B, self.C, self.D, self.mix = (torch.nn.ModuleList() for _ in range(5))
        for i, lw in enumerate(layers):
            p = f"layers.{i}."
            dense = dense_weights(lw)
            if layout == "blockdiag":
                self.A.append(linear(dense["A"], None, p + "x"))
            else:  # per_channel: H layers of (N x N), each block-diagonal in 2x2 mode blocks
                self.A.append(torch.nn.ModuleList(
                    linear(torch.block_diag(*lw["A"][h]), None, p + "x") for h in range(H)))
            self.B.append(linear(dense["B"], None, p + "u"))
            self.C.append(linear(dense["C"], None, p + "x"))
            self.D.append(linear(dense["D"], None, p + "u"))
            self.mix.append(linear(lw["mix"], lw["mix_b"], p + "z"))

    def program(self, t: float) -> None:
        """One chip: program every tile and drift it to t (read noise of that read included)."""
        self.eval()
        for lin in self.analog_layers():
            lin.program_analog_weights()
            lin.drift_analog_weights(t)

    def analog_layers(self) -> list:
        from aihwkit.nn import AnalogLinear

        return [m for m in self.modules() if isinstance(m, AnalogLinear)]

    def a_step(self, i: int, s: Tensor) -> Tensor:
        """A s for one time step. s: (B, H N) real state."""
        if self.layout == "blockdiag":
            return self.A[i](s)
        parts = s.view(s.shape[0], self.H, self.N)
        return torch.stack([lin(parts[:, h]) for h, lin in enumerate(self.A[i])], 1).flatten(1)


def run_aihwkit(model: S4DModel, u: Tensor, ranges: dict[str, Tensor], layout: str,
                batch: int, args) -> dict:
    import aihwkit

    cpu_model = build_model(args.model, torch.device("cpu"))
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    ranges = {k: v.cpu() for k, v in ranges.items()}
    L = u.shape[1]
    gen = torch.Generator().manual_seed(2)
    ub = torch.randn(batch, L, u.shape[2], generator=gen)  # its own batch size
    t0 = time.perf_counter()
    net = AihwkitS4D(cpu_model, layout, ranges)
    t_build = time.perf_counter() - t0
    with torch.no_grad():
        t0 = time.perf_counter()
        net.program(args.t_inference)  # once per chip
        t_program = time.perf_counter() - t0
        # Per sequence batch: the layers that do not depend on the state, over all steps.
        t0 = time.perf_counter()
        x = net.encoder(ub)  # (B L H)
        bu = [b(x) for b in net.B]  # one layer's input only, for timing (B L HN)
        du = [d(x) for d in net.D]
        t_pre = time.perf_counter() - t0
        s = x.new_zeros(batch, net.H * net.N)
        net.C[0](net.a_step(0, s))  # warm-up
        steps = min(args.aihwkit_steps, L)
        per_step = []
        ys = []
        for k in range(steps):
            t0 = time.perf_counter()
            s = net.a_step(0, s) + bu[0][:, k]
            ys.append(net.C[0](s) + du[0][:, k])
            per_step.append(time.perf_counter() - t0)
        # After the recurrence: mixing over all steps, pooling, decoder.
        y = torch.stack(ys, 1)
        y = torch.cat([y, y.new_zeros(batch, L - steps, net.H)], 1)  # full length for timing
        t0 = time.perf_counter()
        xx = x[:, :L] + F.glu(net.mix[0](F.gelu(y)), dim=-1)
        logits = net.decoder(xx.mean(1))
        t_post = time.perf_counter() - t0
    assert logits.shape == (batch, cpu_model.cfg.n_classes)
    n_layers = len(net.A)
    step_s = statistics.median(per_step)
    dense_s = (t_pre + t_post) * n_layers * FULL_LENGTH / L  # encoder/B/D/mix per batch
    per_batch = FULL_LENGTH * step_s * n_layers + dense_s
    n_batches = math.ceil(FULL_SEQUENCES / batch)
    run_full = FULL_CHIPS * n_batches * per_batch
    setup_full = FULL_CHIPS * t_program + t_build
    return {
        "implementation": "aihwkit", "layout": layout, "noise": "per_sequence",
        "device": "cpu",
        "aihwkit": aihwkit.__version__, "threads": torch.get_num_threads(),
        "measured": f"{steps} steps x 1 chip, batch {batch}",
        "batch_size": batch, "chips": 1, "timed_steps": steps,
        "analog_layers": len(net.analog_layers()),
        "analog_tiles": sum(len(list(m.analog_tiles())) for m in net.analog_layers()),
        "build_s": t_build, "program_drift_s_per_chip": t_program,
        "precompute_s": t_pre, "postprocess_s": t_post, "step_s_list": per_step,
        "step_s": step_s, "per_batch_s": per_batch,
        "full_setup_s": setup_full, "full_run_s": run_full, "full_total_s": setup_full + run_full,
        "extrapolated": True,
        "extrapolation": (f"run: 10 chips x ceil(10000 / {batch}) batches x (784 x median step "
                          "s x layers + encoder/B/D/mix/decoder over the batch, scaled to 784 "
                          "steps); setup: build once + 10 x program-and-drift of one chip"),
    }


# --- main ------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="s4d-64")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--chips", type=int, default=FULL_CHIPS)
    p.add_argument("--sequences", type=int, default=None,
                   help="sequences through imssa (default: 10000 on CUDA, 64 on CPU)")
    p.add_argument("--length", type=int, default=FULL_LENGTH,
                   help="sequence length actually run (extrapolated to 784)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="imssa and plain-loop batch (default: 1000 on CUDA, 64 on CPU)")
    p.add_argument("--calibration-sequences", type=int, default=16)
    p.add_argument("--t-inference", type=float, default=86400.0, help="s after programming")
    p.add_argument("--plain-steps", type=int, default=20, help="timed steps per chip")
    p.add_argument("--plain-variants", nargs="+", choices=PLAIN_VARIANTS,
                   default=["blocks:shared", "blocks:per_sequence", "dense:shared"],
                   help="layout:noise of the plain loop (see PlainLoop)")
    p.add_argument("--skip-plain", action="store_true")
    p.add_argument("--aihwkit-steps", type=int, default=5)
    p.add_argument("--aihwkit-batch", type=int, nargs="+", default=[64],
                   help="batch sizes tried (aihwkit on CPU is fastest per sequence at 64-256)")
    p.add_argument("--aihwkit-layouts", nargs="+", default=["per_channel", "blockdiag"],
                   choices=["per_channel", "blockdiag"])
    p.add_argument("--skip-aihwkit", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a CPU smoke run")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON path (default: benchmarks/results/crossbar_<device>.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.sequences, args.chips, args.length = 4, 2, 32
        args.batch_size = args.batch_size or 4
        args.calibration_sequences = 2
        args.plain_steps, args.aihwkit_steps, args.aihwkit_batch = 3, 2, [2]
        args.aihwkit_layouts = ["per_channel"]
        args.plain_variants = ["blocks:shared", "blocks:per_sequence"]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.sequences is None:
        args.sequences = FULL_SEQUENCES if cuda else 64
    if args.batch_size is None:
        args.batch_size = 1000 if cuda else 64
    model = build_model(args.model, device)
    torch.manual_seed(0)
    u = torch.randn(args.sequences, args.length, model.cfg.d_input, device=device)

    rows, skipped = [], []
    imssa_row, xbar = run_imssa(model, u, args, device)
    rows.append(imssa_row)
    print(f"imssa: {imssa_row['run_s']:.2f} s for {imssa_row['measured']}", flush=True)
    ranges = {k: v for k, v in xbar.ranges.items() if v.numel() == 1}
    del xbar
    if not args.skip_plain:
        for variant in args.plain_variants:
            hn = model.cfg.d_model * model.cfg.d_state
            if variant == "dense:per_sequence" and args.batch_size * hn * hn > 2**31:
                why = (f"plain {variant}: a read per sequence of the dense A is batch x "
                       f"{hn}^2 = {args.batch_size * hn * hn:.2e} numbers per step; skipped")
                print(why, file=sys.stderr)
                skipped.append(why)
                continue
            rows.append(run_plain(model, u, ranges, variant, args, device))
            print(f"plain {variant}: {rows[-1]['step_s'] * 1e3:.2f} ms/step", flush=True)
    aihwkit_version = None
    if not args.skip_aihwkit:
        import aihwkit

        aihwkit_version = aihwkit.__version__
        for layout in args.aihwkit_layouts:
            for batch in args.aihwkit_batch:
                rows.append(run_aihwkit(model, u, ranges, layout, batch, args))
                print(f"aihwkit {layout} batch {batch}: {rows[-1]['step_s'] * 1e3:.2f} ms/step",
                      flush=True)

    base = imssa_row["full_total_s"]
    for r in rows:
        r["ratio_vs_imssa"] = r["full_total_s"] / base
    # Fastest row per implementation: over all variants, and over those drawing an independent
    # read per sequence (the statistics imssa simulates).
    ratios: dict[str, float] = {}
    for r in rows[1:]:
        for key in (f"{r['implementation']}_over_imssa",
                    f"{r['implementation']}_per_sequence_noise_over_imssa"):
            if key.endswith("per_sequence_noise_over_imssa") and r["noise"] != "per_sequence":
                continue
            ratios[key] = min(ratios.get(key, math.inf), r["ratio_vs_imssa"])

    env = environment(device)
    name = env["device_name"] if cuda else cpu_name()
    print(f"\n{args.model} on PCM crossbars, {DAC_BITS}-bit DAC/ADC, read noise every step; job = "
          f"{FULL_SEQUENCES} seq x {FULL_LENGTH} steps x {FULL_CHIPS} chips; {name}, "
          f"{torch.get_num_threads()} CPU threads; * = extrapolated")
    print(f"{'implementation':<15}{'layout':<13}{'read noise':<14}{'device':<7}{'measured':<42}"
          f"{'setup s':>9}{'run s':>12}{'total s':>12}{'vs imssa':>10}")
    for r in rows:
        mark = "*" if r["extrapolated"] else " "
        print(f"{r['implementation']:<15}{r['layout']:<13}{r['noise']:<14}{r['device']:<7}"
              f"{r['measured']:<42}{r['full_setup_s']:>9.1f}{r['full_run_s']:>11.1f}{mark}"
              f"{r['full_total_s']:>11.1f}{mark}{r['ratio_vs_imssa']:>9.1f}x")
    for k, v in ratios.items():
        print(f"ratio {k} (fastest variant): {v:.2f}")

    result = {
        "benchmark": "crossbar_inference_speed",
        "job": {"sequences": FULL_SEQUENCES, "length": FULL_LENGTH, "chips": FULL_CHIPS},
        "target_s": TARGET_S,
        "imssa_full_job_s": base,
        "imssa_meets_target": (base <= TARGET_S) if cuda else None,
        "note": ("measured on an H100/H200-class GPU" if cuda else
                 "CPU measurement at reduced size, extrapolated; the target is one H100/H200 -- "
                 "GPU numbers are pending (run with --device cuda there)"),
        "gpu_pending": not cuda,
        "model": args.model, "weights": "random initialization (speed does not depend on them)",
        "device_model": "PCM (aihwkit PCMLikeNoiseModel statistics), g_max 25 uS",
        "g_max_uS": G_MAX, "dac_bits": DAC_BITS, "adc_bits": ADC_BITS,
        "read_noise": "a fresh read every recurrent step", "t_inference_s": args.t_inference,
        "sizes": {"sequences": args.sequences, "length": args.length, "chips": args.chips,
                  "batch_size": args.batch_size, "calibration_sequences":
                  args.calibration_sequences, "plain_steps": args.plain_steps,
                  "aihwkit_steps": args.aihwkit_steps, "aihwkit_batch": args.aihwkit_batch},
        "quick": args.quick, "threads": torch.get_num_threads(),
        "results": rows, "skipped": skipped, "ratios_fastest_variant": ratios,
        "aihwkit": aihwkit_version, "command": "python " + shlex.join(sys.argv),
        **env, "device_name": name,
    }
    out = args.out or Path("benchmarks/results") / (
        f"crossbar_{device_slug(name)}{'_quick' if args.quick else ''}.json")
    write_json(result, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
