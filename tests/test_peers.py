"""The benchmark's peers (imssa.crossbar.peers, library_peers) compute what imssa's analog model computes.

- Ideal devices and converters: every peer (the plain loop in both layouts, aihwkit and
  aihwkit-lightning in both layouts of A) equals imssa's analog model to 1e-6 in float32.
- Ideal devices, DAC and ADC on imssa's calibrated ranges: the plain loop equals imssa bit for
  bit (same converters, same column groups); aihwkit and lightning equal it with the DAC alone
  (their ADCs convert each layer on its own, so A s and B u are rounded separately: not equal by
  design; lightning's ADC is checked on one layer against imssa's converter instead).
- Noise, where draws cannot match: the plain loop's per-device reads against imssa's per-output
  draws (PCM read noise, programming and drift off so both hold the same weights), and
  lightning's forward output noise against imssa's output noise at a matched std; the logits'
  mean and std over 3000 independent inferences of one sequence agree within 5 standard errors.
  aihwkit's PCM configuration (its per-tile scales, per-MVM PCM_READ noise) is a speed peer
  only; it is checked to run, program and drift.
"""

from __future__ import annotations

import pytest
import torch

from imssa.crossbar import (
    ADC_GRANULARITIES,
    PeripheryConfig,
    calibrate,
    convert,
    quantize_symmetric,
    set_time,
)
from imssa.crossbar.library_peers import LinearS4D, analog_layers
from imssa.crossbar.peers import PLAIN_LAYOUTS, PlainLoop, adc_groups, dense_ssm, real_weights
from imssa.devices import Device, IdealDevice, PCMConfig, PCMDevice
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig
from imssa.ssm import S4DConfig, S4DModel

TOL = 1e-6  # float32 equality of a peer and imssa on ideal settings
DIFFERENTIAL = MappingConfig(encoding="differential")
DAY = 86400.0


def _model(**kw) -> S4DModel:
    torch.manual_seed(0)
    cfg = S4DConfig(**({"d_input": 2, "d_model": 4, "d_state": 4, "n_layers": 2,
                        "n_classes": 3} | kw))
    return S4DModel(cfg).eval()


