"""Tests of imssa.experiments.analyses: the sensitivity, stability and width analyses of tiny
sdigits runs, their NetCDF and PNG files, the ``imssa analyze`` parser (imssa.cli.analyze) and
bad input."""

from __future__ import annotations

import argparse
import functools
import json

import numpy as np
import pytest
import torch
import xarray as xr

from imssa.cli.analyze import add_parser, parse_bits
from imssa.errors import ImssaError
from imssa.experiments import analyses as an
from imssa.experiments.train import TrainConfig, accuracy, load_run, train
from imssa.quant import TARGETS, make_config

QUICK = {"device": "cpu", "limit": 120, "calib_samples": 100, "batch_size": 100}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The models are tiny: one intra-op thread is as fast, and far faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    """A trained s4d-16 (about 90 % test accuracy), a second seed of it and an s4d-64."""
    root = tmp_path_factory.mktemp("runs")
    common = {"task": "sdigits", "limit": 600, "batch_size": 32, "device": "cpu"}
    out = {}
    for name, model, seed, epochs in (("main", "s4d-16", 0, 30), ("seed1", "s4d-16", 1, 5),
                                      ("wide", "s4d-64", 0, 5)):
        train(TrainConfig(model=model, seed=seed, epochs=epochs, **common), root / name)
        out[name] = root / name
    return out


def _no_tmp_left(folder):
    assert not list(folder.glob(".*.tmp")), "an atomic write left its temporary file"


# --- configurations -------------------------------------------------------------------------------
def test_target_config_quantizes_one_target_only():
    cfg = an.target_config("x", 6, "mode-asym")
    x = cfg.spec("blocks.*.ssm.x")
    assert x.bits == 6 and x.granularity == "mode" and not x.symmetric
    assert x.calibration == "percentile"  # the preset's calibration is kept
    assert all(cfg.spec(t).bits is None for t in TARGETS if t != "blocks.*.ssm.x")
    assert cfg.gelu == "exact"
    polar = an.target_config("A", 4, "polar-channel")
    assert polar.a_bar_form == "polar" and polar.spec("A").granularity == "channel"
    assert an.target_config("blocks.*.ssm.A_bar", 4, "tensor-sym").a_bar_form == "cartesian"
    sr = an.target_config("x", 6, "mode-sym-sr")
    assert sr.spec("x").rounding == "stochastic"
    assert an.VARIANTS["mode-sym-sr"].rounding == "stochastic"
    assert not an.VARIANTS["mode-sym-sr"].applies_to("blocks.*.ssm.C")
    dyn = an.target_config("blocks.*.ssm.output", 5, "dynamic-channel")
    out = dyn.spec("blocks.*.ssm.output")
    assert out.dynamic and out.granularity == "channel"
    one = an.target_config("blocks.1.ssm.A_bar", 4)  # one layer's A_bar, the others in FP
    assert one.spec("blocks.1.ssm.A_bar").bits == 4 and one.spec("blocks.0.ssm.A_bar").bits is None
    with pytest.raises(ImssaError, match="names 2 tensors"):
        an.target_config("mix", 4)


@pytest.mark.parametrize("target, variant", [
    ("blocks.*.ssm.A_bar", "dynamic-tensor"), ("blocks.*.ssm.x", "dynamic-channel"),
    ("blocks.*.mix.weight", "mode-sym"), ("blocks.*.ssm.C", "polar-tensor")])
def test_variants_that_do_not_apply_raise(target, variant):
    assert not an.VARIANTS[variant].applies_to(target)
    with pytest.raises(ImssaError, match="does not apply"):
        an.target_config(target, 4, variant)


def test_every_variant_builds_a_valid_config_where_it_applies():
    for v in an.VARIANTS.values():
        for t in TARGETS:
            if v.applies_to(t):
                an.target_config(t, 4, v.name)  # QuantConfig validates itself


def test_uniform_config_matches_the_presets():
    assert an.uniform_config(8) == make_config("W8A8")
    cfg = an.uniform_config(3, a_bar_form="polar")
    assert cfg.a_bar_form == "polar" and cfg.spec("encoder.input").bits is None
    assert all(cfg.spec(t).bits == 3 for t in TARGETS if t != "encoder.input")


