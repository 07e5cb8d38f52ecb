"""S4D: parameter counts, ZOH discretization, and the equivalence of its execution modes."""

import math

import pytest
import torch

from imssa import ImssaError
from imssa.ssm import PRESETS, S4DConfig, S4DLayer, S4DModel, count_parameters, preset


@pytest.mark.parametrize("name,expected", [("s4d-16", 3850), ("s4d-64", 21514),
                                           ("s4d-256", 184330), ("s4d-512", 630794)])
def test_preset_parameter_counts(name, expected):
    H = PRESETS[name].d_model
    assert expected == 2 * H * H + 208 * H + 10
    assert count_parameters(S4DModel(preset(name))) == expected


def test_s4d_lin_initialization_and_zoh():
    torch.manual_seed(0)
    layer = S4DLayer(d_model=3, d_state=8).double()
    A = layer.continuous_A()
    assert torch.allclose(A.real, torch.full((3, 4), -0.5, dtype=torch.float64))
    assert torch.allclose(A.imag, math.pi * torch.arange(4.0, dtype=torch.float64).repeat(3, 1))
    dt = torch.exp(layer.log_dt)
    assert bool(((dt >= 1e-3) & (dt <= 1e-1)).all())
    ssm = layer.discrete()
    # ZOH by hand for one entry: A_bar = e^{dt A}, B_bar = (A_bar - 1) / A * B
    a, d, b = A[1, 2].item(), dt[1].item(), complex(*layer.B[1, 2].tolist())
    a_bar = complex(math.exp(d * a.real) * math.cos(d * a.imag),
                    math.exp(d * a.real) * math.sin(d * a.imag))
    assert abs(ssm.A_bar[1, 2].item() - a_bar) < 1e-14
    assert abs(ssm.B_bar[1, 2].item() - (a_bar - 1) / a * b) < 1e-14
    assert bool((ssm.A_bar.abs() < 1).all())


def _random_model(dtype, H=8, n_layers=2, seed=0):
    torch.manual_seed(seed)
    model = S4DModel(S4DConfig(d_model=H, d_state=16, n_layers=n_layers, d_input=3)).to(dtype)
    with torch.no_grad():  # spread the time scales so long kernels matter
        for block in model.blocks:
            block.ssm.log_dt.uniform_(math.log(1e-3), math.log(0.5))
            block.ssm.log_A_real.uniform_(-4, 0)
    return model.eval()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
def test_conv_equals_recurrent_on_784_steps(dtype, tol):
    model = _random_model(dtype)
    u = torch.randn(3, 784, 3, dtype=dtype)
    with torch.no_grad():
        conv, rec = model(u), model(u, mode="recurrent")
    assert (conv - rec).abs().max().item() < tol


def test_layer_kernel_equals_discrete_kernel():
    layer = _random_model(torch.float64).blocks[0].ssm
    with torch.no_grad():
        assert torch.allclose(layer.kernel(300), layer.discrete().kernel(300), atol=1e-12)


def test_streaming_step_equals_recurrent_mode():
    model = _random_model(torch.float64)
    u = torch.randn(2, 50, 3, dtype=torch.float64)
    with torch.no_grad():
        state = model.init_state(2)
        for k in range(50):
            logits, state = model.step(u[:, k], state)
        assert torch.allclose(logits, model(u, mode="recurrent"), atol=1e-12)
        # an early stop gives the logits of the prefix
        state = model.init_state(2)
        for k in range(10):
            logits, state = model.step(u[:, k], state)
        assert torch.allclose(logits, model(u[:, :10]), atol=1e-10)


def test_helpers_equal_the_modes_of_the_layer():
    """zoh, ssm_kernel and fft_conv are the layer's conv mode; DiscreteSSM.convolve equals it."""
    layer = _random_model(torch.float64).blocks[0].ssm
    u = torch.randn(2, 3, 40, 8, dtype=torch.float64)  # two leading batch axes
    with torch.no_grad():
        conv = layer(u)
        assert conv.shape == u.shape
        torch.testing.assert_close(layer.discrete().convolve(u), conv, rtol=0, atol=1e-12)
        torch.testing.assert_close(layer(u, mode="recurrent"), conv, rtol=0, atol=1e-10)


def test_bad_inputs_raise_clear_errors():
    model = S4DModel(preset("s4d-16")).eval()
    with pytest.raises(ImssaError, match="shape"):
        model(torch.randn(784, 1))
    with pytest.raises(ImssaError, match="NaN"):
        model(torch.full((1, 10, 1), float("nan")))
    with pytest.raises(ImssaError, match="mode must be one of conv, recurrent"):
        model(torch.randn(1, 10, 1), mode="streaming")
    with pytest.raises(ImssaError, match="unknown model preset"):
        preset("s4d-32")
    with pytest.raises(ImssaError, match="d_state"):
        S4DConfig(d_state=7)


def test_real_ssm_modes_agree_and_count():
    """S4D-Real: real A_bar in (0, 1), conv = recurrent = streaming, 4 x H=64 under 100k params."""
    torch.manual_seed(0)
    cfg = S4DConfig(d_model=6, d_state=8, n_layers=2, d_input=3, ssm="real")
    model = S4DModel(cfg).double().eval()
    ssm = model.blocks[0].ssm.discrete()
    assert not ssm.A_bar.is_complex() and bool(((ssm.A_bar > 0) & (ssm.A_bar < 1)).all())
    A = model.blocks[0].ssm.continuous_A()
    assert torch.allclose(A[0], -torch.arange(1.0, 9.0, dtype=torch.float64))  # S4D-Real init
    u = torch.randn(2, 200, 3, dtype=torch.float64)
    with torch.no_grad():
        conv, rec = model(u), model(u, mode="recurrent")
        assert (conv - rec).abs().max().item() < 1e-9
        state = model.init_state(2)
        for k in range(200):
            logits, state = model.step(u[:, k], state)
        assert torch.allclose(logits, rec, atol=1e-12)
    big = S4DModel(preset("s4d-real-64x4"))
    assert count_parameters(big) == 4 * (2 * 64 * 64 + 2 * 64 + 3 * 64 * 64 + 2 * 64) + 2 * 64 + 650
    assert count_parameters(big) < 100_000
    with pytest.raises(ImssaError, match="S4DConfig.ssm"):
        S4DConfig(ssm="quaternion")
