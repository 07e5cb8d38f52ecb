"""The hardware cost model (imssa.cost), checked by hand on a tiny model.

The model: d_input 1, H = 2 channels, N = 2 (one complex mode per channel), 1 layer, 2 classes,
tiles of 4 x 4, polarity encoding, 8-bit DACs and ADCs, a full-precision state register (32
bits), 3 time steps. Every expected number below is worked out from the mapping's layouts
(imssa.mapping.roles) and the cited figures of imssa.cost.energy.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from imssa.cost import UNITS, EnergyConfig, adc_energy, estimate
from imssa.crossbar import DIGITAL_PARTS, PeripheryConfig, convert
from imssa.devices import IdealDevice, make_device
from imssa.errors import ImssaError
from imssa.mapping import MappingConfig
from imssa.quant import make_config, memory_footprint, prepare
from imssa.ssm import S4DConfig, S4DModel

L = 3
ADD16 = math.sqrt(0.03 * 0.1)  # 16 bits: the geometric mean of Horowitz's 8- and 32-bit adds
MULT16 = math.sqrt(0.2 * 3.1)
ACTIVATION = 2 * (MULT16 + ADD16)  # two multiplies and two adds
CELL = 2.4e-3 / (8 * 128 * 128) * 100e-9 * 1e12  # pJ per device read (ISAAC)
DAC8 = 8 * 0.41667
ADC8 = 1.67


def _model() -> S4DModel:
    torch.manual_seed(0)
    return S4DModel(S4DConfig(d_input=1, d_model=2, d_state=2, n_layers=1, n_classes=2)).double()


def _xbar(mapping: MappingConfig | None = None, **kwargs) -> S4DModel:
    periphery = kwargs.pop("periphery", PeripheryConfig(dac_bits=8, adc_bits=8))
    return convert(_model(), mapping or MappingConfig(tile_rows=4, tile_cols=4), IdealDevice(),
                   periphery, **kwargs)


def test_tiny_crossbar_model_by_hand():
    r = estimate(_xbar(), steps=L)
    t = r.as_dict()
    assert set(t) == set(UNITS)
    # cells (= devices, one per weight) and tiles of 4 x 4, per tensor:
    # encoder (in + 1, 2 out) = (2, 4): 8 cells, 1 tile, 4 weights (2 + 2 biases)
    # A_bar: a 4x4 block per mode, 2 modes: 32 cells on 2 tiles, 8 weights (a_r, -a_i, a_i, a_r)
    # B_bar: (2, 4) per mode: 16 cells, one channel's group per tile: 2 tiles, 4 weights
    # C: (4, 1) per mode: 8 cells, 2 tiles, 4 weights; D: (2, 1) per channel: 4 cells, 1 tile
    # mix (H + 1, 2 * 2H) = (3, 8): 24 cells, cut into 2 tiles of 4 columns, 12 weights
    # decoder (3, 4): 12 cells, 1 tile, 6 weights
    expect = {"encoder": (8, 1, 4), "blocks.0.ssm.A_bar": (32, 2, 8),
              "blocks.0.ssm.B_bar": (16, 2, 4), "blocks.0.ssm.C": (8, 2, 4),
              "blocks.0.ssm.D": (4, 1, 2), "blocks.0.mix": (24, 2, 12), "decoder": (12, 1, 6)}
    assert {k: (v["devices"], v["tiles"], v["weights"]) for k, v in r.tensors.items()} == expect
    assert t["devices"] == 104 and t["tiles"] == 11 and t["pulses"] == 104
    assert t["utilization"] == pytest.approx(104 / (11 * 16))
    assert t["analog_macs"] == L * (4 + 8 + 4 + 4 + 2 + 12) + 6
    assert t["device_reads"] == L * (104 - 12) + 12
    # DACs per step: encoder input 1, SSM input H = 2, state fed back H * N2 * 2 = 4, mix 2;
    # the decoder's 2 once. ADCs per step: encoder 2, state columns H * N2 * 4 = 8 (y_r, y_i,
    # -y_r, -y_i), output H = 2, mix 2H = 4; the decoder's 2 once.
    assert t["dac_conversions"] == L * 9 + 2 == 29
    assert t["adc_conversions"] == L * 16 + 2 == 50
    # digital: (y, -y) averages of the state, 8 - 4 = 4 adds per step; per step GELU and the
    # GLU's sigmoid (2H activations), the GLU's product (H mults), the residual and the running
    # sum of the mean (2H adds); the mean's division (H mults) once
    assert t["digital_adds"] == L * (4 + 2 + 2) == 24
    assert t["digital_mults"] == L * 2 + 2 == 8 and t["activations"] == L * 4
    assert t["digital_macs"] == 0 and t["accumulator_adds"] == 0
    assert t["state_register_bits"] == 4 * 32 and t["digital_weight_bits"] == 0
    adc, dac, array = 50 * ADC8, 29 * DAC8, 288 * CELL
    digital = 24 * ADD16 + 8 * MULT16 + 12 * ACTIVATION
    memory = L * 4 * 32 * 2 * 0.009  # the register written and read every step
    assert t["energy_adc_nj"] == pytest.approx(adc * 1e-3)
    assert t["energy_dac_nj"] == pytest.approx(dac * 1e-3)
    assert t["energy_array_nj"] == pytest.approx(array * 1e-3)
    assert t["energy_digital_nj"] == pytest.approx(digital * 1e-3)
    assert t["energy_memory_nj"] == pytest.approx(memory * 1e-3)
    assert t["energy_nj"] == pytest.approx((adc + dac + array + digital + memory) * 1e-3)
    assert t["energy_nj"] == pytest.approx(0.2154327, rel=1e-6)
    # latency: 4 ADC stages per step, one read (100 ns) + conversions over the stage's ADCs
    # (one per tile here): encoder 2 / 1, state 8 / 4 tiles, output 2 / 3, mix 4 / 2 -> 2, 2,
    # 1, 2 conversions; the decoder 2 once; digital work fits one 1 ns cycle per step and once
    adc_s = 1 / 1.2e9
    analog = L * (4 * 100e-9 + 7 * adc_s) + 100e-9 + 2 * adc_s
    assert t["latency_s"] == pytest.approx(analog + (L + 1) * 1e-9)
    assert "nJ" in r.line() and "blocks.0.ssm.A_bar" in r.summary()
    json.dumps(r.to_dict())  # JSON-ready


def test_digital_models_by_hand():
    """Float: every weight a float32 MAC read from SRAM, biases adds; quantized: its bits."""
    t = estimate(_model(), steps=L).as_dict()
    # MACs per step: encoder 2, A_bar 4 per complex mode (8), B_bar 4, C 4, D 2, mix 8;
    # decoder 4 once
    assert t["digital_macs"] == L * 28 + 4 == 88
    assert t["digital_adds"] == L * (2 + 4) + 2 + L * 4  # biases, then residual and pooling
    assert t["adc_conversions"] == t["devices"] == t["tiles"] == 0
    weights = L * 30 + 6  # stored values read per inference
    expect = (88 * (3.7 + 0.9) + 20 * 0.9 + 12 * ADD16 + 8 * MULT16 + 12 * ACTIVATION
              + weights * 32 * 10 / 64 + L * 4 * 32 * 2 * 0.009)
    assert t["energy_nj"] == pytest.approx(expect * 1e-3)
    assert t["digital_weight_bits"] == 36 * 32  # 30 per-step values + 6 of the decoder
    cfg = make_config("W4A6", x_bits=8)
    q = prepare(S4DModel(S4DConfig(d_input=1, d_model=2, d_state=2, n_classes=2)), cfg)
    tq = estimate(q, steps=L).as_dict()
    assert tq["state_register_bits"] == 4 * 8 and tq["digital_macs"] == 88
    footprint = memory_footprint(cfg, q.cfg)
    assert tq["digital_weight_bits"] == sum(r.total_bits for r in footprint.rows
                                            if r.kind == "parameter")
    assert tq["energy_nj"] < t["energy_nj"] / 3


def test_adc_energy_rule_and_monotone_in_bits():
    assert [adc_energy(b) for b in (4, 6, 8, 10)] == [0.79, 1.20, 1.67, 2.38]
    assert adc_energy(11) == pytest.approx(4 * 2.38) and adc_energy(3) == pytest.approx(
        0.79 / (0.99 / 0.79))
    e = [adc_energy(b) for b in range(2, 17)]
    assert all(a < b for a, b in zip(e, e[1:]))
    energies = [estimate(_xbar(periphery=PeripheryConfig(dac_bits=8, adc_bits=b)),
                         steps=L).as_dict()["energy_nj"] for b in (4, 6, 8, 10, 12)]
    assert all(a < b for a, b in zip(energies, energies[1:]))
    assert energies[2] - energies[0] == pytest.approx(50 * (1.67 - 0.79) * 1e-3)


def test_per_tensor_settings_n_devices_and_bits():
    base = estimate(_xbar(), steps=L)
    per = estimate(_xbar(per_tensor={"A": {"n_devices": 2, "adc_bits": 10}}), steps=L)
    a = "blocks.0.ssm.A_bar"
    assert per.tensors[a]["devices"] == 2 * base.tensors[a]["devices"] == 64
    assert per.tensors[a]["n_devices"] == 2 and per.tensors[a]["adc_bits"] == 10
    assert per.tensors["blocks.0.ssm.B_bar"]["adc_bits"] == 10  # B shares A's state ADC
    assert per.tensors["blocks.0.ssm.C"]["adc_bits"] == 8
    t, t0 = per.as_dict(), base.as_dict()
    assert t["devices"] == t0["devices"] + 32
    assert t["device_reads"] == t0["device_reads"] + L * 32
    assert t["analog_macs"] == t0["analog_macs"]  # more devices, the same weights
    assert t["energy_adc_nj"] - t0["energy_adc_nj"] == pytest.approx(
        L * 8 * (2.38 - 1.67) * 1e-3)
    doubled = estimate(convert(_model(), MappingConfig(tile_rows=4, tile_cols=4),
                               make_device("ideal", n_devices=2),
                               PeripheryConfig(dac_bits=8, adc_bits=8)), steps=L).as_dict()
    # the second device of every weight on a copy of the tiles: twice the tiles, the same
    # utilization, the same ADCs (the copies' bit lines joined), so the same latency
    assert doubled["devices"] == 2 * t0["devices"] and doubled["tiles"] == 2 * t0["tiles"] == 22
    assert doubled["utilization"] == pytest.approx(t0["utilization"]) == pytest.approx(104 / 176)
    assert doubled["latency_s"] == pytest.approx(t0["latency_s"])
    # A alone doubled: its 2 tiles twice, utilization over the device positions of all tiles
    assert per.tensors[a]["tiles"] == 4 and per.tensors[a]["array_tiles"] == 2
    assert t["tiles"] == t0["tiles"] + 2
    assert t["utilization"] == pytest.approx((104 + 32) / ((11 + 2) * 16))


def test_increment_split_and_compensation_add_their_digital_work():
    base = estimate(_xbar(), steps=L).as_dict()
    inc = estimate(_xbar(MappingConfig(tile_rows=4, tile_cols=4, transition="increment")),
                   steps=L).as_dict()
    assert inc["accumulator_adds"] == L * 4  # one add per state value and step
    assert inc["digital_adds"] == base["digital_adds"] + L * 4
    assert inc["energy_digital_nj"] - base["energy_digital_nj"] == pytest.approx(
        L * 4 * ADD16 * 1e-3)
    split = estimate(_xbar(MappingConfig(tile_rows=4, tile_cols=8, transition="increment",
                                         transition_scale="split")), steps=L)
    s = split.as_dict()
    # 8 sensed state columns per mode instead of 4: 16 conversions, 12 adds into 4 values
    assert split.converters["blocks.0.ssm.state"]["per_step"] == 16
    assert split.tensors["blocks.0.ssm.A_bar"]["columns"] == 16
    assert s["adc_conversions"] == base["adc_conversions"] + L * 8
    assert s["digital_adds"] == base["digital_adds"] + L * (4 + 8)
    comp = estimate(_xbar(periphery=PeripheryConfig(dac_bits=8, adc_bits=8,
                                                    drift_compensation="global")),
                    steps=L).as_dict()
    # one gain per decoded output: encoder 2, state 4, output 2, mix 4 per step; decoder 2
    assert comp["compensation_mults"] == L * 12 + 2
    assert comp["digital_mults"] == base["digital_mults"] + L * 12 + 2


def test_a_digital_part_removes_its_conversions_and_adds_digital_macs():
    base = estimate(_xbar(), steps=L).as_dict()
    mix = estimate(_xbar(digital=("mix",)), steps=L).as_dict()
    assert mix["dac_conversions"] == base["dac_conversions"] - L * 2
    assert mix["adc_conversions"] == base["adc_conversions"] - L * 4
    assert mix["devices"] == base["devices"] - 24
    assert mix["digital_macs"] == L * 8 and mix["digital_adds"] == base["digital_adds"] + L * 4
    assert mix["digital_weight_bits"] == (8 + 4) * 32
    a = estimate(_xbar(digital=("A",)), steps=L).as_dict()
    assert a["digital_macs"] == L * 8  # 4 real MACs per complex mode
    assert a["adc_conversions"] == base["adc_conversions"]  # B still senses the state columns
    assert a["dac_conversions"] == base["dac_conversions"]  # C still reads the state


def test_all_digital_conversion_costs_what_the_digital_model_costs():
    everything = convert(_model(), MappingConfig(tile_rows=4, tile_cols=4), IdealDevice(),
                         digital=DIGITAL_PARTS)
    assert estimate(everything, steps=L).as_dict() == estimate(_model(), steps=L).as_dict()


def test_real_ssm_one_pair_per_mode():
    torch.manual_seed(0)
    model = S4DModel(S4DConfig(d_input=1, d_model=2, d_state=2, n_classes=2, ssm="real"))
    r = estimate(convert(model, MappingConfig(tile_rows=4, tile_cols=4, encoding="differential"),
                         IdealDevice()), steps=L)
    # N = 2 real modes per channel: A_bar one differential pair (1 weight) per mode
    a = r.tensors["blocks.0.ssm.A_bar"]
    assert (a["devices"], a["weights"]) == (2 * 2 * 2, 4)
    assert r.converters["blocks.0.ssm.state"]["per_step"] == 2 * 2  # one column per mode
    assert estimate(model, steps=L).as_dict()["digital_macs"] == L * (2 + 4 + 4 + 4 + 2 + 8) + 4


def test_bad_input_is_refused():
    with pytest.raises(ImssaError, match="steps"):
        estimate(_model(), steps=0)
    with pytest.raises(ImssaError, match="S4DModel"):
        estimate(torch.nn.Linear(2, 2), steps=3)
    with pytest.raises(ImssaError, match="EnergyConfig.read_s"):
        EnergyConfig(read_s=-1.0)
    with pytest.raises(ImssaError, match="EnergyConfig.adc_pj"):
        EnergyConfig(adc_pj=())


def test_simulate_dataset_carries_the_figures():
    from imssa.experiments.simulate.points import Setting
    from imssa.experiments.simulate.result import build_dataset

    report = estimate(_xbar(), steps=L)
    settings = [Setting(index=i, memristor=IdealDevice(), mapping=MappingConfig())
                for i in range(2)]
    ds = build_dataset(np.zeros((2, 1, 1)), np.zeros((2, 1)), [0.0], settings, sweep=None,
                       keep_setting=True, record_json="{}", fingerprint="f", run="r",
                       digital_accuracy=1.0, n_samples=1, device=torch.device("cpu"),
                       cost_json=json.dumps([report.to_dict(), None]))
    assert ds["cost_energy_nj"].attrs["units"] == "nJ"
    assert ds["cost_energy_nj"].values[0] == pytest.approx(report.as_dict()["energy_nj"])
    assert np.isnan(ds["cost_devices"].values[1])
    assert ds["cost_latency_s"].attrs["units"] == "s"
