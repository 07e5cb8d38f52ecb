"""Tests of noise-aware training (imssa.quant.noise on the prepared model): the noise's
moments against their closed forms (gaussian and PCM), component selection, clean evaluation,
re-drawing, the straight-through gradient, bad input, and ``imssa qat --train-noise`` end to end."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from imssa.cli import main
from imssa.devices import PCMConfig, PCMDevice
from imssa.errors import ImssaError
from imssa.experiments.quantize import QATConfig
from imssa.quant import (
    NOISE_COMPONENTS,
    WeightNoiseConfig,
    activations,
    add_noise,
    calibrate,
    make_config,
    noisy_ssm,
    noisy_weights,
    parameter_groups,
    perturb,
    prepare,
    quantized_weights,
    set_weight_noise,
)
from imssa.ssm import DiscreteSSM, S4DConfig, S4DModel


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_qmodel(preset: str = "fp", noise: WeightNoiseConfig | None = None) -> S4DModel:
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_input=1, d_model=4, d_state=8, n_classes=3, n_layers=2))
    qmodel = prepare(model, make_config(preset), weight_noise=noise)
    calibrate(qmodel, [torch.randn(3, 24, 1, generator=gen(1))])
    return qmodel


def inputs() -> torch.Tensor:
    return torch.randn(3, 24, 1, generator=gen(2))


# --- statistics ----------------------------------------------------------------------------------
def test_gaussian_noise_std_is_sigma_times_max_abs_with_zero_mean():
    W = torch.randn(1000, 1000, generator=gen(0))
    W[0, 0] = 7.0  # the max |w| sets the scale
    (noisy,) = add_noise([W], WeightNoiseConfig(sigma=0.02), gen(1))
    d = noisy - W
    assert d.std().item() == pytest.approx(0.02 * 7.0, rel=0.05)
    assert abs(d.mean().item()) < 5 * 0.02 * 7.0 / 1000  # 5 standard errors of the mean


def test_complex_parts_get_independent_noise_scaled_by_the_largest_part():
    W = torch.complex(torch.full((1000, 500), 0.5), torch.full((1000, 500), -2.0))
    (noisy,) = add_noise([W], WeightNoiseConfig(sigma=0.05), gen(0))
    d = noisy - W
    assert d.dtype == W.dtype
    for part in (d.real, d.imag):  # max|W| = max(|Re|, |Im|) = 2, as the crossbar's w_max
        assert part.std().item() == pytest.approx(0.05 * 2.0, rel=0.05)
    corr = torch.corrcoef(torch.stack([d.real.flatten(), d.imag.flatten()]))[0, 1]
    assert abs(corr.item()) < 0.01


def test_dense_weight_and_bias_share_one_scale():
    weights = {"decoder.weight": torch.full((400, 400), 0.1), "decoder.bias": torch.full((400,), 3.0)}
    out = noisy_weights(weights, WeightNoiseConfig(sigma=0.1), gen(0))
    assert (out["decoder.weight"] - weights["decoder.weight"]).std().item() == \
        pytest.approx(0.1 * 3.0, rel=0.05)


def test_pcm_noise_follows_the_programming_std_at_the_mapped_conductance():
    levels = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])
    W = levels[:, None] * torch.where(torch.arange(200_000) % 2 == 0, 1.0, -1.0)  # (6 n), w_max 1
    W = 2.0 * W  # w_max = 2: noise scales with it
    (noisy,) = add_noise([W], WeightNoiseConfig(sigma=1.0, kind="pcm"), gen(0))
    d = noisy - W
    pcm = PCMDevice(PCMConfig())
    # sigma_P(g) / g_max = |c0 + c1 x + c2 x^2| / g_ref, x = |w| / w_max, back in weight units
    c0, c1, c2 = pcm.config.prog_coeff
    expected = (c0 + c1 * levels + c2 * levels**2).abs() / pcm.config.prog_coeff_g_max_reference
    torch.testing.assert_close(expected, pcm.programming_std(levels * 25.0) / 25.0)
    torch.testing.assert_close(d.std(dim=1), 2.0 * expected, rtol=0.02, atol=0)
    assert d.mean(dim=1).abs().max().item() < 5 * 2.0 * expected.max().item() / 200_000**0.5


def test_pcm_noise_at_t_is_the_compensated_drifted_read_of_the_pcm_model():
    """One level held everywhere (g_T = g_max): with t > 0 the draw is the PCM model's programmed,
    drifted and read conductance, scaled back by one global gain, so its mean is the held value
    and its relative spread is that of g_P (t / t_0)^(-nu) (1 + Q tf z), drawn here from the
    device's own closed forms."""
    W = torch.full((500_000,), 0.5)
    pcm = PCMDevice(PCMConfig())
    g_max, day = pcm.config.g_max, 86400.0
    g = torch.full((500_000,), g_max)
    z = torch.randn(3, 500_000, generator=gen(7))
    g_prog = g + pcm.programming_std(g) * z[0]
    mu, sig = pcm.drift_exponent_moments(g)
    g_t = g_prog * ((day + pcm.config.t_0) / pcm.config.t_0) ** -(mu + sig * z[1]).abs()
    g_read = g_t + pcm.read_noise_std(g_t, g_prog, day) * z[2]
    expected = (g_read / g_read.mean()).std().item()  # the compensation restores the mean
    spreads = []
    for t in (0.0, 3600.0, day, 3.15e7):
        (noisy,) = add_noise([W], WeightNoiseConfig(sigma=1.0, kind="pcm", t_inference=t), gen(1))
        assert abs(noisy.mean().item() / 0.5 - 1) < 2e-3  # global compensation: no mean decay
        spreads.append((noisy / 0.5).std().item())
    assert spreads[2] == pytest.approx(expected, rel=0.02)
    assert spreads == sorted(spreads) and spreads[2] > 2 * spreads[0]  # drift spread dominates


