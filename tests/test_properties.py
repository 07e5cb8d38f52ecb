"""Property-based tests (hypothesis): the quantizers' algebra, and the command line's answer to
any bad value (exit 2, one line, no traceback, before any work)."""

from __future__ import annotations

import math
import string

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imssa.cli import main
from imssa.quant import fake_quantize, qparams, qrange
from imssa.ssm.scan import StateQuant

FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def grids(draw):
    """(values, scale, zero point, qmin, qmax, bits, symmetric) of a calibrated grid."""
    bits = draw(st.integers(2, 16))
    symmetric = draw(st.booleans())
    v = torch.tensor(draw(st.lists(finite, min_size=1, max_size=64)), dtype=torch.float32)
    lo, hi = sorted(draw(st.tuples(finite, finite)))
    scale, zp = qparams(torch.tensor(lo), torch.tensor(hi), bits, symmetric)
    qmin, qmax = qrange(bits, symmetric)
    return v, scale, zp, qmin, qmax


@FAST
@given(grids())
def test_fake_quantize_is_idempotent_and_on_the_grid(grid):
    v, scale, zp, qmin, qmax = grid
    once = fake_quantize(v, scale, zp, qmin, qmax)
    assert torch.equal(fake_quantize(once, scale, zp, qmin, qmax), once)
    codes = once / scale + zp
    assert torch.allclose(codes, codes.round(), atol=1e-3)
    assert codes.round().min() >= qmin and codes.round().max() <= qmax


@FAST
@given(grids())
def test_fake_quantize_error_is_half_a_step_inside_and_towards_the_range_outside(grid):
    v, scale, zp, qmin, qmax = grid
    out = fake_quantize(v, scale, zp, qmin, qmax)
    lo, hi = float((qmin - zp) * scale), float((qmax - zp) * scale)
    assert lo - 1e-6 * abs(lo) <= out.min() and out.max() <= hi + 1e-6 * abs(hi)
    err = out - v
    inside = (v >= lo) & (v <= hi)
    step = float(scale)
    assert (err[inside].abs() <= step / 2 * (1 + 1e-5) + 1e-6 * v[inside].abs()).all()
    assert (err[v > hi] <= 0).all() and (err[v < lo] >= 0).all()  # clipping moves inwards


@FAST
@given(st.lists(finite, min_size=1, max_size=8), st.integers(2, 12))
def test_fake_quantize_of_complex_acts_on_both_parts(parts, bits):
    z = torch.tensor(parts) * (1 + 0.5j)
    scale, zp = qparams(torch.tensor(-100.0), torch.tensor(100.0), bits, True)
    qmin, qmax = qrange(bits, True)
    out = fake_quantize(z, scale, zp, qmin, qmax)
    assert torch.equal(out.real, fake_quantize(z.real, scale, zp, qmin, qmax))
    assert torch.equal(out.imag, fake_quantize(z.imag, scale, zp, qmin, qmax))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.floats(-50, 50, allow_nan=False), st.floats(1e-3, 1.0), st.integers(4, 12))
def test_stochastic_rounding_is_unbiased(value, scale, bits):
    torch.manual_seed(0)
    n = 20_000
    qmax = 2 ** (bits - 1) - 1
    value = max(min(value, (qmax - 1) * scale), -(qmax - 1) * scale)  # inside the range
    quant = StateQuant(torch.tensor(scale, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64),
                       -qmax, qmax, stochastic=True)
    x = torch.full((n,), value, dtype=torch.float64) * (1 + 1j)
    out = quant(x)
    frac = value / scale - math.floor(value / scale)
    sigma = scale * math.sqrt(max(frac * (1 - frac), 1e-12) / n)
    for part in (out.real, out.imag):
        assert set(torch.unique(torch.round((part - value) / scale * 2)).tolist()) <= {-2, -1, 0, 1, 2}
        assert abs(float(part.mean()) - value) <= 5 * sigma + 1e-6 * scale


# --- the command line ----------------------------------------------------------------------------

def text_except(valid, alphabet=string.ascii_letters + string.digits + "-_.:/ "):
    return st.text(alphabet, min_size=0, max_size=12).filter(lambda s: s.strip() not in valid)


not_an_int = st.one_of(st.sampled_from(["", "abc", "1.5", "1e3", "0x10", "nan", "--", "1,2"]),
                       st.text(string.ascii_letters, min_size=1, max_size=6))
below_one = st.integers(-10**6, 0).map(str)
bad_positive_int = st.one_of(not_an_int, below_one)
bad_lr = st.one_of(st.sampled_from(["nan", "inf", "-inf", "0", "-1e-3", "abc", "", "1e309"]),
                   st.floats(-1e6, 0, allow_nan=False).map(repr))
bad_device = st.one_of(st.sampled_from(["xyz", "mps", "meta", "cuda:x", "cpu:0", "gpu", "CUDA",
                                        "cuda:99"]),
                       text_except({"cpu", "auto"}).filter(lambda s: not s.strip().startswith("cuda")))