# --- power errors --------------------------------------------------------------------------------
def test_power_errors_closed_forms():
    A = torch.polar(torch.tensor([0.9, 0.5, 0.99]), torch.tensor([0.3, -2.0, 1.0]))
    mean, median = an.power_errors(A, A, 50)
    np.testing.assert_allclose(mean, 0, atol=1e-12)
    np.testing.assert_allclose(median, 0, atol=1e-12)
    mean, _ = an.power_errors(A, torch.zeros_like(A), 50)  # A_q = 0: |0 - A^k| / |A^k| = 1
    np.testing.assert_allclose(mean, 1.0)
    phi = 0.01
    mean, _ = an.power_errors(A, A * np.exp(1j * phi), 50)  # a phase error phi: |e^{ik phi} - 1|
    k = np.arange(1, 51)
    np.testing.assert_allclose(mean, 2 * np.abs(np.sin(k * phi / 2)), rtol=1e-5)
    big = torch.tensor([1e-3 + 0j]), torch.tensor([1.0 + 0j])  # |r| = 1000: overflows float64
    mean, _ = an.power_errors(*big, 200)
    assert not np.isnan(mean).any() and np.isinf(mean[-1])


# --- sensitivity ---------------------------------------------------------------------------------
def test_sensitivity_dims_accuracy_and_files(runs, tmp_path):
    out, plot = tmp_path / "sens.nc", tmp_path / "sens.png"
    ds = an.sensitivity(runs["main"], bits=(16, 4), targets=("A", "blocks.*.ssm.output"),
                        variants=("tensor-sym", "dynamic-tensor"), out=out, plot=plot, **QUICK)
    assert ds.accuracy.dims == ("target", "variant", "bits")
    assert list(ds.bits.values) == [4, 16]
    a_bar, ssm_out = "blocks.*.ssm.A_bar", "blocks.*.ssm.output"
    assert list(ds.target.values) == [a_bar, ssm_out]
    acc = ds.accuracy
    assert np.isnan(acc.sel(target=a_bar, variant="dynamic-tensor")).all()  # not applicable
    finite = acc.values[np.isfinite(acc.values)]
    assert finite.size == 6 and ((finite >= 0) & (finite <= 1)).all()

    # the full-precision reference is the model's own recurrent accuracy on the same sequences
    _, model = load_run(runs["main"])
    from imssa.data import Split, load_task
    cfg = TrainConfig(**json.loads(ds.attrs["config"])["train"])
    test = load_task(cfg.task, val_fraction=cfg.val_fraction, seed=cfg.seed, limit=cfg.limit).test
    test = Split(test.x[:QUICK["limit"]], test.y[:QUICK["limit"]])
    fp = float(ds.fp_accuracy)
    assert fp == pytest.approx(accuracy(functools.partial(model, mode="recurrent"), test, torch.device("cpu")))
    assert fp > 0.6  # a trained model, so that 16 vs 4 bits means something
    at16 = acc.sel(bits=16).values
    assert np.all(np.abs(at16[np.isfinite(at16)] - fp) <= 0.01)
    assert float(acc.sel(target=a_bar, variant="tensor-sym", bits=4)) < fp - 0.1

    back = xr.open_dataset(out, engine="scipy")
    xr.testing.assert_allclose(back.accuracy.load(), ds.accuracy)
    assert back.accuracy.attrs["units"] == "1" and back.bits.attrs["units"] == "bit"
    config = json.loads(back.attrs["config"])
    assert config["targets"] == [a_bar, ssm_out] and config["calib_samples"] == 100
    assert config["model"]["d_model"] == 16
    assert {"device", "torch", "python", "date"} <= back.attrs.keys()
    assert list(back.granularity.values) == ["tensor", "tensor"]
    assert list(back.ranges.values) == ["static", "dynamic"]
    back.close()
    assert plot.read_bytes()[:8] == PNG_MAGIC
    _no_tmp_left(tmp_path)


