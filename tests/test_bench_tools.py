"""The measuring parts of the speed benchmarks (benchmarks/bench_scaling.py, profile_kernel.py).

- The scaling fit recovers the exponent of an exact power law; the sweep plan holds each point
  once (the base point on every axis), cheapest first.
- The whole-job stage timer leaves the computation alone: an instrumented forward gives the
  same logits, bit for bit, as a plain one from the same noise seed; the patched functions are
  restored; the exclusive stage seconds add up to the timed total.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

from imssa.crossbar import PeripheryConfig, calibrate, convert, set_time
from imssa.crossbar.tile import AnalogTile
from imssa.devices import PCMConfig, PCMDevice
from imssa.mapping import MappingConfig
from imssa.ssm import S4DConfig, S4DModel

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield (importlib.import_module("bench_scaling"), importlib.import_module("profile_kernel"))
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_slope_of_a_power_law(bench):
    scaling, _ = bench
    xs = [1, 3, 10, 30, 100]
    assert scaling.slope(xs, [2.5 * x ** 1.5 for x in xs]) == pytest.approx(1.5, abs=1e-12)
    assert scaling.slope(xs, [7.0] * 5) == pytest.approx(0.0, abs=1e-12)
    assert scaling.slope([4], [1.0]) is None


def test_plan_holds_each_point_once_cheapest_first(bench):
    scaling, _ = bench
    base, values = scaling.SWEEPS["full"]
    plan = scaling.plan(base, values, list(scaling.AXES))
    points = [p for p, _ in plan]
    assert len(points) == len(set(points)) == sum(len(v) for v in values.values()) - 4
    assert dict(plan)[base] == list(scaling.AXES)  # the base point is on every axis
    work = [p.chips * p.sequences * p.L * p.H * (p.N + 2 * p.H) for p in points]
    assert work == sorted(work)


def _model():
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_model=4, d_state=4)).eval()
    xbar = convert(model, MappingConfig(g_max=25.0), PCMDevice(PCMConfig(g_max=25.0)),
                   PeripheryConfig(dac_bits=8, adc_bits=8, read_noise_mode="per_step"), chips=2,
                   seed=0)
    u = torch.rand(3, 12, 1, generator=torch.Generator().manual_seed(1))
    calibrate(xbar, u)
    return xbar, u


def test_instrumented_forward_equals_plain_and_restores(bench):
    _, profile = bench
    xbar, u = _model()
    sense = AnalogTile.sense

    def hooks():
        return [(n, list(m._forward_hooks), list(m._forward_pre_hooks)) for n, m in xbar.named_modules()]

    before = hooks()
    set_time(xbar, 3600.0, torch.Generator().manual_seed(2))
    plain = xbar(u, mode="recurrent")
    set_time(xbar, 3600.0, torch.Generator().manual_seed(2))
    timer = profile.StageTimer(lambda: None)
    undo = profile.instrument(xbar, timer)
    try:
        timer.enter("forward")
        timed = xbar(u, mode="recurrent")
        timer.exit()
    finally:
        profile.uninstrument(undo)
    assert torch.equal(plain, timed)
    assert AnalogTile.sense is sense
    assert hooks() == before
    for part in ("encoder", "blocks.0.ssm", "blocks.0.mix", "decoder"):
        assert timer.calls[f"forward/{part}"] == 1
        assert timer.calls[f"forward/{part}/noise + ADC"] >= 1
    assert timer.calls["forward/blocks.0.mix/noise + ADC/normal draws"] == 1
    assert timer.calls["forward/blocks.0.ssm/state register"] == u.shape[1]  # the step loop


def test_stage_timer_exclusive_seconds_add_up(bench, monkeypatch):
    _, profile = bench
    clock = iter(range(100))
    timer = profile.StageTimer(lambda: None)
    monkeypatch.setattr(profile.time, "perf_counter", lambda: float(next(clock)))
    timer.enter("a")        # t 0
    timer.enter("b")        # t 1
    timer.exit()            # t 2: b 1 s
    timer.enter("c")        # t 3
    timer.enter("d")        # t 4
    timer.exit()            # t 5: d 1 s
    timer.exit()            # t 6: c 3 s, 1 of them d's
    timer.exit()            # t 7: a 7 s, 1 + 3 of them its children's
    monkeypatch.undo()
    assert timer.seconds == {"a/b": 1.0, "a/c/d": 1.0, "a/c": 2.0, "a": 3.0}
    assert math.fsum(timer.seconds.values()) == 7.0
