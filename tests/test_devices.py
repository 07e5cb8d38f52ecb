"""Device models: moments against their closed forms, edge cases, seeding, errors.

Statistical checks use fixed seeds and tolerances of several standard errors (SE), so they are
deterministic and fail only on a real change of the distributions.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from imssa.devices import (
    DeviceConfig,
    GaussianConfig,
    GaussianDevice,
    IdealDevice,
    PCMConfig,
    PCMDevice,
    RRAMConfig,
    RRAMDevice,
    device_from_config,
    drift_compensation_factor,
    make_device,
    quantize_levels,
)
from imssa.errors import ImssaError

N = 200_000
YEAR = 365 * 24 * 3600.0
TIMES = (1.0, 3600.0, 86400.0, YEAR)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def column(g: float, n: int = N) -> torch.Tensor:
    return torch.full((n,), g, dtype=torch.float64)


def rectified_normal_moments(m: float, s: float) -> tuple[float, float]:
    """Mean and std of max(0, X), X ~ N(m, s)."""
    if s == 0:
        return max(m, 0.0), 0.0
    a = m / s
    cdf, pdf = stats.norm.cdf(a), stats.norm.pdf(a)
    mean = m * cdf + s * pdf
    second = (m * m + s * s) * cdf + m * s * pdf
    return mean, math.sqrt(max(second - mean * mean, 0.0))


def folded_normal_moments(m: float, s: float) -> tuple[float, float]:
    """Mean and std of |Y|, Y ~ N(m, s)."""
    mean = s * math.sqrt(2 / math.pi) * math.exp(-m * m / (2 * s * s)) + m * (
        1 - 2 * stats.norm.cdf(-m / s))
    return mean, math.sqrt(m * m + s * s - mean * mean)


def mean_power_of_folded(a: float, m: float, s: float) -> float:
    """E[exp(-a |Y|)], Y ~ N(m, s): the mean drift factor (t/t0)^(-nu) with a = ln(t/t0)."""
    pos = math.exp(-a * m + a * a * s * s / 2) * stats.norm.cdf((m - a * s * s) / s)
    neg = math.exp(a * m + a * a * s * s / 2) * stats.norm.cdf(-(m + a * s * s) / s)
    return pos + neg


def assert_mean(x: torch.Tensor, expected: float, n_se: float = 5.0) -> None:
    se = x.std().item() / math.sqrt(x.numel())
    assert abs(x.mean().item() - expected) <= n_se * se + 1e-12, (x.mean().item(), expected, se)


def assert_std(x: torch.Tensor, expected: float, rel: float = 0.01) -> None:
    assert x.std().item() == pytest.approx(expected, rel=rel, abs=1e-12)


# --- configs and errors ---------------------------------------------------------------------
@pytest.mark.parametrize("cls, fields, match", [
    (DeviceConfig, dict(g_min=5.0, g_max=5.0), "g_min < g_max"),
    (DeviceConfig, dict(g_min=30.0, g_max=25.0), "g_min < g_max"),
    (DeviceConfig, dict(g_min=-1.0), "g_min"),
    (DeviceConfig, dict(g_max=float("nan")), "g_max"),
    (DeviceConfig, dict(p_stuck_min=-0.1), "p_stuck_min"),
    (DeviceConfig, dict(p_stuck_max=1.5), "p_stuck_max"),
    (DeviceConfig, dict(p_stuck_min=0.6, p_stuck_max=0.6), "p_stuck_min \\+ p_stuck_max"),
    (DeviceConfig, dict(n_levels=1), "n_levels"),
    (DeviceConfig, dict(n_devices=0), "n_devices"),
    (DeviceConfig, dict(verify_tol=0.0), "verify_tol"),
    (DeviceConfig, dict(verify_max_pulses=0), "verify_max_pulses"),
    (DeviceConfig, dict(read_noise_mode="sometimes"), "read_noise_mode"),
    (GaussianConfig, dict(prog_noise=-0.1), "prog_noise"),
    (GaussianConfig, dict(read_noise_type="log"), "read_noise_type"),
    (PCMConfig, dict(t_0=0.0), "t_0"),
    (PCMConfig, dict(drift_scale=-1.0), "drift_scale"),
    (PCMConfig, dict(g_min=25.0, g_max=1.0), "g_min < g_max"),
    (RRAMConfig, dict(sigma_times=(2.0, 1.0), sigma_coeffs=((1.0,), (1.0,))), "ascending"),
    (RRAMConfig, dict(sigma_times=(1.0,)), "one coefficient list per time"),
])
def test_config_errors(cls, fields, match):
    with pytest.raises(ImssaError, match=match):
        cls(**fields)


ALL_DEVICES = [
    IdealDevice(),
    GaussianDevice(GaussianConfig(prog_noise=0.03, read_noise=0.01)),
    PCMDevice(),
    RRAMDevice(),
    PCMDevice(PCMConfig(n_devices=3, verify_tol=0.03, p_stuck_min=0.05, p_stuck_max=0.05,
                        n_levels=9)),
]


@pytest.mark.parametrize("device", ALL_DEVICES, ids=lambda d: type(d).__name__)
@pytest.mark.parametrize("t", [-1.0, float("nan"), float("inf")])
def test_bad_time(device, t):
    state = device.program(torch.full((4,), 10.0), gen())
    with pytest.raises(ImssaError, match="t_inference"):
        device.drift(state, t, gen())


@pytest.mark.parametrize("g_target, match", [
    (torch.tensor([1.0, 26.0]), "g_target must lie in"),
    (torch.tensor([-0.5]), "g_target must lie in"),
    (torch.tensor([1.0, float("nan")]), "NaN"),
    (torch.tensor([1, 2]), "floating-point"),
])
def test_bad_target(g_target, match):
    with pytest.raises(ImssaError, match=match):
        PCMDevice().program(g_target, gen())


def test_target_rounding_slack_is_clamped():
    state = IdealDevice().program(torch.tensor([25.0 * (1 + 1e-7), -1e-7]), gen())
    assert state.g.tolist() == [25.0, 0.0]


@pytest.mark.parametrize("device", ALL_DEVICES, ids=lambda d: type(d).__name__)
def test_seeded_reproducibility(device):
    g = torch.linspace(0.0, device.config.g_max, 50).expand(8, 50)

    def run(seed):
        generator = gen(seed)
        state = device.program(g, generator)
        drifted = device.drift(state, 86400.0, generator)
        return state.g, drifted.g, drifted.read_std, device.read(drifted, generator)

    first, again, other = run(1), run(1), run(2)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    if not isinstance(device, IdealDevice):
        assert not torch.equal(first[0], other[0])


def test_registry_round_trip():
    cfg = PCMConfig(n_devices=2, prog_noise_scale=0.5)
    device = device_from_config(json.loads(cfg.to_json()))
    assert isinstance(device, PCMDevice) and device.config == cfg
    assert isinstance(make_device("rram", g_max=20.0), RRAMDevice)
    assert isinstance(device_from_config(GaussianConfig()), GaussianDevice)
    with pytest.raises(ImssaError, match="unknown device"):
        make_device("flash")
    with pytest.raises(ImssaError, match="bad settings"):
        make_device("pcm", colour="red")
    assert DeviceConfig().read_noise_mode == "per_step"
    with pytest.raises(ImssaError, match="PCMDevice needs a PCMConfig"):
        PCMDevice(GaussianConfig())


# --- ideal device, levels, faults ------------------------------------------------------------
def test_ideal_is_exact():
    device = IdealDevice()
    g = torch.rand(3, 5, 7, generator=gen()) * 25.0
    drifted = device.drift(device.program(g, gen()), YEAR, gen())
    assert torch.equal(drifted.g, g)
    assert torch.equal(device.read(drifted, gen()), g)
    assert torch.count_nonzero(drifted.read_std) == 0


def test_levels():
    device = IdealDevice(DeviceConfig(g_min=0.0, g_max=20.0, n_levels=5))
    g = torch.tensor([0.0, 2.4, 2.6, 7.0, 13.0, 20.0])
    assert device.program(g, gen()).g.tolist() == [0.0, 0.0, 5.0, 5.0, 15.0, 20.0]
    q = quantize_levels(torch.rand(1000, generator=gen()) * 9 + 1, 1.0, 10.0, 4)
    assert set(q.unique().tolist()) <= {1.0, 4.0, 7.0, 10.0}


def test_stuck_at_faults():
    device = PCMDevice(PCMConfig(g_min=1.0, p_stuck_min=0.1, p_stuck_max=0.05))
    state = device.program(column(12.5, 100_000).float(), gen(3))
    low, high = state.g_prog == 1.0, state.g_prog == 25.0
    for mask, p in ((low, 0.1), (high, 0.05)):
        frac = mask.double().mean().item()
        assert abs(frac - p) < 5 * math.sqrt(p * (1 - p) / mask.numel())
    assert torch.equal(low | high, state.stuck)
    drifted = device.drift(state, YEAR)  # stuck devices do not drift
    assert torch.all(drifted.g[high.squeeze(-1)] == 25.0)
    assert torch.all(drifted.g[low.squeeze(-1)] == 1.0)


# --- Gaussian device -------------------------------------------------------------------------
@pytest.mark.parametrize("noise_type", ["additive", "multiplicative"])
def test_gaussian_programming_moments(noise_type):
    device = GaussianDevice(GaussianConfig(prog_noise=0.02, prog_noise_type=noise_type))
    for g in (5.0, 12.5, 25.0):
        prog = device.program(column(g), gen()).g
        sigma = 0.02 * (25.0 if noise_type == "additive" else g)
        assert_mean(prog, g)
        assert_std(prog, sigma)


def test_gaussian_zero_target_is_rectified():
    device = GaussianDevice(GaussianConfig(prog_noise=0.04))
    prog = device.program(column(0.0), gen()).g
    mean, std = rectified_normal_moments(0.0, 1.0)
    assert_mean(prog, mean)
    assert_std(prog, std)
    assert (prog == 0).double().mean().item() == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize("noise_type", ["additive", "multiplicative"])
def test_gaussian_read_noise(noise_type):
    device = GaussianDevice(GaussianConfig(prog_noise=0.0, read_noise=0.03,
                                           read_noise_type=noise_type))
    g = 10.0
    drifted = device.drift(device.program(column(g), gen()), 100.0)
    sigma = 0.03 * (25.0 if noise_type == "additive" else g)
    assert torch.allclose(drifted.read_std, torch.full_like(drifted.g, sigma))
    read = device.read(drifted, gen(1))
    assert_mean(read, g)
    assert_std(read, sigma)


def test_n_devices_averaging():
    for n in (1, 4, 16):
        device = GaussianDevice(GaussianConfig(prog_noise=0.02, read_noise=0.02, n_devices=n))
        state = device.program(column(12.5), gen())
        assert state.g_prog.shape == (N, n)
        assert_std(state.g, 0.5 / math.sqrt(n))
        drifted = device.drift(state, 0.0)
        assert torch.allclose(drifted.read_std, torch.full_like(drifted.g, 0.5 / math.sqrt(n)))


def test_program_and_verify():
    sigma, tol, max_pulses = 0.05, 0.02, 50
    device = GaussianDevice(GaussianConfig(prog_noise=sigma, verify_tol=tol,
                                           verify_max_pulses=max_pulses))
    state = device.program(column(12.5), gen())
    a = tol / sigma  # half-width of the acceptance window in stds
    p = stats.norm.cdf(a) - stats.norm.cdf(-a)
    expected_pulses = (1 - (1 - p) ** max_pulses) / p
    pulses = state.n_pulses.double()
    assert pulses.min().item() >= 1
    assert_mean(pulses, expected_pulses)
    converged = state.n_pulses < max_pulses
    assert torch.all((state.g_prog[converged] - 12.5).abs() <= tol * 25.0 + 1e-9)
    trunc_std = sigma * 25.0 * math.sqrt(1 - 2 * a * stats.norm.pdf(a) / p)
    assert_std(state.g, trunc_std, rel=0.02)
    # without verify: one pulse each
    assert torch.all(GaussianDevice().program(column(1.0, 10), gen()).n_pulses == 1)


# --- PCM -------------------------------------------------------------------------------------
PCM_TARGETS = (0.0, 0.1, 1.0, 5.0, 12.5, 25.0)


def pcm_sigma_prog(g: float, g_max: float = 25.0) -> float:
    x = g / g_max
    return abs(0.26348 + 1.9650 * x - 1.1731 * x * x) * g_max / 25.0


def pcm_nu_moments(g: float, g_max: float = 25.0) -> tuple[float, float]:
    log_g = math.log(max(g / g_max, 1e-7))
    return (min(max(-0.0155 * log_g + 0.0244, 0.049), 0.1),
            min(max(-0.0125 * log_g - 0.0059, 0.008), 0.045))


def pcm_read_std(g_drift: np.ndarray, g_prog: np.ndarray, t: float) -> np.ndarray:
    q = np.minimum(0.0088 / np.maximum((np.abs(g_prog) / 25.0) ** 0.65, 1e-3), 0.2)
    tt = t + 20.0
    return np.abs(g_drift) * q * math.sqrt(math.log((tt + 250e-9) / (2 * 250e-9)))


@pytest.mark.parametrize("g", PCM_TARGETS)
def test_pcm_programming_moments(g):
    prog = PCMDevice().program(column(g), gen()).g
    mean, std = rectified_normal_moments(g, pcm_sigma_prog(g))
    assert_mean(prog, mean)
    assert_std(prog, std)
    assert prog.min().item() >= 0.0


def test_pcm_programming_scales_with_g_max():
    device = PCMDevice(PCMConfig(g_max=50.0))
    assert_std(device.program(column(25.0), gen()).g, pcm_sigma_prog(25.0, 50.0))


@pytest.mark.parametrize("g", PCM_TARGETS)
def test_pcm_drift_exponent_moments(g):
    nu = PCMDevice().program(column(g), gen()).drift_param
    mean, std = folded_normal_moments(*pcm_nu_moments(g))
    assert nu.min().item() >= 0
    assert_mean(nu, mean)
    assert_std(nu, std)


@pytest.mark.parametrize("t", TIMES)
def test_pcm_drift_mean(t):
    device = PCMDevice()
    for g in (1.0, 5.0, 25.0):
        state = device.program(column(g), gen())
        drifted = device.drift(state, t)
        prog_mean, _ = rectified_normal_moments(g, pcm_sigma_prog(g))
        factor = mean_power_of_folded(math.log((t + 20.0) / 20.0), *pcm_nu_moments(g))
        # g_prog and nu are independent, so E[g(t)] = E[g_prog] E[(t/t0)^-nu]
        assert_mean(drifted.g, prog_mean * factor)


def test_pcm_drift_reuses_exponents():
    device = PCMDevice()
    state = device.program(torch.linspace(1.0, 25.0, 1000), gen())
    nus = []
    for t in TIMES:
        drifted = device.drift(state, t)
        assert torch.equal(drifted.g, device.drift(state, t).g)  # deterministic
        ratio = (t + 20.0) / 20.0
        nus.append(-torch.log(drifted.g / state.g) / math.log(ratio))
    for nu in nus:
        assert torch.allclose(nu, state.drift_param.squeeze(-1), atol=1e-4)


@pytest.mark.parametrize("t", (0.0,) + TIMES)
def test_pcm_read_noise_std_formula(t):
    device = PCMDevice()
    state = device.program(torch.linspace(0.0, 25.0, 501, dtype=torch.float64), gen())
    drifted = device.drift(state, t)
    expected = pcm_read_std(drifted.g.numpy(), state.g.numpy(), t)
    np.testing.assert_allclose(drifted.read_std.numpy(), expected, rtol=1e-12)
    # the per-device std is what a read draws (at 25 µS the clip at 0 is 20 std away)
    d25 = device.drift(device.program(column(25.0), gen()), t)
    noise = device.read(d25, gen(1)) - d25.g
    assert_mean(noise, 0.0)
    assert_std(noise / d25.read_std, 1.0)


def test_pcm_t0_edge_case():
    """At t_inference = 0 there is no drift, but read noise (accumulated since programming,
    with t = t_0) is already present: aihwkit's convention."""
    device = PCMDevice()
    state = device.program(column(10.0, 1000), gen())
    drifted = device.drift(state, 0.0)
    assert torch.equal(drifted.g, state.g)
    expected = pcm_read_std(state.g.numpy(), state.g.numpy(), 0.0)
    np.testing.assert_allclose(drifted.read_std.numpy(), expected, rtol=1e-12)
    assert drifted.read_std.min().item() > 0


