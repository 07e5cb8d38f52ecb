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
