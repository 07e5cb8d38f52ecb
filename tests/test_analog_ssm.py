"""Tests of the state transition on a crossbar (issue 9): the mapping forms (direct, increment;
A_bar's scale per mode or split per entry), real SSMs (S4D-Real) on the crossbar, per-tensor
hardware settings, the cost summary, the errors of bad input, and the state transition the
chips realize (``imssa analyze transition-error``).

With ideal devices and periphery every form equals the digital model to 1e-9 (float64), for
complex and real SSMs, with and without parts kept digital, in recurrent mode and streaming.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
import xarray as xr

from imssa.cli import main
from imssa.crossbar import (
    PeripheryConfig,
    calibrate,
    convert,
    crossbar_cost,
    scan_backend,
    set_time,
)
from imssa.devices import GaussianConfig, GaussianDevice, IdealDevice
from imssa.errors import ImssaError
from imssa.experiments.analyses.transition import chip_transitions
from imssa.mapping import MappingConfig, map_ssm, mapped_matvec, reconstruct
from imssa.ssm import S4DConfig, S4DModel

FORMS = [("direct", None), ("direct", "mode"), ("direct", "split"), ("increment", None),
         ("increment", "mode"), ("increment", "split")]
ENCODINGS = ["polarity_block", "differential"]


def _model(ssm="complex", dtype=torch.float64, **kw) -> S4DModel:
    torch.manual_seed(0)
    cfg = S4DConfig(**({"d_input": 2, "d_model": 4, "d_state": 6, "n_layers": 2,
                        "n_classes": 3, "ssm": ssm} | kw))
    return S4DModel(cfg).to(dtype).eval()


def _inputs(B=3, L=6, d=2, dtype=torch.float64, seed=1) -> torch.Tensor:
    return torch.randn(B, L, d, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _run(model, u):
    with torch.no_grad():
        return model(u, mode="recurrent")


def _forms(ssm):
    return [f for f in FORMS if not (ssm == "real" and f[1] == "split")]


@pytest.mark.parametrize("ssm", ["complex", "real"])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("digital", [(), ("B",), ("C", "D", "encoder"), ("blocks.0.ssm.A_bar",)])
def test_every_form_with_ideal_devices_equals_the_digital_model(ssm, encoding, digital):
    model, u = _model(ssm), _inputs()
    expected = _run(model, u)
    for transition, scale in _forms(ssm):
        mapping = MappingConfig(g_min=1.0, tile_rows=16, tile_cols=16, encoding=encoding,
                                transition=transition, transition_scale=scale)
        xbar = convert(model, mapping, IdealDevice(), chips=2, digital=digital)
        a = xbar.blocks[1].ssm.parts["A_bar"]
        assert a is not None and a.tensor.offset == (transition == "increment")
        assert xbar.blocks[1].ssm.increment == (transition == "increment")
        set_time(xbar, 0.0)
        logits = _run(xbar, u)
        torch.testing.assert_close(logits, expected.expand(2, -1, -1), rtol=0, atol=1e-9)
        state = xbar.init_state(3)
        for k in range(u.shape[1]):
            streamed, state = xbar.step(u[:, k], state)
        torch.testing.assert_close(streamed, expected.expand(2, -1, -1), rtol=0, atol=1e-9)


def test_the_increment_form_holds_A_minus_one_and_reconstructs_A():
    for ssm in ("complex", "real"):
        d = _model(ssm).blocks[0].ssm.discrete()
        for scale in (None, "mode", "split") if ssm == "complex" else (None, "mode"):
            t = map_ssm("blocks.0.ssm", d, MappingConfig(transition="increment",
                                                         transition_scale=scale))["A_bar"]
            torch.testing.assert_close(reconstruct(t), d.A_bar.detach(), rtol=0, atol=1e-12)
            x = torch.randn(5, *d.A_bar.shape, dtype=d.A_bar.dtype)
            torch.testing.assert_close(mapped_matvec(t, x), (d.A_bar.detach() - 1) * x,
                                       rtol=0, atol=1e-12)


def test_real_ssm_is_one_differential_pair_per_mode():
    model = _model("real", d_state=8)
    d = model.blocks[0].ssm.discrete()
    assert not torch.is_complex(d.A_bar) and d.A_bar.shape == (4, 8)
    t = map_ssm("blocks.0.ssm", d, MappingConfig(encoding="differential"))
    assert t["A_bar"].compact_shape == (4, 8, 1, 2)  # one row, one (G+, G-) pair per mode
    assert t["C"].compact_shape == (4, 8, 1, 2)
    xbar = convert(model, MappingConfig(), IdealDevice())
    state = xbar.blocks[0].ssm.init_state(2)
    assert state[0].shape == (1, 2, 4, 8, 1)


def test_per_mode_scale_and_split_scale_follow_each_mode_and_entry():
    d = _model().blocks[0].ssm.discrete()
    A = d.A_bar.detach()
    t = map_ssm("p", d, MappingConfig(transition="increment", transition_scale="mode"))["A_bar"]
    inc = A - 1
    torch.testing.assert_close(t.w_max[..., 0, 0], torch.maximum(inc.real.abs(), inc.imag.abs()))
    s = map_ssm("p", d, MappingConfig(transition="increment", transition_scale="split"))["A_bar"]
    assert s.compact_shape == (4, 3, 4, 8)  # (x, -x) rows; (diag y_r, y_i, off y_r, y_i, -...)
    torch.testing.assert_close(s.w_max[..., 0, 0], inc.real.abs())
    off = inc.imag.abs()  # mode 0 of S4D-Lin does not rotate: a zero entry keeps w_max 1
    torch.testing.assert_close(s.w_max[..., 2, 0], torch.where(off > 0, off, torch.ones_like(off)))


def test_split_and_increment_with_noise_differ_from_direct_and_are_seeded():
    """With programming error the forms give other numbers (not the direct form's), each
    reproducible from the seed; the per-mode increment form errs less on A_bar."""
    model, u = _model(), _inputs()
    dev = GaussianDevice(GaussianConfig(prog_noise=0.02))
    errs = {}
    for transition, scale in (("direct", None), ("increment", "mode")):
        mapping = MappingConfig(transition=transition, transition_scale=scale)
        runs = []
        for _ in range(2):
            xbar = convert(model, mapping, dev, chips=8, seed=3)
            set_time(xbar, 0.0)
            runs.append(_run(xbar, u))
        assert torch.equal(runs[0], runs[1])
        a = xbar.blocks[0].ssm.parts["A_bar"]
        err = reconstruct(a.tensor, a.programmed.g) - model.blocks[0].ssm.discrete().A_bar
        errs[transition] = err.abs().mean().item()
    assert errs["increment"] < 0.5 * errs["direct"]


def test_quantized_increment_accumulates_the_adc_output():
    """Quantized periphery in the increment form: the register adds its own content to the
    decoded ADC output of (A_bar - 1) DAC(x) + B_bar DAC(u), written out for one layer."""
    from tests.test_crossbar import _q

    model = _model(n_layers=1)
    u = _inputs(B=4, L=7)
    pc = PeripheryConfig(dac_bits=6, adc_bits=7, state_bits=8)
    mapping = MappingConfig(transition="increment", transition_scale="mode")
    xbar = convert(model, mapping, IdealDevice(), pc, digital=("encoder", "mix", "decoder"))
    R = calibrate(xbar, u)
    set_time(xbar, 0.0)
    with torch.no_grad():
        x = model.encoder(u)
        y_xbar = xbar.blocks[0].ssm(x)[0]
        d = model.blocks[0].ssm.discrete()
        A, Bv, C, D = (t.detach() for t in (d.A_bar, d.B_bar, d.C, d.D))
        p = "blocks.0.ssm."
        ud = _q(x, R[p + "input"], 6)
        s = sd = torch.zeros(4, *A.shape, dtype=A.dtype)
        ys = []
        for k in range(u.shape[1]):
            inc = (A - 1) * sd + Bv * ud[:, k, :, None]
            inc = torch.complex(_q(inc.real, R[p + "state"], 7), _q(inc.imag, R[p + "state"], 7))
            acc = s + inc
            s = torch.complex(_q(acc.real, R[p + "register"], 8),
                              _q(acc.imag, R[p + "register"], 8))
            sd = torch.complex(_q(s.real, R[p + "x"], 6), _q(s.imag, R[p + "x"], 6))
            ys.append(_q(2 * (C * sd).sum(-1).real + D * ud[:, k], R[p + "output"], 7))
        expected = torch.stack(ys, 1)
    torch.testing.assert_close(y_xbar, expected, rtol=0, atol=1e-9)


def test_fused_kernel_flags_of_every_form():
    """Every configuration runs on the fused kernel (tests/test_crossbar_triton.py's grid); the
    layer tells it the form (increment, split) and per-tensor converter bits."""
    model = _model(dtype=torch.float32)
    for mapping, ssm, increment, split in (
            (MappingConfig(), "complex", False, False),
            (MappingConfig(transition="increment"), "complex", True, False),
            (MappingConfig(transition_scale="split"), "complex", False, True),
            (MappingConfig(transition="increment", transition_scale="mode"), "real", True, False)):
        xbar = convert(_model(ssm, torch.float32) if ssm == "real" else model, mapping,
                       IdealDevice())
        layer = xbar.blocks[0].ssm
        assert (layer.increment, layer.split) == (increment, split)
    per = convert(model, MappingConfig(), IdealDevice(), PeripheryConfig(adc_bits=8),
                  per_tensor={"A": {"adc_bits": 10}})
    assert per.blocks[0].ssm.converter("state").adc_bits == 10
    assert per.blocks[0].ssm.converter("output").adc_bits == 8
    x = torch.zeros(1, 2, 3, 4)
    assert scan_backend(x) == "torch"  # CPU tensors, IMSSA_CROSSBAR_SCAN unset or auto


def test_per_tensor_settings_reach_their_tiles_and_cost():
    model = _model()
    dev = GaussianDevice(GaussianConfig(prog_noise=0.03))
    pc = PeripheryConfig(dac_bits=8, adc_bits=8)
    base = convert(model, MappingConfig(), dev, pc, chips=2)
    per = convert(model, MappingConfig(), dev, pc, chips=2,
                  per_tensor={"A": {"verify_tol": 0.005, "n_devices": 4, "adc_bits": 10},
                              "blocks.1.mix": {"dac_bits": 6}})
    a0, a1 = per.blocks[0].ssm.parts["A_bar"], per.blocks[1].ssm.parts["A_bar"]
    assert a0.memristor.config.n_devices == 4 and a1.memristor.config.verify_tol == 0.005
    assert per.blocks[0].ssm.parts["B_bar"].memristor is dev
    assert per.blocks[1].mix.converter("input").dac_bits == 6
    assert per.blocks[0].mix.converter("input").dac_bits == 8
    # program-and-verify: most of A_bar's devices lie within 0.5 % of g_max of their targets
    # (the rest ran out of verify_max_pulses); without it, far fewer (g_min targets clip at 0)
    def within(tile):
        err = tile.programmed.g_prog - tile.tensor.g_target.unsqueeze(-1)
        return (err.abs() <= 0.005 * dev.config.g_max + 1e-9).double().mean().item()

    assert within(a0) > 0.9 and within(base.blocks[0].ssm.parts["A_bar"]) < 0.6
    c_base, c_per = crossbar_cost(base), crossbar_cost(per)
    name = "blocks.0.ssm.A_bar"
    assert c_per.tensors[name]["devices"] == 4 * c_base.tensors[name]["devices"]
    assert c_per.tensors[name]["pulses"] > c_per.tensors[name]["devices"]  # verify re-pulses
    assert c_base.tensors[name]["pulses"] == c_base.tensors[name]["devices"]
    assert c_per.converters["blocks.0.ssm.state"]["bits"] == 10


def test_cost_counts_columns_conversions_and_accumulator():
    model = _model(n_layers=1, d_state=8)  # H = 4, N2 = 4 complex modes
    pc = PeripheryConfig(state_bits=12)
    direct = crossbar_cost(convert(model, MappingConfig(), IdealDevice(), pc))
    split = crossbar_cost(convert(model, MappingConfig(transition="increment",
                                                       transition_scale="split"),
                                  IdealDevice(), pc))
    a = "blocks.0.ssm.A_bar"
    assert direct.tensors[a]["columns"] == 4 * 4 * 4  # (y_r, y_i, -y_r, -y_i) per mode
    assert split.tensors[a]["columns"] == 2 * direct.tensors[a]["columns"]
    assert direct.converters["blocks.0.ssm.state"]["per_step"] == 64
    assert split.converters["blocks.0.ssm.state"]["per_step"] == 128
    assert direct.converters["blocks.0.ssm.x"]["per_step"] == 4 * 4 * 2
    acc = split.converters["blocks.0.ssm.register"]
    assert acc["kind"] == "register" and acc["bits"] == 12 and acc["per_step"] == 32
    assert split.totals["adc_per_step"] == direct.totals["adc_per_step"] + 64
    real = crossbar_cost(convert(_model("real", n_layers=1, d_state=8),
                                 MappingConfig(encoding="differential"), IdealDevice()))
    assert real.tensors[a]["devices"] == 4 * 8 * 2  # one differential pair per real mode
    assert "devices" in real.summary() and "adc_per_step" in real.summary()


@pytest.mark.parametrize("kwargs,match", [
    ({"mapping": MappingConfig(transition="increment"), "pc": PeripheryConfig(dac_bits=8,
                                                                              state_bits=6)},
     "state_bits=6.*narrower.*dac_bits=8"),
    ({"mapping": MappingConfig(transition_scale="split"), "ssm": "real"},
     "split.*real"),
    ({"mapping": MappingConfig(transition="increment"), "digital": ("A",)},
     "every A_bar is kept digital"),
    ({"mapping": MappingConfig(transition_scale="split"),
      "pc": PeripheryConfig(drift_compensation="per_column")}, "per_column"),
    ({"per_tensor": {"A": {"verify_tol": 0.01}}, "digital": ("A",)}, "kept digital"),
    ({"per_tensor": {"A": {"bogus": 1}}}, "bogus.*neither"),
    ({"per_tensor": {"A": {"n_devices": 0}}}, "n_devices"),
    ({"per_tensor": {"Q": {"n_devices": 2}}}, "unknown tensor of a per-tensor setting 'Q'"),
])
def test_bad_forms_and_settings_are_refused_before_work(kwargs, match):
    model = _model(kwargs.get("ssm", "complex"))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ImssaError, match=match):
        convert(model, kwargs.get("mapping", MappingConfig()), IdealDevice(),
                kwargs.get("pc"), digital=kwargs.get("digital", ()),
                per_tensor=kwargs.get("per_tensor"))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ImssaError, match="MappingConfig.transition must be one of"):
        MappingConfig(transition="sideways")


# --- the state transition the chips realize (imssa analyze transition-error) -----------------

@pytest.mark.parametrize("ssm", ["complex", "real"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_chip_transition_of_ideal_devices_is_the_digital_A_bar(ssm, encoding):
    """Ideal devices, global compensation (gain 1): every form realizes A_bar to 1e-9, and the
    realized map's spectral radius is |A_bar|; a layer whose A_bar is digital is left out."""
    model = _model(ssm)
    for transition, scale in _forms(ssm):
        mapping = MappingConfig(g_min=1.0, tile_rows=16, tile_cols=16, encoding=encoding,
                                transition=transition, transition_scale=scale)
        xbar = convert(model, mapping, IdealDevice(),
                       PeripheryConfig(drift_compensation="global"), chips=2,
                       digital=("blocks.0.ssm.A_bar",))
        set_time(xbar, 0.0)
        (t,) = chip_transitions(xbar)
        A = model.blocks[1].ssm.discrete().A_bar.detach()
        assert t.path == "blocks.1.ssm" and t.A_chip.shape == (2, *A.shape)
        assert t.A_chip.dtype == (torch.float64 if ssm == "real" else torch.complex128)
        torch.testing.assert_close(t.A_chip, A.expand(2, *A.shape), rtol=0, atol=1e-9)
        torch.testing.assert_close(t.radius_chip, A.abs().expand(2, *A.shape), rtol=0, atol=1e-9)


@pytest.mark.parametrize("ssm", ["complex", "real"])
@pytest.mark.parametrize("transition", ["direct", "increment"])
def test_chip_transition_error_follows_the_programming_error_and_the_mode_scale(ssm, transition):
    """Gaussian programming error sigma (of g_max) on a polarity block: each weight unit is the
    mean of two differences of two devices, std sigma g_max / scale with the mode's scale
    (g_max - g_min) / w_max (w_max of A_bar - 1 in the increment form); the complex A_bar averages
    the two copies of Re and Im (std / sqrt 2). Normalized by that, the error is N(0, 1)."""
    sigma, g_min, g_max = 0.005, 5.0, 25.0  # g_min well above 0: no clipping of the noise
    model = _model(ssm, n_layers=1, d_model=8, d_state=64)
    xbar = convert(model, MappingConfig(g_min=g_min, g_max=g_max, transition=transition,
                                        transition_scale="mode"),
                   GaussianDevice(GaussianConfig(prog_noise=sigma, g_min=g_min, g_max=g_max)),
                   PeripheryConfig(drift_compensation="none"), chips=200, seed=1)
    set_time(xbar, 0.0)
    (t,) = chip_transitions(xbar)
    w_max = xbar.blocks[0].ssm.parts["A_bar"].tensor.w_max[..., 0, 0]  # (H, modes), per mode
    expected = sigma * g_max * w_max / (g_max - g_min) / (1.0 if ssm == "real" else 2 ** 0.5)
    err = t.A_chip - t.A
    z = err / expected if ssm == "real" else torch.cat([err.real, err.imag]) / expected
    assert abs(z.std().item() - 1) < 0.02 and abs(z.mean().item()) < 0.03  # ~2e4 draws
    assert z.std(0).min() > 0.7 and z.std(0).max() < 1.35  # every mode: 200 (400) draws


def test_chip_transitions_need_an_analog_A_bar_and_a_time():
    model = _model()
    with pytest.raises(ImssaError, match="not a converted crossbar model"):
        chip_transitions(model)
    xbar = convert(model, MappingConfig(), IdealDevice(), digital=("A",))
    set_time(xbar, 0.0)
    with pytest.raises(ImssaError, match="keeps every A_bar digital"):
        chip_transitions(xbar)
    with pytest.raises(ImssaError, match="set_time"):
        chip_transitions(convert(model, MappingConfig(), IdealDevice()))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    from imssa.experiments.train import TrainConfig, train

    path = tmp_path_factory.mktemp("analog") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        train(TrainConfig(task="sdigits", model="s4d-real-64x1", epochs=1, limit=80,
                          device="cpu"), path)
    return path


def test_cli_transition_error_writes_the_dataset_and_figure(real_run, tmp_path, capsys):
    out = tmp_path / "te.nc"
    assert main(["analyze", "transition-error", str(real_run), "--memristor", "gaussian",
                 "--prog-noise", "0.02", "--t-inference", "0,1d", "--chips", "3",
                 "--transition", "increment", "--transition-scale", "mode",
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "t = 1 d:" in printed and "of 4096 modes" in printed
    assert (tmp_path / "te.png").stat().st_size > 0
    with xr.open_dataset(out, engine="scipy") as ds:
        assert dict(ds.error.sizes) == {"t_inference": 2, "chip": 3, "layer": 1, "channel": 64,
                                        "mode": 64}
        assert float(ds.error.min()) > 0 and (ds.A_im == 0).all()
        err = np.hypot(ds.A_chip_re - ds.A_re, ds.A_chip_im - ds.A_im)
        np.testing.assert_allclose(ds.error, err, rtol=1e-12)
        assert (ds.broken == (ds.error >= ds.decay).sum(("layer", "channel", "mode"))).all()
        assert json.loads(ds.attrs["config"])["mapping"]["transition"] == "increment"


def test_cli_transition_error_takes_the_chip_options_of_simulate(real_run, tmp_path, capsys):
    """The chip options are simulate's (one helper declares both): four devices per weight of
    A_bar alone (--per-tensor) cut the error of the on-chip A_bar (to 0.64 of one device's
    here, where 1/sqrt(4) would be the programming error's alone), as --n-devices 4 for every
    weight does."""
    base = ["analyze", "transition-error", str(real_run), "--memristor", "gaussian",
            "--prog-noise", "0.02", "--t-inference", "0", "--chips", "4", "--transition",
            "increment", "--transition-scale", "mode", "--device", "cpu", "--no-plot"]
    errors = {}
    for name, extra in (("one", []), ("a4", ["--per-tensor", "A:n_devices=4"]),
                        ("all4", ["--n-devices", "4"])):
        out = tmp_path / f"{name}.nc"
        assert main([*base, *extra, "--out", str(out)]) == 0
        with xr.open_dataset(out, engine="scipy") as ds:
            errors[name] = float(ds.error.mean())
    capsys.readouterr()
    assert 0.5 <= errors["a4"] / errors["one"] < 0.75, errors
    assert errors["all4"] == pytest.approx(errors["a4"], rel=0.05), errors


_NARROW = (["--transition", "increment", "--dac-bits", "8", "--state-bits", "6"],
           "--state-bits=6 (the increment form's accumulator) is narrower than the state")
_SPLIT_REAL = (["--transition-scale", "split"], "--transition-scale='split' needs complex modes")
_DIGITAL_A = (["--transition", "increment", "--digital", "A"], "every A_bar is kept digital")


@pytest.mark.parametrize("verb,argv,message", [
    (["simulate"], *_NARROW), (["simulate"], *_SPLIT_REAL), (["simulate"], *_DIGITAL_A),
    (["analyze", "transition-error"], *_SPLIT_REAL),  # it reads A_bar alone: no converters
    (["analyze", "transition-error"], *_DIGITAL_A),
    (["analyze", "transition-error"], ["--plot", "te.xyz"], "--plot te.xyz: unknown image format"),
])
def test_cli_bad_forms_give_one_line_and_leave_no_files(real_run, tmp_path, capsys, verb, argv,
                                                        message):
    """Issue 9, item 9: an accumulator narrower than the state, split with a real SSM and a form
    for a part kept digital (and a figure format matplotlib cannot write): exit 2, one line
    naming the flag, nothing written."""
    out = tmp_path / "x.nc"
    assert main([*verb, str(real_run), *argv, "--device", "cpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # no result, no .parts folder, no temporary file