def test_pcm_noise_at_t_keeps_the_increment_forms_exact_one():
    """In the increment form the array holds A_bar - 1: at 1 day a slow mode's error stays a
    fraction of its own decay 1 - A_bar, as at t = 0."""
    decay = torch.logspace(-4, -1, 64)[:, None].expand(64, 400)
    A = (1 - decay).to(torch.float64)
    tensors = {"A_bar": A, "B_bar": decay.to(torch.float64).clone()}
    for t in (0.0, 86400.0):
        cfg = WeightNoiseConfig(sigma=1.0, kind="pcm", transition="increment", granularity="mode",
                                t_inference=t)
        out = perturb(tensors, cfg, gen(3))
        relative = ((out["A_bar"] - A) / decay).std(dim=1)
        assert relative.max().item() < 0.2 and relative.min().item() > 0.01


def test_zero_sigma_and_zero_tensor_are_left_unchanged():
    W = torch.randn(10, 10, generator=gen(0))
    assert add_noise([W], WeightNoiseConfig(sigma=0.0))[0] is W
    for kind in ("gaussian", "pcm"):
        Z = torch.zeros(5, 5)
        assert torch.equal(add_noise([Z], WeightNoiseConfig(sigma=0.1, kind=kind), gen(0))[0], Z)


# --- components, clean evaluation, re-drawing, gradient ------------------------------------------
def test_only_the_selected_components_get_noise():
    qmodel = tiny_qmodel()
    clean = quantized_weights(qmodel)
    out = noisy_weights(clean, WeightNoiseConfig(sigma=0.1, components=("A",)), gen(0))
    for name, t in clean.items():
        assert torch.equal(out[name], t) == (not name.endswith("A_bar")), name
    # a path selects one layer's tensor; a dense layer's weight alone keeps its bias clean
    out = noisy_weights(clean, WeightNoiseConfig(sigma=0.1, components="blocks.1.mix.weight"))
    assert [n for n in clean if not torch.equal(out[n], clean[n])] == ["blocks.1.mix.weight"]
    ssm = qmodel.blocks[0].ssm.discrete()
    n = noisy_ssm(ssm, WeightNoiseConfig(sigma=0.1), gen(0), ("C", "D"))
    assert n.A_bar is ssm.A_bar and n.B_bar is ssm.B_bar
    assert not torch.equal(n.C, ssm.C) and not torch.equal(n.D, ssm.D)


