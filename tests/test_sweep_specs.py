"""Every committed spec in sweeps/ checks whole and lists its points (``imssa sweep --dry-run``),
so a spec broken by a config change fails here; and the spec-format details the specs rely on.
The dry runs read the committed run folders of results/ but no data set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imssa.cli import main
from imssa.sweep import load_spec, parse_spec
from imssa.sweep.merge import _coordinate
from imssa.sweep.report import report
from imssa.sweep.run import plan

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "sweeps").glob("*.toml"))

#: The points of every spec (a new spec is added here with its count).
POINTS = {
    "analog-ssm-a-complex": 54, "analog-ssm-a-real": 24, "analog-ssm-a-real16": 12, "analog-ssm-best": 4,
    "analog-ssm-fsdd-gaussian": 16, "analog-ssm-fsdd-pcm": 4, "analog-ssm-levers": 8,
    "analog-ssm-levers-gaussian": 3, "analog-ssm-limits": 11, "analog-ssm-models": 5,
    "analog-ssm-smnist-gaussian": 16, "analog-ssm-smnist-pcm": 4, "codesign-fsdd": 648, "codesign-fsdd-cpu": 48,
    "codesign-sdigits": 16, "codesign-smnist": 648, "crossbar-fsdd-gaussian": 12,
    "crossbar-fsdd-pcm": 4, "crossbar-smnist-all-analog": 12, "crossbar-smnist-gaussian": 36,
    "crossbar-smnist-mitigation": 21, "crossbar-smnist-pcm": 12, "demo": 4, "foundation": 6, "foundation-other": 2,
    "quant-beyond": 12, "quant-beyond-single": 6, "quant-fsdd": 6, "quant-table3-s4d-16": 15,
    "quant-table3-s4d-64": 21,
    "s4d-real": 3, "scaling-sdigits": 216, "width-train": 2,
}


def test_every_spec_has_a_count():
    assert sorted(POINTS) == sorted(p.stem for p in SPECS)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_spec_dry_runs(path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the specs name committed runs relative to the repository root
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"sweep {path.stem}: {POINTS[path.stem]} points")
    assert "to run" in text and not out.exists()


def test_crossbar_smnist_specs_share_their_trainings(monkeypatch, tmp_path):
    """The Gaussian and PCM sMNIST specs name the same six models: with one --out, the PCM
    sweep trains nothing the Gaussian one has not."""
    monkeypatch.chdir(ROOT)
    gauss, pcm = (plan(load_spec(ROOT / "sweeps" / f"crossbar-smnist-{k}.toml"), tmp_path)
                  for k in ("gaussian", "pcm"))
    assert set(pcm.quantizations) == set(gauss.quantizations) and len(pcm.quantizations) == 5


def test_the_cpu_codesign_slice_is_part_of_the_full_study(monkeypatch):
    """codesign-fsdd-cpu.toml's points are points of codesign-fsdd.toml (the same content keys):
    run into one folder, the full study reuses every point the slice finished."""
    monkeypatch.chdir(ROOT)
    keys = {name: {p.config.point_key() for p in load_spec(ROOT / "sweeps" / f"{name}.toml").points}
            for name in ("codesign-fsdd-cpu", "codesign-fsdd")}
    assert len(keys["codesign-fsdd-cpu"]) == 48
    assert keys["codesign-fsdd-cpu"] <= keys["codesign-fsdd"]


BASE = """
[train]
task = "sdigits"
[simulate]
t_inference = [0]
[simulate.memristor]
kind = "gaussian"
"""


def test_none_is_the_empty_tuple_of_a_tuple_field():
    spec = parse_spec(BASE + '[zip.z]\n"simulate.digital" = ["none", ["B", "C"]]\n'
                      '"simulate.per_tensor" = ["none", ["A:n_devices=4"]]\n')
    first, second = (p.config.simulation for p in spec.points)
    assert first.digital == () and first.per_tensor == ()
    assert second.digital == ("B", "C") and second.per_tensor == (("A", (("n_devices", 4),)),)


def test_list_values_are_coordinate_text():
    assert list(_coordinate([[], ["A", "B"], None])) == ["none", "A,B", "none"]
    assert _coordinate([1, 2]).dtype == np.int64 and _coordinate([1, 0.5]).dtype == np.float64


def test_report_of_a_quantization_grid_averages_over_the_seeds():
    """Without a simulate stage the report gives each recipe's mean ± sample std over the runs."""
    import json

    import xarray as xr

    acc = np.array([[0.90, 0.50], [0.92, 0.52], [0.94, 0.57]])  # run (3 seeds) x recipe (2)
    axes = [{"dim": "run", "fields": ["train.run"]}, {"dim": "recipe", "fields": ["quantize.a_bits"]}]
    ds = xr.Dataset({"quant_accuracy": (("run", "recipe"), acc),
                     "error": (("run", "recipe"), np.full((3, 2), ""))},
                    coords={"run": [0, 1, 2], "train.run": ("run", ["s0", "s1", "s2"]),
                            "recipe": [0, 1], "quantize.a_bits": ("recipe", [8, 6])},
                    attrs={"axes": json.dumps(axes), "points": 6})
    text = report(ds)
    assert "quant accuracy (%) against recipe, mean ± std over the other axes" in text
    assert "8     92.00 ±  2.00" in text and "6     53.00 ±  3.61" in text  # ddof 1, 3 seeds
