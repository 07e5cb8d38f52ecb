"""Tests of the fused Triton kernel of the crossbar scan (imssa.crossbar.scan_triton).

The kernel must compute what the PyTorch step loop of ``AnalogSSM`` computes: the same values
where reads are noiseless (up to rare rounding flips from another order of the sums), the same
distribution where they are noisy (its Gaussian draws come from Triton's Philox). The cases run
on CPU in Triton's interpreter, which must be switched on (TRITON_INTERPRET=1) before triton is
first imported: they run once in a child process (this file run as a script) and the tests read
its report. On a CUDA machine the same cases also run compiled (tests marked ``gpu``).

A grid of configurations (``GRID``: transition form x scale x real/complex modes x parts kept
digital, plus pieces, masked modes and per-tensor converter bits; ``NOISY_GRID``: their noise
statistics) runs in a second child process: the fused kernel covers every configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import NamedTuple

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


class Case(NamedTuple):
    """One converted model: encoding, tile size, device kind, periphery, digital parts, state
    size N, and (the grid's) SSM kind, A_bar's transition form and scale, channels H, steps L,
    per-tensor settings."""

    encoding: str
    tile: int
    device: str
    periphery: dict
    digital: tuple[str, ...]
    d_state: int
    ssm: str = "complex"
    transition: str = "direct"
    scale: str | None = None
    d_model: int = 4
    length: int = 12
    per_tensor: dict | None = None  # convert's per-tensor hardware settings


# name: Case. Tile 4 cuts C's columns into pieces (P > 1). Devices: "gauss" reads noiselessly
# (programming error only), "pcm" once per inference time, "pcm_step" at every step, "ideal" is
# exact.
EXACT = {
    "ideal": Case("polarity_block", 256, "gauss", {}, (), 8),
    "quant8": Case("polarity_block", 256, "gauss", {**Q8, "state_bits": 8}, (), 8),
    "pol_pieces_global": Case("polarity_block", 4, "pcm",  # N2 = 3 modes: masked blocks
                              {**Q8, "state_bits": 6, "drift_compensation": "global"}, (), 6),
    "diff_column_per_column": Case("differential", 256, "pcm",
                                   {**Q8, "state_clip": 0.04, "adc_granularity": "channel",
                                    "drift_compensation": "per_column"}, ("encoder",), 8),
    "diff_pieces_dac_only": Case("differential", 4, "pcm",
                                 {"dac_bits": 6, "drift_compensation": "per_column"}, (), 8),
}
# Noisy cases keep N small: the interpreter's time goes with programs x steps, and a program
# holds 128 / N2 rows. The output's spread comes mostly from the output columns' own noise (D u
# dominates y), and the state columns' mostly from B's: QUIET silences parts (their devices read
# noiselessly; for C and D also their output noise, through an ADC range shrunk by 1e-4 with the
# ADC ideal) to see the others' noise.
NOISY = {
    "read_noise": Case("polarity_block", 256, "pcm_step", {}, (), 2),
    "read_noise_state_only": Case("polarity_block", 256, "pcm_step", {}, (), 2),
    "read_noise_A_only": Case("polarity_block", 256, "pcm_step", {}, (), 4),
    "read_noise_diff_state_only": Case("differential", 256, "pcm_step", {}, (), 4),
    "noise_pol_pieces": Case("polarity_block", 4, "pcm_step",
                             {"adc_bits": 8, "output_noise": 0.05, "drift_compensation": "global",
                              "adc_granularity": "channel"}, (), 4),
    "output_noise": Case("differential", 256, "ideal", {"output_noise": 0.1}, (), 2),
    "output_noise_state_only": Case("polarity_block", 256, "ideal", {"output_noise": 0.1}, (), 2),
}
QUIET = {"read_noise_state_only": "CD", "read_noise_A_only": "BCD",
         "read_noise_diff_state_only": "CD", "output_noise_state_only": "CD"}


# --- the configuration grid: form x scale x real/complex x digital parts ---------------------------
# Noiseless reads (PCM read once per inference time, drifted a day, compensated), 8-bit DAC and
# per-column ADCs, a 10-bit register; each case also runs with ideal converters. One complex
# mode (N = 2) or two real ones: every sum then has the loop's order, so the kernel must equal
# the loop bit for bit. A form other
# than the default needs A_bar analog (digital A only with the default form, as convert
# demands); split needs complex modes (refused for real ones: test_invalid_forms_raise).
GRID_PERIPHERY = {**Q8, "state_bits": 10, "adc_granularity": "channel"}
_WITH_A_ANALOG = ((), ("B",), ("C",), ("D",), ("C", "D"), ("B", "C", "D"))
_WITH_A_DIGITAL = (("A",), ("A", "B"), ("A", "C"), ("A", "D"), ("A", "B", "C"), ("A", "B", "D"),
                   ("A", "C", "D"))


def _grid() -> dict[str, Case]:
    forms = [("complex", t, s) for t in ("direct", "increment") for s in ("mode", "split")]
    forms += [("real", t, "mode") for t in ("direct", "increment")]
    combos = [(f, d) for f in forms for d in _WITH_A_ANALOG]
    combos += [(("complex", "direct", None), d) for d in _WITH_A_DIGITAL]
    combos += [(("real", "direct", None), d) for d in ((), *_WITH_A_DIGITAL)]
    out = {}
    for i, ((kind, form, scale), digital) in enumerate(combos):
        # encodings and compensations alternate; a tile of 8 columns cuts C into pieces
        encoding = ("polarity_block", "differential")[i % 2]
        comp = "global" if scale == "split" or i % 3 == 0 else "per_column"
        name = f"{kind}-{form}-{scale}-{encoding[:3]}-dig{''.join(digital) or '0'}"
        out[name] = Case(encoding, 256, "pcm", {**GRID_PERIPHERY, "drift_compensation": comp},
                         digital, 2, kind, form, scale, d_model=2, length=6)
    # more modes than a power of 2 (masked blocks) and C cut into pieces by small tiles (a split
    # A needs 8 columns): the output sums run in another order, so these meet a tolerance
    for kind, form, scale, digital in (("complex", "increment", "split", ("B",)),
                                       ("complex", "increment", "mode", ("D",)),
                                       ("complex", "direct", None, ("A", "D")),
                                       ("real", "increment", "mode", ("B",)),
                                       ("real", "direct", None, ("A",))):
        name = f"pieces-{kind}-{form}-{scale}-dig{''.join(digital)}"
        out[name] = Case("polarity_block", 8 if scale == "split" else 4, "pcm",
                         {**GRID_PERIPHERY, "drift_compensation": "global"}, digital, 6, kind,
                         form, scale, d_model=2, length=6)
    # per-tensor converter bits: A's state ADC and state DAC finer than the rest's
    out["per-tensor-A-bits"] = Case("polarity_block", 256, "pcm", GRID_PERIPHERY, ("D",), 2,
                                    transition="increment", scale="mode", d_model=2, length=6,
                                    per_tensor={"A": {"adc_bits": 10, "dac_bits": 10}})
    return out


GRID = _grid()
# Noisy grid cases (reads at every step): the forms' own paths (a split A's 8 sensed columns
# draw twice per mode, a real differential one once with tl.randn) and digital parts, with
# QUIET parts so that A's noise, or the analog rest's, shows in y.
NOISY_GRID = {
    "noise-increment-split-A": Case("polarity_block", 256, "pcm_step", {}, (), 2,
                                    transition="increment", scale="split"),
    "noise-increment-mode-diff-A": Case("differential", 256, "pcm_step", {}, (), 2,
                                        transition="increment", scale="mode"),
    "noise-real-increment-diff-A": Case("differential", 256, "pcm_step", {}, (), 2, "real",
                                        "increment", "mode"),
    "noise-real-direct-pol": Case("polarity_block", 256, "pcm_step", {}, (), 2, "real"),
    "noise-digA": Case("polarity_block", 256, "pcm_step", {}, ("A",), 2),
    "noise-digCD-state-only": Case("differential", 256, "pcm_step", {}, ("C", "D"), 2),
    "noise-digB-out": Case("polarity_block", 256, "pcm_step", {"output_noise": 0.05}, ("B",), 2),
}
NOISY_GRID = {k: c._replace(d_model=2, length=8) for k, c in NOISY_GRID.items()}
QUIET |= {"noise-increment-split-A": "BCD", "noise-increment-mode-diff-A": "BCD",
          "noise-real-increment-diff-A": "BCD", "noise-digCD-state-only": ""}
ROWS, ROWS_TORCH = 128, 4096  # noisy cases: rows of one repeated input (kernel, loop)
# device kind: (device, read-noise mode of the periphery)
DEVICES = {"gauss": (lambda: GaussianDevice(GaussianConfig(prog_noise=0.05)), None),
           "ideal": (IdealDevice, None), "pcm": (PCMDevice, "per_inference"),
           "pcm_step": (PCMDevice, "per_step")}
ALL = {**EXACT, **NOISY, **GRID, **NOISY_GRID}


def _gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


QUIET_PARTS = {"A": "A_bar", "B": "B_bar", "C": "C", "D": "D"}


def _crossbar(name: str, device: str) -> tuple[S4DModel, S4DModel, torch.Tensor]:
    """A calibrated two-layer float32 converted model on 2 chips, set to one day, the digital
    model and the inputs."""
    case = ALL[name]
    torch.manual_seed(0)
    # steps Delta up to 0.5: modes turn far per step, so imaginary states are as large as real
    model = S4DModel(S4DConfig(d_input=2, d_model=case.d_model, d_state=case.d_state, n_layers=2,
                               n_classes=3, dt_min=0.05, dt_max=0.5, ssm=case.ssm)
                     ).to(device).eval()
    make_device, mode = DEVICES[case.device]
    mapping = MappingConfig(g_min=0.5, tile_rows=case.tile, tile_cols=case.tile,
                            encoding=case.encoding, transition=case.transition,
                            transition_scale=case.scale)
    periphery = PeripheryConfig(**case.periphery, read_noise_mode=mode)
    digital = [f"blocks.0.ssm.{QUIET_PARTS[p]}" if p in QUIET_PARTS else p for p in case.digital]
    xbar = convert(model, mapping, make_device(), periphery, chips=2, seed=_gen(0, device),
                   digital=digital, per_tensor=case.per_tensor)
    u = torch.randn(3, case.length, 2, generator=_gen(1)).to(device)
    if periphery.needs_calibration:
        calibrate(xbar, u)
    set_time(xbar, DAY, _gen(2, device))
    ssm = xbar.blocks[0].ssm
    for part in QUIET.get(name, ""):
        tile = ssm.parts[QUIET_PARTS[part]]
        if tile is not None:
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
    if name == "profile-stages":  # converters, products and loads/stores done twice: same y
        out = {}
        for case in STAGES_CASES:  # a mode's sensed columns as one (BB BN S) tensor; as two
            xbar, _, u = _crossbar(case, device)
            x = xbar.encoder(u)
            ssm = xbar.blocks[0].ssm
            current = {"gen": 1, "quant": 1, "cols": 1}  # IMSSA_CROSSBAR_KERNEL=current
            y = ssm.fused(x, current)
            for k, v in (("conv", 2), ("math", 2), ("io", 2), ("quant", 0), ("cols", 0)):
                # quant=0: the previous kernel's converters (IEEE division, rounding from floor);
                # cols=0: its layout (other sums' orders when compiled)
                out[f"{case}:{k}={v}"] = bool(torch.equal(ssm.fused(x, {**current, k: v}), y))
        return out
    xbar, model, u = _crossbar(name, device)
    tC = xbar.blocks[0].ssm.parts["C"]
    out: dict = {"pieces": tC.now.W.shape[2] if tC is not None else 0}
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
    if name in GRID:  # layer 0, with the case's converters and with ideal ones
        chip_set(xbar).noise = _gen(3, device)
        x = xbar.encoder(u)
        os.environ["IMSSA_CROSSBAR_SCAN"] = "triton"
        out["backend"] = scan_backend(x)
        for key, quantize in (("y", True), ("y_ideal", False)):
            y_pt = _layer0(xbar, x, "torch", 4, quantize)
            y_tr = _layer0(xbar, x, "triton", 4, quantize)
            out[key] = {**_compare(y_tr, y_pt), "equal": bool(torch.equal(y_tr, y_pt))}
            out.setdefault("converters_act", y_pt)
        out["converters_act"] = float((out["converters_act"] - y_pt).abs().max())
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


def _check_report(name: str, r: dict, exact: bool = True) -> None:
    """The report of one case; ``exact``: the interpreter (compiled, the draws use the GPU's
    approximate sine, cosine and log; the launch contracts no FMAs, not yet rerun on a GPU)."""
    if name == "profile-stages":
        assert all(v for k, v in r.items() if exact or not k.endswith("cols=0")), r
        return
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
    if name in GRID:
        assert r["converters_act"] > 1e-4, r
        if ALL[name].d_state == 2 and exact:  # every sum in the loop's order: bit for bit
            assert r["y"]["equal"], r
            # with ideal converters nothing re-rounds the state, and torch's addcmul_ (A's rows
            # in the loop) is an FMA in its vectorized body but not in its scalar tail, a split
            # of the tensor that depends on its size and the CPU; the kernel always uses an FMA.
            # (Measured on the session's CPU: equal in every case.)
            assert r["y_ideal"]["rel"] < 1e-6, r
        else:
            # the output columns (and a digital C) sum over modes and pieces in another order:
            # float32 rounding of that sum (the state itself is the loop's, bit for bit, so
            # nothing accumulates) ...
            assert r["y_ideal"]["rel"] < 1e-6, r
            # ... which may flip an 8-bit output ADC step where a sum lies within float error
            # of a boundary
            assert r["y"]["close"] >= 0.99 and r["y"]["rel"] < 0.05, r
        return
    if name == "read_noise":
        assert r["repeatable"] and r["seeded"], r
    # A's noise alone starts at step 1 (the zero state drives nothing): 7 of a grid case's 8 steps
    floor = 0.85 if name in NOISY_GRID and QUIET.get(name) == "BCD" else 0.9
    assert r["noisy_fraction"] > floor and r["rel_std"] > 1e-3, r
    assert r["max_mean_z"] < 5.0, r
    # a 20 % error of the noise variance shifts this by log(1.2) = 0.18
    assert abs(r["mean_log_var_ratio"]) < 0.07, r


CASES = (*EXACT, *NOISY)
# the profile's doubled stages, on S = 8, 2 and 4 sensed columns a mode
STAGES_CASES = ("complex-increment-split-pol-dig0", "diff_column_per_column", "quant8")
GRID_CASES = (*GRID, *NOISY_GRID, "profile-stages")
GROUPS = {"cases": CASES, "grid": GRID_CASES}  # one interpreter child process each


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
    kernel would raise: calibration and float64 keep the loop; a digital part reaches the kernel
    (every configuration has the fused path)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "triton")
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_input=2, d_model=4, d_state=8, n_classes=3)).eval()
    u = torch.randn(2, 5, 2)
    pc = PeripheryConfig(adc_bits=8)
    with torch.no_grad():
        double = convert(model.double(), MappingConfig(), IdealDevice(), pc)
        calibrate(double, u.double())
        set_time(double, 0.0)
        assert double(u.double(), mode="recurrent").shape == (1, 2, 3)
        for digital in ((), ("A",), ("B", "C", "D")):
            analog = convert(model.float(), MappingConfig(), IdealDevice(), pc, digital=digital)
            calibrate(analog, u)  # the calibration pass runs the loop
            set_time(analog, 0.0)
            with pytest.raises(ImssaError, match="TRITON_INTERPRET|triton cannot"):
                analog(u, mode="recurrent")


def test_kernel_choice_is_checked(monkeypatch):
    """IMSSA_CROSSBAR_KERNEL (the benchmarks' previous-kernel switch) refuses other words before
    any launch."""
    monkeypatch.setenv("IMSSA_CROSSBAR_KERNEL", "fastest")
    model = S4DModel(S4DConfig(d_input=2, d_model=2, d_state=2, n_classes=3)).eval()
    xbar = convert(model, MappingConfig(), IdealDevice(), PeripheryConfig(adc_bits=8))
    u = torch.randn(1, 3, 2)
    calibrate(xbar, u)
    set_time(xbar, 0.0)
    with torch.no_grad(), pytest.raises(ImssaError, match="IMSSA_CROSSBAR_KERNEL"):
        xbar.blocks[0].ssm.fused(xbar.encoder(u))


@pytest.mark.parametrize("ssm, mapping, digital, match", [
    ("real", {"transition_scale": "split"}, (), "split"),
    ("complex", {"transition": "increment"}, ("A",), "digital"),
    ("complex", {"transition_scale": "split"}, ("A",), "digital"),
])
def test_invalid_forms_raise(ssm, mapping, digital, match):
    """The combinations the grid skips are refused before any work."""
    model = S4DModel(S4DConfig(d_input=2, d_model=2, d_state=2, n_classes=3, ssm=ssm)).eval()
    with pytest.raises(ImssaError, match=match):
        convert(model, MappingConfig(**mapping), IdealDevice(), digital=digital)


# --- Triton, in the interpreter (CPU) ------------------------------------------------------------
def _interpret(group: str) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # imssa, if not installed
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, __file__, "--interpret", group], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreter_report():
    return _interpret("cases")


@pytest.fixture(scope="module")
def grid_report():
    return _interpret("grid")


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("name", CASES)
def test_triton_interpreter_matches_torch_loop(interpreter_report, name):
    _check_report(name, interpreter_report[name])


@pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed")
@pytest.mark.parametrize("name", GRID_CASES)
def test_triton_interpreter_grid(grid_report, name):
    """Every configuration (form x scale x real/complex x digital parts) on the fused kernel."""
    _check_report(name, grid_report[name])


# --- Triton, compiled on CUDA --------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and triton")
@pytest.mark.parametrize("name", (*CASES, *GRID_CASES))
def test_triton_cuda_matches_torch_loop(monkeypatch, name):
    monkeypatch.setenv("IMSSA_CROSSBAR_SCAN", "auto")  # compare_case sets it per backend
    _check_report(name, compare_case(name, "cuda"), exact=False)


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


if __name__ == "__main__" and sys.argv[1:2] == ["--interpret"]:
    # the child process of _interpret: TRITON_INTERPRET=1 is already in the environment
    print(json.dumps({name: compare_case(name, "cpu") for name in GROUPS[sys.argv[2]]}))
