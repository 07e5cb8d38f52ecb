"""Tests of S4D-Real through quantization and of noise-aware training against the crossbar's own
noise (issue 9): the real SSM prepared in full precision equals the float model, 8-bit PTQ of it,
the committed real runs, the conductance scales of each state-transition form and the noise's
statistics in the mapped domain, no pull-back, read noise, the A_bar margin, the divergence stop
and ``imssa qat`` with increment-form noise end to end."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from imssa.cli import main
from imssa.errors import ImssaError
from imssa.quant import (
    WeightNoiseConfig,
    a_error_std,
    apply_a_margin,
    calibrate,
    conductance_scales,
    convert,
    make_config,
    noisy_ssm,
    prepare,
    read_noise,
    set_weight_noise,
)
from imssa.quant.modules import QuantSSM
from imssa.ssm import DiscreteSSM, S4DConfig, S4DModel
from imssa.ssm.scan import ssm_scan

ROOT = Path(__file__).resolve().parents[1]
REAL_RUN = ROOT / "results" / "analog-ssm" / "smnist-real-64x4-seed0"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def real_model(n_layers: int = 2) -> S4DModel:
    torch.manual_seed(0)
    return S4DModel(S4DConfig(d_input=1, d_model=4, d_state=8, n_classes=3, n_layers=n_layers,
                              ssm="real"))


# --- S4D-Real through quantization -----------------------------------------------------------
@pytest.mark.parametrize("param", ["continuous", "discrete", "frozen-a"])
def test_prepared_real_model_in_fp_equals_the_float_model(param):
    model = real_model().double()
    u = torch.randn(3, 40, 1, generator=gen(1), dtype=torch.float64)
    q = prepare(copy.deepcopy(model), make_config("fp"), parameterization=param)
    assert all(isinstance(b.ssm, QuantSSM) for b in q.blocks)
    assert not q.blocks[0].ssm.discrete().A_bar.is_complex()
    for mode in ("conv", "recurrent"):
        torch.testing.assert_close(q(u, mode=mode), model(u, mode=mode), rtol=1e-9, atol=1e-9)
    # streaming: the SSM one step at a time gives the same numbers as the float layer
    layer, v = q.blocks[0].ssm, torch.randn(3, 40, 4, generator=gen(2), dtype=torch.float64)
    state, ys = layer.init_state(3), []
    for k in range(v.shape[1]):
        y, state = layer.step(v[:, k], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), model.blocks[0].ssm(v, mode="conv"),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("form", ["cartesian", "polar"])
def test_real_model_8bit_ptq_runs_close_to_float(form):
    model = real_model()
    u = torch.randn(4, 40, 1, generator=gen(1))
    ref = model(u, mode="recurrent")
    q = prepare(copy.deepcopy(model), make_config("W8A8", a_bar_form=form))
    calibrate(q, [u])
    for mode in ("conv", "recurrent"):
        y = q(u, mode=mode)
        assert torch.isfinite(y).all()
        assert (y - ref).abs().max() < 0.1 * ref.abs().max()
    A = q.blocks[0].ssm.discrete().A_bar
    assert not A.is_complex() and bool(((A > 0) & (A < 1)).all())
    if form == "polar":  # a log-decay grid, phase 0: at most 2^8 distinct real levels
        assert A.unique().numel() <= 256


def test_convert_refuses_a_real_ssm_naming_the_field():
    q = prepare(real_model(), make_config("W8A8"))
    with pytest.raises(ImssaError, match="S4DConfig.ssm='real'"):
        convert(q)


def test_committed_real_run_loads_and_prepares():
    from imssa.experiments.train import load_run

    cfg, model = load_run(REAL_RUN)
    assert model.cfg.ssm == "real" and model.cfg.n_layers == 4
    q = prepare(model, make_config("W8A8"))
    u = torch.randn(2, 32, model.cfg.d_input, generator=gen(0))
    calibrate(q, [u])
    for mode in ("conv", "recurrent"):
        assert torch.isfinite(q(u, mode=mode)).all()


def test_real_scan_takes_the_reference_and_has_no_factor_two(monkeypatch):
    monkeypatch.setenv("IMSSA_SCAN", "triton")  # the fused kernels are complex64-only
    A = torch.tensor([[0.5, 0.0]])
    ones = torch.ones_like(A)
    y = ssm_scan(A, ones, ones, torch.zeros(1), torch.ones(1, 3, 1))
    # x1 = (1, 1), x2 = (1.5, 1), x3 = (1.75, 1): y = sum_n C x
    torch.testing.assert_close(y[0, :, 0], torch.tensor([2.0, 2.5, 2.75]))


# --- the conductance scales of each form ---------------------------------------------------------
def slow_ssm() -> DiscreteSSM:
    """Two channels of real modes: a slow one (1 - A = 1e-3) beside a fast one (A = 0.5)."""
    A = torch.tensor([[1 - 1e-3, 0.5], [1 - 1e-3, 0.5]], dtype=torch.float64)
    B = torch.tensor([[2e-4, 0.1], [5e-3, 0.1]], dtype=torch.float64)
    return DiscreteSSM(A, B, torch.ones_like(A), torch.ones(2, dtype=torch.float64))


def test_conductance_scales_of_each_form_and_granularity():
    ssm = slow_ssm()
    t = {n: getattr(ssm, n) for n in ("A_bar", "B_bar", "C", "D")}
    direct = conductance_scales(t, "direct", "tensor")
    assert float(direct["A_bar"]) == pytest.approx(1 - 1e-3) and float(direct["B_bar"]) == 0.1
    inc = conductance_scales(t, "increment", "mode")  # max(|A - 1|, |B|) per mode, shared
    expected = torch.tensor([[1e-3, 0.5], [5e-3, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(inc["A_bar"], expected)
    torch.testing.assert_close(inc["B_bar"], expected)
    chan = conductance_scales(t, "increment", "channel")
    torch.testing.assert_close(chan["A_bar"], torch.tensor([[0.5], [0.5]], dtype=torch.float64))
    dense = conductance_scales({"weight": torch.tensor([[1.0, -2.0], [0.5, 0.1]]),
                                "bias": torch.tensor([3.0, 0.2])}, "direct", "channel")
    torch.testing.assert_close(dense["weight"], torch.tensor([[3.0], [0.5]]))
    torch.testing.assert_close(dense["bias"], torch.tensor([3.0, 0.5]))
    A = torch.complex(torch.tensor([[0.9, 0.2]]), torch.tensor([[-0.3, 0.1]]))
    c = conductance_scales({"A_bar": A, "B_bar": torch.zeros_like(A)}, "increment", "mode")
    torch.testing.assert_close(c["A_bar"], torch.tensor([[0.3, 0.8]]))  # max |Re - 1|, |Im|


def draws(noise: WeightNoiseConfig, n: int = 4000) -> torch.Tensor:
    ssm = slow_ssm()
    g = gen(0)
    return torch.stack([noisy_ssm(ssm, noise, g, ("A_bar",)).A_bar - ssm.A_bar for _ in range(n)])


def test_increment_mode_noise_is_relative_to_each_modes_own_scale():
    sigma = 0.02
    d = draws(WeightNoiseConfig(sigma=sigma, transition="increment", granularity="mode"))
    expected = sigma * torch.tensor([[1e-3, 0.5], [5e-3, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(d.std(dim=0), expected, rtol=0.05, atol=0)
    assert d.mean(dim=0).abs().max() < 5 * expected.max() / 4000**0.5
    direct = draws(WeightNoiseConfig(sigma=sigma)).std(dim=0)  # sigma * max|A| ~ sigma
    assert float(direct[0, 0]) == pytest.approx(sigma * (1 - 1e-3), rel=0.05)
    assert float(d.std(dim=0)[0, 0]) < float(direct[0, 0]) / 500  # the slow mode: 1000x smaller


def test_pcm_noise_in_the_increment_form_follows_the_mapped_conductance():
    from imssa.devices import PCMConfig, PCMDevice

    d = draws(WeightNoiseConfig(sigma=1.0, kind="pcm", transition="increment",
                                granularity="mode"))
    pcm = PCMDevice(PCMConfig())
    scale = torch.tensor([[1e-3, 0.5], [5e-3, 0.5]], dtype=torch.float64)
    held = (slow_ssm().A_bar - 1).abs()
    expected = pcm.programming_std(held / scale * 25.0) / 25.0 * scale
    torch.testing.assert_close(d.std(dim=0), expected, rtol=0.05, atol=0)


def test_a_noisy_slow_mode_leaves_the_unit_circle_in_direct_form_only():
    direct = draws(WeightNoiseConfig(sigma=0.02), 1000) + slow_ssm().A_bar
    assert (direct[:, :, 0] > 1).float().mean() > 0.4  # no pull-back: as the chip
    inc = draws(WeightNoiseConfig(sigma=0.02, transition="increment", granularity="mode"),
                1000) + slow_ssm().A_bar
    assert bool((inc[:, :, 0] < 1).all())


def test_read_noise_is_drawn_afresh_at_every_step():
    H, B, L, s = 3, 4000, 2, 0.1
    A = torch.zeros(H, 1, dtype=torch.float64)
    ssm = DiscreteSSM(A, torch.ones_like(A), torch.ones_like(A), torch.zeros(H, dtype=torch.float64))
    noise = WeightNoiseConfig(read_sigma=s, transition="increment", granularity="mode")
    reads = read_noise(ssm, noise, gen(0), ("A_bar", "B_bar"))
    torch.testing.assert_close(reads.std_A, torch.ones(H, 1, dtype=torch.float64) * s)  # |A-1|=1
    y = ssm_scan(ssm.A_bar, ssm.B_bar, ssm.C, ssm.D, torch.ones(B, L, H, dtype=torch.float64),
                 read_noise=reads)
    # y1 = 1 + e_B; y2 = e_A y1 + 1 + e_B': std s and s * sqrt(1 + 1 + s^2)
    assert float(y[:, 0].std()) == pytest.approx(s, rel=0.05)
    assert float(y[:, 1].std()) == pytest.approx(s * (2 + s**2) ** 0.5, rel=0.05)
    assert float(torch.corrcoef(torch.stack([y[:, 0, 0], y[:, 1, 0] - y[:, 0, 0]]))[0, 1]) < 0.1


# --- the margin and the divergence stop ----------------------------------------------------------
def test_a_margin_keeps_every_noisy_mode_above_its_error():
    for transition, granularity in (("direct", "tensor"), ("increment", "mode")):
        q = prepare(real_model(), make_config("fp"))
        noise = WeightNoiseConfig(sigma=0.02, components=("A",), transition=transition,
                                  granularity=granularity)
        set_weight_noise(q, noise)
        moved = apply_a_margin(q, 2.0)
        for b in q.blocks:
            ssm = b.ssm.discrete()
            gap = 1 - ssm.A_bar.detach().abs()
            assert bool((gap >= 2.0 * a_error_std(ssm, noise) * (1 - 1e-4)).all())
        if transition == "direct":  # every mode must decay faster than 2 sigma ~ 0.04
            assert moved > 0
    assert apply_a_margin(q, 0.0) == 0


def tiny_real_run(tmp_path: Path) -> Path:
    """A trained-run folder of a small real model for sdigits (untrained weights suffice)."""
    from imssa.data import load_task
    from imssa.experiments.train import TrainConfig

    data = load_task("sdigits", limit=120)
    cfg = TrainConfig(task="sdigits", model="s4d-real-64x1", epochs=1, limit=120, device="cpu")
    model = S4DModel(S4DConfig(d_input=data.d_input, d_model=8, d_state=8,
                               n_classes=data.n_classes, ssm="real"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": dataclasses.asdict(cfg),
                                                 "model": model.cfg.to_dict()}))
    torch.save({"model": model.state_dict()}, run / "model.pt")
    return run


def test_divergence_stops_with_a_clear_error_and_saves_no_model(tmp_path, capsys):
    run = tiny_real_run(tmp_path)
    out = tmp_path / "qat"
    code = main(["qat", str(run), "--preset", "fp", "--lr", "1e6", "--epochs", "1",
                 "--mode", "conv", "--train-noise", "0.02", "--device", "cpu",
                 "--calib-samples", "32", "--out", str(out)])
    err = capsys.readouterr().err.replace("\r", "\n")  # progress bars share stderr
    (line,) = [x for x in err.splitlines() if x.startswith("imssa qat: error:")]
    assert code == 2 and "training diverged" in line and "--lr=1e+06" in line
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()


def test_qat_real_model_with_increment_noise_end_to_end(tmp_path):
    run = tiny_real_run(tmp_path)
    out = tmp_path / "qat"
    assert main(["qat", str(run), "--preset", "fp", "--epochs", "2", "--mode", "conv",
                 "--train-noise", "0.02", "--train-noise-on", "all",
                 "--train-noise-transition", "increment", "--train-noise-granularity", "mode",
                 "--train-noise-model", "gaussian", "--a-margin", "2", "--device", "cpu",
                 "--calib-samples", "32", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_noise"]["transition"] == "increment"
    assert metrics["train_noise"]["granularity"] == "mode"
    assert metrics["qat"]["a_margin"] == 2.0 and len(metrics["history"]["loss"]) == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    from imssa.experiments.train import load_run  # the folder doubles as a float run

    _, model = load_run(out)
    assert model.cfg.ssm == "real"
    assert all(torch.isfinite(p).all() for p in model.parameters())
