"""Tests of imssa.quant: quantizer arithmetic, STE, calibration, polar A_bar, the quantized model,
memory accounting, errors, and a bit-exact integer reference of a tiny quantized model."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from imssa.errors import ImssaError
from imssa.quant import (
    FakeQuantizer,
    PolarQuantizer,
    QuantConfig,
    QuantSpec,
    RangeObserver,
    a_bar_levels,
    activations,
    calibrate,
    convert,
    fake_quantize,
    freeze_ranges,
    hard_gelu,
    make_config,
    memory_footprint,
    parameter_groups,
    percentile,
    prepare,
    qparams,
    qrange,
    quantized_weights,
    quantizers,
    unfreeze_ranges,
)
from imssa.quant.legacy import quant_config_dict, state_dict
from imssa.ssm import S4DConfig, S4DLayer, S4DModel

T = torch.tensor
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("IMSSA_TEST_DATA", "/work/shared/data"))


def tiny_model(seed: int = 0, **kw) -> S4DModel:
    torch.manual_seed(seed)
    cfg = S4DConfig(**{"d_input": 1, "d_model": 4, "d_state": 8, "n_classes": 3, **kw})
    return S4DModel(cfg).eval()


def batches(n: int = 2, seed: int = 1, B: int = 3, L: int = 24) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, L, 1, generator=g) for _ in range(n)]


# --- quantizer arithmetic ------------------------------------------------------------------------
def test_code_ranges():
    assert qrange(8, True) == (-127, 127)
    assert qrange(8, False) == (0, 255)
    assert qrange(2, True) == (-1, 1)
    assert qrange(16, False) == (0, 65535)


def test_symmetric_rounding_half_to_even_and_clipping():
    # 3 bits symmetric: codes -3..3, scale 0.5. v/s = -4, -2.6, -0.5, 0.5, 1.5, 2, 2.5, 3.2, 10
    v = T([-2.0, -1.3, -0.25, 0.25, 0.75, 1.0, 1.25, 1.6, 5.0])
    out = fake_quantize(v, T(0.5), T(0.0), *qrange(3, True))
    # ties go to the even code: -0.5 -> 0, 0.5 -> 0, 1.5 -> 2, 2.5 -> 2; -4 and 10 clip to -3, 3
    assert torch.equal(out, T([-1.5, -1.5, 0.0, 0.0, 1.0, 1.0, 1.0, 1.5, 1.5]))


def test_values_lie_exactly_on_the_grid():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(1000, generator=g) * 3
    scale, zp = T(0.1), T(0.0)
    out = fake_quantize(v.requires_grad_(True), scale, zp, *qrange(5, True))
    q = torch.clamp(torch.round(v.detach() / scale), -15, 15)
    assert torch.equal(out.detach(), q * scale)


def test_symmetric_scale_from_range():
    scale, zp = qparams(T(-0.5), T(1.27), 8, True)
    assert scale.item() == pytest.approx(1.27 / 127)
    assert zp.item() == 0


def test_asymmetric_zero_point():
    # range [-0.5, 1.375] on 4 bits: scale 1.875 / 15 = 0.125, zero point 0 - round(-4) = 4
    scale, zp = qparams(T(-0.5), T(1.375), 4, False)
    assert scale.item() == 0.125 and zp.item() == 4
    v = T([-1.0, -0.5, 0.0625, 0.1875, 1.5])  # v/s + z = -4, 0, 4.5, 5.5, 16
    out = fake_quantize(v, scale, zp, *qrange(4, False))
    assert torch.equal(out, T([-0.5, -0.5, 0.0, 0.25, 1.375]))
    # a range that misses 0 is widened to contain it, so zero stays exact
    scale, zp = qparams(T(1.0), T(3.0), 2, False)
    assert scale.item() == 1.0 and zp.item() == 0


def test_per_channel_ranges_of_a_weight():
    W = T([[0.5, -1.0, 0.25], [2.0, 0.1, -0.3]])
    per_channel = FakeQuantizer("w", QuantSpec(bits=2, granularity="channel"), "weight", (2, 1))
    # 2 bits: codes -1..1; scales 1.0 (row 0) and 2.0 (row 1)
    assert torch.equal(per_channel(W), T([[0.0, -1.0, 0.0], [2.0, 0.0, -0.0]]))
    per_tensor = FakeQuantizer("w", QuantSpec(bits=2), "weight", (2, 1))
    assert torch.equal(per_tensor(W), T([[0.0, -0.0, 0.0], [2.0, 0.0, -0.0]]))


def test_per_channel_ranges_of_an_activation():
    q = FakeQuantizer("a", QuantSpec(bits=8, granularity="channel", calibration="maxabs"),
                      "activation", (2,))
    v = torch.randn(3, 5, 2)
    obs = RangeObserver(q.spec, q.group_shape)
    obs.observe(v)
    lo, hi = obs.range()
    assert torch.equal(hi, v.abs().amax(dim=(0, 1)))
    q.set_range(lo, hi)
    out = q(v)
    for h in range(2):
        s = hi[h] / 127
        assert torch.equal(out[..., h], torch.round(v[..., h] / s) * s)


def test_ste_gradient_identity_inside_zero_outside():
    v = T([-3.0, -0.7, 0.2, 0.9, 2.5], requires_grad=True)
    out = fake_quantize(v, T(0.25), T(0.0), *qrange(3, True))  # range [-0.75, 0.75]
    out.sum().backward()
    assert torch.equal(v.grad, T([0.0, 1.0, 1.0, 0.0, 0.0]))
    # asymmetric: range [(0 - 2) * 0.5, (3 - 2) * 0.5] = [-1, 0.5]
    w = T([-1.2, -0.9, 0.4, 0.6], requires_grad=True)
    fake_quantize(w, T(0.5), T(2.0), *qrange(2, False)).sum().backward()
    assert torch.equal(w.grad, T([0.0, 1.0, 1.0, 0.0]))


def test_complex_parts_share_one_scale():
    z = torch.complex(T([3.0, -0.25, 0.1]), T([0.5, 1.0, -2.0]))
    q = FakeQuantizer("c", QuantSpec(bits=8), "weight", (3, 1))
    out = q(z)
    s = 3.0 / 127  # max over real and imaginary parts together
    assert torch.equal(out.real, torch.round(z.real / s) * s)
    assert torch.equal(out.imag, torch.round(z.imag / s) * s)
    zr = z.clone().requires_grad_(False)
    w = torch.view_as_real(zr).clone().requires_grad_(True)
    q(torch.view_as_complex(w)).abs().sum().backward()  # gradient flows through both parts
    assert w.grad is not None and torch.isfinite(w.grad).all()


def _two_pass_fake_quantize(v, scale, zp, qmin, qmax):
    """The former form, the specification: the composite STE on the real and imaginary parts
    separately, value vq + (clamp(v) - clamp(v).detach())."""
    def real(x):
        q = (torch.clamp(torch.round(x.detach() / scale) + zp, qmin, qmax) - zp) * scale
        clipped = torch.clamp(x, (qmin - zp) * scale, (qmax - zp) * scale)
        return q + (clipped - clipped.detach())
    return torch.complex(real(v.real), real(v.imag)) if v.is_complex() else real(v)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("group", [(), (5, 1), (5, 4)])
def test_one_pass_complex_fake_quantization_equals_two_passes(dtype, group):
    """Complex tensors are quantized in one pass over their real view: values and gradients
    bit-identical to the two passes over the real and imaginary parts (clipped entries
    included), for per-tensor, per-channel and per-mode scales."""
    g = torch.Generator().manual_seed(3)
    z = torch.complex(torch.randn(6, 5, 4, generator=g, dtype=dtype),
                      torch.randn(6, 5, 4, generator=g, dtype=dtype)) * 3
    scale = torch.rand(group, generator=g) + 0.1
    zp = torch.randint(0, 3, group, generator=g).float()
    w = torch.randn(z.shape, generator=g, dtype=z.dtype)
    outs, grads = [], []
    for fq in (fake_quantize, _two_pass_fake_quantize):
        v = z.clone().requires_grad_(True)
        out = fq(v, scale, zp, -7, 7)
        (out * w).real.sum().backward()
        outs.append(out.detach())
        grads.append(v.grad)
    assert outs[0].dtype == outs[1].dtype and torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0], grads[1])
    assert (grads[0] == 0).any() and (grads[0] != 0).any()  # some entries clipped, some not


# --- calibration statistics ---------------------------------------------------------------------
def test_percentile_matches_numpy():
    v = torch.arange(1001, dtype=torch.float64).reshape(1, -1)
    assert percentile(v, 99.9).item() == pytest.approx(999.0, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20011, generator=g, dtype=torch.float64)
    for p in (99.999, 99.0, 90.0, 75.3, 100.0):
        ref = np.percentile(x.numpy(), p, axis=1)
        np.testing.assert_allclose(percentile(x, p).numpy(), ref, rtol=1e-12)


def test_calibration_methods_values():
    v = T([[-3.0, -1.0, 0.5, 2.0]])
    def rng(**kw):
        obs = RangeObserver(QuantSpec(bits=8, **kw), ())
        obs.observe(v)
        return tuple(t.item() for t in obs.range())
    assert rng(calibration="minmax", symmetric=False) == (-3.0, 2.0)
    assert rng(calibration="minmax", symmetric=True) == (-3.0, 3.0)
    assert rng(calibration="maxabs", symmetric=False) == (-3.0, 3.0)
    # percentile 90 of n=4 values sits at 0.9 * 3 = 2.7: 0.5 + 0.7 * (2.0 - 0.5) = 1.55
    lo, hi = rng(calibration="percentile", percentile=90.0, symmetric=False)
    assert hi == pytest.approx(1.55) and lo == pytest.approx(-(1.0 + 0.7 * 2.0))
    # symmetric percentile: of |v| = 3, 1, 0.5, 2 -> 2 + 0.7 * 1 = 2.7
    lo, hi = rng(calibration="percentile", percentile=90.0, symmetric=True)
    assert hi == pytest.approx(2.7) and lo == pytest.approx(-2.7)


def test_observer_over_batches_and_chunks():
    g = torch.Generator().manual_seed(3)
    b1, b2 = torch.randn(4, 1000, generator=g), torch.randn(4, 1000, generator=g) * 2
    spec = QuantSpec(bits=8, calibration="percentile", percentile=99.9, symmetric=False)
    obs = RangeObserver(spec, ())
    obs.observe(b1)
    obs.start(4000)  # the second batch arrives in 3 chunks
    for chunk in b2.split([1, 2, 1]):
        obs.update(chunk)
    obs.finish()
    lo, hi = obs.range()
    mean_hi = (np.percentile(b1.numpy(), 99.9) + np.percentile(b2.numpy(), 99.9)) / 2
    mean_lo = (np.percentile(b1.numpy(), 0.1) + np.percentile(b2.numpy(), 0.1)) / 2
    assert hi.item() == pytest.approx(mean_hi, rel=1e-5)
    assert lo.item() == pytest.approx(mean_lo, rel=1e-5)
    mm = RangeObserver(QuantSpec(bits=8, symmetric=False), ())
    mm.observe(b1)
    mm.observe(b2)
    assert mm.range()[1].item() == max(b1.max().item(), b2.max().item())


def test_calibrate_sets_exact_ranges_of_the_model():
    model = tiny_model()
    spec_a = {"calibration": "percentile", "percentile": 99.0}
    cfg = make_config("W8A8", overrides={"blocks.*.ssm.input": spec_a,
                                         "x": {"calibration": "maxabs", "granularity": "mode"}})
    qm = calibrate(prepare(model, cfg), batches(1))
    q = quantizers(qm)
    u = batches(1)[0]
    with torch.no_grad():
        w = quantized_weights(qm)
        enc = torch.nn.functional.linear(u, w["encoder.weight"], w["encoder.bias"])
        ssm = qm.blocks[0].ssm.discrete()
        x = ssm.init_state(u.shape[0])
        amax = torch.zeros(ssm.A_bar.shape)
        for k in range(u.shape[1]):
            x = ssm.A_bar * x + ssm.B_bar * enc[:, k, :, None]
            amax = torch.maximum(amax, torch.maximum(x.real.abs(), x.imag.abs()).amax(0))
    q_in = q["blocks.0.ssm.input"]
    assert q_in.hi.item() == pytest.approx(np.percentile(enc.numpy(), 99.0), rel=1e-6)
    assert q_in.lo.item() == pytest.approx(np.percentile(enc.numpy(), 1.0), rel=1e-6)
    assert torch.equal(q["blocks.0.ssm.x"].hi, amax)  # per (channel, mode), max-abs over steps


def test_calibration_is_deterministic():
    cfg = make_config("W4A6", a_bits=8, x_bits=8)
    q1 = calibrate(prepare(tiny_model(), cfg), batches(3))
    q2 = calibrate(prepare(tiny_model(), cfg), batches(3))
    s1, s2 = q1.state_dict(), q2.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        if isinstance(s1[k], torch.Tensor):
            assert torch.equal(s1[k], s2[k]), k
    u = batches(1, seed=9)[0]
    assert torch.equal(q1(u, "recurrent"), q2(u, "recurrent"))
    # ranges and their flags travel in the state dict
    q3 = prepare(tiny_model(seed=4), cfg)
    q3.load_state_dict(q1.state_dict())
    assert torch.equal(q3(u, "recurrent"), q1(u, "recurrent"))


def test_dynamic_ranges_are_per_sample():
    q = FakeQuantizer("a", QuantSpec(bits=4, dynamic=True, symmetric=False), "activation", (3,))
    v = torch.randn(2, 7, 3)
    v[1] *= 10
    both = q(v)
    assert torch.equal(both[0], q(v[:1])[0]) and torch.equal(both[1], q(v[1:])[0])


def test_frozen_ranges_stop_following_weights_and_calibration():
    model = tiny_model()
    qm = calibrate(prepare(model, make_config("W8A8")), batches(1))
    freeze_ranges(qm)
    q = quantizers(qm)
    hi_before = q["blocks.0.mix.weight"].hi.clone()
    act_before = q["blocks.0.ssm.output"].hi.clone()
    with torch.no_grad():
        model.blocks[0].mix.weight.mul_(3.0)
    out = quantized_weights(qm)["blocks.0.mix.weight"]
    assert out.abs().max() <= hi_before.max() + 1e-6  # clipped to the frozen range
    calibrate(qm, [10 * b for b in batches(1)])  # frozen: unchanged
    assert torch.equal(q["blocks.0.ssm.output"].hi, act_before)
    unfreeze_ranges(qm)
    calibrate(qm, [10 * b for b in batches(1)])
    assert not torch.equal(q["blocks.0.ssm.output"].hi, act_before)


# --- A_bar grids ----------------------------------------------------------------------------
@pytest.mark.parametrize("bits", range(2, 9))
def test_polar_levels_inside_unit_circle_cartesian_not(bits):
    torch.manual_seed(0)
    A_bar = S4DLayer(8, 16).discrete().A_bar.detach()  # (H N/2), |A_bar| close to 1
    spec = QuantSpec(bits=bits)
    polar = a_bar_levels(A_bar, spec, "polar")
    assert polar.shape == (1, 2**bits * (2**bits - 1))
    assert (polar.abs() < 1).all()
    assert (a_bar_levels(A_bar, dataclasses.replace(spec, granularity="channel"), "polar").abs()
            < 1).all()
    assert (a_bar_levels(A_bar, spec, "cartesian").abs() > 1).any()


def test_polar_quantizer_stabilizes_and_approximates():
    torch.manual_seed(0)
    A_bar = S4DLayer(8, 16).discrete().A_bar.detach()
    q = PolarQuantizer("A_bar", QuantSpec(bits=8, granularity="channel"), (8, 1))
    A_q = q(A_bar)
    assert (A_q.abs() < 1).all()
    rho, rho_q = -torch.log(A_bar.abs()), -torch.log(A_q.abs())
    assert torch.allclose(rho_q, rho, rtol=0.05)  # log grid: relative precision of the decay
    unstable = A_bar * 1.01  # |A| > 1 for the slow modes
    assert (q(unstable).abs() < 1).all()
    # identity STE
    w = torch.view_as_real(A_bar).clone().requires_grad_(True)
    torch.view_as_real(q(torch.view_as_complex(w))).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


# --- configs --------------------------------------------------------------------------------
def test_presets_and_heterogeneous_config():
    cfg = make_config("W4A6", a_bits=8, x_bits=7)
    assert cfg.spec("A").bits == 8 and cfg.spec("blocks.0.ssm.x").bits == 7
    assert cfg.spec("B").bits == cfg.spec("blocks.*.mix.weight").bits == 4
    assert cfg.spec("decoder.bias").bits == 4
    assert cfg.spec("blocks.3.ssm.output").bits == cfg.spec("decoder.input").bits == 6
    fp = make_config("fp")
    assert all(fp.spec(t).bits is None for t in ("A", "x", "blocks.*.ssm.input"))
    w8 = make_config("W8A8", overrides={"x": {"granularity": "mode"},
                                        "blocks.0.ssm.A_bar": {"bits": 12},
                                        "mix": {"bits": 6}, "blocks.1.mix.bias": {"bits": 5}})
    assert w8.spec("x").granularity == "mode" and w8.spec("blocks.0.ssm.A_bar").bits == 12
    assert w8.spec("blocks.1.ssm.A_bar").bits == 8
    # a module selector picks its stored tensors; a per-layer override builds on the new spec
    assert w8.spec("blocks.0.mix.weight").bits == w8.spec("blocks.0.mix.bias").bits == 6
    assert w8.spec("blocks.1.mix.bias").bits == 5 and w8.spec("blocks.1.mix.bias").symmetric
    assert QuantConfig.from_dict(json.loads(json.dumps(w8.to_dict()))) == w8


def test_configs_saved_with_the_old_names_read_back():
    """A QuantConfig dict of the old flat layout (metrics.json of the committed runs)."""
    old = {name: dataclasses.asdict(QuantSpec()) for name in (
        "input", "encoder_weight", "encoder_bias", "ssm_input", "A_bar", "B_bar", "C", "D", "x",
        "ssm_output", "gelu_output", "mix_weight", "mix_bias", "mix_output", "pooled",
        "decoder_weight", "decoder_bias")}
    old["A_bar"] = {**old["A_bar"], "bits": 6, "granularity": "head"}
    old["mix_output"] = {**old["mix_output"], "bits": 7}
    old.update(a_bar_form="polar", gelu="auto", layers={"blocks.0.x": {"bits": 9}})
    cfg = QuantConfig.from_dict(old)
    assert cfg.spec("blocks.0.ssm.A_bar") == QuantSpec(bits=6, granularity="channel")
    assert cfg.spec("blocks.0.glu.output").bits == 7
    assert cfg.layers == {"blocks.0.ssm.x": QuantSpec(bits=9)} and cfg.a_bar_form == "polar"
    assert quant_config_dict(cfg.to_dict()) == cfg.to_dict()  # the new layout is left as it is


def test_errors_name_the_argument_and_the_allowed_values():
    for bits in (1, 17, 0, 8.0, True):
        with pytest.raises(ImssaError, match="bits"):
            QuantSpec(bits=bits)
    with pytest.raises(ImssaError, match="symmetric must be true or false"):
        QuantSpec(bits=4, symmetric="maybe")  # type: ignore[arg-type]
    with pytest.raises(ImssaError, match="bound must be a finite number"):
        QuantSpec(bits=4, bound="abc")  # type: ignore[arg-type]
    with pytest.raises(ImssaError, match="fp, W8A8, W4A6"):
        make_config("W3A3")
    with pytest.raises(ImssaError, match="valid names: encoder.input, encoder.weight"):
        make_config("W8A8", overrides={"E": {"bits": 4}})
    with pytest.raises(ImssaError, match="unknown quantization target 'mix_weight'"):
        make_config("W8A8", overrides={"mix_weight": {"bits": 4}})  # old names: only on read
    with pytest.raises(ImssaError, match="valid fields"):
        make_config("W8A8", overrides={"C": {"bitz": 4}})
    with pytest.raises(ImssaError, match="bits"):
        make_config("W8A8", a_bits=1)
    with pytest.raises(ImssaError, match="only for the state"):
        make_config("W8A8", overrides={"A": {"granularity": "mode"}})
    with pytest.raises(ImssaError, match="dynamic"):
        make_config("W8A8", overrides={"x": {"dynamic": True}})
    # a spec for a tensor the model does not have: layer 3 of a 1-layer model
    cfg = make_config("W8A8", overrides={"blocks.3.ssm.A_bar": {"bits": 4}})
    with pytest.raises(ImssaError, match=r"blocks.3.ssm.A_bar.*1 layer"):
        prepare(tiny_model(), cfg)
    with pytest.raises(ImssaError, match="blocks.3.ssm.A_bar"):
        memory_footprint(cfg, tiny_model().cfg)
    with pytest.raises(ImssaError, match="parameterization"):
        prepare(tiny_model(), make_config("fp"), parameterization="cartesian")
    qm = prepare(tiny_model(), make_config("W8A8"))
    with pytest.raises(ImssaError, match="already prepared"):
        prepare(qm, make_config("W8A8"))
    with pytest.raises(ImssaError, match="calibrate"):
        qm(batches(1)[0])  # static activation ranges not calibrated yet
    with pytest.raises(ImssaError, match="conv, recurrent"):
        qm(batches(1)[0], mode="scan")
    with pytest.raises(ImssaError, match="prepare"):
        quantizers(tiny_model())


# --- the quantized model ------------------------------------------------------------------------
def test_fp_preset_equals_the_unquantized_model():
    model = tiny_model(n_layers=2)
    u = batches(1)[0]
    with torch.no_grad():
        rec, conv = model(u, mode="recurrent"), model(u)
        qm = prepare(model, make_config("fp")).eval()
        torch.testing.assert_close(qm(u, "recurrent"), rec, rtol=0, atol=0)
        torch.testing.assert_close(qm(u, mode="conv"), conv, rtol=1e-5, atol=1e-5)
    assert type(qm.blocks[0].activation) is torch.nn.GELU  # full precision: not swapped


def test_quantized_recurrent_and_conv_modes_are_close_at_high_precision():
    model = tiny_model()
    cfg = make_config("W8A8", overrides={t: {"bits": 16} for t in (
        "encoder", "A", "B", "C", "D", "mix", "decoder", "blocks.*.ssm.input",
        "blocks.*.ssm.output", "blocks.*.activation.output", "blocks.*.glu.output",
        "decoder.input")} | {"x": {"bits": 16, "calibration": "maxabs"}})
    qm = calibrate(prepare(model, cfg), batches(2))
    u = batches(1)[0]
    assert qm.blocks[0].activation.hard
    with torch.no_grad():
        torch.testing.assert_close(qm(u, "recurrent"), qm(u, mode="conv"), rtol=1e-2, atol=1e-2)
        # streaming, one sample at a time, is the recurrent mode
        state = qm.init_state(u.shape[0])
        for k in range(u.shape[1]):
            logits, state = qm.step(u[:, k], state)
        torch.testing.assert_close(logits, qm(u, "recurrent"), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("parameterization", ["continuous", "discrete", "frozen-a"])
@pytest.mark.parametrize("form", ["cartesian", "polar"])
def test_qat_gradients_reach_the_trained_parameters(parameterization, form):
    model = tiny_model()
    cfg = make_config("W4A6", a_bits=8, x_bits=8, a_bar_form=form)
    qm = calibrate(prepare(model, cfg, parameterization=parameterization), batches(1))
    qm.train()
    groups = parameter_groups(qm)
    for mode in ("recurrent", "conv"):
        qm.zero_grad()
        qm(batches(1)[0], mode=mode).square().sum().backward()
        for p in groups["ssm"] + groups["other"]:
            assert p.grad is not None and torch.isfinite(p.grad).all()
    names = {n for n, _ in qm.named_parameters()}
    assert len(groups["ssm"]) == {"continuous": 3, "discrete": 1, "frozen-a": 0}[parameterization]
    assert len(groups["ssm"]) + len(groups["other"]) == len(names)  # every parameter is trained
    if parameterization == "frozen-a":
        assert "blocks.0.ssm.params.A_bar" not in names  # a buffer: fixed
    if parameterization != "continuous":  # the SSM owns its discrete tensors
        assert {"blocks.0.ssm.params.B_bar", "blocks.0.ssm.params.D"} <= names


def test_hard_gelu_form():
    x = T([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0])
    assert torch.equal(hard_gelu(x), T([-0.0, -0.0, -0.25, 0.0, 0.75, 2.0, 3.0]))


# --- memory -------------------------------------------------------------------------------
def test_memory_footprint_by_hand():
    mcfg = S4DConfig(d_input=1, d_model=2, d_state=4, n_classes=3)
    report = memory_footprint(make_config("W8A8"), mcfg)
    rows = {r.name.replace("blocks.0.", ""): r for r in report.rows}
    # elements: input 1; encoder 2 + 2; A_bar, B_bar, C: 2 heads x 2 complex = 8 reals each;
    # D 2; state 8; activations ssm_input, ssm_output, gelu_output, mix_output, pooled 2 each;
    # mix 4x2 + 4; decoder 3x2 + 3
    names = ("ssm.A_bar", "ssm.x", "mix.weight", "decoder.weight")
    assert [rows[n].elements for n in names] == [8, 8, 8, 6]
    elements = 1 + 2 + 2 + 8 * 3 + 2 + 8 + 2 * 5 + 8 + 4 + 6 + 3
    assert sum(r.elements for r in report.rows) == elements == 70
    assert report.fp32_bits == 70 * 32
    # W8A8: input in full precision (32 bits), the other 69 values at 8 bits; quantization
    # parameters: 32-bit scales, one per head (row) for the weight matrices and A_bar, B_bar, C
    # (encoder 2, A_bar 2, B_bar 2, C 2, mix 4, decoder 3), one per tensor for the 3 biases, D and
    # the state (5): 20 scales; a 32-bit scale plus an 8-bit zero point for each of the 5
    # asymmetric activations
    expected = 32 + 69 * 8 + 20 * 32 + 5 * (32 + 8)
    assert report.total_bits == expected == 1424
    assert report.savings_percent == pytest.approx(100 * (1 - 1424 / 2240))
    # per (head, mode) state ranges: 4 scales instead of 1; per-tensor mixing weights: 1 scale
    # instead of 4 rows
    finer = memory_footprint(make_config("W8A8", overrides={
        "x": {"granularity": "mode"}, "blocks.*.mix.weight": {"granularity": "tensor"}}), mcfg)
    assert finer.total_bits == 1424 + 3 * 32 - 3 * 32
    # polar A_bar: per head a magnitude scale and zero point and a phase scale (3 x 32 bits)
    # instead of one Cartesian scale
    polar = memory_footprint(make_config("W8A8", a_bar_form="polar"), mcfg)
    assert polar.total_bits == 1424 + 2 * (3 - 1) * 32
    assert memory_footprint(make_config("fp"), mcfg).savings_percent == 0.0
    assert "saved" in report.table() and report.to_dict()["total_bits"] == 1424


# --- bit-exact integer reference ------------------------------------------------------------------
def _round_shift(a: torch.Tensor, k: int) -> torch.Tensor:
    """round-half-to-even(a / 2^k) for int64 a and k >= 0, in integer arithmetic only."""
    if k == 0:
        return a
    q = torch.div(a, 2**k, rounding_mode="floor")
    r = a - q * 2**k
    up = (r > 2 ** (k - 1)) | ((r == 2 ** (k - 1)) & (q % 2 == 1))
    return q + up.long()


def test_fake_quantized_model_equals_integer_arithmetic_bit_exactly():
    """Integer reference of a tiny W8A8 model: every scale a power of two, so the fake-quantized
    float model and the converted integer model must both reproduce integer arithmetic exactly
    (atol=0): input quantization, encoder, the recurrent SSM with the state requantized every
    step, hard GELU, mixing with a saturated GLU gate, residual, mean pooling and decoder."""
    H, N2, B, L = 2, 2, 3, 8
    g = torch.Generator().manual_seed(0)
    model = S4DModel(S4DConfig(d_input=1, d_model=H, d_state=2 * N2, n_classes=3))
    sym = {"symmetric": True}
    cfg = make_config("W8A8", overrides={"encoder.input": {"bits": 8, **sym},
                                         "blocks.*.ssm.output": sym, "blocks.*.glu.output": sym,
                                         "decoder.input": sym})
    qm = prepare(model, cfg, parameterization="discrete").eval()
    q = quantizers(qm)

    def codes(*shape, lim=127):
        return torch.randint(-lim, lim + 1, shape, generator=g)

    def sym_range(target, e):  # symmetric 8-bit grid with scale 2^-e
        q[target].set_range(-127 * 2.0**-e, 127 * 2.0**-e)

    # parameters on their grids: codes * 2^-e
    w_enc, b_enc = codes(H, 1), codes(H)
    a_re, a_im = codes(H, N2, lim=90), codes(H, N2, lim=90)  # |A_bar| < 1
    b_re, b_im, c_re, c_im = codes(H, N2), codes(H, N2), codes(H, N2), codes(H, N2)
    d = codes(H)
    w_mix = torch.cat([codes(H, H), torch.zeros(H, H, dtype=torch.long)])  # gate half: 0
    b_mix = torch.cat([codes(H, lim=1), torch.full((H,), 127)])  # scale 1; gate: sigmoid(127) = 1
    w_dec, b_dec = codes(3, H), codes(3)
    with torch.no_grad():
        model.encoder.weight.copy_(w_enc * 2.0**-6)
        model.encoder.bias.copy_(b_enc * 2.0**-6)
        dp = model.blocks[0].ssm.params
        dp.A_bar.copy_(torch.stack([a_re, a_im], -1) * 2.0**-7)
        dp.B_bar.copy_(torch.stack([b_re, b_im], -1) * 2.0**-6)
        dp.C.copy_(torch.stack([c_re, c_im], -1) * 2.0**-6)
        dp.D.copy_(d * 2.0**-6)
        model.blocks[0].mix.weight.copy_(w_mix * 2.0**-6)
        model.blocks[0].mix.bias.copy_(b_mix * 1.0)
        model.decoder.weight.copy_(w_dec * 2.0**-6)
        model.decoder.bias.copy_(b_dec * 2.0**-6)
    sym_range("encoder.input", 4)
    for t in ("encoder.weight", "encoder.bias", "decoder.weight", "decoder.bias",
              "blocks.0.ssm.B_bar", "blocks.0.ssm.C", "blocks.0.ssm.D", "blocks.0.mix.weight"):
        sym_range(t, 6)
    q["blocks.0.mix.bias"].set_range(-127.0, 127.0)  # scale 1
    sym_range("blocks.0.ssm.A_bar", 7)
    sym_range("blocks.0.ssm.x", 4)
    sym_range("blocks.0.ssm.output", 3)
    sym_range("blocks.0.glu.output", 4)
    sym_range("decoder.input", 3)
    q["blocks.0.ssm.input"].set_range(-128 * 2.0**-5, 127 * 2.0**-5)  # scale 2^-5, zp 128
    q["blocks.0.activation.output"].set_range(-16 * 2.0**-4, 239 * 2.0**-4)  # 2^-4, zp 16

    n_u = torch.randint(-300, 301, (B, L, 1), generator=g)  # u = n_u / 32: many exact ties
    u = n_u * 2.0**-5
    with torch.no_grad():
        rec = activations(qm, u)

    # --- integer reference (int64 only) ---
    q_u = torch.clamp(_round_shift(n_u, 1), -127, 127)  # scale 2^-4
    acc = q_u * w_enc[:, 0] + b_enc * 2**4  # (B L H) encoder output at 2^-10
    h = torch.clamp(_round_shift(acc, 5) + 128, 0, 255) - 128  # ssm input at 2^-5
    xr = torch.zeros(B, H, N2, dtype=torch.long)
    xi = torch.zeros(B, H, N2, dtype=torch.long)
    ys = []
    for k in range(L):
        hk = h[:, k, :, None]
        acc_r = a_re * xr - a_im * xi + b_re * hk  # 2^-11
        acc_i = a_re * xi + a_im * xr + b_im * hk
        xr = torch.clamp(_round_shift(acc_r, 7), -127, 127)  # state at 2^-4, every step
        xi = torch.clamp(_round_shift(acc_i, 7), -127, 127)
        acc_y = 4 * (c_re * xr - c_im * xi).sum(-1) + d * h[:, k]  # 2 Re(C x) + D u at 2^-11
        ys.append(torch.clamp(_round_shift(acc_y, 8), -127, 127))  # ssm output at 2^-3
    q_y = torch.stack(ys, dim=1)
    gate = torch.clamp(q_y + 16, 0, 32)  # clip((y + 2) / 4, 0, 1) at 2^-5
    q_g = torch.clamp(_round_shift(q_y * gate, 4) + 16, 0, 255) - 16  # gelu output at 2^-4
    acc_m = q_g @ w_mix[:H].T + b_mix[:H] * 2**10  # value half at 2^-10; the gate is exactly 1
    q_m = torch.clamp(_round_shift(acc_m, 6), -127, 127)  # mixing output at 2^-4
    out = acc + q_m * 2**6  # residual: the block input (the encoder output) at 2^-10
    q_p = torch.clamp(_round_shift(out.sum(1), 10), -127, 127)  # mean = sum / 8 at 2^-3
    logits = q_p @ w_dec.T + b_dec * 2**3  # at 2^-9

    exact = {"blocks.0.ssm.input": h * 2.0**-5, "blocks.0.ssm.output": q_y * 2.0**-3,
             "blocks.0.activation.output": q_g * 2.0**-4, "blocks.0.glu.output": q_m * 2.0**-4,
             "decoder.input": q_p * 2.0**-3, "logits": logits * 2.0**-9}
    for name, ref in exact.items():
        torch.testing.assert_close(rec[name], ref.float(), rtol=0, atol=0, msg=name)
    assert (q_y.abs() > 1).float().mean() > 0.5  # the test exercises non-trivial values
    # the integer model: int64 codes and accumulators, the same numbers
    im = convert(qm)
    assert im.blocks[0].ssm.A_bar_re.dtype == torch.long
    assert torch.equal(im.blocks[0].ssm.A_bar_re, a_re) and torch.equal(im.decoder.weight_codes,
                                                                        w_dec)
    with torch.no_grad():
        irec = activations(im, u)
    for name, ref in exact.items():  # the parts' outputs (an integer part quantizes its input)
        if not name.endswith(".input"):
            torch.testing.assert_close(irec[name], ref.float(), rtol=0, atol=0, msg=f"int {name}")


def test_convert_refuses_what_an_integer_model_cannot_run():
    qm = calibrate(prepare(tiny_model(), make_config("W8A8")), batches(1))
    with pytest.raises(ImssaError, match="encoder.input"):
        convert(qm)  # the preset keeps the model input in full precision
    polar = make_config("W8A8", overrides={"encoder.input": {"bits": 8}}, a_bar_form="polar")
    with pytest.raises(ImssaError, match="cartesian"):
        convert(calibrate(prepare(tiny_model(), polar), batches(1)))


def test_committed_state_dicts_translate_to_the_prepared_model():
    """Old QuantizedS4D keys (model.*, q.*, qb.<i>.*, discrete_params.<i>.*) -> new paths."""
    cfg = make_config("W4A6", a_bits=8, x_bits=8)
    for param in ("continuous", "discrete"):
        qm = calibrate(prepare(tiny_model(), cfg, parameterization=param), batches(1))
        new = qm.state_dict()
        old = {}
        for k, v in new.items():
            k = k.replace("encoder.q.input", "q.input").replace("decoder.q.input", "q.pooled")
            for part in ("encoder", "decoder"):
                k = k.replace(f"{part}.q.weight", f"q.{part}_weight")
                k = k.replace(f"{part}.q.bias", f"q.{part}_bias")
            for new_name, old_name in (("ssm.q.input", "ssm_input"), ("ssm.q.output", "ssm_output"),
                                       ("activation.q.output", "gelu_output"),
                                       ("mix.q.weight", "mix_weight"), ("mix.q.bias", "mix_bias"),
                                       ("glu.q.output", "mix_output"), ("ssm.q.", "")):
                k = k.replace(f"blocks.0.{new_name}", f"qb.0.{old_name}")
            if param == "discrete" and k.startswith("blocks.0.ssm.params.") and \
                    not k.endswith(".D"):
                k = k.replace("blocks.0.ssm.params.", "discrete_params.0.")
            elif not k.startswith(("q.", "qb.")):
                k = "model." + k.replace("ssm.params.", "ssm.")
            old[k] = v
        assert state_dict(old, param).keys() == new.keys()


# --- committed runs -------------------------------------------------------------------------
COMMITTED_QAT = REPO / "results" / "quant-beyond" / "qat-W4A6-6-6-sr-s4d-64-s0"


@pytest.mark.skipif(not (DATA / "mnist").is_dir(), reason=f"no MNIST at {DATA / 'mnist'} "
                    "(set IMSSA_TEST_DATA)")
def test_a_committed_qat_run_loads_and_reproduces_its_accuracy():
    """A QAT folder written by the old QuantizedS4D (old target names in config.json, old state
    dict keys in model.pt) loads through the legacy translation and reproduces its committed test
    accuracy on the first 300 test images within 3 binomial standard errors (stochastic rounding
    of the state makes the evaluation random)."""
    from imssa.data import load_task
    from imssa.experiments.quantize import load_qat

    committed = json.loads((COMMITTED_QAT / "metrics.json").read_text())["test_accuracy"]
    model, config = load_qat(COMMITTED_QAT)
    assert config["qat"]["train_noise_on"][0] == "A_bar"  # the old names, as committed
    q = quantizers(model)
    assert q["blocks.0.ssm.x"].spec.rounding == "stochastic" and q["blocks.0.ssm.x"].frozen
    n = 300
    test = load_task("smnist", DATA / "mnist", limit=n, download=False).test
    torch.manual_seed(0)
    with torch.no_grad():
        acc = (model(test.x[:n], "recurrent").argmax(-1) == test.y[:n]).float().mean().item()
    assert abs(acc - committed) <= 3 * math.sqrt(committed * (1 - committed) / n), acc


# --- devices --------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    model = tiny_model()
    cfg = make_config("W4A6", a_bits=8, x_bits=8, overrides={"x": {"granularity": "mode"}})
    qm = calibrate(prepare(model, cfg), batches(2))
    u = batches(1, seed=5)[0]
    with torch.no_grad():
        cpu = qm(u, "recurrent")
        qm_cuda = qm.to("cuda")
        torch.testing.assert_close(qm_cuda(u.cuda(), "recurrent").cpu(), cpu, rtol=1e-4,
                                   atol=1e-4)
        calibrate(qm_cuda, [b.cuda() for b in batches(2)])
        assert math.isfinite(qm_cuda(u.cuda(), mode="conv").sum().item())


# --- the QAT update as a CUDA graph ---------------------------------------------------------------
def _qat_setup(device: str, L: int = 24):
    """A small calibrated W4A6 model on ``device``, its AdamW (capturable on CUDA) and 3 batches."""
    model = tiny_model(d_model=8, d_state=16).to(device)
    cfg = make_config("W4A6", a_bits=8, x_bits=8, a_bar_form="polar",
                      overrides={"x": {"granularity": "mode"}})
    qm = calibrate(prepare(model, cfg), [b.to(device) for b in batches(2, L=L)])
    qm.train()
    cuda = device == "cuda"
    opt = torch.optim.AdamW(qm.parameters(), lr=T(1e-2, device=device) if cuda else 1e-2,
                            fused=cuda, capturable=cuda)
    g = torch.Generator().manual_seed(9)
    data = [(torch.randn(4, L, 1, generator=g).to(device),
             torch.randint(0, 3, (4,), generator=g).to(device)) for _ in range(3)]
    return qm, opt, data


def test_train_step_eager_is_the_plain_update():
    """TrainStep without a graph (any CPU) is the textbook update, bit for bit."""
    from imssa.quant import TrainStep

    runs = []
    for use_step in (True, False):
        qm, opt, data = _qat_setup("cpu")
        step = TrainStep(qm, lambda u, m=qm: m(u, mode="recurrent"), opt, grad_clip=1.0,
                         graph=False)
        losses = []
        for u, y in data:
            if use_step:
                losses.append(step(u, y))
            else:
                loss = torch.nn.functional.cross_entropy(qm(u, mode="recurrent"), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(qm.parameters(), 1.0)
                opt.step()
                losses.append(loss.detach())
        runs.append((torch.stack(losses), [p.detach().clone() for p in qm.parameters()]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_train_step_refuses_what_a_graph_cannot_replay():
    from imssa.quant import TrainStep

    qm, _, _ = _qat_setup("cpu")
    fwd = lambda u: qm(u, mode="recurrent")  # noqa: E731
    with pytest.raises(ImssaError, match="capturable"):
        TrainStep(qm, fwd, torch.optim.AdamW(qm.parameters()))
    with pytest.raises(ImssaError, match="learning rate as a tensor"):
        TrainStep(qm, fwd, torch.optim.AdamW(qm.parameters(), capturable=True))
    with pytest.raises(ImssaError, match="Adam"):
        TrainStep(qm, fwd, torch.optim.SGD(qm.parameters(), lr=0.1))
    cfg = make_config("W4A6", a_bits=8, x_bits=8,
                      overrides={"x": {"granularity": "mode", "rounding": "stochastic"}})
    sr = calibrate(prepare(tiny_model(), cfg), batches(1))
    opt = torch.optim.AdamW(sr.parameters(), lr=T(1e-3), capturable=True)
    with pytest.raises(ImssaError, match="blocks.0.ssm.x rounds stochastically"):
        TrainStep(sr, fwd, opt)
    assert TrainStep(qm, fwd, torch.optim.AdamW(qm.parameters(), lr=T(1e-3), capturable=True))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_train_step_graph_replays_the_eager_update_on_cuda():
    """Recorded once, replayed: the same losses and parameters as eager updates, bit for bit,
    over 3 updates (the fused Triton scan, its backward, the fused capturable AdamW), the
    warm-up of the recording undone; a batch of another shape runs eagerly in between."""
    from imssa.quant import TrainStep

    runs = []
    for graph in (True, False):
        qm, opt, data = _qat_setup("cuda", L=64)
        step = TrainStep(qm, lambda u, m=qm: m(u, mode="recurrent"), opt, grad_clip=1.0,
                         graph=graph)
        losses = [step(u, y) for u, y in data[:2]]
        losses.append(step(data[2][0][:3], data[2][1][:3]))  # partial batch: eager
        losses.append(step(*data[2]))
        runs.append((torch.stack(losses).cpu(), [p.detach().cpu() for p in qm.parameters()]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