def test_pcm_zero_conductance_edge_case():
    """A device programmed to exactly 0 µS stays at 0: no drift, zero read noise."""
    device = PCMDevice(PCMConfig(prog_noise_scale=0.0))
    state = device.program(torch.zeros(1000), gen())
    assert torch.count_nonzero(state.g) == 0
    nu_mean, _ = folded_normal_moments(0.1, 0.045)  # mu, sigma at the ln(0) guard
    assert_mean(state.drift_param, nu_mean)
    for t in (0.0, YEAR):
        drifted = device.drift(state, t)
        assert torch.count_nonzero(drifted.g) == 0
        assert torch.count_nonzero(drifted.read_std) == 0
        assert torch.count_nonzero(device.read(drifted, gen())) == 0
    # Q_s saturates at 0.2 for tiny conductances
    assert device.read_noise_q(torch.tensor([0.0, 1e-6, 25.0])).tolist() == pytest.approx(
        [0.2, 0.2, 0.0088])


def test_pcm_n_devices_read_std():
    device = PCMDevice(PCMConfig(n_devices=4))
    state = device.program(torch.full((1000,), 20.0), gen())
    drifted = device.drift(state, 3600.0)
    g_dev = device.drift_conductance(state.g_prog, state.drift_param, 3600.0, None)
    s_dev = device.read_noise_std(g_dev, state.g_prog, 3600.0)
    assert torch.allclose(drifted.g, g_dev.mean(-1))
    assert torch.allclose(drifted.read_std, s_dev.square().sum(-1).sqrt() / 4)
    assert_std(device.program(column(25.0), gen()).g, pcm_sigma_prog(25.0) / 2)


