"""Tests for imssa.crossbar: the noiseless crossbar equals the digital model, quantized periphery
equals a fake-quantized digital computation, per-output read noise equals per-device read noise
in distribution, seeding, read-noise modes, drift compensation, digital parts and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from imssa.crossbar import AnalogTile, CrossbarS4D, PeripheryConfig, engine
from imssa.devices import (
    GaussianConfig,
    GaussianDevice,
    IdealDevice,
    PCMConfig,
    PCMDevice,
)
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig, map_linear, map_model, mapped_matvec, reconstruct
from imssa.ssm import DiscreteSSM, S4DConfig, S4DModel

ENCODINGS = ["polarity_block", "differential"]
YEAR = 365 * 86400.0


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(dtype=torch.float64, **kw) -> S4DModel:
    torch.manual_seed(0)
    cfg = S4DConfig(**({"d_input": 2, "d_model": 4, "d_state": 8, "n_layers": 2,
                        "n_classes": 3} | kw))
    return S4DModel(cfg).to(dtype).eval()


def _inputs(B=3, L=6, d=2, dtype=torch.float64, seed=1) -> torch.Tensor:
    return torch.randn(B, L, d, dtype=dtype, generator=_gen(seed))


# --- equivalences ------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("tile", [4, 256])
def test_ideal_crossbar_equals_digital_recurrent(encoding, tile):
    """Ideal devices and periphery: logits equal recurrent mode on every chip (float64)."""
    model, u = _model(), _inputs()
    mapping = MappingConfig(g_min=1.0, g_max=25.0, tile_rows=tile, tile_cols=tile,
                            encoding=encoding)
    xbar = CrossbarS4D(model, mapping, IdealDevice(), n_chips=2)
    if tile == 4:  # C's columns and the mixing rows span several tiles: partial sums per tile
        assert xbar.tiles["layers.0.C"].target.W.shape[2] > 1
        assert xbar.tiles["layers.0.mix"].target.W.shape[1] > 1
    xbar.set_time(0.0)
    logits = xbar(u)
    assert logits.shape == (2, 3, 3) and logits.dtype == torch.float64
    expected = model(u, mode="recurrent").detach()
    torch.testing.assert_close(logits, expected.expand(2, -1, -1), rtol=0, atol=1e-9)


def test_float32_crossbar_within_float_tolerance():
    model, u = _model(torch.float32), _inputs(dtype=torch.float32)
    xbar = CrossbarS4D(model, MappingConfig(), IdealDevice())
    xbar.set_time(0.0)
    torch.testing.assert_close(xbar(u)[0], model(u, mode="recurrent").detach(), rtol=1e-4,
                               atol=1e-4)


def _q(v, r, bits):
    """The converters' arithmetic, written out: narrow signed grid of [-r, r], half to even
    (a zero range, e.g. the imaginary part of a real mode, is clamped to 1e-30)."""
    q = 2 ** (bits - 1) - 1
    step = torch.as_tensor(r).clamp_min(1e-30) / q
    return torch.clamp(torch.round(v / step), -q, q) * step


def _qc(v, r, bits):
    return torch.complex(_q(v.real, r, bits), _q(v.imag, r, bits))


def _fake_quant_forward(model, R, pc, u):
    """Digital S4D with the crossbar's DAC, ADC and state register as fake quantizers.

    ADC ranges may be per column: dense (out,), state columns (H, N2, S) of which the first two
    are (re, im), output columns (H, 1).
    """
    dac, adc, sb = pc.dac_bits, pc.adc_bits, pc.state_bits

    def dense(lin, x, signal, group):
        return _q(_q(x, R[signal], dac) @ lin.weight.detach().T + lin.bias.detach(), R[group],
                  adc)

    x = dense(model.encoder, u, "input", "encoder")
    for i, (block, ssm) in enumerate(zip(model.blocks, model.discrete())):
        p = f"layers.{i}."
        A, Bv, C, D = (t.detach() for t in (ssm.A_bar, ssm.B_bar, ssm.C, ssm.D))
        r_ab = R[p + "AB"]
        r_re, r_im = (r_ab, r_ab) if r_ab.ndim == 0 else (r_ab[..., 0], r_ab[..., 1])
        r_cd = R[p + "CD"]
        r_cd = r_cd if r_cd.ndim == 0 else r_cd[:, 0]
        ud = _q(x, R[p + "u"], dac)
        sd = torch.zeros(u.shape[0], *A.shape, dtype=A.dtype)
        ys = []
        for k in range(u.shape[1]):
            pre = A * sd + Bv * ud[:, k, :, None]
            s = torch.complex(_q(pre.real, r_re, adc), _q(pre.imag, r_im, adc))
            s = _qc(s, R[p + "state"], sb)
            sd = _qc(s, R[p + "x"], dac)
            ys.append(_q(2 * (C * sd).sum(-1).real + D * ud[:, k], r_cd, adc))
        z = F.gelu(torch.stack(ys, 1))
        x = x + F.glu(dense(block.mix, z, p + "z", p + "mix"), dim=-1)
    return dense(model.decoder, x.mean(1), "pooled", "decoder")


@pytest.mark.parametrize("encoding,granularity", [("polarity_block", "tensor"),
                                                  ("differential", "column")])
def test_quantized_periphery_equals_fake_quantized_digital(encoding, granularity):
    model, u = _model(), _inputs(B=4, L=8)
    pc = PeripheryConfig(dac_bits=6, adc_bits=7, state_bits=8, adc_granularity=granularity)
    xbar = CrossbarS4D(model, MappingConfig(g_min=0.5, encoding=encoding), IdealDevice(), pc)
    ranges = xbar.calibrate([u[:2], u[2:]])
    assert set(ranges) >= {"input", "encoder", "layers.0.AB", "layers.1.CD", "layers.0.state",
                           "layers.1.x", "decoder"}
    if granularity == "column":
        assert ranges["layers.0.AB"].shape == (4, 4, 2) and ranges["decoder"].shape == (3,)
    xbar.set_time(0.0)
    logits = xbar(u)[0]
    with torch.no_grad():
        expected = _fake_quant_forward(model, ranges, pc, u)
        exact = model(u, mode="recurrent")
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-9)
    assert (logits - exact).abs().max() > 1e-3  # the quantizers did act


def test_calibration_percentile_and_given_ranges(monkeypatch):
    model, u = _model(), _inputs(B=8, L=10)
    maxabs = CrossbarS4D(model, MappingConfig(), IdealDevice(), PeripheryConfig(adc_bits=8))
    pct = CrossbarS4D(model, MappingConfig(), IdealDevice(),
                      PeripheryConfig(adc_bits=8, calibration="percentile", percentile=90.0))
    r_max, r_pct = maxabs.calibrate(u), pct.calibrate(u)
    assert set(r_max) == {"encoder", "layers.0.AB", "layers.0.CD", "layers.0.mix",
                          "layers.1.AB", "layers.1.CD", "layers.1.mix", "decoder"}
    for name in r_max:
        assert 0 < r_pct[name] < r_max[name]
    # the state's max-abs range is the largest |Re| or |Im| of the state over the batch
    enc = model.encoder(u).detach()
    s = torch.zeros(8, 4, 4, dtype=torch.complex128)
    ssm = model.discrete()[0]
    top, states = 0.0, []
    for k in range(10):
        s = ssm.A_bar.detach() * s + ssm.B_bar.detach() * enc[:, k, :, None]
        top = max(top, float(torch.view_as_real(s).abs().max()))
        states.append(s)
    state = CrossbarS4D(model, MappingConfig(), IdealDevice(), PeripheryConfig(state_bits=8))
    assert state.calibrate(u)["layers.0.state"].item() == pytest.approx(top, rel=1e-12)
    # percentiles are exact over all steps of the batch, streamed step by step
    values = torch.cat([torch.view_as_real(s).abs().flatten() for s in states])
    pct_state = CrossbarS4D(model, MappingConfig(), IdealDevice(),
                            PeripheryConfig(state_bits=8, calibration="percentile",
                                            percentile=99.0))
    assert pct_state.calibrate(u)["layers.0.state"].item() == pytest.approx(
        torch.quantile(values, 0.99).item(), rel=1e-12)
    # dense layers run in chunks of rows: same ranges and outputs
    monkeypatch.setattr(engine, "DENSE_CHUNK_ELEMENTS", 16)
    chunked = CrossbarS4D(model, MappingConfig(), IdealDevice(),
                          PeripheryConfig(adc_bits=8, calibration="percentile", percentile=90.0))
    for name, r in chunked.calibrate(u).items():
        torch.testing.assert_close(r, r_pct[name], rtol=1e-12, atol=0)
    chunked.set_time(0.0)
    pct.set_time(0.0)
    torch.testing.assert_close(chunked(u), pct(u), rtol=0, atol=1e-12)
    given = CrossbarS4D(model, MappingConfig(), IdealDevice(),
                        PeripheryConfig(dac_bits=8, dac_range=2.0, state_bits=6, state_clip=1.0))
    assert not given.periphery.needs_calibration
    given.set_time(0.0)
    assert given(u).shape == (1, 8, 3)


# --- read noise ----------------------------------------------------------------------------------

def _dense_tile(device, periphery=None, n_chips=1, g_min=2.0, seed=3, magnitudes=None):
    g = _gen(0)
    W = torch.randn(6, 24, generator=g, dtype=torch.float64)
    if magnitudes is not None:
        W = W.sign() * (magnitudes[0] + (magnitudes[1] - magnitudes[0])
                        * torch.rand(6, 24, generator=g, dtype=torch.float64))
    b = torch.randn(6, generator=g, dtype=torch.float64)
    t = map_linear("lin", W, b, MappingConfig(g_min=g_min, tile_rows=16, tile_cols=8))
    return AnalogTile(t, device, periphery, n_chips=n_chips, seed=seed), W, b


@pytest.mark.parametrize("role", ["dense", "ssm_A"])
def test_per_output_read_noise_matches_per_device_reference(role):
    """One Gaussian per output with variance sum_j sigma_ij^2 v_j^2 = per-device read noise, then
    the product (DESIGN.md): same mean, std and distribution (KS)."""
    device = PCMDevice()
    n = 4000
    if role == "dense":
        tile, _, _ = _dense_tile(device)
        x = torch.rand(1, 1, 24, generator=_gen(4), dtype=torch.float64).expand(1, n, 24)
    else:
        t = map_model(_model(), MappingConfig(g_min=2.0)).layers[0].A
        tile = AnalogTile(t, device, seed=3)
        x = torch.randn(1, 1, 4, 4, generator=_gen(4), dtype=torch.complex128).expand(1, n, 4, 4)
    tile.set_time(86400.0)
    fast = tile(x, _gen(5))[0]
    slow = tile.reference(x, _gen(6))[0]
    if role == "ssm_A":
        fast, slow = torch.view_as_real(fast).flatten(1)[:, :8], \
            torch.view_as_real(slow).flatten(1)[:, :8]
    # closed form of the output std: sqrt(sum_j sigma_j^2 v_j^2), scale divided out
    if role == "dense":
        d = tile.drifted
        v = torch.cat([x[0, 0], torch.ones(1, dtype=torch.float64)])
        std_g = (d.read_std[0].square().T @ v.square()).sqrt()  # (2 out) per column
        var_pairs = std_g[0::2].square() + std_g[1::2].square()
        closed = var_pairs.sqrt() / tile.tensor.scale[:, 0]
        torch.testing.assert_close(fast.std(0), closed, rtol=0.05, atol=0)
    se = slow.std(0) / n ** 0.5
    assert ((fast.mean(0) - slow.mean(0)).abs() < 5 * se * 2 ** 0.5).all()
    torch.testing.assert_close(fast.std(0), slow.std(0), rtol=0.06, atol=0)
    assert (fast.std(0) > 0).all()
    for j in range(fast.shape[1]):
        assert stats.ks_2samp(fast[:, j].numpy(), slow[:, j].numpy()).pvalue > 1e-3


def test_read_noise_modes_per_inference_frozen_per_step_fresh():
    device = GaussianDevice(GaussianConfig(prog_noise=0.0, read_noise=0.05))
    x = torch.rand(1, 1, 24, generator=_gen(4), dtype=torch.float64).expand(1, 500, 24)
    frozen, W, b = _dense_tile(device, PeripheryConfig(read_noise_mode="per_inference"))
    frozen.set_time(10.0)
    y1, y2 = frozen(x), frozen(x)
    # one read for every step and input: identical across the batch and across calls
    assert torch.equal(y1, y2) and torch.equal(y1, y1[:, :1].expand_as(y1))
    torch.testing.assert_close(frozen.reference(x), y1, rtol=0, atol=1e-12)
    assert not torch.allclose(y1[0, 0], x[0, 0] @ W.T + b)  # but it is a noisy read
    frozen.set_time(10.0)  # a new inference time draws a new read
    assert not torch.equal(frozen(x), y1)
    fresh, _, _ = _dense_tile(device)  # device default: per_step
    fresh.set_time(10.0)
    y = fresh(x)
    assert (y[0].std(0) > 0.01).all() and not torch.equal(y, fresh(x))
    torch.testing.assert_close(y[0].mean(0), x[0, 0] @ W.T + b, rtol=0, atol=0.05)
    # in the recurrent engine the same holds over steps: per_inference is deterministic
    model, u = _model(), _inputs()
    for mode, same in (("per_inference", True), ("per_step", False)):
        xbar = CrossbarS4D(model, MappingConfig(), device, PeripheryConfig(read_noise_mode=mode))
        xbar.set_time(10.0)
        assert torch.equal(xbar(u), xbar(u)) is same


def test_chips_differ_and_are_seeded():
    model, u = _model(), _inputs()
    device = GaussianDevice(GaussianConfig(prog_noise=0.05, read_noise=0.01))

    def run(seed, noise_seed=7):
        xbar = CrossbarS4D(model, MappingConfig(), device, n_chips=3, seed=seed)
        xbar.set_time(0.0, _gen(noise_seed))
        return xbar(u, _gen(noise_seed))

    a = run(0)
    assert torch.equal(a, run(0))  # same seeds: the same chips and the same reads
    assert not torch.equal(a, run(1))
    assert not torch.equal(a, run(0, noise_seed=8))  # same chips, other read noise
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a[1], a[2])
    torch.testing.assert_close(a.mean(0), model(u, mode="recurrent").detach(), rtol=0, atol=0.5)
    # a generator as the seed
    xbar = CrossbarS4D(model, MappingConfig(), device, n_chips=3, seed=_gen(0))
    xbar.set_time(0.0, _gen(7))
    assert torch.equal(xbar(u, _gen(7)), a)


# --- drift compensation ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["global", "per_column"])
def test_drift_compensation_restores_ideal_output_of_drifted_pcm(mode):
    """A year of PCM drift shrinks outputs by about half; the compensation gain restores them in
    expectation over chips (programming and read noise off to isolate drift)."""
    device = PCMDevice(PCMConfig(prog_noise_scale=0.0, read_noise_scale=0.0))
    x = torch.rand(1, 2, 24, generator=_gen(4), dtype=torch.float64)
    plain, W, b = _dense_tile(device, n_chips=200, g_min=0.0, magnitudes=(0.5, 1.0))
    comp, _, _ = _dense_tile(device, PeripheryConfig(drift_compensation=mode), n_chips=200,
                             g_min=0.0, magnitudes=(0.5, 1.0))
    ideal = x[0] @ W.T + b
    plain.set_time(YEAR)
    comp.set_time(YEAR)
    assert comp.alpha is not None and (comp.alpha > 1.5).all()
    drifted = plain(x).mean(0)
    restored = comp(x).mean(0)
    scale = ideal.abs().mean()
    assert ((drifted - ideal).abs().mean() / scale) > 0.3
    assert ((restored - ideal).abs().mean() / scale) < 0.05
    # at t = 0 the gain is 1: nothing drifted yet
    comp.set_time(0.0)
    torch.testing.assert_close(comp.alpha, torch.ones_like(comp.alpha))
    # the engine: compensated logits of a drifted chip are closer to the ideal ones
    model, u = _model(), _inputs()
    errors = []
    for pc in (PeripheryConfig(), PeripheryConfig(drift_compensation=mode)):
        xbar = CrossbarS4D(model, MappingConfig(), device, pc, n_chips=4)
        xbar.set_time(YEAR)
        errors.append((xbar(u) - model(u, mode="recurrent").detach()).abs().mean())
    assert errors[1] < 0.5 * errors[0]


# --- digital parts -------------------------------------------------------------------------------

def test_digital_A_equals_the_exact_A():
    """With A digital, each chip computes exactly the digital model with the exact A_bar and the
    other weights as its (noisy, deterministic) conductances hold them."""
    model, u = _model(), _inputs()
    device = GaussianDevice(GaussianConfig(prog_noise=0.05))
    xbar = CrossbarS4D(model, MappingConfig(g_min=1.0), device, n_chips=2, digital=("A",))
    assert "layers.0.A" not in xbar.tiles and "layers.0.B" in xbar.tiles
    xbar.set_time(0.0)
    logits = xbar(u)
    for c in range(2):
        chip = copy.deepcopy(model)
        ssms = []
        for i, (block, ssm) in enumerate(zip(chip.blocks, model.discrete())):
            g = {k: xbar.tiles[f"layers.{i}.{k}"].drifted.g[c] for k in "BCD"}
            parts = {k: reconstruct(xbar.tiles[f"layers.{i}.{k}"].tensor, g[k]) for k in "BCD"}
            ssms.append(DiscreteSSM(ssm.A_bar.detach(), parts["B"], parts["C"], parts["D"]))
            W = reconstruct(xbar.tiles[f"layers.{i}.mix"].tensor,
                            xbar.tiles[f"layers.{i}.mix"].drifted.g[c])
            block.mix.weight.data, block.mix.bias.data = W[:, :-1], W[:, -1]
        for name in ("encoder", "decoder"):
            W = reconstruct(xbar.tiles[name].tensor, xbar.tiles[name].drifted.g[c])
            getattr(chip, name).weight.data, getattr(chip, name).bias.data = W[:, :-1], W[:, -1]
        chip.discrete = lambda ssms=ssms: ssms
        torch.testing.assert_close(logits[c], chip(u, mode="recurrent").detach(), rtol=0,
                                   atol=1e-9)
    analog = CrossbarS4D(model, MappingConfig(g_min=1.0), device, n_chips=2)
    analog.set_time(0.0)
    assert not torch.allclose(analog(u), logits)
    # everything digital is the digital model itself
    digital = CrossbarS4D(model, MappingConfig(), device, n_chips=2,
                          digital=("encoder", "A", "B", "C", "D", "mix", "decoder"))
    torch.testing.assert_close(digital(u), model(u, mode="recurrent").detach().expand(2, -1, -1),
                               rtol=0, atol=1e-12)


def test_analog_tile_equals_mapped_matvec_and_reference_with_quantized_periphery():
    """Every role: the ideal tile equals mapped_matvec; with DAC, ADC and per-column gains the
    fast path equals the per-device reference (ideal devices)."""
    model = _model()
    mapped = map_model(model, MappingConfig(g_min=0.5, tile_rows=4, tile_cols=4))
    pc = PeripheryConfig(dac_bits=5, adc_bits=6, adc_granularity="column")
    for t in mapped:
        shape = {"dense": (1, 5, t.compact_shape[0] - 1), "ssm_A": (1, 5, 4, 4),
                 "ssm_C": (1, 5, 4, 4)}.get(t.role, (1, 5, 4))
        dtype = torch.complex128 if t.role in ("ssm_A", "ssm_C") else torch.float64
        x = torch.randn(shape, dtype=dtype, generator=_gen(2))
        ideal = AnalogTile(t, IdealDevice(), n_chips=2)
        ideal.set_time(0.0)
        exact = mapped_matvec(t, x)
        torch.testing.assert_close(ideal(x), exact.expand(2, *exact.shape[1:]), rtol=0,
                                   atol=1e-12)
        tile = AnalogTile(t, IdealDevice(), pc, n_chips=2)
        tile.calibrate(x)
        tile.set_time(0.0)
        y = tile(x)
        torch.testing.assert_close(y, tile.reference(x), rtol=0, atol=1e-12)
        assert (y - ideal(x)).abs().max() > 1e-4


# --- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,match", [
    ({"dac_bits": 1}, "dac_bits"), ({"adc_bits": 17}, "adc_bits"),
    ({"state_bits": 8.0}, "state_bits"), ({"dac_range": -1.0}, "dac_range"),
    ({"state_clip": 0.0}, "state_clip"), ({"output_noise": -0.1}, "output_noise"),
    ({"percentile": 40.0}, "percentile"), ({"calibration": "minmax"}, "calibration"),
    ({"adc_granularity": "row"}, "adc_granularity"), ({"read_noise_mode": "always"}, "read_noise"),
    ({"drift_compensation": "local"}, "drift_compensation"),
])
def test_periphery_config_errors(fields, match):
    with pytest.raises(ImssaError, match=match):
        PeripheryConfig(**fields)


def test_usage_errors():
    model, u = _model(), _inputs()
    with pytest.raises(ImssaError, match="window"):
        CrossbarS4D(model, MappingConfig(g_max=30.0), PCMDevice())
    with pytest.raises(ImssaError, match="tile_rows"):
        MappingConfig(tile_rows=2)
    with pytest.raises(ImssaError, match="digital"):
        CrossbarS4D(model, MappingConfig(), IdealDevice(), digital=("E",))
    with pytest.raises(ImssaError, match="n_chips"):
        CrossbarS4D(model, MappingConfig(), IdealDevice(), n_chips=0)
    with pytest.raises(ImssaError, match="Device"):
        CrossbarS4D(model, MappingConfig(), PCMConfig())
    with pytest.raises(ImssaError, match="discrete"):
        CrossbarS4D(model, MappingConfig(), IdealDevice(), discrete=model.discrete()[:1])
    xbar = CrossbarS4D(model, MappingConfig(), IdealDevice(), PeripheryConfig(adc_bits=8))
    with pytest.raises(ImssaError, match="set_time"):
        xbar(u)
    xbar.set_time(0.0)
    with pytest.raises(ImssaError, match="calibrate"):
        xbar(u)
    with pytest.raises(ImssaError, match="input must have shape"):
        xbar.calibrate(u[..., :1])
    with pytest.raises(ImssaError, match="t_inference"):
        xbar.set_time(-1.0)
    tile = AnalogTile(map_model(model, MappingConfig()).layers[0].A, IdealDevice())
    tile.set_time(0.0)
    with pytest.raises(ImssaError, match="complex"):
        tile(torch.randn(1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(ImssaError, match="seed"):
        CrossbarS4D(model, MappingConfig(), IdealDevice(), seed=0.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_digital():
    model, u = _model().cuda(), _inputs().cuda()
    xbar = CrossbarS4D(model, MappingConfig(), IdealDevice(), PeripheryConfig(), n_chips=2)
    xbar.set_time(0.0)
    torch.testing.assert_close(xbar(u), model(u, mode="recurrent").detach().expand(2, -1, -1),
                               rtol=0, atol=1e-9)
