"""The co-design study's building blocks: architecture overrides of TrainConfig (width, depth,
state size, SSM kind) in configs, runs, resumes, the CLI and sweep specs, and the study's specs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from imssa.cli import main
from imssa.errors import ImssaError
from imssa.experiments.io import config_from_dict
from imssa.experiments.train import ARCHITECTURE_FIELDS, TrainConfig, load_run, train
from imssa.ssm import count_parameters
from imssa.ssm.s4d_real import S4DRealLayer
from imssa.sweep.run import plan
from imssa.sweep.spec import digest, load_spec, parse_spec

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
TINY = dict(task="sdigits", epochs=2, batch_size=64, limit=64, device="cpu")


def test_overrides_replace_the_presets_fields_and_round_trip():
    cfg = TrainConfig(model="s4d-16", d_model=24, n_layers=3, d_state=8, ssm="real")
    arch = cfg.architecture(d_input=2, n_classes=5)
    assert (arch.d_model, arch.n_layers, arch.d_state, arch.ssm) == (24, 3, 8, "real")
    assert (arch.d_input, arch.n_classes, arch.dt_min) == (2, 5, 1e-3)  # the rest: the preset's
    base = TrainConfig(model="s4d-real-64x2").architecture()
    assert (base.d_model, base.n_layers, base.ssm) == (64, 2, "real")  # None: the preset's own
    assert TrainConfig(model="s4d-real-64x2", n_layers=4).architecture().n_layers == 4
    saved = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert config_from_dict(TrainConfig, saved, "config.json") == cfg
    old = {k: v for k, v in saved.items() if k not in ("d_model", "n_layers", "d_state", "ssm")}
    assert config_from_dict(TrainConfig, old, "old config.json").d_model is None  # old runs load


@pytest.mark.parametrize("field, value, message", [
    ("d_model", 0, "TrainConfig.d_model must be >= 1, got 0"),
    ("n_layers", -1, "TrainConfig.n_layers must be >= 1, got -1"),
    ("d_state", 7, "TrainConfig.d_state must be an even number >= 2, got 7"),
    ("ssm", "dense", "TrainConfig.ssm must be one of complex, real, got 'dense'"),
    ("d_model", 2.5, "TrainConfig.d_model must be an integer or None, got 2.5"),
])
def test_a_bad_override_is_one_error_naming_the_field(field, value, message):
    with pytest.raises(ImssaError) as err:
        TrainConfig(**{field: value})
    assert str(err.value) == message


@pytest.mark.parametrize("args, flag", [
    (["--d-model", "0"], "--d-model must be >= 1, got 0"),
    (["--d-state", "5"], "--d-state must be an even number >= 2, got 5"),
    (["--ssm", "dense"], "--ssm must be one of complex, real, got 'dense'"),
    (["--n-layers", "two"], "--n-layers"),
])
def test_cli_bad_override_is_one_line_exit_2(args, flag, capsys, tmp_path):
    assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and flag in err and err.startswith("imssa train: error:")
    assert not (tmp_path / "run").exists()


def test_trained_model_has_the_asked_shape_and_config_records_it(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "sdigits", "--d-model", "6", "--n-layers", "2",
                 "--d-state", "4", "--ssm", "real", "--epochs", "1", "--limit", "64",
                 "--device", "cpu", "--threads", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert {k: saved["train"][k] for k in ("d_model", "n_layers", "d_state", "ssm")} == \
        {"d_model": 6, "n_layers": 2, "d_state": 4, "ssm": "real"}
    assert {k: saved["model"][k] for k in ("d_model", "n_layers", "d_state", "ssm")} == \
        {"d_model": 6, "n_layers": 2, "d_state": 4, "ssm": "real"}
    cfg, model = load_run(out)
    assert cfg.d_model == 6 and len(model.blocks) == 2
    assert isinstance(model.blocks[1].ssm, S4DRealLayer)
    assert model.encoder.weight.shape == (6, model.cfg.d_input)
    assert model.blocks[0].mix.weight.shape == (12, 6)
    assert model.discrete()[0].A_bar.shape == (6, 4)  # H x N real modes
    # one S4D-Real layer: H*N (A) + H*N (B) + H*N (C) + H (D) + H (dt), plus the dense parts
    H, N, d, K = 6, 4, model.cfg.d_input, model.cfg.n_classes
    per_block = 3 * H * N + 2 * H + 2 * H * H + 2 * H
    assert count_parameters(model) == H * d + H + 2 * per_block + K * H + K
    assert json.loads((out / "metrics.json").read_text())["parameters"] == count_parameters(model)


def test_metrics_and_simulate_record_the_built_architecture(tmp_path):
    """``model`` stays the preset's name; ``architecture`` is the S4DConfig built, overrides
    applied, in train's, eval's and PTQ's metrics and in simulate's NetCDF attrs."""
    from imssa.devices import GaussianConfig
    from imssa.experiments.quantize import QuantRunConfig, ptq
    from imssa.experiments.simulate import SimulationConfig, simulate
    from imssa.experiments.train import evaluate

    run = tmp_path / "run"
    train(TrainConfig(**TINY, d_model=4, n_layers=2), run)
    expect = {"d_model": 4, "n_layers": 2, "d_state": 64, "ssm": "complex"}
    records = [json.loads((run / "metrics.json").read_text()),
               evaluate(run, device="cpu"),
               ptq(run, QuantRunConfig(calib_samples=8), tmp_path / "ptq", device="cpu")]
    ds = simulate(run, GaussianConfig(), SimulationConfig(t_inference=(0.0,), chips=1, limit=8,
                                                          calibration_samples=8, device="cpu"))
    records.append({"model": json.loads(ds.attrs["config"])["model"],
                    "architecture": json.loads(ds.attrs["architecture"])})
    for record in records:
        assert record["model"] == "s4d-16"
        assert {k: record["architecture"][k] for k in expect} == expect
        assert record["architecture"]["d_input"] == 1 and record["architecture"]["n_classes"] == 10


def test_resume_refuses_a_checkpoint_of_other_overrides(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(**TINY, d_model=4)
    train(cfg, out)
    (out / "metrics.json").unlink()  # as if interrupted after the last checkpoint
    with pytest.raises(ImssaError, match="differing: d_model"):
        train(dataclasses.replace(cfg, d_model=8), out, resume=True)
    # the checkpoint's own record is checked too, config.json aside
    saved = (out / "config.json").read_text()
    (out / "config.json").unlink()
    with pytest.raises(ImssaError, match=r"other settings \(differing: n_layers\)"):
        train(dataclasses.replace(cfg, n_layers=2), out, resume=True)
    (out / "config.json").write_text(saved)
    train(cfg, out, resume=True)  # its own settings resume
    assert load_run(out)[0] == cfg


def test_a_checkpoint_without_the_override_keys_resumes_at_none(tmp_path):
    """A checkpoint written before the override fields existed resumes the same run."""
    out = tmp_path / "run"
    cfg = TrainConfig(**TINY)
    train(cfg, out)
    (out / "metrics.json").unlink()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    for key in ("d_model", "n_layers", "d_state", "ssm"):
        del ckpt["config"][key]
    torch.save(ckpt, out / "checkpoint.pt")
    train(cfg, out, resume=True)
    assert (out / "metrics.json").is_file()


def _spec(axes: str, simulate: str = "") -> str:
    return f'[train]\ntask = "sdigits"\nmodel = "s4d-16"\n{simulate}\n[axes]\n{axes}\n'


def test_sweep_axes_over_the_overrides_key_and_check_the_model():
    spec = parse_spec(_spec('"train.d_model" = [8, 16]\n"train.ssm" = ["complex", "real"]'))
    archs = [(p.config.train.architecture().d_model, p.config.train.architecture().ssm)
             for p in spec.points]
    assert archs == [(8, "complex"), (8, "real"), (16, "complex"), (16, "real")]
    assert len({p.config.train_key() for p in spec.points}) == 4
    # unset overrides leave the key of a spec written before them unchanged
    plain = parse_spec(_spec('"train.seed" = [0]')).points[0].config
    old = {k: v for k, v in dataclasses.asdict(plain.train).items()
           if k not in ("device", *ARCHITECTURE_FIELDS)}
    assert plain.train_key() == digest({"train": old})
    with pytest.raises(ImssaError, match=r"axis train.d_state = train.d_state=3: .*"
                                         r"TrainConfig.d_state must be an even number"):
        parse_spec(_spec('"train.d_state" = [4, 3]'))
    # the model check sees the overridden depth: layer 1 exists only with n_layers = 2
    sim = '[simulate]\ndigital = ["blocks.1.ssm.A_bar"]\n[simulate.memristor]\nkind = "ideal"\n'
    assert len(parse_spec(_spec('"train.n_layers" = [2, 4]', sim)).points) == 2
    with pytest.raises(ImssaError, match="axis train.n_layers = train.n_layers=1"):
        parse_spec(_spec('"train.n_layers" = [2, 1]', sim))


@pytest.mark.parametrize("name, points, trainings, quantizations", [
    ("codesign-smnist", 648, 72, 648),
    ("codesign-fsdd", 648, 72, 648),
    ("codesign-sdigits", 16, 4, 16),
])
def test_codesign_specs_dry_run(name, points, trainings, quantizations, tmp_path):
    spec = load_spec(SWEEPS / f"{name}.toml")
    work = plan(spec, tmp_path)
    assert (len(spec.points), len(work.trainings), len(work.quantizations), len(work.points)) \
        == (points, trainings, quantizations, points)
    dims = {a.dim for a in spec.axes}
    assert {"train.d_model", "train.n_layers", "ax_bits", "w_bits"} <= dims
    shapes = {(p.config.train.architecture().d_model, p.config.train.architecture().n_layers)
              for p in spec.points}
    widths = (8, 16) if name == "codesign-sdigits" else (16, 32, 64, 128)
    depths = (1, 2) if name == "codesign-sdigits" else (1, 2, 4)
    assert shapes == {(w, n) for w in widths for n in depths}
    assert all(p.config.simulation.t_inference == (86400.0,) for p in spec.points)