def _inputs(B: int = 5, L: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(B, L, 2, generator=torch.Generator().manual_seed(seed))


def _imssa(model: S4DModel, u: torch.Tensor, periphery: PeripheryConfig,
           mapping: MappingConfig = DIFFERENTIAL, device: Device | None = None,
           t: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """imssa's analog model on one chip: logits (B, classes) and its calibrated ranges.

    The one place that builds imssa's model here.
    """
    analog = convert(model, mapping, device or IdealDevice(), periphery, chips=1, seed=0)
    ranges = calibrate(analog, u[:16]) if periphery.needs_calibration else {}
    set_time(analog, t, torch.Generator().manual_seed(7))
    return analog(u, mode="recurrent")[0], ranges


def _plain(model: S4DModel, periphery: PeripheryConfig, ranges, *, device: Device | None = None,
           t: float = 0.0, **kw) -> PlainLoop:
    return PlainLoop(model, DIFFERENTIAL, device or IdealDevice(), periphery, ranges, t,
                     torch.Generator().manual_seed(3), **kw)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> None:
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0.0, atol=tol)


def _moments_agree(a: torch.Tensor, b: torch.Tensor, z: float = 5.0) -> None:
    """Samples (n, k) of two implementations: per column, means within z standard errors and
    stds within z standard errors of their ratio (sqrt(1/(2n)) each, normal approximation)."""
    n = a.shape[0]
    ma, mb, sa, sb = a.mean(0), b.mean(0), a.std(0), b.std(0)
    se_mean = ((sa.square() + sb.square()) / n).sqrt()
    assert ((ma - mb).abs() < z * se_mean).all(), (ma, mb, se_mean)
    assert ((sa / sb - 1).abs() < z * (1.0 / n) ** 0.5).all(), (sa, sb)


# --- the real weights -------------------------------------------------------------------------

def test_real_weights_reproduce_the_digital_ssm():
    """The blocks and dense layouts both give one digital recurrence step of every layer."""
    model = _model()
    ssm = model.discrete()[0]
    lw = real_weights(model)["layers"][0]
    s = torch.randn(3, 4, 2, dtype=torch.cfloat)  # complex state (B, H, N2)
    u = torch.randn(3, 4)
    ref = ssm.A_bar * s + ssm.B_bar * u[..., None]
    pairs = torch.view_as_real(s)  # (B H N2 2)
    blocks = torch.einsum("hmij,bhmj->bhmi", lw["A"], pairs) + lw["B"] * u[..., None, None]
    torch.testing.assert_close(torch.view_as_complex(blocks.contiguous()), ref)
    d = dense_ssm(lw)
    flat = pairs.flatten(1) @ d["A"].T + u @ d["B"].T
    torch.testing.assert_close(flat, blocks.flatten(1))
    y = 2 * (ssm.C * s).real.sum(-1) + ssm.D * u
    torch.testing.assert_close(pairs.flatten(1) @ d["C"].T + u @ d["D"].T, y)


# --- ideal: every peer equals imssa to 1e-6 ---------------------------------------------------

@pytest.mark.parametrize("layout", PLAIN_LAYOUTS)
@pytest.mark.parametrize("encoding", ["polarity_block", "differential"])
def test_plain_loop_equals_imssa_on_ideal_devices(layout, encoding):
    model, u = _model(), _inputs()
    ref, _ = _imssa(model, u, PeripheryConfig(), MappingConfig(encoding=encoding))
    plain = _plain(model, PeripheryConfig(), {}, layout=layout)
    _close(plain(u), ref)
    _close(ref, model(u, mode="recurrent"))


@pytest.mark.parametrize("layout", PLAIN_LAYOUTS)
@pytest.mark.parametrize("bits", [4, 8])
def test_plain_loop_equals_imssa_with_quantized_periphery(layout, bits):
    """Same converters on the same calibrated ranges and column groups: bit-identical."""
    model, u = _model(), _inputs(B=32, L=16)
    per = PeripheryConfig(dac_bits=bits, adc_bits=bits)
    ref, ranges = _imssa(model, u, per)
    assert (ref - model(u, mode="recurrent")).abs().max() > 1e-3  # the converters matter
    assert torch.equal(_plain(model, per, ranges, layout=layout)(u), ref)


@pytest.mark.parametrize("layout", ["blockdiag", "per_channel"])
@pytest.mark.parametrize("library", ["aihwkit", "aihwkit_lightning"])
@pytest.mark.parametrize("dac_bits", [None, 8])
def test_library_peer_equals_imssa(library, layout, dac_bits):
    """Ideal converters, or the DAC alone on imssa's ranges: equal to 1e-6."""
    pytest.importorskip(library)
    from imssa.crossbar.library_peers import aihwkit_s4d, lightning_s4d

    build = aihwkit_s4d if library == "aihwkit" else lightning_s4d
    model, u = _model(), _inputs(B=16)
    per = PeripheryConfig(dac_bits=dac_bits)
    ref, ranges = _imssa(model, u, per)
    net = build(model, per, ranges, layout=layout)
    assert isinstance(net, LinearS4D)
    expected = {"blockdiag": 1, "per_channel": model.cfg.d_model}[layout] + 4  # A, B, C, D, mix
    assert len(analog_layers(net)) == 2 + model.cfg.n_layers * expected
    with torch.no_grad():
        _close(net(u), ref)


def test_lightning_adc_rounds_on_imssa_grid():
    """Each lightning layer's ADC is imssa's converter on the group's range (bias after it)."""
    pytest.importorskip("aihwkit_lightning")
    from imssa.crossbar.library_peers import lightning_s4d

    model, u = _model(), _inputs(B=16)
    per = PeripheryConfig(dac_bits=8, adc_bits=6)
    _, ranges = _imssa(model, u, per)
    net = lightning_s4d(model, per, ranges)
    x = torch.randn(64, model.cfg.d_model)
    r_in = ranges["decoder.input"]
    v = quantize_symmetric(x.clamp(-r_in, r_in), r_in, 8)
    W, b = model.decoder.weight.detach(), model.decoder.bias.detach()
    expected = quantize_symmetric(v @ W.T, ranges["decoder.output"], 6) + b
    with torch.no_grad():
        _close(net.decoder(x), expected)


# --- noise ----------------------------------------------------------------------------------------

def test_plain_read_noise_matches_imssa_statistics():
    """PCM read noise alone (programming and drift off: both hold the same weights), a fresh
    read every step: per-device reads (plain) and per-output draws (imssa) give logits of the
    same mean and std over 3000 independent inferences of one sequence."""
    model = _model()
    u = _inputs(B=1, L=8).expand(3000, -1, -1)
    pcm = PCMDevice(PCMConfig(prog_noise_scale=0.0, drift_scale=0.0, read_noise_mode="per_step"))
    per = PeripheryConfig()
    ref, _ = _imssa(model, u, per, device=pcm, t=DAY)
    plain = _plain(model, per, {}, device=pcm, t=DAY)(u)
    ideal = model(u[:1], mode="recurrent")
    assert ref.std(0).min() > 1e-3 and (ref.mean(0) - ideal[0]).abs().max() < 0.1
    _moments_agree(plain, ref)


def test_plain_shared_noise_reads_once_per_step():
    """"shared": one read per step for the whole batch, so copies of a sequence agree exactly;
    "per_sequence": they differ."""
    model = _model()
    u = _inputs(B=1, L=6).expand(4, -1, -1)
    pcm = PCMDevice(PCMConfig(read_noise_mode="per_step"))
    shared = _plain(model, PeripheryConfig(), {}, device=pcm, t=DAY, noise="shared")(u)
    assert torch.equal(shared, shared[:1].expand_as(shared))
    per_seq = _plain(model, PeripheryConfig(), {}, device=pcm, t=DAY)(u)
    assert (per_seq[1:] - per_seq[0]).abs().min() > 0


def test_lightning_output_noise_matches_imssa_statistics():
    """Output noise of std 0.05 x the ADC range on every column group, drawn every step: imssa's
    one draw per sensed column and lightning's per-layer draws (A and B, C and D each half the
    variance) give logits of the same mean and std (16-bit DACs on both, for the ranges)."""
    pytest.importorskip("aihwkit_lightning")
    from imssa.crossbar.library_peers import lightning_s4d

    model = _model()
    u = _inputs(B=1, L=8).expand(3000, -1, -1)
    ref, ranges = _imssa(model, u, PeripheryConfig(dac_bits=16, output_noise=0.05))
    groups = adc_groups(ranges)
    assert len(groups) == 2 + 3 * model.cfg.n_layers
    net = lightning_s4d(model, PeripheryConfig(dac_bits=16), ranges,
                        out_noise=dict.fromkeys(groups, 0.05))
    assert net.training
    torch.manual_seed(11)  # lightning draws from torch's global generator
    with torch.no_grad():
        peer = net(u)
    assert ref.std(0).min() > 1e-3
    _moments_agree(peer, ref)


def test_aihwkit_pcm_peer_programs_and_drifts():
    """The benchmark's aihwkit configuration runs: programming and drift move the logits, a
    second chip differs from the first, and both stay near the ideal logits."""
    pytest.importorskip("aihwkit")
    from imssa.crossbar.library_peers import aihwkit_s4d, program_aihwkit

    model, u = _model(), _inputs(B=8)
    per = PeripheryConfig(dac_bits=8, adc_bits=8)
    _, ranges = _imssa(model, u, per)
    ideal = model(u, mode="recurrent")
    chips = []
    for seed in (0, 1):
        torch.manual_seed(seed)  # aihwkit draws from torch's global generator
        net = aihwkit_s4d(model, per, ranges, pcm_g_max=25.0)
        program_aihwkit(net, DAY)
        with torch.no_grad():
            chips.append(net(u))
    assert (chips[0] - chips[1]).abs().max() > 1e-3
    for logits in chips:
        assert logits.shape == ideal.shape and (logits - ideal).abs().max() < 1.0


# --- configuration errors -------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [{"state_bits": 8}, {"adc_granularity": ADC_GRANULARITIES[-1]},
                                 {"drift_compensation": "global"}])