TRAIN_BAD = {
    "--epochs": bad_positive_int, "--batch-size": bad_positive_int, "--limit": bad_positive_int,
    "--lr": bad_lr, "--ssm-lr": st.one_of(bad_lr, st.floats(1.1e-3, 1e6).map(repr)),
    "--weight-decay": st.sampled_from(["-1", "nan", "inf", "x"]),
    "--val-fraction": st.sampled_from(["1", "1.5", "-0.1", "nan", "x"]),
    "--seed": not_an_int, "--task": text_except({"sdigits", "smnist", "psmnist", "fsdd"}),
    "--model": text_except({"s4d-16", "s4d-64", "s4d-256", "s4d-512"}), "--device": bad_device,
    "--threads": bad_positive_int, "--data-dir": st.just(""),
}
EVAL_BAD = {"--mode": text_except({"conv", "recurrent"}), "--device": bad_device,
            "--limit": bad_positive_int, "--threads": bad_positive_int}
PTQ_BAD = {
    "--preset": text_except({"fp", "W8A8", "W4A6"}), "--a-bits": st.one_of(not_an_int,
                                                                          st.sampled_from(["1", "17", "-3"])),
    "--x-bits": st.one_of(not_an_int, st.sampled_from(["0", "33"])),
    "--calib-samples": bad_positive_int, "--device": bad_device,
    "--x-rounding": text_except({"nearest", "stochastic", "none", "null"}),
    "--a-form": text_except({"cartesian", "polar"}),
    "--set": st.sampled_from(["x.bits=abc", "x.symmetric=maybe", "x.bound=abc", "x.bound=-1",
                              "x.bound=nan", "gelu.bits=4", "bits=4", "x.bits", "x.nofield=1",
                              "C.rounding=stochastic", "x.percentile=abc", "x.bits=1.5"]),
}
QAT_BAD = {"--epochs": bad_positive_int, "--grad-clip": st.sampled_from(["0", "-1", "abc"]),
           "--param": text_except({"continuous", "discrete", "frozen-a", "polar"}),
           "--mode": text_except({"recurrent", "conv"}), "--train-noise": st.sampled_from(
               ["-1", "nan", "abc"]), "--train-noise-on": st.sampled_from(["gelu", "A,gelu", ""])}
CHAR_BAD = {"--g-targets": st.sampled_from(["1,abc", "abc", "1,,2", "-5", "1e9", "nan"]),
            "--t-inference": st.sampled_from(["-1h", "1x", "abc", "1h,,1d", "", "nan"]),
            "--samples": st.sampled_from(["1", "0", "abc", "-4"]),
            "--memristor": text_except({"ideal", "gaussian", "pcm", "rram"}),
            "--g-min": st.sampled_from(["-1", "abc", "30", "nan"]),
            "--plot": st.sampled_from(["x.xyz", "noext", "a.", "/sys/imssa-read-only/c.png"]),
            "--out": st.just("/sys/imssa-read-only/c.nc")}


def check_refused(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"{argv} was accepted (exit {code}); stderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "error" in lines[0], (argv, err)
    assert "Traceback" not in err and "weights_only" not in err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("props") / "run"
    assert main(["train", "--limit", "60", "--epochs", "1", "--device", "cpu", "--threads", "1",
                 "--out", str(out)]) == 0
    return out


@FAST
@given(st.sampled_from(sorted(TRAIN_BAD)).flatmap(lambda f: st.tuples(st.just(f), TRAIN_BAD[f])))
def test_train_refuses_every_bad_value_in_one_line(tmp_path, capsys, monkeypatch, case):
    import imssa.experiments.train as train_module

    monkeypatch.setattr(train_module, "load_task", _no_work)
    flag, value = case
    check_refused(capsys, ["train", "--out", str(tmp_path / "r"), "--device", "cpu",
                           f"{flag}={value}"])


RUN_CASES = [(verb, flag, strategy) for verb, table in
             (("eval", EVAL_BAD), ("ptq", PTQ_BAD), ("qat", {**PTQ_BAD, **QAT_BAD}))
             for flag, strategy in sorted(table.items())]


@FAST
@given(st.sampled_from(RUN_CASES).flatmap(lambda c: st.tuples(st.just(c[0]), st.just(c[1]), c[2])))
def test_run_verbs_refuse_every_bad_value_in_one_line(run, tmp_path, capsys, case):
    verb, flag, value = case
    out = [] if verb == "eval" else ["--out", str(tmp_path / "q")]
    check_refused(capsys, [verb, str(run), *out, "--device", "cpu", f"{flag}={value}"])


@FAST
@given(st.sampled_from(sorted(CHAR_BAD)).flatmap(lambda f: st.tuples(st.just(f), CHAR_BAD[f])))
def test_characterize_refuses_every_bad_value_in_one_line(tmp_path, capsys, monkeypatch, case):
    import imssa.experiments.analyses as analyses_module

    monkeypatch.setattr(analyses_module, "save_dataset", _no_work)
    flag, value = case
    out = [] if flag == "--out" else ["--out", str(tmp_path / "c.nc")]
    check_refused(capsys, ["memristor", "characterize", *out, "--samples", "10", f"{flag}={value}"])


def _no_work(*args, **kwargs):
    raise AssertionError("a bad value reached the work")