def test_per_output_read_noise_matches_per_device():
    """A column output with per-device reads equals in distribution one Gaussian per output with
    variance sum_j read_std_j^2 x_j^2 (DESIGN.md, "Simulating reads cheaply")."""
    device = PCMDevice()
    rows, chips = 32, 20_000
    g = torch.linspace(10.0, 25.0, rows, dtype=torch.float64)
    drifted = device.drift(device.program(g, gen()), 86400.0)
    x = torch.rand(rows, generator=gen(5), dtype=torch.float64)
    per_device = device.read(
        type(drifted)(g=drifted.g.expand(chips, rows), read_std=drifted.read_std.expand(
            chips, rows), t_inference=drifted.t_inference), gen(6)) @ x
    std_out = (drifted.read_std.square() @ x.square()).sqrt()
    per_output = drifted.g @ x + std_out * torch.randn(chips, generator=gen(7),
                                                         dtype=torch.float64)
    assert stats.ks_2samp(per_device.numpy(), per_output.numpy()).pvalue > 0.01
    assert_std(per_device, std_out.item(), rel=0.02)


# --- RRAM ------------------------------------------------------------------------------------
WAN = {1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
       86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
       172800.0: (0.782, 20.274, -43.507, 37.062, -11.934)}


def wan_sigma(g: float, t: float, g_max: float = 40.0) -> float:
    x = g / g_max
    return abs(sum(c * x**i for i, c in enumerate(WAN[t]))) * g_max / 40.0


