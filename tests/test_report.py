"""``imssa report``: a sweep's tables, and ``imssa simulate`` results side by side (tables and the
figure of docs/results.md's sMNIST crossbar section, drawn from the committed NetCDF files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from imssa.cli import main

SMNIST = Path(__file__).resolve().parent.parent / "results" / "crossbar-smnist"
PNG = b"\x89PNG\r\n\x1a\n"


def _row(text: str, label: str) -> list[float]:
    """The numbers of the table row of ``label`` (its first cell)."""
    head = label.split()
    cells = next(line.split() for line in text.splitlines() if line.split()[:len(head)] == head)
    return [float(v) for v in re.findall(r"-?\d+\.\d+", " ".join(cells[len(head):]))]


def test_the_smnist_crossbar_figure_and_tables_from_the_committed_results(tmp_path, capsys):
    """The rows equal docs/results.md's tables (FP-trained, Gaussian and PCM without
    compensation), and the figure is written."""
    files = [SMNIST / f"{name}.nc" for name in
             ("gaussian-fp", "gaussian-noise-0.03", "gaussian-all-analog-fp", "pcm-none-fp",
              "pcm-global-noise-0.03")]
    fig = tmp_path / "smnist.png"
    assert main(["report", *map(str, files), "--plot", str(fig)]) == 0
    out = capsys.readouterr().out
    assert fig.read_bytes().startswith(PNG) and fig.stat().st_size > 20_000
    assert f"wrote {fig}" in out
    assert _row(out, "gaussian-fp") == [99.20, 0.00, 98.78, 0.38, 97.78, 0.95, 85.05, 9.09,
                                        25.27, 9.84, 12.33, 2.85, 99.20]
    assert _row(out, "gaussian-noise-0.03")[6:8] == [97.54, 0.48]  # σ 2 %: the bold cell
    assert _row(out, "pcm-none-fp") == [94.98, 3.56, 71.34, 11.64, 37.73, 7.28, 20.45, 1.65,
                                        99.20]
    # three tables: σ up to 10 %, the all-analog σ up to 2 %, and the times of the PCM files
    heads = [line for line in out.splitlines() if line.startswith("accuracy (%) against")]
    assert heads == ["accuracy (%) against prog_noise, mean ± std over 10 chips:"] * 2 + \
        ["accuracy (%) against time since programming, mean ± std over 10 chips:"]
    assert out.splitlines()[1].split()[-8:] == ["0", "0.005", "0.01", "0.02", "0.05", "0.1",
                                                "digital", "%"]


def _simulation(acc: np.ndarray, prog_noise: list[float] | None, times: list[float]) -> xr.Dataset:
    """A simulate result: accuracy (setting, t_inference, chip), or (t_inference, chip)."""
    dims = ("setting", "t_inference", "chip") if prog_noise else ("t_inference", "chip")
    coords: dict = {"t_inference": times, "chip": np.arange(acc.shape[-1])}
    if prog_noise:
        coords |= {"setting": np.arange(len(prog_noise)), "prog_noise": ("setting", prog_noise)}
    return xr.Dataset({"accuracy": (dims, acc)}, coords=coords,
                      attrs={"title": "imssa crossbar simulation", "digital_accuracy": 0.9,
                             "sweep": "prog_noise" if prog_noise else ""})


def test_a_swept_result_at_two_times_gives_a_row_per_time(tmp_path, capsys):
    acc = np.array([[[0.90, 0.80, 0.70], [0.50, 0.60, 0.40]],
                    [[0.30, 0.30, 0.30], [0.20, 0.10, 0.30]]])  # setting x time x chip
    _simulation(acc, [0.0, 0.01], [1.0, 3600.0]).to_netcdf(tmp_path / "swept.nc")
    _simulation(acc[0], None, [1.0, 3600.0]).to_netcdf(tmp_path / "drift.nc")
    fig = tmp_path / "f.svg"
    assert main(["report", str(tmp_path / "swept.nc"), str(tmp_path / "drift.nc"),
                 "--plot", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "<svg" in fig.read_text()
    assert _row(out, "swept @ 1 s") == [80.0, 10.0, 30.0, 0.0, 90.0]  # σ 0, σ 0.01, digital
    assert _row(out, "swept @ 1 h") == [50.0, 10.0, 20.0, 10.0, 90.0]
    assert _row(out, "drift") == [80.0, 10.0, 50.0, 10.0, 90.0]  # 1 s, 1 h: setting 0's chips


def test_results_of_one_file_name_are_named_by_their_paths(tmp_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _simulation(np.full((1, 2), 0.5), None, [0.0]).to_netcdf(tmp_path / folder / "r.nc")
    assert main(["report", str(tmp_path / "a" / "r.nc"), str(tmp_path / "b" / "r.nc")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "a" / "r.nc") in out and str(tmp_path / "b" / "r.nc") in out


@pytest.mark.parametrize("kind, message", [
    ("other", "is neither a sweep's result"),
    ("mixed", "--plot draws one sweep's result, or simulate results side by side; got 1 sweep "
              "and 1 simulate result(s)"),
])
def test_what_report_cannot_draw_is_one_line(kind, message, tmp_path, capsys):
    sim = tmp_path / "sim.nc"
    _simulation(np.full((1, 2), 0.5), None, [0.0]).to_netcdf(sim)
    other = tmp_path / "other.nc"
    if kind == "other":
        xr.Dataset({"g": ("x", [1.0])}).to_netcdf(other)
    else:
        xr.Dataset({"accuracy": (("seed", "t_inference", "chip"), np.full((1, 1, 2), 0.5)),
                    "error": ("seed", [""])},
                   coords={"seed": [0], "t_inference": [0.0], "chip": [0, 1]},
                   attrs={"axes": json.dumps([{"dim": "seed", "fields": ["seed"]}])}
                   ).to_netcdf(other)
    assert main(["report", str(sim), str(other), "--plot", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.png").exists()


def test_a_sweeps_tables_and_figure_through_the_cli(tmp_path, capsys):
    """Point rows (mean ± sample std over chips) and the axis table (mean ± std over chips and
    the other axes' points) of a two-axis sweep result."""
    acc = np.array([[[[0.9, 0.7]], [[0.5, 0.3]]], [[[0.8, 0.8]], [[0.2, 0.4]]]])  # seed, σ, t, chip
    axes = [{"dim": "seed", "fields": ["train.seed"]}, {"dim": "sigma", "fields": ["prog_noise"]}]
    ds = xr.Dataset({"accuracy": (("seed", "sigma", "t_inference", "chip"), acc),
                     "digital_accuracy": (("seed", "sigma"), np.full((2, 2), 0.95)),
                     "error": (("seed", "sigma"), np.full((2, 2), ""))},
                    coords={"seed": [0, 1], "train.seed": ("seed", [0, 1]), "sigma": [0, 1],
                            "prog_noise": ("sigma", [0.0, 0.05]), "t_inference": [1.0],
                            "chip": [0, 1]},
                    attrs={"axes": json.dumps(axes), "points": 4, "title": "tiny"})
    ds.to_netcdf(tmp_path / "tiny.nc")
    fig = tmp_path / "tiny.png"
    assert main(["report", str(tmp_path / "tiny.nc"), "--plot", str(fig)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: 4 points, 0 failed") and fig.read_bytes().startswith(PNG)
    assert _row(out, "1 0.05") == [95.0, 30.0, 14.14]  # seed 1, σ 5 %: chips 20 %, 40 %
    # σ 5 % over both seeds and chips: 50, 30, 20, 40 -> 35 ± 11.18 (population std)
    assert _row(out, "0.05") == [35.0, 11.18]
