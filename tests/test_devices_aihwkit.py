"""PCMDevice and RRAMDevice against aihwkit 1.2.0's own noise models, and the aihwkit adapter.

On a grid of targets and inference times, imssa's samples and aihwkit's (drawn through torch's
global RNG, seeded) must agree: two-sample Kolmogorov-Smirnov on 1e5 samples per point, and means
within 1% on 1e6 samples per point (where the standard error of the difference is at most 0.2%).
All KS tests compare identical distributions, so their p-values are uniform; with about a hundred
of them one below 0.01 would be expected by chance, hence each must exceed 0.01 / n_tests
(family-wise level 1%). The test records every p-value and prints the smallest.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from imssa.devices import AihwkitDevice, PCMDevice, RRAMConfig, RRAMDevice
from imssa.errors import ImssaError

pytest.importorskip("aihwkit")
from aihwkit.inference.noise.pcm import PCMLikeNoiseModel  # noqa: E402
from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel  # noqa: E402

TARGETS = (0.1, 0.5, 1.0, 5.0, 10.0, 25.0)  # µS, aihwkit's default g_max = 25 µS
TIMES = (1.0, 3600.0, 86400.0, 365 * 86400.0)  # 1 s, 1 h, 1 day, 1 year
N_MEAN = 1_000_000  # samples per point for the means
N_KS = 100_000  # of which this many go into each KS test
N_KS_TESTS = len(TARGETS) * (2 + 2 * len(TIMES)) + len(TARGETS) * (1 + len(TIMES)) + 2 * 3 * 2
ALPHA = 0.01 / N_KS_TESTS
P_VALUES: dict[str, float] = {}
MEAN_ERRORS: dict[str, float] = {}  # relative


def grid(n: int = N_MEAN) -> torch.Tensor:
    """(n, n_targets) float32 targets, as aihwkit's tiles hold them."""
    return torch.tensor(TARGETS, dtype=torch.float32).expand(n, len(TARGETS)).contiguous()


