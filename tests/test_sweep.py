"""imssa sweep: the spec's checks, the plan's shared work, and runs on a 2-worker LocalCluster on
loopback over a tiny sdigits grid: uninterrupted, with a worker SIGKILLed mid-sweep, and
resumed after the client was SIGKILLed (the merged Datasets equal, finished points untouched)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from imssa.cli import main
from imssa.errors import ImssaError
from imssa.sweep import parse_spec, sweep
from imssa.sweep.merge import read
from imssa.sweep.report import report
from imssa.sweep.run import Paths, plan

pytest.importorskip("distributed")

SPEC = """
name = "tiny"
[train]
task = "sdigits"
epochs = 2
limit = 120
[simulate]
t_inference = [0, 3600]
chips = 2
limit = 16
calibration_samples = 16
[simulate.memristor]
kind = "gaussian"
[axes]
"train.seed" = [0, 1]
"simulate.memristor.prog_noise" = [0.0, 0.02, 0.05]
"""


def _error(tmp_path: Path, text: str, capsys: pytest.CaptureFixture) -> str:
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    assert not out.exists()  # refused before any work
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return err


@pytest.mark.parametrize("axis, values, expected", [
    ("simulate.memristor.prog_nose", "[0.1]", "simulate.memristor.prog_nose: no memristor config"),
    ("train.modle", "['s4d-16']", "axis train.modle: TrainConfig has no field 'modle'"),
    ("simulate.memristor.prog_noise", "[0.01, -1.0]", "axis simulate.memristor.prog_noise = "
     "simulate.memristor.prog_noise=-1.0"),
    ("train.model", "['s4d-16', 's4d-9']", "axis train.model = train.model='s4d-9'"),
    ("simulate.periphery.adc_bits", "[]", "axis simulate.periphery.adc_bits: empty axis"),
    ("simulate.chips", "3", "axis simulate.chips: give a list of values"),
])
def test_spec_errors_name_the_axis(tmp_path, capsys, axis, values, expected):
    text = SPEC.split("[axes]")[0] + f'[axes]\n"{axis}" = {values}\n'
    err = _error(tmp_path, text, capsys)
    assert err.startswith("imssa sweep: error: ") and expected in err, err


def test_spec_errors_in_sections_and_zip_groups(tmp_path, capsys):
    assert "simulate.periphery.adc_bitz: PeripheryConfig has no field" in _error(
        tmp_path, SPEC + "[simulate.periphery]\nadc_bitz = 8\n", capsys)
    assert "zip group p: its axes need as many values each" in _error(
        tmp_path, SPEC + '[zip.p]\n"quantize.a_bits" = [4, 6]\n"quantize.x_bits" = [4]\n', capsys)
    assert "axis train.epochs: given twice" in _error(
        tmp_path, SPEC + '[zip.p]\n"train.epochs" = [1]\n"train.lr" = [0.01]\n'
        '[axes.train]\nepochs = [1, 2]\n', capsys)
    assert "is not valid TOML" in _error(tmp_path, "[train\n", capsys)
    with pytest.raises(ImssaError, match=r"\[qat\] parameterization 'discrete' stores no float"):
        parse_spec(SPEC + '[quantize]\nmethod = "qat"\n[qat]\nparameterization = "discrete"\n')


def test_an_integer_for_a_number_field_gives_the_same_keys():
    """TOML's 3 and 3.0 are one setting: a rerun of a spec written either way finds its points."""
    def keys(margin: str, noise: str) -> set[str]:
        text = SPEC.split("[axes]")[0] + f"""
[quantize]
method = "qat"
preset = "fp"
[qat]
a_margin = {margin}
[axes]
"simulate.memristor.prog_noise" = [{noise}]
"""
        return {p.config.point_key() for p in parse_spec(text).points}

    assert keys("3", "0, 1") == keys("3.0", "0.0, 1.0")
    assert keys("3", "0") != keys("2", "0")