@pytest.mark.parametrize("g", (10.0, 20.0, 40.0))
def test_rram_moments(g):
    device = RRAMDevice()
    state = device.program(column(g), gen())
    assert_mean(state.g, g)
    assert_std(state.g, wan_sigma(g, 1.0))
    assert torch.equal(device.drift(state, 0.0).g, state.g)  # t = 0: programmed value
    for t in (86400.0, 172800.0):
        drifted = device.drift(state, t, gen(1))
        assert_mean(drifted.g, g)
        assert_std(drifted.g, wan_sigma(g, t))
    # between fitted times the std is interpolated linearly in ln t
    t_mid = math.sqrt(86400.0 * 172800.0)
    expected = (wan_sigma(g, 86400.0) + wan_sigma(g, 172800.0)) / 2
    assert_std(device.drift(state, t_mid, gen(2)).g, expected)


def test_rram_zero_target_and_scaling():
    device = RRAMDevice(RRAMConfig(g_max=20.0))
    mean, std = rectified_normal_moments(0.0, wan_sigma(0.0, 1.0, 20.0))
    prog = device.program(column(0.0), gen()).g
    assert_mean(prog, mean)
    assert_std(prog, std)
    with pytest.raises(ImssaError, match="generator"):
        device.drift(device.program(column(5.0, 10), gen()), 10.0)


