"""Interruptions and hostile input: train and qat killed (SIGKILL, SIGINT) at random points
resume to the uninterrupted result bit for bit; the Python API and the files imssa reads fail
with one clear error."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imssa.cli import main
from imssa.errors import ImssaError

THREADS = ["--device", "cpu", "--threads", "1"]
TRAIN = ["train", "--limit", "200", "--epochs", "6", "--batch-size", "16", *THREADS]
QAT = ["--preset", "W4A6", "--a-bits", "8", "--x-bits", "8", "--x-rounding", "stochastic",
       "--epochs", "3", "--batch-size", "16", "--calib-samples", "50", "--limit", "100", *THREADS]


def _tensors(path: Path) -> dict:
    state = torch.load(path, weights_only=True)
    key = "qmodel" if "qmodel" in state else "model"
    return state[key]


def _same_run(a: Path, b: Path) -> None:
    ta, tb = _tensors(a / "model.pt"), _tensors(b / "model.pt")
    assert ta.keys() == tb.keys()
    for name in ta:
        if isinstance(ta[name], torch.Tensor):
            assert torch.equal(ta[name], tb[name]), f"{name} differs after resuming"
    ma, mb = (json.loads((p / "metrics.json").read_text()) for p in (a, b))
    assert ma["history"]["loss"] == mb["history"]["loss"]  # bit for bit, not approximately
    assert ma["history"]["val_accuracy"] == mb["history"]["val_accuracy"]
    assert ma["test_accuracy"] == mb["test_accuracy"]


def _kill_subprocesses(argv: list[str], out: Path, kills: int, rng: random.Random) -> int:
    """Start ``imssa argv --out out --resume`` ``kills`` times and send each SIGKILL or SIGINT at
    a random point: right after launch, or at a random moment of an epoch after the next
    checkpoint. Returns the interruptions made (a run that finished first ends the chain)."""
    for done in range(kills):
        proc = subprocess.Popen([sys.executable, "-m", "imssa", *argv, "--out", str(out),
                                 "--resume"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        ckpt = out / "checkpoint.pt"
        before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
        if rng.random() < 0.25:
            time.sleep(rng.uniform(0.0, 3.0))  # anywhere from start-up to the first epochs
        else:
            deadline = time.time() + 120
            while proc.poll() is None and time.time() < deadline and \
                    (ckpt.stat().st_mtime_ns if ckpt.exists() else None) == before:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read()
            return done
        sig = rng.choice([signal.SIGKILL, signal.SIGINT])
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if sig == signal.SIGINT and proc.returncode == 130:
            assert "--resume to continue" in err and "Traceback" not in err
    return kills


def _interrupt_in_process(argv: list[str], out: Path, kills: int, seconds: float,
                          rng: random.Random) -> int:
    """Run ``imssa argv --out out --resume`` in this process until ``kills`` runs were interrupted
    by a KeyboardInterrupt (as Ctrl-C raises it) at a random moment within ``seconds``, then once
    to the end. Returns the interruptions made."""
    def interrupt(*_):
        raise KeyboardInterrupt

    hits = 0
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        for _ in range(4 * kills):  # a run that finished is resumed too: it rewrites its results
            if hits == kills:
                break
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(0.01, seconds))
            try:
                code = main([*argv, "--out", str(out), "--resume"])
            except KeyboardInterrupt:  # before main's own handler was entered
                code = 130
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            assert code in (0, 130)
            hits += code == 130
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    return hits


@pytest.mark.slow
def test_train_and_qat_killed_at_random_points_resume_bit_for_bit(tmp_path):
    """>= 20 interruptions: SIGKILL/SIGINT of subprocesses in one chain of resumes, Ctrl-C at
    random moments in another (moments drawn within a sixth of an uninterrupted run, so the
    chain makes its way in small steps); both end equal to the uninterrupted run."""
    rng = random.Random(11)
    points = 0
    for name, argv, kills, ctrl_c in (("train", TRAIN, 3, 8), ("qat", QAT, 3, 7)):
        if name == "qat":
            argv = ["qat", str(tmp_path / "train-reference"), *argv]
        reference = tmp_path / f"{name}-reference"
        t0 = time.perf_counter()
        assert main([*argv, "--out", str(reference)]) == 0
        seconds = time.perf_counter() - t0
        points += _kill_subprocesses(argv, tmp_path / f"{name}-killed", kills, rng)
        assert main([*argv, "--out", str(tmp_path / f"{name}-killed"), "--resume"]) == 0
        _same_run(reference, tmp_path / f"{name}-killed")
        points += _interrupt_in_process(argv, tmp_path / f"{name}-ctrl-c", ctrl_c, seconds / 6, rng)
        _same_run(reference, tmp_path / f"{name}-ctrl-c")
    assert points >= 20


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path, capsys):
    """Issue 11 item 4: interrupted at lr 0.01, restarted at lr 0.005 without --resume and
    interrupted before its first checkpoint, then resumed: the checkpoint is of the first run."""
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--lr", "0.01", "--out", str(out)]) == 0
    (out / "metrics.json").unlink()  # as if killed after the last checkpoint
    assert main([*TRAIN, "--epochs", "2", "--lr", "0.005", "--out", str(out)]) == 2
    assert "interrupted run" in capsys.readouterr().err  # a fresh start does not overwrite it
    config = json.loads((out / "config.json").read_text())
    config["train"]["lr"] = 0.005  # what the second start wrote before it was interrupted
    (out / "config.json").write_text(json.dumps(config))
    assert main([*TRAIN, "--epochs", "2", "--lr", "0.005", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "other settings (differing: lr)" in err and len(err.strip().splitlines()) == 1


def test_a_refused_resume_writes_no_config(tmp_path, capsys):
    """A checkpoint of other settings in a folder without config.json (killed before the first
    write, or the file lost): the refused resume leaves no config.json of its own settings, for
    training and for QAT, and a resume with the right settings writes it."""
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--lr", "0.01", "--out", str(run)]) == 0
    qat = tmp_path / "qat"
    assert main(["qat", str(run), *QAT, "--epochs", "1", "--lr", "1e-3", "--out", str(qat)]) == 0
    for folder in (run, qat):
        for name in ("config.json", "metrics.json", "model.pt"):
            (folder / name).unlink()
    assert main([*TRAIN, "--epochs", "1", "--lr", "0.005", "--out", str(run), "--resume"]) == 2
    assert "other settings (differing: lr)" in capsys.readouterr().err
    assert not (run / "config.json").exists()
    assert main([*TRAIN, "--epochs", "1", "--lr", "0.01", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.01
    assert main(["qat", str(run), *QAT, "--epochs", "1", "--lr", "5e-4", "--out", str(qat),
                 "--resume"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert not (qat / "config.json").exists()


def test_a_diverging_run_stops_with_an_error_and_saves_no_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--lr", "1e30", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "lower the learning rate (--lr = 1e+30)" in err
    assert not (out / "model.pt").exists() and not (out / "metrics.json").exists()


def test_truncated_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(out)]) == 0
    (out / "metrics.json").unlink()
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[:len(data) // 3])
    assert main([*TRAIN, "--epochs", "1", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.pt is empty, truncated" in err and "delete it" in err


def test_result_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        from imssa.experiments.io import write_json

        write_json({"a": 1}, tmp_path / "r.json")
        assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
        os.umask(0o077)
        write_json({"a": 1}, tmp_path / "s.json")
        assert stat.S_IMODE((tmp_path / "s.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_progress_is_plain_lines_off_a_terminal(monkeypatch, capsys):
    import imssa.experiments.io as io_module

    monkeypatch.setattr(io_module, "PLAIN_PROGRESS_INTERVAL_S", 0.0)
    for _ in io_module.progress(range(5), desc="work", mininterval=0, delay=0):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert err.splitlines()[-1].startswith("work: 100%")


# --- the Python API --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    from imssa.ssm import S4DModel, preset

    return S4DModel(preset("s4d-16")).eval()


@pytest.mark.parametrize("u,message", [
    (torch.zeros(2, 64, 1, dtype=torch.float64), "input is torch.float64 but the model is"),
    (torch.zeros(2, 64, 1, dtype=torch.float16), "input is torch.float16"),
    (torch.zeros(2, 64, 1, dtype=torch.bfloat16), "input is torch.bfloat16"),
    (torch.zeros(0, 64, 1), "is empty"),
    (torch.zeros(2, 0, 1), "is empty"),
    (torch.zeros(2, 64), "must have shape (batch, length, 1)"),
    (torch.full((1, 4, 1), float("nan")), "NaN"),
    ([[0.0]], "must be a torch.Tensor"),
])
@pytest.mark.parametrize("mode", ["conv", "recurrent"])
def test_model_input_errors(model, u, message, mode):
    with pytest.raises(ImssaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(u, mode=mode)


def test_float64_model_takes_float64_input(model):
    import copy

    double = copy.deepcopy(model).double()
    u = torch.randn(2, 8, 1, dtype=torch.float64)
    assert torch.allclose(double(u).float(), model(u.float()), atol=1e-5)


def test_step_checks_its_input(model):
    state = model.init_state(2)
    with pytest.raises(ImssaError, match="one time step of shape"):
        model.step(torch.zeros(3, 5), state)
    with pytest.raises(ImssaError, match="init_state"):
        model.step(torch.zeros(2, 1), {"ssm": []})
    with pytest.raises(ImssaError, match="float64"):
        model.step(torch.zeros(2, 1, dtype=torch.float64), state)
    with pytest.raises(ImssaError, match="NaN"):
        model.step(torch.full((2, 1), float("inf")), state)
    logits, _ = model.step(torch.zeros(2, 1), state)
    assert logits.shape == (2, 10)
