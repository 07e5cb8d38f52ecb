"""Tests of the fused Triton kernel of the crossbar scan (imssa.crossbar.scan_triton).

The kernel must compute what the PyTorch step loop of ``AnalogSSM`` computes: the same values
where reads are noiseless (up to rare rounding flips from another order of the sums), the same
distribution where they are noisy (its Gaussian draws come from Triton's Philox). The cases run
on CPU in Triton's interpreter, which must be switched on (TRITON_INTERPRET=1) before triton is
first imported: they run once in a child process (this file run as a script) and the tests read
its report. On a CUDA machine the same cases also run compiled (tests marked ``gpu``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from imssa.crossbar import PeripheryConfig, calibrate, chip_set, convert, scan_backend, set_time
from imssa.devices import GaussianConfig, GaussianDevice, IdealDevice, PCMDevice
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig
from imssa.ssm import S4DConfig, S4DModel

try:
    import triton  # noqa: F401

    HAS_TRITON = True
except ImportError:
    HAS_TRITON = False

DAY = 86400.0
Q8 = {"dac_bits": 8, "adc_bits": 8}
# name: (encoding, tile size, device, periphery, digital parts, state size N). Tile 4 cuts C's
# columns into pieces (P > 1). Devices: "gauss" reads noiselessly (programming error only), "pcm"
# once per inference time, "pcm_step" at every step, "ideal" is exact.
EXACT = {
    "ideal": ("polarity_block", 256, "gauss", {}, (), 8),
    "quant8": ("polarity_block", 256, "gauss", {**Q8, "state_bits": 8}, (), 8),
    "pol_pieces_global": ("polarity_block", 4, "pcm",  # N2 = 3 modes: masked blocks
                          {**Q8, "state_bits": 6, "drift_compensation": "global"}, (), 6),
    "diff_column_per_column": ("differential", 256, "pcm",
                               {**Q8, "state_clip": 0.04, "adc_granularity": "channel",
                                "drift_compensation": "per_column"}, ("encoder",), 8),
    "diff_pieces_dac_only": ("differential", 4, "pcm",
                             {"dac_bits": 6, "drift_compensation": "per_column"}, (), 8),
}
# Noisy cases keep N small: the interpreter's time goes with programs x steps, and a program
# holds 128 / N2 rows. The output's spread comes mostly from the output columns' own noise (D u
# dominates y), and the state columns' mostly from B's: QUIET silences parts (their devices read
# noiselessly; for C and D also their output noise, through an ADC range shrunk by 1e-4 with the
# ADC ideal) to see the others' noise.
NOISY = {
    "read_noise": ("polarity_block", 256, "pcm_step", {}, (), 2),
    "read_noise_state_only": ("polarity_block", 256, "pcm_step", {}, (), 2),
    "read_noise_A_only": ("polarity_block", 256, "pcm_step", {}, (), 4),
    "read_noise_diff_state_only": ("differential", 256, "pcm_step", {}, (), 4),
    "noise_pol_pieces": ("polarity_block", 4, "pcm_step",
                         {"adc_bits": 8, "output_noise": 0.05, "drift_compensation": "global",
                          "adc_granularity": "channel"}, (), 4),
    "output_noise": ("differential", 256, "ideal", {"output_noise": 0.1}, (), 2),
    "output_noise_state_only": ("polarity_block", 256, "ideal", {"output_noise": 0.1}, (), 2),
}
QUIET = {"read_noise_state_only": "CD", "read_noise_A_only": "BCD",
         "read_noise_diff_state_only": "CD", "output_noise_state_only": "CD"}
ROWS, ROWS_TORCH = 128, 4096  # noisy cases: rows of one repeated input (kernel, loop)
# device kind: (device, read-noise mode of the periphery)
DEVICES = {"gauss": (lambda: GaussianDevice(GaussianConfig(prog_noise=0.05)), None),
           "ideal": (IdealDevice, None), "pcm": (PCMDevice, "per_inference"),
           "pcm_step": (PCMDevice, "per_step")}


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


QUIET_PARTS = {"A": "A_bar", "B": "B_bar", "C": "C", "D": "D"}


def _crossbar(name: str, device: str) -> tuple[S4DModel, S4DModel, torch.Tensor]:
    """A calibrated two-layer float32 converted model on 2 chips, set to one day, the digital
    model and the inputs."""
    encoding, tile, kind, periphery, digital, d_state = {**EXACT, **NOISY}[name]
    torch.manual_seed(0)
    # steps Delta up to 0.5: modes turn far per step, so imaginary states are as large as real
    model = S4DModel(S4DConfig(d_input=2, d_model=4, d_state=d_state, n_layers=2, n_classes=3,
                               dt_min=0.05, dt_max=0.5)).to(device).eval()
    make_device, mode = DEVICES[kind]
    mapping = MappingConfig(g_min=0.5, tile_rows=tile, tile_cols=tile, encoding=encoding)
    periphery = PeripheryConfig(**periphery, read_noise_mode=mode)
    xbar = convert(model, mapping, make_device(), periphery, chips=2, seed=_gen(0, device),
                   digital=digital)
    u = torch.randn(3, 12, 2, generator=_gen(1)).to(device)
    if periphery.needs_calibration:
        calibrate(xbar, u)
    set_time(xbar, DAY, _gen(2, device))
    ssm = xbar.blocks[0].ssm
    for part in QUIET.get(name, ""):
        tile = ssm.parts[QUIET_PARTS[part]]
        tile.now = tile.now._replace(V=None)
    if "C" in QUIET.get(name, "") and periphery.output_noise > 0:
        assert periphery.adc_bits is None
        ssm.ranges["output"] = ssm.ranges["output"] * 1e-4
    return xbar, model, u


def _layer0(xbar: S4DModel, x: torch.Tensor, backend: str, seed: int,
            quantize: bool = True) -> torch.Tensor:
    """y of layer 0's SSM for its input x, by one backend (without converters: quantize False)."""
    os.environ["IMSSA_CROSSBAR_SCAN"] = backend
    chips = chip_set(xbar)
    chips.noise = _gen(seed, x.device.type)
    periphery = chips.periphery
    if not quantize:
        chips.periphery = PeripheryConfig(read_noise_mode=periphery.read_noise_mode)
    try:
        return xbar.blocks[0].ssm(x, mode="recurrent")
    finally:
        chips.periphery = periphery