def test_noisy_a_bar_is_not_pulled_back_inside_the_unit_circle():
    """The chip has no pull-back: direct-form noise on slow modes leaves the unit circle, and the
    noisy A_bar is exactly A_bar plus the draw."""
    A = torch.polar(torch.full((4, 512), 0.9998), torch.linspace(-3, 3, 512).expand(4, 512))
    ssm = DiscreteSSM(A, torch.ones_like(A), torch.ones_like(A), torch.ones(4))
    n = noisy_ssm(ssm, WeightNoiseConfig(sigma=0.05), gen(0), ("A_bar",))
    raw = add_noise((A,), WeightNoiseConfig(sigma=0.05), gen(0))[0]  # the same draw
    assert torch.equal(n.A_bar, raw)
    assert (n.A_bar.abs() > 1).float().mean() > 0.3  # the noise destabilizes many modes


@pytest.mark.parametrize("component, clean_point, noisy_point", [
    ("encoder", "encoder.input", "blocks.0.ssm.input"),
    ("A", "blocks.0.ssm.input", "blocks.0.ssm.output"),
    ("D", "blocks.0.ssm.input", "blocks.0.ssm.output"),
    ("mix", "blocks.0.activation.output", "blocks.0.glu.output"),
    ("blocks.1.ssm.C", "blocks.1.ssm.input", "blocks.1.ssm.output"),
    ("decoder", "decoder.input", "logits"),
])
def test_model_perturbs_each_component_where_it_acts(component, clean_point, noisy_point):
    u = inputs()
    qmodel = tiny_qmodel().train()
    with torch.no_grad():
        clean = activations(qmodel, u)
        set_weight_noise(qmodel, WeightNoiseConfig(sigma=0.05, components=(component,)))
        noisy = activations(qmodel, u)
    assert torch.equal(noisy[clean_point], clean[clean_point])
    assert not torch.equal(noisy[noisy_point], clean[noisy_point])


def test_noise_is_added_after_fake_quantization():
    u = inputs()
    noise = WeightNoiseConfig(sigma=0.05, components=("decoder",))
    qmodel = tiny_qmodel("W8A8").train()
    set_weight_noise(qmodel, noise, gen(5))
    with torch.no_grad():
        rec = activations(qmodel, u)
        w = quantized_weights(qmodel)  # clean, on the 8-bit grid
        W, b = add_noise([w["decoder.weight"], w["decoder.bias"]], noise, gen(5))
    torch.testing.assert_close(rec["logits"], F.linear(rec["decoder.input"], W, b), rtol=0,
                               atol=0)


@pytest.mark.parametrize("preset", ["fp", "W4A6"])
def test_eval_mode_is_exactly_clean(preset):
    u = inputs()
    reference = tiny_qmodel(preset).eval()
    noisy = tiny_qmodel(preset, WeightNoiseConfig(sigma=0.2)).eval()
    with torch.no_grad():
        assert torch.equal(noisy(u), reference(u))
        assert torch.equal(noisy(u, mode="conv"), reference(u, mode="conv"))
    # sigma 0 in training mode is the model without noise, too
    off = tiny_qmodel(preset, WeightNoiseConfig(sigma=0.0)).train()
    with torch.no_grad():
        assert torch.equal(off(u), reference.train()(u))


def test_noise_is_redrawn_at_every_training_forward():
    u = inputs()
    qmodel = tiny_qmodel("W4A6", WeightNoiseConfig(sigma=0.05)).train()
    torch.manual_seed(0)
    with torch.no_grad():
        a, b = qmodel(u), qmodel(u)
    assert not torch.equal(a, b)
    torch.manual_seed(0)  # the global RNG is the source: same seed, same draws
    with torch.no_grad():
        assert torch.equal(qmodel(u), a)


