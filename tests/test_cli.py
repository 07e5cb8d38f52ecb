"""The ``imssa`` command end to end on the embedded dataset: train, eval, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

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


def test_killed_run_resumes_to_the_same_result(tmp_path):
    args = ["train", *QUICK, "--epochs", "12"]
    reference = tmp_path / "reference"
    assert main([*args, "--out", str(reference)]) == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "imssa", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    assert not list(out.glob(".*.tmp")), "a killed run left a half-written file"
    assert main([*args, "--out", str(out), "--resume"]) == 0
    done = json.loads((out / "metrics.json").read_text())
    ref = json.loads((reference / "metrics.json").read_text())
    assert len(done["history"]["loss"]) == 12
    assert done["history"]["loss"] == pytest.approx(ref["history"]["loss"], rel=1e-5)
    assert done["test_accuracy"] == pytest.approx(ref["test_accuracy"])


@pytest.mark.parametrize("args,message", [
    (["train", "--task", "cifar", "--out", "x"], "unknown task 'cifar'"),
    (["train", "--model", "s4d-32", "--out", "x"], "unknown model preset 's4d-32'"),
    (["train", "--task", "smnist", "--data-dir", "/nonexistent/imssa", "--out", "x"],
     "IMSSA_DATA_DIR"),
    (["eval", "/nonexistent/run"], "not a finished training run"),
    (["eval", ".", "--mode", "parallel"], "not a finished training run"),
])
def test_bad_input_gives_one_clear_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMSSA_NO_DOWNLOAD", "1")
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


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
    assert ptq["quant_config"]["A_bar"]["bits"] == 8 and ptq["quant_config"]["x"]["bits"] == 8
    assert 0 < ptq["memory_savings_percent"] < 100
    assert main(["qat", str(trained_run), "--preset", "W4A6", "--a-bits", "6", "--x-bits", "6",
                 "--param", "polar", "--x-granularity", "mode", "--x-rounding", "stochastic",
                 "--epochs", "2",
                 "--calib-samples", "100", "--out", str(tmp_path / "qat"), "--device", "cpu"]) == 0
    qat = json.loads((tmp_path / "qat" / "metrics.json").read_text())
    assert qat["quant_config"]["a_bar_form"] == "polar"
    assert qat["quant_config"]["x"]["granularity"] == "mode"
    assert qat["quant_config"]["x"]["rounding"] == "stochastic"
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
    (["--calib-samples", "0"], "--calib-samples must be >= 1"),
    (["--x-rounding", "up"], "rounding must be one of nearest, stochastic"),
    (["--set", "C.rounding=stochastic"], "exists only for the state x"),
])
def test_quantization_bad_input(trained_run, args, message, capsys):
    assert main(["ptq", str(trained_run), *args, "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


def test_simulate_and_characterize_write_netcdf(trained_run, tmp_path):
    import xarray as xr

    out = tmp_path / "sim.nc"
    assert main(["simulate", str(trained_run), "--memristor", "pcm", "--t-inference", "1s,1d",
                 "--chips", "2", "--dac-bits", "8", "--adc-bits", "8", "--limit", "40",
                 "--out", str(out), "--device", "cpu"]) == 0
    with xr.open_dataset(out, engine="scipy") as ds:
        assert ds["accuracy"].sizes == {"t_inference": 2, "chip": 2}
        assert json.loads(ds.attrs["config"])
    char = tmp_path / "char.nc"
    assert main(["device", "characterize", "--samples", "200", "--t-inference", "1s,1y",
                 "--out", str(char)]) == 0
    with xr.open_dataset(char, engine="scipy") as ds:
        assert float(ds["read_mean"].sel(t_inference=365 * 86400.0).isel(g_target=-1)) < \
            float(ds["read_mean"].sel(t_inference=1.0).isel(g_target=-1))  # PCM drifts down
    assert (tmp_path / "char.png").exists()


def test_demo_runs_the_whole_pipeline(tmp_path):
    from imssa.experiments.demo import run_demo

    summary = run_demo(tmp_path / "demo", device="cpu")
    assert summary["parameters"] == 3850
    assert summary["test_accuracy_conv"] >= 0.95  # the bar for the embedded default
    assert summary["test_accuracy_recurrent"] == pytest.approx(summary["test_accuracy_conv"],
                                                               abs=1 / 359)
    assert summary["qat_W4A6_a8_x8_polar"] > summary["ptq_W4A6_a8_x8"]
    for name in ("simulation.nc", "conductance_maps.nc", "accuracy_vs_time.png"):
        assert (tmp_path / "demo" / name).exists()
