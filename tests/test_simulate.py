"""Tests for imssa.experiments.simulate: times, the NetCDF result, sweeps, resuming an
interrupted sweep, plots and the command line."""

from __future__ import annotations

import argparse
import json

import pytest
import xarray as xr

import imssa.experiments.simulate as sim
from imssa.crossbar import PeripheryConfig
from imssa.devices import GaussianConfig, PCMConfig
from imssa.errors import ImssaError
from imssa.experiments.simulate import (
    SimulationConfig,
    add_simulate_parser,
    format_time,
    parse_times,
    plot_accuracy,
    simulate,
    sweep_devices,
)
from imssa.experiments.train import TrainConfig, train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "run"
    train(TrainConfig(task="sdigits", model="s4d-16", epochs=2, limit=200, device="cpu"), path)
    return path


def _config(**kw) -> SimulationConfig:
    base = {"t_inference": (0.0, 3600.0), "chips": 2, "limit": 40, "torch_device": "cpu",
            "periphery": PeripheryConfig(dac_bits=8, adc_bits=8, drift_compensation="global")}
    return SimulationConfig(**(base | kw))


def test_parse_times():
    assert parse_times("1s,1h,1d,1y,3600") == [1.0, 3600.0, 86400.0, 365 * 86400.0, 3600.0]
    assert parse_times("0, 2.5min ,1e3,1w") == [0.0, 150.0, 1000.0, 604800.0]
    for bad in ("-1h", "1x", "abc", "1h,,1d", "", "nan", "inf"):
        with pytest.raises(ImssaError, match="t-inference"):
            parse_times(bad)
    assert [format_time(t) for t in (0.0, 90.0, 3600.0, 86400.0, 365 * 86400.0, 1.5)] == \
        ["0 s", "90 s", "1 h", "1 d", "1 y", "1.5 s"]