def test_plan_shares_every_stage(tmp_path, capsys):
    """method ptq|qat x qat.train_noise: the two PTQ points are one; one training per seed."""
    spec = parse_spec(SPEC.split("[axes]")[0] + """
[quantize]
preset = "W8A8"
[axes]
"train.seed" = [0, 1]
"quantize.method" = ["ptq", "qat"]
"qat.train_noise" = [0.0, 0.03]
[zip.precision]
"quantize.a_bits" = [4, 8]
"quantize.x_bits" = [6, 8]
""")
    assert len(spec.points) == 2 * 2 * 2 * 2
    work = plan(spec, tmp_path)
    assert (len(work.trainings), len(work.quantizations), len(work.points)) == (2, 2 * 2 * 3,
                                                                                 2 * 2 * 3)
    assert main(["sweep", "--dry-run", "-", "--out", str(tmp_path)]) == 2  # no such file
    path = tmp_path / "s.toml"
    path.write_text(spec.text)
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert not (tmp_path / "o").exists()
    printed = capsys.readouterr().out
    assert "sweep tiny: 16 points" in printed and printed.count("to run]") == 16
    assert "work: 2 trainings (0 finished), 12 quantizations (0 finished), 12 simulations " \
        "(0 finished, 12 to run)" in printed


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    from imssa.sweep.cluster import local_cluster

    with local_cluster(workers=2) as cluster, Client(cluster) as c:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        yield c


@pytest.fixture(scope="module")
def reference(client, tmp_path_factory):
    """The uninterrupted sweep."""
    out = tmp_path_factory.mktemp("reference")
    ds, failed = sweep(parse_spec(SPEC, "tiny"), out, client=client)
    assert failed == 0
    return out, read(Paths(out).result(parse_spec(SPEC, "tiny")))


def _same(a, b) -> None:
    import xarray as xr

    xr.testing.assert_identical(a.drop_vars("seconds"), b.drop_vars("seconds"))


def test_sweep_dataset(reference):
    import json

    out, ds = reference
    assert ds.attrs["netcdf_engine"] == "h5netcdf" and ds.attrs["failed_points"] == 0
    assert dict(ds["accuracy"].sizes) == {"train.seed": 2, "simulate.memristor.prog_noise": 3,
                                          "t_inference": 2, "chip": 2}
    assert ds["t_inference"].attrs["units"] == "s" and ds["train.seed"].attrs["units"] == "1"
    assert json.loads(ds.attrs["config_train"])["epochs"] == 2 and "prog_noise" in ds.attrs["spec"]
    assert len(list((out / "train").iterdir())) == 2  # one training per seed, shared
    # Gaussian devices without noise and ideal converters: every chip is the digital model
    ideal = ds["accuracy"].sel({"simulate.memristor.prog_noise": 0.0})
    np.testing.assert_array_equal(ideal, ds["digital_accuracy"].sel(
        {"simulate.memristor.prog_noise": 0.0}).broadcast_like(ideal))
    for seed in (0, 1):
        run = next(r for r in (out / "train").iterdir()
                   if json.loads((r / "config.json").read_text())["train"]["seed"] == seed)
        metrics = json.loads((run / "metrics.json").read_text())
        assert float(ds["train_accuracy"].sel({"train.seed": seed})[0]) == metrics["test_accuracy"]
    assert (ds["crossbar_devices"] > 0).all()
    if importlib.util.find_spec("imssa.cost"):  # the hardware cost model, where it exists
        assert ds["cost_energy_nj"].attrs["units"] == "nJ" and (ds["cost_energy_nj"] > 0).all()
        np.testing.assert_array_equal(ds["cost_devices"], ds["crossbar_devices"])
    text = report(ds)
    assert "accuracy (%) against simulate.memristor.prog_noise" in text and "chips @ 1 h" in text