def test_gradient_passes_straight_through_the_noise():
    for W in (torch.randn(30, 20, generator=gen(0)),
              torch.randn(8, 4, dtype=torch.complex64, generator=gen(1))):
        W.requires_grad_(True)
        for kind in ("gaussian", "pcm"):
            W.grad = None
            (noisy,) = add_noise([W], WeightNoiseConfig(sigma=0.1, kind=kind), gen(2))
            torch.view_as_real(noisy).sum().backward() if W.is_complex() else noisy.sum().backward()
            expected = torch.complex(torch.ones(W.shape), torch.ones(W.shape)) if W.is_complex() \
                else torch.ones_like(W)
            assert torch.equal(W.grad, expected)


def test_training_step_through_the_noisy_model_reaches_every_parameter():
    qmodel = tiny_qmodel("W4A6", WeightNoiseConfig(sigma=0.05)).train()
    qmodel(inputs()).sum().backward()
    groups = parameter_groups(qmodel)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in groups["ssm"] + groups["other"])


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fields, message", [
    ({"sigma": -0.1}, "sigma must be a finite number >= 0"),
    ({"sigma": float("nan")}, "sigma must be a finite number >= 0"),
    ({"sigma": 0.1, "components": ("A", "E")}, "unknown noise component 'E'"),
    ({"sigma": 0.1, "components": ("A_bar",)}, "unknown noise component 'A_bar'"),
    ({"sigma": 0.1, "components": ()}, "components is empty"),
    ({"sigma": 0.1, "kind": "rram"}, "kind must be one of gaussian, pcm"),
    ({"sigma": 0.1, "transition": "diff"}, "transition must be one of direct, increment"),
    ({"sigma": 0.1, "granularity": "column"}, "granularity must be one of tensor, channel, mode"),
    ({"read_sigma": -1.0}, "read_sigma must be a finite number >= 0"),
    ({"t_inference": -1.0}, "t_inference must be a finite number >= 0"),
    ({"sigma": 0.1, "t_inference": 3600.0}, "t_inference draws the PCM model's drift: it needs kind='pcm'"),
])
def test_bad_noise_config_is_refused(fields, message):
    with pytest.raises(ImssaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WeightNoiseConfig(**fields)


def test_components_parse_from_text_and_all():
    assert WeightNoiseConfig(components="C, A, C").components == ("C", "A")
    assert WeightNoiseConfig(components="all").components == NOISE_COMPONENTS
    assert WeightNoiseConfig(components="blocks.3.ssm.A_bar").components == ("blocks.3.ssm.A_bar",)
    assert QATConfig(train_noise_on=["D", "mix"]).train_noise_on == ("D", "mix")
    # saved QAT configs name the old components; they read back as aliases
    assert QATConfig.from_dict({"train_noise_on": ["A_bar", "B_bar", "mix"]}).train_noise_on == \
        ("A", "B", "mix")
    with pytest.raises(ImssaError, match="QATConfig.train_noise must"):
        QATConfig(train_noise=-1.0)
    with pytest.raises(ImssaError, match="weight_noise must be a WeightNoiseConfig"):
        prepare(S4DModel(S4DConfig(d_model=4, d_state=4)), make_config("fp"),
                weight_noise=0.02)  # type: ignore[arg-type]
    with pytest.raises(ImssaError, match="noise component 'blocks.5.mix'"):
        set_weight_noise(tiny_qmodel(), WeightNoiseConfig(sigma=0.1, components="blocks.5.mix"))


def test_cli_refuses_bad_noise_with_one_line(tmp_path, capsys):
    code = main(["qat", str(tmp_path / "missing"), "--out", str(tmp_path / "q"),
                 "--train-noise", "0.02", "--train-noise-on", "A,Q"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown noise component 'Q'" in err and len(err.strip().splitlines()) == 1


# --- end to end -----------------------------------------------------------------------------------
def test_qat_fp_with_train_noise_end_to_end(tmp_path):
    from imssa.experiments.train import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(task="sdigits", model="s4d-16", epochs=2, limit=200, device="cpu"), run)
    out = tmp_path / "qat"
    args = ["qat", str(run), "--preset", "fp", "--train-noise", "0.05", "--epochs", "1",
            "--device", "cpu", "--calib-samples", "64", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_noise"] == {"sigma": 0.05, "components": list(NOISE_COMPONENTS),
                                      "kind": "gaussian", "transition": "direct",
                                      "granularity": "tensor", "read_sigma": 0.0,
                                      "t_inference": 0.0}
    assert metrics["qat"]["train_noise"] == 0.05
    assert metrics["quant"]["preset"] == "fp"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and len(metrics["history"]["loss"]) == 1
    # the recorded settings read back equal, so --resume accepts the finished run, also when it
    # was recorded before a newer setting existed (the default fills in); other settings are refused
    config = json.loads((out / "config.json").read_text())
    del config["quant"]["x_rounding"]
    (out / "config.json").write_text(json.dumps(config))
    assert main([*args, "--resume"]) == 0
    assert main([*args[:-2], "--lr", "0.5", "--out", str(out), "--resume"]) == 2
    # QS4D's setting: A_bar alone, through the PCM model
    out2 = tmp_path / "qat-pcm"
    assert main(["qat", str(run), "--preset", "W8A8", "--train-noise", "1", "--train-noise-on",
                 "A", "--train-noise-device", "pcm", "--epochs", "1", "--device", "cpu",
                 "--calib-samples", "64", "--mode", "conv", "--out", str(out2)]) == 0
    assert json.loads((out2 / "metrics.json").read_text())["train_noise"] == \
        {"sigma": 1.0, "components": ["A"], "kind": "pcm", "transition": "direct",
         "granularity": "tensor", "read_sigma": 0.0, "t_inference": 0.0}
    # the chip at 1 day: drift and global compensation in the training noise
    out3 = tmp_path / "qat-pcm-1d"
    assert main(["qat", str(run), "--preset", "fp", "--train-noise", "1", "--train-noise-kind", "pcm",
                 "--train-noise-on", "all", "--train-noise-t", "86400", "--train-noise-transition",
                 "increment", "--train-noise-granularity", "mode", "--epochs", "1", "--device", "cpu",
                 "--calib-samples", "64", "--mode", "conv", "--out", str(out3)]) == 0
    record = json.loads((out3 / "metrics.json").read_text())
    assert record["train_noise"]["t_inference"] == 86400.0 and record["qat"]["train_noise_t"] == 86400.0


@pytest.mark.parametrize("fields, message", [
    ({"epochs": 0}, "QATConfig.epochs must be an integer >= 1"),
    ({"ssm_lr": 5.0}, r"QATConfig.ssm_lr must be in \(0, 0.001\]"),
    ({"lr": float("inf")}, "QATConfig.lr must be a finite number > 0"),
    ({"parameterization": "cartesian"}, "QATConfig.parameterization"),
    ({"train_noise_transition": "diff"}, "QATConfig.train_noise_transition must be one of"),
    ({"train_noise": -1.0}, "QATConfig.train_noise must be a finite number"),
    ({"a_margin": -1.0}, "QATConfig.a_margin must be a finite number >= 0"),
    ({"a_margin": 2.0, "parameterization": "discrete"}, "a_margin moves log_A_real"),
    ({"train_read_noise": 0.01, "mode": "conv"}, "train_read_noise is per-step read noise"),
    ({"train_noise": 1.0, "train_noise_t": 86400.0}, "QATConfig.train_noise_t draws the PCM"),
])
def test_bad_qat_config_is_refused_before_any_work(fields, message):
    with pytest.raises(ImssaError, match=message):
        QATConfig(**fields)


def test_train_and_qat_share_the_ssm_learning_rate_rule():
    from imssa.experiments.rules import SSM_LR_MAX, check_ssm_lr
    from imssa.experiments.train import TrainConfig

    check_ssm_lr(SSM_LR_MAX, "x")
    for bad in (5.0, 0.0, SSM_LR_MAX * 1.01):
        with pytest.raises(ImssaError):
            TrainConfig(ssm_lr=bad)
        with pytest.raises(ImssaError):
            QATConfig(ssm_lr=bad)