def test_plain_loop_rejects_unmodelled_periphery(bad):
    with pytest.raises(ImssaError, match=next(iter(bad))):
        _plain(_model(), PeripheryConfig(**bad), {})


def test_plain_loop_rejects_unknown_layout():
    with pytest.raises(ImssaError, match="layout"):
        _plain(_model(), PeripheryConfig(), {}, layout="sparse")


# --- the benchmark's job ----------------------------------------------------------------------------

@pytest.mark.parametrize("library", ["aihwkit", "aihwkit_lightning"])
def test_peer_job_builds_the_contenders_of_one_job(library):
    """PeerJob (benchmarks/bench_peers.py) gives imssa and each library peer the job's settings:
    8-bit converters on imssa's ranges, PCM read noise every step (lightning: its output noise
    on every ADC group, so it runs in training mode). Noise makes two runs differ, and each
    stays near the ideal logits; lightning's contiguous per-channel slices feed its layers."""
    pytest.importorskip(library)
    from imssa.crossbar.library_peers import PeerJob

    job = PeerJob()
    assert job.periphery() == PeripheryConfig(dac_bits=8, adc_bits=8, read_noise_mode="per_step")
    model, u = _model(), _inputs(B=8)
    xbar = job.imssa(model, chips=2)
    ranges = calibrate(xbar, u)
    set_time(xbar, job.t_inference, torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = xbar(u, mode="recurrent")
    ideal = model(u, mode="recurrent")
    assert ours.shape == (2, *ideal.shape) and (ours[0] - ours[1]).abs().max() > 1e-4
    scalars = {k: v for k, v in ranges.items() if v.numel() == 1}
    runs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        if library == "aihwkit":
            net = job.aihwkit(model, scalars)
        else:
            net = job.lightning(model, scalars, layout="per_channel")
            assert net.training
        with torch.no_grad():
            runs.append(net(u))
    assert (runs[0] - runs[1]).abs().max() > 1e-4
    for logits in (*runs, *ours):
        assert logits.shape == ideal.shape and (logits - ideal).abs().max() < 1.0