def test_rerun_skips_finished_points(reference, client, capsys):
    out, ds = reference
    before = {p: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    again, failed = sweep(parse_spec(SPEC, "tiny"), out, client=client)
    assert failed == 0 and "all 6 points are finished" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    _same(read(Paths(out).result(parse_spec(SPEC, "tiny"))), ds)


def test_worker_sigkill_mid_sweep(reference, client, tmp_path):
    """A worker killed while it runs a point: the sweep completes, with the same numbers."""
    pids = client.run(os.getpid)
    killed: list[int] = []

    def kill() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for address, keys in client.processing().items():
                if any(str(k).startswith("point-") for k in keys) and address in pids:
                    os.kill(pids[address], signal.SIGKILL)
                    killed.append(pids[address])
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    ds, failed = sweep(parse_spec(SPEC, "tiny"), tmp_path, client=client)
    thread.join()
    assert killed and failed == 0
    _same(read(Paths(tmp_path).result(parse_spec(SPEC, "tiny"))), reference[1])


def test_client_sigkill_then_resume(reference, client, tmp_path):
    """The client killed after some points finished (a CLI run on the same cluster, by
    --scheduler): a rerun computes only the others, and the merged Dataset equals the
    uninterrupted run's."""
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(SPEC)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "imssa", "sweep", str(spec_file), "--out",
                             str(out), "--scheduler", client.scheduler.address], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    points = out / "points"
    deadline = time.time() + 180
    while time.time() < deadline and not (points.is_dir() and any(points.glob("*.json"))):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in points.glob("*.json")}
    spec = parse_spec(SPEC, "tiny")
    work = plan(spec, out)
    assert 1 <= len(finished) <= len(work.finished) < 6  # tasks in flight may still finish
    ds, failed = sweep(spec, out, client=client)
    assert failed == 0
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # not recomputed
    _same(read(Paths(out).result(spec)), reference[1])


def test_gpu_workers_are_pinned():
    from distributed import Client

    from imssa.sweep.cluster import local_cluster, worker_specs

    specs = worker_specs(["2", "5"], 2, 1)
    assert sorted(s["options"]["env"]["CUDA_VISIBLE_DEVICES"] for s in specs.values()) == \
        ["2", "2", "5", "5"]
    with local_cluster(gpus=["3"], workers_per_gpu=1) as cluster, Client(cluster) as c:
        assert list(c.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"]).values()) == ["3"]


def test_given_run_is_taken_as_it_is(reference, client, tmp_path, capsys):
    """train.run: a finished run is simulated as it is; the same model and settings give the
    reference's numbers (the point's seeds do not depend on where the model came from)."""
    import json

    out, ds = reference
    run = next(r for r in (out / "train").iterdir()
               if json.loads((r / "config.json").read_text())["train"]["seed"] == 0)
    text = SPEC.replace('task = "sdigits"\nepochs = 2\nlimit = 120', f'run = "{run}"').replace(
        '"train.seed" = [0, 1]\n', "")
    with pytest.raises(ImssaError, match="set no other train field"):
        parse_spec(text.replace(f'run = "{run}"', f'run = "{run}"\nepochs = 3'))
    spec = parse_spec(text, "given")
    path = tmp_path / "given.toml"
    path.write_text(text)
    assert main(["sweep", str(path), "--out", str(tmp_path), "--dry-run"]) == 0
    assert "0 trainings (0 finished) and 1 given runs" in capsys.readouterr().out
    given, failed = sweep(spec, tmp_path, client=client)
    assert failed == 0 and not (tmp_path / "train").exists()
    np.testing.assert_array_equal(given["accuracy"], ds["accuracy"].sel({"train.seed": 0}))


def test_failed_point_is_recorded_and_retried(reference, client, tmp_path):
    """A point that fails at run time (its given run's model.pt is damaged) is recorded with its
    error, NaN in the Dataset; the other points finish; a rerun retries it."""
    import shutil

    good = sorted((reference[0] / "train").iterdir())[0]
    bad = tmp_path / "damaged"
    shutil.copytree(good, bad)
    (bad / "model.pt").write_bytes(b"not a model")
    text = SPEC.replace('task = "sdigits"\nepochs = 2\nlimit = 120', f'run = "{good}"').split(
        "[axes]")[0] + f'[axes]\n"train.run" = ["{good}", "{bad}"]\n'
    spec = parse_spec(text, "failing")
    out = tmp_path / "out"
    ds, failed = sweep(spec, out, client=client)
    assert failed == 1
    assert "is not a PyTorch file" in str(ds["error"].sel({"train.run": str(bad)}
                                                                             ).values)
    assert str(ds["error"].sel({"train.run": str(good)}).values) == ""
    assert np.isnan(ds["accuracy"].sel({"train.run": str(bad)})).all()
    assert np.isfinite(ds["accuracy"].sel({"train.run": str(good)})).all()
    errors = list((out / "points").glob("*.error.json"))
    assert len(errors) == 1 and len(plan(spec, out).pending) == 1
    first = errors[0].stat().st_mtime_ns
    assert sweep(spec, out, client=client)[1] == 1  # retried, and failing again
    assert errors[0].stat().st_mtime_ns > first