# --- drift compensation ----------------------------------------------------------------------
def test_drift_compensation_factor():
    ref = torch.randn(3, 8, 5, generator=gen())
    col = torch.tensor([0.5, 1.0, 2.0, 4.0, 0.25])
    assert torch.allclose(drift_compensation_factor(ref, 0.5 * ref), torch.full((3,), 2.0))
    assert torch.allclose(drift_compensation_factor(ref, ref * col, "per_column"),
                          (1 / col).expand(3, 5))
    with pytest.raises(ImssaError, match="mode"):
        drift_compensation_factor(ref, ref, "per_row")
    with pytest.raises(ImssaError, match="same shape"):
        drift_compensation_factor(ref, ref[:, :4])


def test_pcm_global_drift_compensation():
    """After a year of PCM drift the compensated weights have the scale of the reference."""
    device = PCMDevice()
    g = torch.rand(16, 64, 32, generator=gen()) * 25.0  # 16 chips of 64 x 32
    state = device.program(g, gen(1))
    ref = device.drift(state, 0.0).g
    now = device.drift(state, YEAR).g
    alpha = drift_compensation_factor(ref, now)
    assert alpha.shape == (16,) and torch.all(alpha > 1.2)
    compensated = alpha[:, None, None] * now
    assert torch.allclose(compensated.abs().mean((-2, -1)), ref.abs().mean((-2, -1)))
    # compensation removes most of the systematic decay
    assert (compensated - ref).mean().abs() < 0.05 * (now - ref).mean().abs()


