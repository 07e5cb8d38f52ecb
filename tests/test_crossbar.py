"""Tests for imssa.crossbar: the noiseless converted model equals the digital model (recurrent and
streaming), quantized periphery equals a fake-quantized digital computation, per-output read
noise equals per-device read noise in distribution, seeding, read-noise modes, drift compensation
(against aihwkit's own class), digital parts and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from imssa.crossbar import (
    AnalogSSM,
    AnalogTile,
    PeripheryConfig,
    calibrate,
    chip_set,
    compensation,
    convert,
    linear,
    set_time,
)
from imssa.devices import (
    GaussianConfig,
    GaussianDevice,
    IdealDevice,
    PCMConfig,
    PCMDevice,
)
from imssa.errors import ImssaError
from imssa.mapping import (
    MappingConfig,
    crossbar_currents,
    decode_currents,
    map_linear,
    map_model,
    mapped_matvec,
    reconstruct,
    reconstruct_linear,
)
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


def _run(model, u):
    with torch.no_grad():
        return model(u, mode="recurrent")


# --- equivalences ------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("tile", [4, 256])
def test_ideal_crossbar_equals_digital_recurrent(encoding, tile):
    """Ideal devices and periphery: logits equal recurrent mode on every chip (float64)."""
    model, u = _model(), _inputs()
    mapping = MappingConfig(g_min=1.0, g_max=25.0, tile_rows=tile, tile_cols=tile,
                            encoding=encoding)
    xbar = convert(model, mapping, IdealDevice(), chips=2)
    assert isinstance(xbar.blocks[1].ssm, AnalogSSM) and model.blocks[1].ssm is not xbar.blocks[1].ssm
    if tile == 4:  # C's columns and the mixing rows span several tiles: partial sums per tile
        assert xbar.blocks[0].ssm.parts["C"].target.W.shape[2] > 1
        assert xbar.blocks[0].mix.tile.target.W.shape[1] > 1
    set_time(xbar, 0.0)
    logits = _run(xbar, u)
    assert logits.shape == (2, 3, 3) and logits.dtype == torch.float64
    expected = _run(model, u)
    torch.testing.assert_close(logits, expected.expand(2, -1, -1), rtol=0, atol=1e-9)
    # streaming, one sample at a time, gives the same logits
    state = xbar.init_state(3)
    for k in range(u.shape[1]):
        streamed, state = xbar.step(u[:, k], state)
    torch.testing.assert_close(streamed, expected.expand(2, -1, -1), rtol=0, atol=1e-9)


def test_float32_crossbar_within_float_tolerance():
    model, u = _model(torch.float32), _inputs(dtype=torch.float32)
    xbar = convert(model, MappingConfig(), IdealDevice())
    set_time(xbar, 0.0)
    torch.testing.assert_close(_run(xbar, u)[0], _run(model, u), rtol=1e-4, atol=1e-4)


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

    x = dense(model.encoder, u, "encoder.input", "encoder.output")
    for i, (block, ssm) in enumerate(zip(model.blocks, model.discrete())):
        p = f"blocks.{i}.ssm."
        A, Bv, C, D = (t.detach() for t in (ssm.A_bar, ssm.B_bar, ssm.C, ssm.D))
        r_ab = R[p + "state"]
        r_re, r_im = (r_ab, r_ab) if r_ab.ndim == 0 else (r_ab[..., 0], r_ab[..., 1])
        r_cd = R[p + "output"]
        r_cd = r_cd if r_cd.ndim == 0 else r_cd[:, 0]
        ud = _q(x, R[p + "input"], dac)
        sd = torch.zeros(u.shape[0], *A.shape, dtype=A.dtype)
        ys = []
        for k in range(u.shape[1]):
            pre = A * sd + Bv * ud[:, k, :, None]
            s = torch.complex(_q(pre.real, r_re, adc), _q(pre.imag, r_im, adc))
            s = _qc(s, R[p + "register"], sb)
            sd = _qc(s, R[p + "x"], dac)
            ys.append(_q(2 * (C * sd).sum(-1).real + D * ud[:, k], r_cd, adc))
        z = F.gelu(torch.stack(ys, 1))
        x = x + F.glu(dense(block.mix, z, f"blocks.{i}.mix.input", f"blocks.{i}.mix.output"),
                      dim=-1)
    return dense(model.decoder, x.mean(1), "decoder.input", "decoder.output")


@pytest.mark.parametrize("encoding,granularity", [("polarity_block", "tensor"),
                                                  ("differential", "channel")])
def test_quantized_periphery_equals_fake_quantized_digital(encoding, granularity):
    model, u = _model(), _inputs(B=4, L=8)
    pc = PeripheryConfig(dac_bits=6, adc_bits=7, state_bits=8, adc_granularity=granularity)
    xbar = convert(model, MappingConfig(g_min=0.5, encoding=encoding), IdealDevice(), pc)
    ranges = calibrate(xbar, [u[:2], u[2:]])
    assert set(ranges) >= {"encoder.input", "encoder.output", "blocks.0.ssm.state",
                           "blocks.1.ssm.output", "blocks.0.ssm.register", "blocks.1.ssm.x",
                           "blocks.0.mix.input", "decoder.input", "decoder.output"}
    assert xbar.blocks[0].ssm.ranges["state"] is ranges["blocks.0.ssm.state"]
    if granularity == "channel":
        assert ranges["blocks.0.ssm.state"].shape == (4, 4, 2)
        assert ranges["decoder.output"].shape == (3,)
    set_time(xbar, 0.0)
    logits = _run(xbar, u)[0]
    with torch.no_grad():
        expected = _fake_quant_forward(model, ranges, pc, u)
        exact = model(u, mode="recurrent")
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-9)
    assert (logits - exact).abs().max() > 1e-3  # the quantizers did act


def test_calibration_percentile_and_given_ranges(monkeypatch):
    model, u = _model(), _inputs(B=8, L=10)
    maxabs = convert(model, MappingConfig(), IdealDevice(), PeripheryConfig(adc_bits=8))
    pct = convert(model, MappingConfig(), IdealDevice(),
                  PeripheryConfig(adc_bits=8, calibration="percentile", percentile=90.0))
    r_max, r_pct = calibrate(maxabs, u), calibrate(pct, u)
    assert set(r_max) == {"encoder.output", "blocks.0.ssm.state", "blocks.0.ssm.output",
                          "blocks.0.mix.output", "blocks.1.ssm.state", "blocks.1.ssm.output",
                          "blocks.1.mix.output", "decoder.output"}
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
    state = convert(model, MappingConfig(), IdealDevice(), PeripheryConfig(state_bits=8))
    assert calibrate(state, u)["blocks.0.ssm.register"].item() == pytest.approx(top, rel=1e-12)
    # percentiles are exact over all steps of the batch, streamed step by step
    values = torch.cat([torch.view_as_real(s).abs().flatten() for s in states])
    pct_state = convert(model, MappingConfig(), IdealDevice(),
                        PeripheryConfig(state_bits=8, calibration="percentile", percentile=99.0))
    assert calibrate(pct_state, u)["blocks.0.ssm.register"].item() == pytest.approx(
        torch.quantile(values, 0.99).item(), rel=1e-12)
    # dense layers run in chunks of rows: same ranges and outputs
    monkeypatch.setattr(linear, "DENSE_CHUNK_ELEMENTS", 16)
    chunked = convert(model, MappingConfig(), IdealDevice(),
                      PeripheryConfig(adc_bits=8, calibration="percentile", percentile=90.0))
    for name, r in calibrate(chunked, u).items():
        torch.testing.assert_close(r, r_pct[name], rtol=1e-12, atol=0)
    set_time(chunked, 0.0)
    set_time(pct, 0.0)
    torch.testing.assert_close(_run(chunked, u), _run(pct, u), rtol=0, atol=1e-12)
    given = convert(model, MappingConfig(), IdealDevice(),
                    PeripheryConfig(dac_bits=8, dac_range=2.0, state_bits=6, state_clip=1.0))
    assert not chip_set(given).periphery.needs_calibration
    set_time(given, 0.0)
    assert _run(given, u).shape == (1, 8, 3)


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
        t = map_model(_model(), MappingConfig(g_min=2.0))["blocks.0.ssm.A_bar"]
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
        xbar = convert(model, MappingConfig(), device, PeripheryConfig(read_noise_mode=mode))
        set_time(xbar, 10.0)
        assert torch.equal(_run(xbar, u), _run(xbar, u)) is same


def test_chips_differ_and_are_seeded():
    model, u = _model(), _inputs()
    device = GaussianDevice(GaussianConfig(prog_noise=0.05, read_noise=0.01))

    def run(seed, noise_seed=7):
        xbar = convert(model, MappingConfig(), device, chips=3, seed=seed)
        set_time(xbar, 0.0, _gen(noise_seed))  # the forward's reads continue this generator
        return _run(xbar, u)

    a = run(0)
    assert torch.equal(a, run(0))  # same seeds: the same chips and the same reads
    assert not torch.equal(a, run(1))
    assert not torch.equal(a, run(0, noise_seed=8))  # same chips, other read noise
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a[1], a[2])
    torch.testing.assert_close(a.mean(0), _run(model, u), rtol=0, atol=0.5)
    # a generator as the seed
    xbar = convert(model, MappingConfig(), device, chips=3, seed=_gen(0))
    set_time(xbar, 0.0, _gen(7))
    assert torch.equal(_run(xbar, u), a)
    # the noise of a forward pass can be drawn from another generator
    chip_set(xbar).noise = _gen(9)
    assert not torch.equal(_run(xbar, u), a)


# --- drift compensation ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["global", "global_ones", "per_column"])
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
        xbar = convert(model, MappingConfig(), device, pc, chips=4)
        set_time(xbar, YEAR)
        errors.append((_run(xbar, u) - _run(model, u)).abs().mean())
    assert errors[1] < 0.5 * errors[0]


# --- drift compensation against aihwkit ------------------------------------------------------

def _one_hot_reads(t, g):
    """aihwkit's read-out: the tensor driven by eye(in_size), every crossbar input alone, through
    mapped_matvec on conductances g (chips, *compact): (chips, in_size, outputs) real."""
    H = t.compact_shape[0]
    if t.role.name == "dense":  # the bias row is one more input, read alone like the others
        I = crossbar_currents(t, torch.eye(t.compact_shape[0], dtype=torch.float64)[None], g)
        return decode_currents(I, t.encoding, doubled=False) / t.output_scale()
    if t.role.complex_in:  # complex (H, N2) inputs: 2 H N2 real ones
        N2 = t.compact_shape[1]
        eye = torch.eye(2 * H * N2, dtype=torch.float64).view(-1, H, N2, 2)
        x = torch.view_as_complex(eye.contiguous())
    else:
        x = torch.eye(H, dtype=torch.float64)
    y = mapped_matvec(t, x.unsqueeze(0), g)
    y = torch.view_as_real(y) if y.is_complex() else y
    return y.flatten(2)


def test_global_compensation_equals_aihwkit_global_drift_compensation():
    """"global" is aihwkit 1.2.0's GlobalDriftCompensation on the same conductances: one-hot
    read-outs of every input of the shared columns, readout = mean |output|; "global_ones" (one
    all-ones read) is another gain."""
    drift = pytest.importorskip("aihwkit.inference.compensation.drift")
    comp = drift.GlobalDriftCompensation()
    device = PCMDevice()
    pc = PeripheryConfig(read_noise_mode="per_inference", drift_compensation="global")
    model = _model()
    xbar = convert(model, MappingConfig(), device, pc, chips=4, seed=1)
    set_time(xbar, YEAR, _gen(2))
    cases = [([xbar.encoder.tile], xbar.encoder.alpha["output"]),
             ([xbar.blocks[0].ssm.parts[k] for k in ("A_bar", "B_bar")],
              xbar.blocks[0].ssm.alpha["state"]),
             ([xbar.blocks[1].ssm.parts[k] for k in ("C", "D")],
              xbar.blocks[1].ssm.alpha["output"])]
    for tiles, alpha in cases:
        ref = [_one_hot_reads(t.tensor, t.g_reference) for t in tiles]
        now = [_one_hot_reads(t.tensor, t.g_frozen) for t in tiles]
        # a column group: the tensors' reads side by side over the shared output columns
        ref, now = torch.cat(ref, 1), torch.cat(now, 1)
        for c in range(4):
            expected = comp.apply(now[c].float(), comp.readout(ref[c].float()))
            torch.testing.assert_close(alpha.flatten()[c].float(), expected, rtol=1e-5, atol=0)
        assert (alpha.flatten() > 1.2).all()
        ones = compensation(tiles, "global_ones", _gen(0))
        assert (ones.flatten() - alpha.flatten()).abs().max() > 1e-3


# --- digital parts -------------------------------------------------------------------------------

class _Fixed(torch.nn.Module):
    """An SSM module computing given discrete tensors (recurrent mode)."""

    def __init__(self, ssm: DiscreteSSM) -> None:
        super().__init__()
        self.ssm = ssm

    def forward(self, u, mode="recurrent"):
        return self.ssm.scan(u)


def _set_linear(layer, t, g):
    W, b = reconstruct_linear(t, g)
    layer.weight.data, layer.bias.data = W, b


def test_digital_A_equals_the_exact_A():
    """With A digital, each chip computes exactly the digital model with the exact A_bar and the
    other weights as its (noisy, deterministic) conductances hold them."""
    model, u = _model(), _inputs()
    device = GaussianDevice(GaussianConfig(prog_noise=0.05))
    xbar = convert(model, MappingConfig(g_min=1.0), device, chips=2, digital=("A",))
    ssm0 = xbar.blocks[0].ssm
    assert ssm0.parts["A_bar"] is None and ssm0.parts["B_bar"] is not None
    set_time(xbar, 0.0)
    logits = _run(xbar, u)
    for c in range(2):
        chip = copy.deepcopy(model)
        for i, (block, ssm) in enumerate(zip(chip.blocks, model.discrete())):
            parts = {k: reconstruct(t.tensor, t.drifted.g[c])
                     for k, t in xbar.blocks[i].ssm.parts.items() if t is not None}
            block.ssm = _Fixed(DiscreteSSM(ssm.A_bar.detach(), parts["B_bar"], parts["C"],
                                           parts["D"]))
            mix = xbar.blocks[i].mix.tile
            _set_linear(block.mix, mix.tensor, mix.drifted.g[c])
        for name in ("encoder", "decoder"):
            t = getattr(xbar, name).tile
            _set_linear(getattr(chip, name), t.tensor, t.drifted.g[c])
        torch.testing.assert_close(logits[c], _run(chip, u), rtol=0, atol=1e-9)
    analog = convert(model, MappingConfig(g_min=1.0), device, chips=2)
    set_time(analog, 0.0)
    assert not torch.allclose(_run(analog, u), logits)
    # a path selects one layer's tensor
    one = convert(model, MappingConfig(), device, digital="blocks.1.ssm.A_bar,decoder")
    assert one.blocks[0].ssm.parts["A_bar"] is not None
    assert one.blocks[1].ssm.parts["A_bar"] is None and one.decoder is not model.decoder
    assert isinstance(one.decoder, torch.nn.Linear)
    # everything digital is the digital model itself, on every chip
    digital = convert(model, MappingConfig(), device, chips=2,
                      digital=("encoder", "A", "B", "C", "D", "mix", "decoder"))
    set_time(digital, 0.0)
    assert torch.equal(_run(digital, u), _run(model, u).expand(2, -1, -1))


def test_analog_tile_equals_mapped_matvec_and_reference_with_quantized_periphery():
    """Every role: the ideal tile equals mapped_matvec; with DAC, ADC and per-column gains the
    fast path equals the per-device reference (ideal devices)."""
    model = _model()
    mapped = map_model(model, MappingConfig(g_min=0.5, tile_rows=4, tile_cols=4))
    pc = PeripheryConfig(dac_bits=5, adc_bits=6, adc_granularity="channel")
    for t in mapped:
        shape = {"dense": (1, 5, t.compact_shape[0] - 1), "ssm_A": (1, 5, 4, 4),
                 "ssm_C": (1, 5, 4, 4)}.get(t.role.name, (1, 5, 4))
        dtype = torch.complex128 if t.role.complex_in else torch.float64
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


def test_saved_configs_with_old_words_read_as_new_ones():
    old = PeripheryConfig().to_dict() | {"adc_granularity": "column"}
    assert PeripheryConfig.from_dict(old).adc_granularity == "channel"
    with pytest.raises(ImssaError, match="adc_granularity"):
        PeripheryConfig(adc_granularity="column")  # only saved configs are translated
    pc = PeripheryConfig(adc_granularity="channel", drift_compensation="global_ones")
    assert PeripheryConfig.from_dict(pc.to_dict()) == pc


def test_usage_errors():
    model, u = _model(), _inputs()
    with pytest.raises(ImssaError, match="window"):
        convert(model, MappingConfig(g_max=30.0), PCMDevice())
    with pytest.raises(ImssaError, match="tile_rows"):
        MappingConfig(tile_rows=2)
    with pytest.raises(ImssaError, match="digital 'E'"):
        convert(model, MappingConfig(), IdealDevice(), digital=("E",))
    with pytest.raises(ImssaError, match="chips"):
        convert(model, MappingConfig(), IdealDevice(), chips=0)
    with pytest.raises(ImssaError, match="memristor must be an imssa Device"):
        convert(model, MappingConfig(), PCMConfig())
    with pytest.raises(ImssaError, match="not a converted crossbar model"):
        set_time(model, 0.0)
    xbar = convert(model, MappingConfig(), IdealDevice(), PeripheryConfig(adc_bits=8))
    with pytest.raises(ImssaError, match="set_time"):
        _run(xbar, u)
    set_time(xbar, 0.0)
    with pytest.raises(ImssaError, match="calibrate"):
        _run(xbar, u)
    with pytest.raises(ImssaError, match="input must have shape"):
        calibrate(xbar, u[..., :1])
    with pytest.raises(ImssaError, match="at least one batch"):
        calibrate(xbar, [])
    with pytest.raises(ImssaError, match="t_inference"):
        set_time(xbar, -1.0)
    ideal = convert(model, MappingConfig(), IdealDevice())
    set_time(ideal, 0.0)
    with pytest.raises(ImssaError, match="mode='recurrent'"):
        ideal(u)  # conv mode, the model's default, has no analog SSM
    tile = AnalogTile(map_model(model, MappingConfig())["blocks.0.ssm.A_bar"], IdealDevice())
    tile.set_time(0.0)
    with pytest.raises(ImssaError, match="complex"):
        tile(torch.randn(1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(ImssaError, match="seed"):
        convert(model, MappingConfig(), IdealDevice(), seed=0.5)
    bad = copy.deepcopy(model)
    with torch.no_grad():
        bad.blocks[1].mix.weight[0, 0] = float("nan")
    with pytest.raises(ImssaError, match="blocks.1.mix contain NaN"):
        convert(bad, MappingConfig(), IdealDevice())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_digital():
    model, u = _model().cuda(), _inputs().cuda()
    xbar = convert(model, MappingConfig(), IdealDevice(), PeripheryConfig(), chips=2)
    set_time(xbar, 0.0)
    torch.testing.assert_close(_run(xbar, u), _run(model, u).expand(2, -1, -1), rtol=0,
                               atol=1e-9)