def compare(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """KS on the first N_KS samples of each column, means over all, for every target column."""
    for j, g in enumerate(TARGETS[: ours.shape[1]]):
        a, b = ours[:, j].double(), theirs[:, j].double()
        p = stats.ks_2samp(a[:N_KS].numpy(), b[:N_KS].numpy()).pvalue
        P_VALUES[f"{name} g={g}"] = p
        assert p > ALPHA, (name, g, p)
        m_a, m_b = a.mean().item(), b.mean().item()
        MEAN_ERRORS[f"{name} g={g}"] = abs(m_a - m_b) / abs(m_b)
        assert abs(m_a - m_b) <= 0.01 * abs(m_b), (name, g, m_a, m_b)


@pytest.fixture(scope="module")
def aihwkit_samples():
    """aihwkit PCM: programmed, nu, drifted (no read noise) and final conductances per time."""
    model = PCMLikeNoiseModel()
    no_read = PCMLikeNoiseModel(read_noise_scale=0.0)
    target = grid()
    torch.manual_seed(1234)
    g_prog = model.apply_programming_noise_to_conductance(target.clone())
    nu = model.generate_drift_coefficients(target.clone())
    drifted, final = {}, {}
    for t in TIMES:
        drifted[t] = no_read.apply_drift_noise_to_conductance(g_prog, nu, t)
        final[t] = model.apply_drift_noise_to_conductance(g_prog, nu, t)
    final[0.0] = model.apply_drift_noise_to_conductance(g_prog, nu, 0.0)
    return g_prog, drifted, final


def test_pcm_matches_aihwkit(aihwkit_samples):
    g_prog, drifted, final = aihwkit_samples
    device = PCMDevice()
    generator = torch.Generator().manual_seed(99)
    state = device.program(grid(), generator)
    compare("programmed", state.g, g_prog)
    for t in TIMES:
        d = device.drift(state, t, generator)
        compare(f"drifted t={t:g}", d.g, drifted[t])
        compare(f"read t={t:g}", device.read(d, generator), final[t])
    # t = 0: aihwkit adds the 1/f noise accumulated up to t_0 without drift; so do we
    d0 = device.drift(state, 0.0, generator)
    compare("read t=0", device.read(d0, generator), final[0.0])


def test_adapter_matches_pcm_device():
    """AihwkitDevice(PCMLikeNoiseModel()) reads like PCMDevice (read noise inside its drift)."""
    ours, wrapped = PCMDevice(), AihwkitDevice(PCMLikeNoiseModel())
    assert wrapped.config.g_max == 25.0 and wrapped.config.read_noise_mode == "per_inference"
    g_a, g_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    s_a, s_b = ours.program(grid(), g_a), wrapped.program(grid(), g_b)
    compare("adapter programmed", s_b.g, s_a.g)
    for t in TIMES:
        d_a, d_b = ours.drift(s_a, t, g_a), wrapped.drift(s_b, t, g_b)
        assert torch.count_nonzero(d_b.read_std) == 0
        compare(f"adapter read t={t:g}", wrapped.read(d_b, g_b), ours.read(d_a, g_a))


def test_adapter_is_seeded_and_leaves_global_rng_alone():
    wrapped = AihwkitDevice(PCMLikeNoiseModel())
    target = torch.linspace(0.0, 25.0, 100)
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(3)
        state = wrapped.program(target, generator)
        runs.append(wrapped.drift(state, 3600.0, generator).g)
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(torch.random.get_rng_state(), before)
    with pytest.raises(ImssaError, match="generator"):
        wrapped.drift(state, 1.0)
    with pytest.raises(ImssaError, match="BaseNoiseModel"):
        AihwkitDevice(object())


@pytest.mark.parametrize("t", [1.0, 86400.0])
def test_rram_matches_aihwkit_wan2022(t):
    """At g_max = 40 µS (the fit's reference) and the fitted times RRAMDevice = aihwkit."""
    model = ReRamWan2022NoiseModel(g_max=40.0)
    targets = torch.tensor((2.0, 20.0, 40.0)).expand(N_KS, 3).contiguous()
    torch.manual_seed(7)
    theirs_prog = model.apply_programming_noise_to_conductance(targets.clone())
    theirs_t = model.apply_drift_noise_to_conductance(theirs_prog, targets.clone(), t)
    device = RRAMDevice(RRAMConfig(g_max=40.0))
    generator = torch.Generator().manual_seed(8)
    state = device.program(targets, generator)
    ours_t = device.drift(state, t, generator).g
    for j in range(3):
        for name, a, b in (("prog", state.g, theirs_prog), ("drift", ours_t, theirs_t)):
            p = stats.ks_2samp(a[:, j].numpy(), b[:, j].numpy()).pvalue
            P_VALUES[f"rram {name} t={t:g} j={j}"] = p
            assert p > ALPHA
            assert a[:, j].mean().item() == pytest.approx(b[:, j].mean().item(), rel=0.01)
    # the adapter runs aihwkit's own model and rejects times it was not fitted at
    wrapped = AihwkitDevice(model)
    with pytest.raises(ImssaError, match="t_inference"):
        wrapped.drift(wrapped.program(targets[:10], generator), 3600.0, generator)


def test_report_p_values():
    """Summary, printed with -s: the smallest p-values and the count."""
    if not P_VALUES:
        pytest.skip("run with the comparison tests")
    worst = sorted(P_VALUES.items(), key=lambda kv: kv[1])[:5]
    below = sum(p < 0.01 for p in P_VALUES.values())
    print(f"\n{len(P_VALUES)} KS tests, threshold {ALPHA:.2e}, {below} below 0.01; smallest p: "
          + ", ".join(f"{k}: {v:.3g}" for k, v in worst))
    if MEAN_ERRORS:
        key = max(MEAN_ERRORS, key=MEAN_ERRORS.get)
        print(f"largest relative mean difference: {MEAN_ERRORS[key]:.2e} ({key}), median "
              f"{sorted(MEAN_ERRORS.values())[len(MEAN_ERRORS) // 2]:.1e}")
    assert len(P_VALUES) <= N_KS_TESTS
    assert all(math.isfinite(p) for p in P_VALUES.values())