# --- characterization ------------------------------------------------------------------------
def test_characterize_and_plot(tmp_path):
    from imssa.devices.characterize import characterize, plot_characterization

    ds = characterize(PCMDevice(), [0.5, 5.0, 25.0], [0.0, 3600.0], n_samples=2000, seed=4)
    assert dict(ds.sizes) == {"g_target": 3, "t_inference": 2, "quantile": 7}
    assert ds["drifted_quantiles"].dims == ("t_inference", "g_target", "quantile")
    assert ds["read_mean"].attrs["units"] == "uS" and ds["t_inference"].attrs["units"] == "s"
    assert json.loads(ds.attrs["config"])["device"] == "pcm"
    np.testing.assert_allclose(ds["drifted_mean"].sel(t_inference=0.0),
                               ds["programmed_mean"], rtol=1e-12)
    assert ds["programmed_std"].sel(g_target=25.0) == pytest.approx(pcm_sigma_prog(25.0),
                                                                     rel=0.05)
    again = characterize(PCMDevice(), [0.5, 5.0, 25.0], [0.0, 3600.0], n_samples=2000, seed=4)
    assert ds.identical(again)
    path = plot_characterization(ds, tmp_path / "pcm.png")
    assert path.stat().st_size > 10_000
    assert [p.name for p in tmp_path.iterdir()] == ["pcm.png"]
    ds.to_netcdf(tmp_path / "pcm.nc", engine="scipy")
    with pytest.raises(ImssaError, match="n_samples"):
        characterize(PCMDevice(), [1.0], [0.0], n_samples=1)
    with pytest.raises(ImssaError, match="t_inference"):
        characterize(PCMDevice(), [1.0], [-5.0], n_samples=10)
