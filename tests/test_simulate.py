"""Tests for imssa.experiments.simulate: times, the NetCDF result, sweeps, resuming an
interrupted sweep (guarded by the content fingerprint), plots and the command line."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imssa.experiments.simulate.run as sim_run
from imssa.cli import main
from imssa.cli.simulate import add_parser, translate
from imssa.crossbar import PeripheryConfig
from imssa.data import CALIBRATION_SAMPLES
from imssa.devices import GaussianConfig, PCMConfig
from imssa.errors import ImssaError
from imssa.experiments.simulate import (
    SimulationConfig,
    format_time,
    format_times,
    parse_times,
    plot_accuracy,
    simulate,
    sweep_memristors,
)
from imssa.experiments.simulate.config import check_digital
from imssa.experiments.simulate.parts import PartsStore
from imssa.experiments.simulate.points import settings as make_settings
from imssa.experiments.train import TrainConfig, train
from imssa.mapping import MappingConfig


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "run"
    train(TrainConfig(task="sdigits", model="s4d-16", epochs=2, limit=200, device="cpu"), path)
    return path


def _config(**kw) -> SimulationConfig:
    base = {"t_inference": (0.0, 3600.0), "chips": 2, "limit": 40, "device": "cpu",
            "periphery": PeripheryConfig(dac_bits=8, adc_bits=8, drift_compensation="global")}
    return SimulationConfig(**(base | kw))


def _load(path) -> xr.Dataset:
    with xr.open_dataset(path, engine="scipy") as saved:
        return saved.load()


@pytest.fixture
def computed(monkeypatch):
    """The inference times computed by the engine, in order (finished points are skipped)."""
    times: list[float] = []
    real = sim_run.evaluate_setting

    def record(*args, **kwargs):
        times.extend(p.t_inference for p in args[5])
        yield from real(*args, **kwargs)

    monkeypatch.setattr(sim_run, "evaluate_setting", record)
    return times


def _interrupt_at_save(monkeypatch, n: int) -> None:
    """Ctrl-C at the ``n``-th save of the parts store (the digital accuracy is the first)."""
    real, saves = PartsStore.save, []

    def save(self, name, result):
        saves.append(name)
        if len(saves) == n:
            raise KeyboardInterrupt
        real(self, name, result)

    monkeypatch.setattr(PartsStore, "save", save)


def test_parse_times():
    assert parse_times("1s,1h,1d,1y,3600") == [1.0, 3600.0, 86400.0, 365 * 86400.0, 3600.0]
    assert parse_times("0, 2.5min ,1e3,1w") == [0.0, 150.0, 1000.0, 604800.0]
    for bad in ("-1h", "1x", "abc", "1h,,1d", "", "nan", "inf"):
        with pytest.raises(ImssaError, match="t_inference"):
            parse_times(bad)
    assert [format_time(t) for t in (0.0, 90.0, 3600.0, 86400.0, 365 * 86400.0, 1.5)] == \
        ["0 s", "90 s", "1 h", "1 d", "1 y", "1.5 s"]
    assert SimulationConfig(t_inference="1s,1h").t_inference == (1.0, 3600.0)
    with pytest.raises(ImssaError, match="SimulationConfig.t_inference"):
        SimulationConfig(t_inference="1h,x")


@given(st.lists(st.one_of(st.integers(0, 10**9).map(float),
                          st.floats(0, 1e9, allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=6))
def test_times_round_trip(times):
    assert parse_times(format_times(tuple(times))) == pytest.approx(times, rel=1e-5)


@given(st.text(max_size=20))
def test_parse_times_fails_cleanly(text):
    try:
        times = parse_times(text)
    except ImssaError as err:
        assert "t_inference" in str(err)
    else:
        assert all(t >= 0 and np.isfinite(t) for t in times)


def test_simulate_writes_netcdf(run, tmp_path, capsys):
    out = tmp_path / "sim.nc"
    ds = simulate(run, PCMConfig(), _config(), out)
    assert out.exists() and not (tmp_path / "sim.nc.parts").exists()
    saved = _load(out)
    assert saved["accuracy"].dims == ("t_inference", "chip")
    assert saved.sizes == {"t_inference": 2, "chip": 2}
    assert list(saved["t_inference"].values) == [0.0, 3600.0]
    assert saved["t_inference"].attrs["units"] == "s"
    assert saved["accuracy"].attrs["units"] == "1"
    assert ((saved["accuracy"] >= 0) & (saved["accuracy"] <= 1)).all()
    assert (saved["accuracy"].values == ds["accuracy"].values).all()
    record = json.loads(saved.attrs["config"])
    assert record["task"] == "sdigits" and record["memristors"][0]["device"] == "pcm"
    assert record["simulation"]["periphery"]["adc_bits"] == 8
    assert record["simulation"]["calibration_samples"] == CALIBRATION_SAMPLES
    assert len(record["model_sha256"]) == 64 and "run" not in record
    assert saved.attrs["run"] == str(run.resolve())
    assert saved.attrs["n_samples"] == 40 and 0 <= saved.attrs["digital_accuracy"] <= 1
    assert "accuracy (mean ± std over 2 chips)" in capsys.readouterr().out
    plot_accuracy(saved, tmp_path / "acc.png")
    assert (tmp_path / "acc.png").stat().st_size > 1000


def test_sweep_has_a_setting_dim_and_noiseless_equals_digital(run, tmp_path):
    memristors = sweep_memristors(GaussianConfig(), "prog_noise", [0.0, 0.3])
    ds = simulate(run, memristors, _config(t_inference=(60.0,), periphery=PeripheryConfig()),
                  tmp_path / "sweep.nc", sweep="prog_noise")
    saved = _load(tmp_path / "sweep.nc")
    assert saved["accuracy"].dims == ("setting", "t_inference", "chip")
    assert list(saved["prog_noise"].values) == [0.0, 0.3]
    assert saved["prog_noise"].dims == ("setting",)
    # no programming noise, ideal periphery: every chip is the digital model
    assert (ds["accuracy"].isel(setting=0) == ds.attrs["digital_accuracy"]).all()
    plot_accuracy(saved, tmp_path / "sweep.png")  # accuracy vs the swept parameter
    assert (tmp_path / "sweep.png").exists()
    with pytest.raises(ImssaError, match="no field"):
        sweep_memristors(GaussianConfig(), "prog_nois", [0.1])
    with pytest.raises(ImssaError, match="prog_noise"):
        sweep_memristors(GaussianConfig(), "prog_noise", [-0.1])


def test_sweep_of_text_values(run, tmp_path, capsys):
    """A categorical field (read_noise_mode) is a text coordinate, in the file and the plot."""
    memristors = sweep_memristors(PCMConfig(), "read_noise_mode", ["per_step", "per_inference"])
    simulate(run, memristors, _config(t_inference=(60.0,)), tmp_path / "modes.nc",
             sweep="read_noise_mode")
    saved = _load(tmp_path / "modes.nc")
    assert list(saved["read_noise_mode"].values) == ["per_step", "per_inference"]
    assert "read_noise_mode=per_inference" in capsys.readouterr().out
    plot_accuracy(saved, tmp_path / "modes.svg")
    assert (tmp_path / "modes.svg").stat().st_size > 1000


def test_interrupted_simulate_leaves_no_file_and_resumes(run, tmp_path, monkeypatch, computed):
    config = _config(t_inference=(0.0, 60.0, 3600.0))
    reference = simulate(run, PCMConfig(), config)  # uninterrupted, in memory
    out = tmp_path / "sim.nc"
    with monkeypatch.context() as m:
        _interrupt_at_save(m, 3)  # digital, s0_t0, then Ctrl-C while saving s0_t1
        with pytest.raises(KeyboardInterrupt):
            simulate(run, PCMConfig(), config, out)
    assert not out.exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".sim.nc.*"))
    assert sorted(p.name for p in (tmp_path / "sim.nc.parts").iterdir()) == \
        ["digital.json", "manifest.json", "s0_t0.json"]
    # another configuration must not mix with these partial results
    with pytest.raises(ImssaError, match="different simulation"):
        simulate(run, PCMConfig(), _config(t_inference=(0.0,)), out)
    # the fingerprint holds the model's content, not its path: a copy of the run resumes
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    computed.clear()
    ds = simulate(moved, PCMConfig(), config, out)
    assert computed == [60.0, 3600.0]  # the finished point was skipped
    assert out.exists() and not (tmp_path / "sim.nc.parts").exists()
    assert (ds["accuracy"].values == reference["accuracy"].values).all()


@pytest.mark.parametrize("k", [1, 3, 4])
def test_resume_after_ctrl_c_at_any_point_equals_uninterrupted(run, tmp_path, monkeypatch, k):
    """Saves: digital, s0_t0, s0_t1, s1_t0, s1_t1; Ctrl-C at the k-th, then resume."""
    memristors = sweep_memristors(PCMConfig(), "n_devices", [1, 2])
    config = _config(chips=2, limit=20)
    reference = simulate(run, memristors, config, sweep="n_devices")
    out = tmp_path / "sim.nc"
    with monkeypatch.context() as m:
        _interrupt_at_save(m, k)
        with pytest.raises(KeyboardInterrupt):
            simulate(run, memristors, config, out, sweep="n_devices")
    ds = simulate(run, memristors, config, out, sweep="n_devices")
    assert (ds["accuracy"].values == reference["accuracy"].values).all()
    assert (_load(out)["accuracy"].values == reference["accuracy"].values).all()


def test_resume_refuses_another_model_in_the_same_folder(run, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    out = tmp_path / "sim.nc"
    with monkeypatch.context() as m:
        _interrupt_at_save(m, 3)
        with pytest.raises(KeyboardInterrupt):
            simulate(folder, PCMConfig(), _config(), out)
    train(TrainConfig(task="sdigits", model="s4d-16", epochs=1, limit=200, seed=1,
                      device="cpu"), tmp_path / "other")
    shutil.copy(tmp_path / "other" / "model.pt", folder / "model.pt")
    with pytest.raises(ImssaError, match="different simulation"):
        simulate(folder, PCMConfig(), _config(), out)
    ds = simulate(folder, PCMConfig(), _config(), out, force=True)  # force starts over
    fresh = simulate(folder, PCMConfig(), _config())
    assert (ds["accuracy"].values == fresh["accuracy"].values).all()


def test_finished_result_is_skipped_and_other_settings_refused(run, tmp_path, capsys, computed):
    out = tmp_path / "sim.nc"
    first = simulate(run, PCMConfig(), _config(), out)
    computed.clear()
    again = simulate(run, PCMConfig(), _config(), out)
    assert computed == [] and "not recomputed" in capsys.readouterr().out
    assert (again["accuracy"].values == first["accuracy"].values).all()
    with pytest.raises(ImssaError, match="other settings"):
        simulate(run, PCMConfig(), _config(chips=3), out)
    assert _load(out).sizes["chip"] == 2
    again = simulate(run, PCMConfig(), _config(), out, force=True)
    assert computed == [0.0, 3600.0]
    assert (again["accuracy"].values == first["accuracy"].values).all()
    (tmp_path / "junk.nc").write_text("not a netcdf file")
    with pytest.raises(ImssaError, match="not a readable NetCDF"):
        simulate(run, PCMConfig(), _config(), tmp_path / "junk.nc")


def test_parts_without_manifest_or_damaged_are_refused(run, tmp_path, monkeypatch):
    out = tmp_path / "sim.nc"
    parts = tmp_path / "sim.nc.parts"
    parts.mkdir()
    (parts / "s0_t0.json").write_text(json.dumps({"accuracy": [1.0, 1.0], "seconds": 0.0}))
    with pytest.raises(ImssaError, match="without a manifest.json"):
        simulate(run, PCMConfig(), _config(), out)
    shutil.rmtree(parts)
    parts.mkdir()  # an empty folder (a crash before the manifest) is harmless
    with monkeypatch.context() as m:
        _interrupt_at_save(m, 3)
        with pytest.raises(KeyboardInterrupt):
            simulate(run, PCMConfig(), _config(), out)
    manifest = json.loads((parts / "manifest.json").read_text())
    (parts / "s0_t0.json").write_text(json.dumps(
        {"fingerprint": manifest["fingerprint"], "accuracy": [0.5], "seconds": 0.0}))
    with pytest.raises(ImssaError, match="damaged"):
        simulate(run, PCMConfig(), _config(), out)
    (parts / "s0_t0.json").write_text(json.dumps(
        {"fingerprint": "0" * 64, "accuracy": [0.5, 0.5], "seconds": 0.0}))
    with pytest.raises(ImssaError, match="another simulation"):
        simulate(run, PCMConfig(), _config(), out)
    (parts / "s0_t0.json").write_text("{truncated")
    with pytest.raises(ImssaError, match="unreadable"):
        simulate(run, PCMConfig(), _config(), out)


def test_digital_selectors(run, tmp_path):
    for ok in (("A", "mix"), ("blocks.0.ssm.A_bar", "blocks.*.ssm.B_bar", "decoder"),
               ("blocks.7.mix",)):  # the form is checked here, the layers with the model
        check_digital(SimulationConfig(digital=ok).digital)
    assert SimulationConfig(digital="A").digital == ("A",)
    for bad in ("Q", "encoder.weight", "blocks.0.ssm.Z"):
        with pytest.raises(ImssaError, match="SimulationConfig.digital"):
            SimulationConfig(digital=(bad,))
    with pytest.raises(ImssaError, match="SimulationConfig.digital.*'blocks.3.ssm.A_bar'"):
        simulate(run, PCMConfig(), _config(digital=("blocks.3.ssm.A_bar",)), tmp_path / "x.nc")
    assert not (tmp_path / "x.nc.parts").exists()  # refused before any work
    # every SSM tensor of the only block digital, by path or by alias: the same numbers
    by_path = simulate(run, PCMConfig(), _config(digital=("blocks.0.ssm",)))
    by_alias = simulate(run, PCMConfig(), _config(digital=("A", "B", "C", "D")))
    assert (by_path["accuracy"].values == by_alias["accuracy"].values).all()


def test_window_of_each_setting():
    narrow = GaussianConfig(g_max=20.0)
    (setting,) = make_settings(narrow, SimulationConfig(), None)
    assert (setting.mapping.g_min, setting.mapping.g_max) == (0.0, 20.0)
    wide = SimulationConfig(mapping=MappingConfig(g_max=25.0), window="mapping")
    with pytest.raises(ImssaError, match="outside"):
        make_settings(narrow, wide, None)
    with pytest.raises(ImssaError, match="window"):
        SimulationConfig(window="chip")


def test_checked_before_any_work(tmp_path):
    """Bad out paths and sweeps fail before the run is even read (it does not exist here)."""
    missing = tmp_path / "no-run"
    with pytest.raises(ImssaError, match="is a folder"):
        simulate(missing, PCMConfig(), _config(), tmp_path)
    with pytest.raises(ImssaError, match="not a finished training run"):
        simulate(missing, PCMConfig(), _config(), tmp_path / "x.nc")
    with pytest.raises(ImssaError, match="finite number"):
        sweep_memristors(GaussianConfig(), "prog_noise", [0.1, "abc"])


def _cli(argv):
    parser = argparse.ArgumentParser(prog="imssa")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_cli(run, tmp_path, capsys):
    out = tmp_path / "cli.nc"
    argv = ["simulate", str(run), "--memristor", "gaussian", "--prog-noise", "0.02",
            "--t-inference", "0,1h", "--chips", "2", "--dac-bits", "8", "--adc-bits", "8",
            "--compensation", "global", "--read-noise", "per_inference", "--digital", "A",
            "--n-devices", "2", "--verify-tol", "0.05", "--limit", "20", "--device", "cpu",
            "--out", str(out), "--plot", str(tmp_path / "cli.png")]
    _cli(argv)
    assert out.exists() and (tmp_path / "cli.png").exists()
    record = json.loads(_load(out).attrs["config"])
    assert record["memristors"][0]["n_devices"] == 2 and record["memristors"][0]["prog_noise"] == 0.02
    assert record["simulation"]["digital"] == ["A"]
    assert record["simulation"]["periphery"]["read_noise_mode"] == "per_inference"
    assert "wrote" in capsys.readouterr().out
    _cli(argv)  # finished: skipped with a notice
    assert "not recomputed; force recomputes it" in capsys.readouterr().out
    with pytest.raises(ImssaError, match="--out .* other settings.*--force"):
        _cli([*argv, "--chips", "3"])


def test_cli_defaults_are_the_configs():
    parser = argparse.ArgumentParser(prog="imssa")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["simulate", "RUN"])
    sim, per, mapping = SimulationConfig(), PeripheryConfig(), MappingConfig()
    assert tuple(parse_times(args.t_inference)) == sim.t_inference
    assert (args.chips, args.batch_size, args.seed, args.split, args.limit, args.device) == \
        (sim.chips, sim.batch_size, sim.seed, sim.split, sim.limit, sim.device)
    assert args.calibration_samples == sim.calibration_samples == CALIBRATION_SAMPLES
    assert (args.percentile, args.calibration, args.compensation, args.dac_bits) == \
        (per.percentile, per.calibration, per.drift_compensation, per.dac_bits)
    assert args.tile_size == str(mapping.tile_rows) and args.encoding == mapping.encoding.value
    assert args.memristor == "pcm"


@pytest.mark.parametrize("argv,match", [
    (["--memristor", "pcm", "--prog-noise", "0.02"], "gaussian only"),
    (["--g-min", "30", "--g-max", "20"], "g_min < g_max"),
    (["--t-inference", "1h,-1d"], "--t-inference: times must be >= 0"),
    (["--dac-bits", "20"], "--dac-bits must be"),
    (["--adc-bits", "1"], "--adc-bits must be"),
    (["--tile-size", "2"], "--tile-size"),
    (["--tile-size", "4x2", "--encoding", "differential"], "--tile-size"),
    (["--digital", "A,Q"], "--digital: unknown part to keep digital 'Q'"),
    (["--digital", "encoder.weight"], "--digital: unknown part to keep digital 'encoder.weight'"),
    (["--set", "nu=1"], "bad settings"),
    (["--sweep", "prog_noise"], "FIELD=VALUE"),
    (["--memristor", "gaussian", "--sweep", "prog_noise=0.1,abc"],
     "--sweep prog_noise=0.1,abc: --prog-noise must be a finite number"),
    (["--sweep", "verify_tol=-1"], "--verify-tol must be"),
    (["--chips", "0"], "--chips must be"),
    (["--percentile", "20"], "--percentile must be"),
    (["--device", "pcm"], "--memristor pcm"),
    (["--plot", "acc.xyz"], "unknown image format 'xyz'"),
    (["--transition", "increment", "--digital", "A"], "--transition='increment'.*kept digital"),
    (["--transition", "increment", "--dac-bits", "8", "--state-bits", "6"],
     "--state-bits=6 .*accumulator.*narrower"),
    (["--transition-scale", "split", "--compensation", "per_column"], "per_column"),
    (["--per-tensor", "A"], "--per-tensor: write SELECTOR:FIELD=VALUE"),
    (["--per-tensor", "A:bogus=1"], "--per-tensor A: 'bogus' is neither"),
    (["--per-tensor", "A:verify_tol=0.01", "--digital", "A"], "kept digital"),
    (["--per-tensor", "Q:n_devices=2"], "unknown tensor of a per-tensor setting 'Q'"),
])
def test_cli_bad_input(run, tmp_path, argv, match):
    with pytest.raises(ImssaError, match=match):
        _cli(["simulate", str(run), "--limit", "5", "--device", "cpu", "--out",
              str(tmp_path / "x.nc"), *argv])
    assert not (tmp_path / "x.nc").exists()


def test_cli_out_is_a_folder(run, tmp_path):
    with pytest.raises(ImssaError, match="--out .* is a folder"):
        _cli(["simulate", str(run), "--device", "cpu", "--out", str(tmp_path)])


def test_translate():
    assert translate("SimulationConfig.chips must be") == "--chips must be"
    assert translate("PCMConfig.n_devices must be") == "--n-devices must be"
    assert translate("PCMConfig.drift_scale must be") == "--set drift_scale must be"
    assert translate("choose another `out`, or pass `force=True`") == \
        "choose another --out, or pass --force"


def test_cli_ctrl_c_says_what_resumes(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "cli.nc"
    argv = ["simulate", str(run), "--t-inference", "0,1h", "--chips", "2", "--limit", "20",
            "--device", "cpu", "--out", str(out)]
    _interrupt_at_save(monkeypatch, 3)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert "1 finished points are kept in" in err and "rerun the same command" in err
    assert "--resume" not in err


_TEXT = st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=12)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--t-inference", "--sweep", "--tile-size", "--digital", "--plot",
                               "--set", "--chips", "--percentile", "--encoding",
                               "--compensation", "--read-noise", "--memristor", "--split"]),
       value=_TEXT)
def test_cli_generated_bad_input_is_one_line(tmp_path, capsys, option, value):
    """Any value of any option ends in exit 2 and a one-line message, never a traceback (the
    run does not exist, so a valid value ends at that error, before any work)."""
    code = None
    try:
        code = main(["simulate", str(tmp_path / "no-run"), "--device", "cpu", "--out",
                     str(tmp_path / "x.nc"), f"{option}={value}"])
    except SystemExit as exit_:  # argparse: a malformed or disallowed value
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    if not err[-1].startswith("usage") and "error: argument" not in err[-1]:
        assert len(err) == 1 and err[0].startswith("imssa simulate: error:")


def test_cli_transition_forms_and_per_tensor_settings(run, tmp_path):
    """The mapping form and per-tensor settings reach the record, the cost counts reach the
    result; a split complex A_bar doubles its state columns' conversions."""
    costs = {}
    for form in (["--transition", "direct"],
                 ["--transition", "increment", "--transition-scale", "split",
                  "--per-tensor", "A:verify_tol=0.01,n_devices=2,adc_bits=10"]):
        out = tmp_path / f"{form[1]}.nc"
        _cli(["simulate", str(run), "--memristor", "gaussian", "--prog-noise", "0.01",
              "--t-inference", "0", "--chips", "2", "--adc-bits", "8", "--limit", "10",
              "--device", "cpu", "--out", str(out), *form])
        ds = _load(out)
        record = json.loads(ds.attrs["config"])
        costs[form[1]] = json.loads(ds.attrs["cost"])[0]
        assert record["mappings"][0]["transition"] == form[1]
    assert json.loads(_load(tmp_path / "increment.nc").attrs["config"])["simulation"][
        "per_tensor"] == [["A", {"verify_tol": 0.01, "n_devices": 2, "adc_bits": 10}]]
    d, i = costs["direct"], costs["increment"]
    a = "blocks.0.ssm.A_bar"
    assert i["tensors"][a]["devices"] == 4 * d["tensors"][a]["devices"]  # 2x columns, 2 devices
    assert i["tensors"][a]["pulses"] > i["tensors"][a]["devices"]
    assert i["converters"]["blocks.0.ssm.state"] == {
        **d["converters"]["blocks.0.ssm.state"], "bits": 10,
        "per_step": 2 * d["converters"]["blocks.0.ssm.state"]["per_step"]}