def test_simulate_writes_netcdf(run, tmp_path, capsys):
    out = tmp_path / "sim.nc"
    ds = simulate(run, PCMConfig(), _config(), out)
    assert out.exists() and not (tmp_path / "sim.nc.parts").exists()
    with xr.open_dataset(out, engine="scipy") as saved:
        saved.load()
    assert saved["accuracy"].dims == ("t_inference", "chip")
    assert saved.sizes == {"t_inference": 2, "chip": 2}
    assert list(saved["t_inference"].values) == [0.0, 3600.0]
    assert saved["t_inference"].attrs["units"] == "s"
    assert saved["accuracy"].attrs["units"] == "1"
    assert ((saved["accuracy"] >= 0) & (saved["accuracy"] <= 1)).all()
    assert (saved["accuracy"].values == ds["accuracy"].values).all()
    record = json.loads(saved.attrs["config"])
    assert record["task"] == "sdigits" and record["devices"][0]["device"] == "pcm"
    assert record["simulation"]["periphery"]["adc_bits"] == 8
    assert saved.attrs["n_samples"] == 40 and 0 <= saved.attrs["digital_accuracy"] <= 1
    assert "accuracy (mean ± std over 2 chips)" in capsys.readouterr().out
    plot_accuracy(saved, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").stat().st_size > 1000


def test_sweep_has_a_setting_dim_and_noiseless_equals_digital(run, tmp_path):
    devices = sweep_devices(GaussianConfig(), "prog_noise", [0.0, 0.3])
    ds = simulate(run, devices, _config(t_inference=(60.0,), periphery=PeripheryConfig()),
                  tmp_path / "sweep.nc", sweep="prog_noise")
    with xr.open_dataset(tmp_path / "sweep.nc", engine="scipy") as saved:
        saved.load()
    assert saved["accuracy"].dims == ("setting", "t_inference", "chip")
    assert list(saved["prog_noise"].values) == [0.0, 0.3]
    assert saved["prog_noise"].dims == ("setting",)
    # no programming noise, ideal periphery: every chip is the digital model
    assert (ds["accuracy"].isel(setting=0) == ds.attrs["digital_accuracy"]).all()
    plot_accuracy(saved, tmp_path / "sweep.png")  # accuracy vs the swept parameter
    assert (tmp_path / "sweep.png").exists()
    with pytest.raises(ImssaError, match="no field"):
        sweep_devices(GaussianConfig(), "prog_nois", [0.1])
    with pytest.raises(ImssaError, match="prog_noise"):
        sweep_devices(GaussianConfig(), "prog_noise", [-0.1])


def test_interrupted_simulate_leaves_no_file_and_resumes(run, tmp_path, monkeypatch):
    config = _config(t_inference=(0.0, 60.0, 3600.0))
    reference = simulate(run, PCMConfig(), config)  # uninterrupted, in memory
    out = tmp_path / "sim.nc"
    calls = []
    real = sim._evaluate_point

    def interrupt(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "_evaluate_point", interrupt)
    with pytest.raises(KeyboardInterrupt):
        simulate(run, PCMConfig(), config, out)
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".sim.nc.*"))
    assert sorted(p.name for p in (tmp_path / "sim.nc.parts").iterdir()) == \
        ["digital.json", "manifest.json", "s0_t0.json"]
    calls.clear()
    monkeypatch.setattr(sim, "_evaluate_point", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    # another configuration must not mix with these partial results
    with pytest.raises(ImssaError, match="different simulation"):
        simulate(run, PCMConfig(), _config(t_inference=(0.0,)), out)
    ds = simulate(run, PCMConfig(), config, out)
    assert calls == [60.0, 3600.0]  # the finished point was skipped
    assert out.exists() and not (tmp_path / "sim.nc.parts").exists()
    assert (ds["accuracy"].values == reference["accuracy"].values).all()


def _cli(argv):
    parser = argparse.ArgumentParser(prog="imssa")
    add_simulate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli(run, tmp_path, capsys):
    out = tmp_path / "cli.nc"
    _cli(["simulate", str(run), "--device", "gaussian", "--prog-noise", "0.02", "--t-inference",
          "0,1h", "--chips", "2", "--dac-bits", "8", "--adc-bits", "8", "--compensation",
          "global", "--read-noise", "per_inference", "--digital", "A", "--n-devices", "2",
          "--verify-tol", "0.05", "--limit", "20", "--torch-device", "cpu", "--out", str(out),
          "--plot", str(tmp_path / "cli.png")])
    assert out.exists() and (tmp_path / "cli.png").exists()
    with xr.open_dataset(out, engine="scipy") as saved:
        record = json.loads(saved.attrs["config"])
    assert record["devices"][0]["n_devices"] == 2 and record["devices"][0]["prog_noise"] == 0.02
    assert record["simulation"]["digital"] == ["A"]
    assert record["simulation"]["periphery"]["read_noise_mode"] == "per_inference"
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("argv,match", [
    (["--device", "pcm", "--prog-noise", "0.02"], "gaussian only"),
    (["--g-min", "30", "--g-max", "20"], "g_min < g_max"),
    (["--t-inference", "1h,-1d"], ">= 0"),
    (["--dac-bits", "20"], "dac_bits"),
    (["--adc-bits", "1"], "adc_bits"),
    (["--tile-size", "2"], "tile_rows"),
    (["--tile-size", "4x2", "--encoding", "differential"], "tile_cols"),
    (["--digital", "A,Q"], "digital"),
    (["--set", "nu=1"], "bad settings"),
    (["--sweep", "prog_noise"], "FIELD=VALUE"),
    (["--chips", "0"], "chips"),
])
def test_cli_bad_input(run, tmp_path, argv, match):
    with pytest.raises(ImssaError, match=match):
        _cli(["simulate", str(run), "--limit", "5", "--torch-device", "cpu", "--out",
              str(tmp_path / "x.nc"), *argv])
    assert not (tmp_path / "x.nc").exists()


def test_bad_run_and_config(tmp_path):
    with pytest.raises(ImssaError, match="not a finished training run"):
        simulate(tmp_path, PCMConfig(), _config())
    with pytest.raises(ImssaError, match="split"):
        SimulationConfig(split="train")
    with pytest.raises(ImssaError, match="t_inference"):
        SimulationConfig(t_inference=(1.0, -5.0))
    with pytest.raises(ImssaError, match="t_inference"):
        SimulationConfig(t_inference=())