# --- stability -----------------------------------------------------------------------------------
def test_stability_unit_circle_and_power_error(runs, tmp_path):
    out = tmp_path / "stab.nc"
    ds = an.stability(runs["main"], bits=(2, 4, 8), device="cpu", out=out,
                      plot=tmp_path / "stab.png")
    assert ds.power_error.dims == ("form", "bits", "k")
    assert ds.sizes["k"] == 64  # sdigits: 8 x 8 pixels as a sequence
    assert int(ds.fp_outside_unit_circle) == 0
    polar, cart = ds.sel(form="polar"), ds.sel(form="cartesian")
    assert (polar.outside_unit_circle == 0).all()
    assert (polar.max_abs < 1).all()
    assert (polar.levels_outside_unit_circle == 0).all()
    assert (cart.levels_outside_unit_circle > 0).all()  # the square grid's corners
    assert float(cart.power_error.sel(bits=8, k=1)) < 0.01
    assert float(polar.power_error.sel(bits=8, k=1)) < 0.02
    for form in ("cartesian", "polar"):
        avg = ds.power_error.sel(form=form).mean("k").values  # bits 2, 4, 8
        assert avg[0] > avg[1] > avg[2]
        k1 = ds.power_error.sel(form=form, k=1).values
        assert k1[0] > k1[1] > k1[2]

    # k = 1 from the stored values themselves: mean |A_q / A - 1|
    a = ds.A_bar_re.values + 1j * ds.A_bar_im.values
    for form in ("cartesian", "polar"):
        sel = ds.sel(form=form, bits=4)
        aq = sel.A_bar_q_re.values + 1j * sel.A_bar_q_im.values
        assert float(sel.power_error.sel(k=1)) == pytest.approx(np.abs(aq / a - 1).mean(),
                                                                rel=1e-9)
        # per-tensor ranges: every quantized value is one of the stored grid levels
        lv = (sel.levels_re.values + 1j * sel.levels_im.values)[0]
        lv = lv[np.isfinite(lv)]
        assert len(lv) == (15 * 15 if form == "cartesian" else 16 * 15)
        nearest = np.abs(aq.ravel()[:, None] - lv[None, :]).min(axis=1)
        assert nearest.max() < 1e-6

    back = xr.open_dataset(out, engine="scipy")
    assert back.outside_unit_circle.attrs["units"] == "count"
    assert json.loads(back.attrs["config"])["seq_len"] == 64
    back.close()
    _no_tmp_left(tmp_path)


def test_stability_seq_len_override_and_channel_ranges(runs):
    ds = an.stability(runs["main"], bits=(6,), forms=("polar",), granularity="channel",
                      seq_len=10, device="cpu")
    assert ds.sizes["k"] == 10 and list(ds.form.values) == ["polar"]
    assert int(ds.outside_unit_circle.sum()) == 0


# --- width ---------------------------------------------------------------------------------------
def test_width_groups_runs_by_d_model_and_seed(runs, tmp_path):
    out = tmp_path / "width.nc"
    ds = an.width([runs["main"], runs["wide"], runs["seed1"]], bits=(8, 4), out=out,
                  plot=tmp_path / "width.png", **QUICK)
    assert ds.accuracy.dims == ("d_model", "bits")
    assert list(ds.d_model.values) == [16, 64] and list(ds.seed.values) == [0, 1]
    assert list(ds.n_runs.values) == [2, 1]
    assert list(ds.parameters.values) == [3850, 21514]  # the paper's Table I
    per_seed = ds.accuracy_per_seed
    assert np.isnan(per_seed.sel(d_model=64, seed=1)).all()
    np.testing.assert_allclose(ds.accuracy.sel(d_model=16),
                               per_seed.sel(d_model=16).mean("seed"))
    vals = per_seed.values[np.isfinite(per_seed.values)]
    assert vals.size == 6 and ((vals >= 0) & (vals <= 1)).all()
    assert str(ds.run.sel(d_model=64, seed=1).item()) == ""
    back = xr.open_dataset(out, engine="scipy")
    assert back.d_model.attrs["long_name"].startswith("model width")
    assert json.loads(back.attrs["config"])["bits"] == [4, 8]
    back.close()
    _no_tmp_left(tmp_path)


