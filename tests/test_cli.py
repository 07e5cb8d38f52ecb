"""The ``imssa`` command end to end on the embedded dataset: train, eval, resume, bad input."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imssa.cli import main

QUICK = ["--task", "sdigits", "--model", "s4d-16", "--limit", "400", "--device", "cpu"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "imssa", *args], capture_output=True, text=True,
                          timeout=600)


def test_train_then_eval_both_modes(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--epochs", "3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["parameters"] == 3850
    assert len(metrics["epoch_seconds"]) == 3
    assert {"test_accuracy", "device", "torch", "date"} <= metrics.keys()
    for mode in ("conv", "recurrent"):
        assert main(["eval", str(out), "--mode", mode, "--device", "cpu"]) == 0
    conv = json.loads((out / "metrics_conv.json").read_text())["test_accuracy"]
    rec = json.loads((out / "metrics_recurrent.json").read_text())["test_accuracy"]
    assert conv == pytest.approx(metrics["test_accuracy"])
    assert abs(conv - rec) <= 1 / 400  # at most one borderline sample may flip in float32


@pytest.mark.parametrize("args,message", [
    (["train", "--task", "cifar", "--out", "x"], "unknown task 'cifar'"),
    (["train", "--model", "s4d-32", "--out", "x"], "unknown model preset 's4d-32'"),
    (["train", "--task", "smnist", "--data-dir", "/nonexistent/imssa", "--out", "x"],
     "IMSSA_DATA_DIR"),
    (["eval", "/nonexistent/run"], "/nonexistent/run is not a finished training run: the folder "
                                   "does not exist"),
    (["eval", "."], "is not a finished training run (needs config.json and model.pt)"),
    (["eval", ".", "--mode", "parallel"], "--mode must be one of conv, recurrent"),
    (["train", "--out", "/sys/imssa-read-only/run"], "run folder /sys/imssa-read-only/run is not writable"),
    (["train", "--out", "x", "--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["train", "--out", "x", "--device", "mps"], "--device must be cpu, cuda, cuda:N or auto"),
    (["train", "--out", "x", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["train", "--out", "x", "--threads", "0"], "argument --threads: must be an integer >= 1"),
    (["memristor", "characterize", "--g-targets", "1,abc"], "--g-targets: cannot read 'abc'"),
    (["memristor", "characterize", "--plot", "c.xyz"], "--plot: cannot write a figure as 'c.xyz'"),
    (["memristor", "characterize", "--out", "."], "--out . is a folder"),
])
def test_bad_input_gives_one_clear_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMSSA_NO_DOWNLOAD", "1")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback


def test_the_installed_command_answers_in_one_line(tmp_path):
    result = run_cli("train", "--out", str(tmp_path / "r"), "--epochs", "-1")
    assert result.returncode == 2
    assert result.stderr == "imssa train: error: --epochs must be >= 1, got -1\n"


def test_checkpoint_from_another_model_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *QUICK, "--epochs", "1", "--out", str(out)]) == 0
    from imssa.ssm import S4DModel, preset

    other = S4DModel(preset("s4d-64"))
    torch.save({"model": other.state_dict()}, out / "model.pt")
    assert main(["eval", str(out), "--device", "cpu"]) == 2
    assert "comes from another model" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *QUICK, "--epochs", "8", "--out", str(out)]) == 0
    return out


def test_ptq_and_qat_end_to_end(trained_run, tmp_path):
    assert main(["ptq", str(trained_run), "--preset", "W4A6", "--a-bits", "8", "--x-bits", "8",
                 "--calib-samples", "100", "--out", str(tmp_path / "ptq"), "--device", "cpu"]) == 0
    ptq = json.loads((tmp_path / "ptq" / "metrics.json").read_text())
    assert ptq["method"] == "ptq" and 0 <= ptq["test_accuracy"] <= 1
    assert ptq["quant_config"]["specs"]["blocks.*.ssm.A_bar"]["bits"] == 8
    assert ptq["quant_config"]["specs"]["blocks.*.ssm.x"]["bits"] == 8
    assert 0 < ptq["memory_savings_percent"] < 100
    assert main(["qat", str(trained_run), "--preset", "W4A6", "--a-bits", "6", "--x-bits", "6",
                 "--param", "polar", "--x-granularity", "mode", "--x-rounding", "stochastic",
                 "--epochs", "2",
                 "--calib-samples", "100", "--out", str(tmp_path / "qat"), "--device", "cpu"]) == 0
    qat = json.loads((tmp_path / "qat" / "metrics.json").read_text())
    assert qat["quant_config"]["a_bar_form"] == "polar"
    assert qat["quant_config"]["specs"]["blocks.*.ssm.x"]["granularity"] == "mode"
    assert qat["quant_config"]["specs"]["blocks.*.ssm.x"]["rounding"] == "stochastic"
    assert len(qat["epoch_seconds"]) == 2 and "ptq_test_accuracy" in qat
    assert (tmp_path / "qat" / "model.pt").exists()
    # a continuous (here polar) QAT folder is also a run of its trained float model
    assert main(["eval", str(tmp_path / "qat"), "--device", "cpu"]) == 0
    float_acc = json.loads((tmp_path / "qat" / "metrics_conv.json").read_text())["test_accuracy"]
    assert 0 <= float_acc <= 1


def test_conv_mode_qat_reports_the_recurrent_gap(trained_run, tmp_path):
    assert main(["qat", str(trained_run), "--preset", "W8A8", "--mode", "conv", "--epochs", "1",
                 "--calib-samples", "100", "--out", str(tmp_path / "q"), "--device", "cpu"]) == 0
    m = json.loads((tmp_path / "q" / "metrics.json").read_text())
    assert m["conv_recurrent_gap"] == pytest.approx(m["test_accuracy_conv"] - m["test_accuracy"])


@pytest.mark.parametrize("args,message", [
    (["--preset", "W3A3"], "unknown quantization preset 'W3A3'"),
    (["--a-bits", "17"], "2..16"),
    (["--set", "gelu.bits=4"], "unknown quantization target 'gelu'"),
    (["--calib-samples", "0"], "--calib-samples must be"),
    (["--x-rounding", "up"], "rounding must be one of nearest, stochastic"),
    (["--set", "C.rounding=stochastic"], "exists only for the state"),
])
def test_quantization_bad_input(trained_run, args, message, capsys):
    assert main(["ptq", str(trained_run), *args, "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


def test_simulate_writes_netcdf(trained_run, tmp_path):
    import xarray as xr

    out = tmp_path / "sim.nc"
    assert main(["simulate", str(trained_run), "--memristor", "pcm", "--t-inference", "1s,1d",
                 "--chips", "2", "--dac-bits", "8", "--adc-bits", "8", "--limit", "40",
                 "--out", str(out), "--device", "cpu"]) == 0
    with xr.open_dataset(out, engine="scipy") as ds:
        assert ds["accuracy"].sizes == {"t_inference": 2, "chip": 2}
        assert json.loads(ds.attrs["config"])


def test_memristor_characterize_writes_netcdf_and_figure(tmp_path):
    import xarray as xr

    char = tmp_path / "char.nc"
    assert main(["memristor", "characterize", "--samples", "200", "--t-inference", "1s,1y",
                 "--out", str(char)]) == 0
    with xr.open_dataset(char, engine="scipy") as ds:
        assert float(ds["read_mean"].sel(t_inference=365 * 86400.0).isel(g_target=-1)) < \
            float(ds["read_mean"].sel(t_inference=1.0).isel(g_target=-1))  # PCM drifts down
        assert ds["g_target"].values.tolist() == pytest.approx(
            [f * 25.0 for f in (0.02, 0.1, 0.25, 0.5, 0.75, 1.0)])  # the window's fractions
    assert (tmp_path / "char.png").exists()


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(tmp_path):
    from imssa.experiments.demo import run_demo

    summary = run_demo(tmp_path / "demo", device="cpu")
    assert summary["parameters"] == 3850
    assert summary["test_accuracy_conv"] >= 0.95  # the bar for the embedded default
    assert summary["test_accuracy_recurrent"] == pytest.approx(summary["test_accuracy_conv"],
                                                               abs=1 / 359)
    assert summary["qat_W4A6_a8_x8_polar"] > summary["ptq_W4A6_a8_x8"]
    for name in ("simulation.nc", "simulation_A_digital.nc", "simulation_real_increment.nc",
                 "conductance_maps.nc", "accuracy_vs_time.png", "demo.json",
                 "real/train/model.pt", "real/noise/model.pt"):
        assert (tmp_path / "demo" / name).exists()
    assert summary["pcm_times"] == ["1 s", "1 h", "1 d", "1 y"]
    assert summary["real_model"] == "s4d-real-64x2" and summary["real_parameters"] == 42250
    for key in ("pcm_accuracy", "pcm_A_digital_accuracy", "pcm_real_increment_accuracy"):
        assert len(summary[key]) == 4 and all(0 <= a <= 1 for a in summary[key])
    # pointed at the demo folder, the verbs name the run inside it
    assert main(["eval", str(tmp_path / "demo"), "--device", "cpu"]) == 2


def test_a_folder_above_runs_names_them(trained_run, capsys):
    assert main(["eval", str(trained_run.parent), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"holds 1: {trained_run}; pass one of those folders" in err


@pytest.mark.parametrize("damage,message", [
    (lambda run: (run / "model.pt").write_bytes(b""), "model.pt is empty, truncated"),
    (lambda run: (run / "model.pt").write_bytes((run / "model.pt").read_bytes()[:500]),
     "model.pt is empty, truncated"),
    (lambda run: (run / "model.pt").write_bytes(os.urandom(4096)), "not a PyTorch file"),
    (lambda run: (run / "config.json").write_text("{\"train\": "), "config.json is not valid JSON"),
    (lambda run: (run / "config.json").write_text(json.dumps(
        {**json.loads((run / "config.json").read_text()), "train": {"epochs": 1, "color": 3}})),
     "has keys that TrainConfig does not know: color"),
    (lambda run: (run / "config.json").write_text(json.dumps(
        {**json.loads((run / "config.json").read_text()), "train": {"epochs": "x"}})),
     "TrainConfig field epochs must be an integer, got 'x'"),
    (lambda run: (run / "config.json").write_text(json.dumps(
        {"run": "runs/a", "quant": {}, "qat": {"parameterization": "discrete"}})),
     "QAT folder of the 'discrete' parameterization"),
])
@pytest.mark.parametrize("verb", ["eval", "ptq"])
def test_damaged_run_files_give_one_line(trained_run, tmp_path, capsys, damage, message, verb):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    damage(run)
    assert main([verb, str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert "weights_only" not in err


def test_eval_into_a_read_only_run_folder_fails_before_the_work(trained_run, capsys, monkeypatch):
    import tempfile

    import imssa.experiments.train as train_module
    import imssa.files

    real = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and os.path.samefile(dir, trained_run):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(imssa.files.tempfile, "TemporaryFile", read_only)
    monkeypatch.setattr(train_module, "load_task", lambda *a, **k: pytest.fail("did the work"))
    assert main(["eval", str(trained_run), "--device", "cpu"]) == 2
    assert f"run folder {trained_run} is not writable" in capsys.readouterr().err


def test_relative_data_dir_is_stored_absolute(tmp_path, monkeypatch):
    from imssa.experiments.train import TrainConfig

    monkeypatch.chdir(tmp_path)
    assert TrainConfig(data_dir="data").data_dir == str(tmp_path / "data")
    assert TrainConfig(data_dir="~/d").data_dir == str(Path("~/d").expanduser())


def test_strict_booleans_in_set(trained_run, capsys):
    from imssa.experiments.quantize import parse_overrides

    assert parse_overrides(["x.symmetric=false", "x.bits=6"]) == {"x": {"symmetric": False,
                                                                     "bits": 6}}
    assert main(["ptq", str(trained_run), "--set", "x.symmetric=maybe", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "QuantSpec.symmetric must be" in err and "'maybe'" in err


def test_threads_option_sets_torch_threads(trained_run):
    before = torch.get_num_threads()
    try:
        assert main(["eval", str(trained_run), "--device", "cpu", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        metrics = json.loads((trained_run / "metrics_conv.json").read_text())
        assert metrics["threads"] == 2
    finally:
        torch.set_num_threads(before)


def test_every_default_comes_from_the_configs():
    from imssa.cli import build_parser
    from imssa.experiments.quantize import QATConfig, QuantRunConfig
    from imssa.experiments.train import EvalConfig, TrainConfig

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    for verb, classes in (("train", [TrainConfig]), ("eval", [EvalConfig]),
                          ("ptq", [QuantRunConfig, EvalConfig]),
                          ("qat", [QuantRunConfig, QATConfig, EvalConfig])):
        p = verbs[verb]
        assert p.fields, verb
        for cls, name, dest in p.fields:
            assert cls in classes
            default = p.get_default(dest)
            field = next(f for f in dataclasses.fields(cls) if f.name == name)
            assert default == field.default, (verb, name)


def test_ctrl_c_inside_no_grad_leaves_grad_mode_on(monkeypatch, capsys):
    """A KeyboardInterrupt that lands after ``no_grad`` switched autograd off and before its
    ``with`` body began (so no ``__exit__`` runs) must not leave autograd off for later calls."""
    import imssa.experiments.train as experiments_train

    def interrupted_in_no_grad(*_, **__):
        torch.set_grad_enabled(False)  # what no_grad.__enter__ has done when the signal lands
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments_train, "train", interrupted_in_no_grad)
    assert main(["train", *QUICK, "--out", "unused"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert torch.is_grad_enabled()