def _forward(xbar: S4DModel, u: torch.Tensor, backend: str) -> torch.Tensor:
    os.environ["IMSSA_CROSSBAR_SCAN"] = backend
    chip_set(xbar).noise = _gen(3, u.device.type)
    return xbar(u, mode="recurrent")


def _compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Largest difference relative to max |b|, and the fraction of values within 1e-5 of it."""
    diff = (a - b).abs() / b.abs().max().clamp_min(1e-30)
    return {"rel": float(diff.max()), "close": float((diff <= 1e-5).float().mean())}


@torch.no_grad()
def compare_case(name: str, device: str) -> dict:
    """The Triton path against the PyTorch loop on one case (IMSSA_CROSSBAR_SCAN set here)."""
    xbar, model, u = _crossbar(name, device)
    out: dict = {"pieces": xbar.blocks[0].ssm.parts["C"].now.W.shape[2]}
    if name in EXACT:
        chip_set(xbar).noise = _gen(3, device)
        x = xbar.encoder(u)
        os.environ["IMSSA_CROSSBAR_SCAN"] = "triton"
        out["backend"] = scan_backend(x)
        out["x_chips"] = x.shape[0] if x.ndim == 4 else 0  # 0: no chip axis yet
        y_pt = _layer0(xbar, x, "torch", 4)
        out["y"] = _compare(_layer0(xbar, x, "triton", 4), y_pt)
        # without converters (the loop), to see that they act
        out["converters_act"] = float((y_pt - _layer0(xbar, x, "torch", 4, False)).abs().max())
        out["logits"] = _compare(_forward(xbar, u, "triton"), _forward(xbar, u, "torch"))
        return out
    # noisy: every row the same input; compare mean and spread over rows of every output
    x = model.encoder(u[:1].expand(ROWS_TORCH, -1, -1)).unsqueeze(0)
    os.environ["IMSSA_CROSSBAR_SCAN"] = "triton"
    out["backend"] = scan_backend(x)
    rows = ROWS if device == "cpu" else ROWS_TORCH  # the interpreter is slow; a GPU is not
    y_tr, y_pt = _layer0(xbar, x[:, :rows], "triton", 5), _layer0(xbar, x, "torch", 5)
    if name == "read_noise":  # the draws follow the generator
        y4 = _layer0(xbar, x[:, :4], "triton", 5)
        out["repeatable"] = bool(torch.equal(y4, y_tr[:, :4]))
        out["seeded"] = not torch.equal(_layer0(xbar, x[:, :4], "triton", 6), y4)
    m_tr, m_pt = y_tr.mean(1), y_pt.mean(1)  # (z L H)
    v_tr, v_pt = y_tr.var(1), y_pt.var(1)
    ok = (v_tr > 0) & (v_pt > 0)
    out["noisy_fraction"] = float(ok.float().mean())
    z = (m_tr - m_pt) / (v_tr / rows + v_pt / ROWS_TORCH).sqrt()
    out["max_mean_z"] = float(z[ok].abs().max())
    out["mean_log_var_ratio"] = float((v_tr[ok] / v_pt[ok]).log().mean())
    out["rel_std"] = float((v_pt[ok].sqrt() / m_pt[ok].abs().clamp_min(1e-12)).median())
    return out


def _check_report(name: str, r: dict) -> None:
    assert r["backend"] == "triton", r
    if name in ("pol_pieces_global", "diff_pieces_dac_only", "noise_pol_pieces"):
        assert r["pieces"] > 1, r
    if name in EXACT:
        if name != "ideal":
            assert r["converters_act"] > 1e-3, r
            # a rounding may flip where a sum lies within float error of a step boundary
            assert r["y"]["close"] >= 0.99 and r["y"]["rel"] < 0.05, r
            assert r["logits"]["rel"] < 0.01, r
        else:
            assert r["y"]["rel"] < 1e-5 and r["logits"]["rel"] < 1e-5, r
        if name == "diff_column_per_column":
            assert r["x_chips"] == 0, r  # a digital encoder: one input shared by the chips
        return
    if name == "read_noise":
        assert r["repeatable"] and r["seeded"], r
    assert r["noisy_fraction"] > 0.9 and r["rel_std"] > 1e-3, r
    assert r["max_mean_z"] < 5.0, r
    # a 20 % error of the noise variance shifts this by log(1.2) = 0.18
    assert abs(r["mean_log_var_ratio"]) < 0.07, r


CASES = (*EXACT, *NOISY)


# --- dispatch ------------------------------------------------------------------------------------
def test_dispatch(monkeypatch):
    x = torch.zeros(1, 2, 3, 4)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("IMSSA_CROSSBAR_SCAN", raising=False)
    assert scan_backend(x) == "torch"  # auto: CPU tensors
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "torch")
    assert scan_backend(x) == "torch"
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "triton")
    assert scan_backend(x.double()) == "torch"
    assert scan_backend(x[:, :0]) == "torch"
    with pytest.raises(ImssaError, match="TRITON_INTERPRET|triton cannot"):
        scan_backend(x)  # CPU without the interpreter
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "fast")
    with pytest.raises(ImssaError, match="IMSSA_CROSSBAR_SCAN"):
        scan_backend(x)


def test_dispatch_only_where_the_kernel_applies(monkeypatch):
    """With IMSSA_CROSSBAR_SCAN=triton on CPU without the interpreter, a scan that reached the
    kernel would raise: calibration, a digital part and float64 must keep the loop."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "triton")
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_input=2, d_model=4, d_state=8, n_classes=3)).eval()
    u = torch.randn(2, 5, 2)
    pc = PeripheryConfig(adc_bits=8)
    digital_a = convert(model, MappingConfig(), IdealDevice(), pc, digital=("A",))
    calibrate(digital_a, u)
    set_time(digital_a, 0.0)
    with torch.no_grad():
        assert digital_a(u, mode="recurrent").shape == (1, 2, 3)
        double = convert(model.double(), MappingConfig(), IdealDevice(), pc)
        calibrate(double, u.double())
        set_time(double, 0.0)
        assert double(u.double(), mode="recurrent").shape == (1, 2, 3)
        analog = convert(model.float(), MappingConfig(), IdealDevice(), pc)
        calibrate(analog, u)  # the calibration pass runs the loop
        set_time(analog, 0.0)
        with pytest.raises(ImssaError, match="TRITON_INTERPRET|triton cannot"):
            analog(u, mode="recurrent")