def test_width_rejects_the_same_run_twice(runs):
    with pytest.raises(ImssaError, match="both d_model=16 with training seed 0"):
        an.width([runs["main"], runs["main"]], bits=(8,), **QUICK)


# --- command line and bad input ------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imssa")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def _run_cli(*argv: str) -> None:
    args = _parser().parse_args(list(argv))
    args.func(args)


def test_cli_stability_and_sensitivity(runs, tmp_path, capsys):
    nc = tmp_path / "st.nc"
    _run_cli("analyze", "stability", str(runs["main"]), "--bits", "4,8", "--device", "cpu",
             "--out", str(nc))
    assert nc.exists() and nc.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert "polar" in capsys.readouterr().out
    nc = tmp_path / "sens.nc"
    _run_cli("analyze", "sensitivity", str(runs["main"]), "--bits", "6-8", "--targets", "D",
             "--variants", "tensor-sym", "--limit", "50", "--calib-samples", "50",
             "--device", "cpu", "--out", str(nc), "--no-plot")
    ds = xr.open_dataset(nc, engine="scipy")
    assert list(ds.bits.values) == [6, 7, 8] and list(ds.target.values) == ["blocks.*.ssm.D"]
    ds.close()
    assert not nc.with_suffix(".png").exists()
    assert "tensor-sym" in capsys.readouterr().out


def test_parse_bits():
    assert parse_bits("2,4,6,8") == (2, 4, 6, 8)
    assert parse_bits("8, 2-4") == (2, 3, 4, 8)
    for bad in ("1,4", "17", "a", "4-2", ""):
        with pytest.raises(ImssaError, match="--bits"):
            parse_bits(bad)


@pytest.mark.parametrize("argv, message", [
    (["sensitivity", "{run}", "--bits", "1,4"], "integers in 2..16"),
    (["sensitivity", "{run}", "--targets", "A,weights"], "--targets: unknown"),
    (["sensitivity", "{run}", "--variants", "per-channel"], "--variants: unknown"),
    (["sensitivity", "{tmp}"], "not a finished training run"),
    (["stability", "{tmp}"], "not a finished training run"),
    (["stability", "{run}", "--forms", "spherical"], "--forms: unknown"),
    (["width", "{run}", "{tmp}"], "not a finished training run"),
    (["width", "{run}", "--bits", "20"], "integers in 2..16"),
    # library errors name the parameter; the command words it as its flag
    (["sensitivity", "{run}", "--calib-samples", "0"], "^--calib-samples must be a positive"),
    (["stability", "{run}", "--seq-len", "0"], "^--seq-len must be a positive"),
    (["width", "{run}", "--limit", "-3"], "^--limit must be a positive"),
])
def test_cli_bad_input_raises_imssa_error(runs, tmp_path, argv, message):
    argv = [a.format(run=runs["main"], tmp=tmp_path) for a in argv]
    with pytest.raises(ImssaError, match=message):
        _run_cli("analyze", *argv, "--device", "cpu", "--out", str(tmp_path / "x.nc"))
    assert not (tmp_path / "x.nc").exists()


@pytest.mark.parametrize("call, message", [
    (lambda r: an.sensitivity(r, bits=(17,)), "integers in 2..16"),
    (lambda r: an.sensitivity(r, bits=()), "empty"),
    (lambda r: an.sensitivity(r, targets=("A", "nope")), "unknown quantization target"),
    (lambda r: an.sensitivity(r, targets=("A",), variants=("dynamic-tensor",)),
     "none of the variants"),
    (lambda r: an.sensitivity(r, calib_samples=0), "calib_samples"),
    (lambda r: an.sensitivity(r, gelu="relu"), "gelu"),
    (lambda r: an.stability(r, granularity="mode"), "'tensor' or 'channel'"),
    (lambda r: an.stability(r, seq_len=0), "seq_len"),
    (lambda r: an.width(r), "non-empty list"),
    (lambda r: an.width([r], a_bar_form="round"), "a_bar_form"),
])
def test_bad_arguments_raise_imssa_error(runs, call, message):
    with pytest.raises(ImssaError, match=message):
        call(runs["main"])