# --- Triton, in the interpreter (CPU) ------------------------------------------------------------
@pytest.fixture(scope="module")
def interpreter_report():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # imssa, if not installed
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, __file__, "--interpret"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("name", CASES)
def test_triton_interpreter_matches_torch_loop(interpreter_report, name):
    _check_report(name, interpreter_report[name])


# --- Triton, compiled on CUDA --------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
@pytest.mark.parametrize("name", CASES)
def test_triton_cuda_matches_torch_loop(monkeypatch, name):
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "auto")  # compare_case sets it per backend
    _check_report(name, compare_case(name, "cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
def test_triton_cuda_s4d64(monkeypatch):
    """The sMNIST setting (s4d-64: H = 64, N = 64; 8-bit converters; PCM read noise every step):
    auto picks the kernel, and its outputs follow the loop's distribution."""
    monkeypatch.delenv("IMSSA_CROSSBAR_SCAN", raising=False)
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_input=1, d_model=64, d_state=64, n_layers=1,
                               n_classes=10)).cuda().eval()
    u = torch.randn(32, 100, 1, device="cuda")
    xbar = convert(model, MappingConfig(), PCMDevice(), PeripheryConfig(**Q8), chips=2,
                   seed=_gen(0, "cuda"))
    calibrate(xbar, u)
    set_time(xbar, DAY, _gen(2, "cuda"))
    rows = 1000
    with torch.no_grad():
        x = model.encoder(u[:1].expand(rows, -1, -1)).unsqueeze(0)
        assert scan_backend(x) == "triton"
        y_tr, y_pt = _layer0(xbar, x, "auto", 5), _layer0(xbar, x, "torch", 5)
    v_tr, v_pt = y_tr.var(1), y_pt.var(1)
    ok = (v_tr > 0) & (v_pt > 0)  # the 8-bit ADC may swallow the noise of some outputs
    assert ok.float().mean() > 0.1
    z = (y_tr.mean(1) - y_pt.mean(1)) / ((v_tr + v_pt) / rows).sqrt()
    assert z[ok].abs().max() < 6.0
    assert abs(float((v_tr[ok] / v_pt[ok]).log().mean())) < 0.05


if __name__ == "__main__" and sys.argv[1:] == ["--interpret"]:
    # the child process of interpreter_report: TRITON_INTERPRET=1 is already in the environment
    print(json.dumps({name: compare_case(name, "cpu") for name in CASES}))
