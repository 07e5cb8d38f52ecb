"""Executes the notebooks in ``notebooks/`` so that they cannot rot: every cell must run without
error on the embedded default dataset, on a CPU, and produce its figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = "python3"


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A "python3" kernel spec that runs this interpreter (the one imssa is installed in),
    found first through JUPYTER_PATH, so a spec registered for another Python is not used."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (imssa tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for name in ("IMSSA_NOTEBOOK_RUN", "IMSSA_NOTEBOOK_COMPLEX_RUN", "IMSSA_NOTEBOOK_REAL_RUN"):
        monkeypatch.delenv(name, raising=False)  # the notebooks train their own models
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    work = tmp_path / "cwd"
    work.mkdir()
    return work


def _execute(name: str, cwd: Path):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    return nb


def _outputs(nb, output_type: str | None = None, mime: str | None = None) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if (output_type is None or o.output_type == output_type)
            and (mime is None or mime in o.get("data", {}))]


def test_notebooks_are_stored_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, \
                    f"{path.name}: clear the outputs before committing"


def test_conductance_maps_notebook(kernel_env):
    nb = _execute("conductance_maps.ipynb", kernel_env)
    assert not _outputs(nb, "error")
    # the tile maps, the error histograms and accuracy vs time
    assert len(_outputs(nb, mime="image/png")) >= 3
    # the conductance-map Dataset and the utilization table
    html = [o["data"]["text/html"] for o in _outputs(nb, mime="text/html")]
    assert any("xarray" in h and "g_target" in h for h in html)
    assert any("mean_utilization" in h for h in html)
    # the final check cell printed its summary
    last = next(c for c in reversed(nb.cells) if c.cell_type == "code")
    text = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert text.startswith("OK:") and "tiles" in text
    assert list(kernel_env.iterdir()) == []  # nothing written into the working directory


def test_analog_ssm_notebook(kernel_env):
    nb = _execute("analog_ssm.ipynb", kernel_env)
    assert not _outputs(nb, "error")
    # A_bar in the complex plane, error against decay (two), accuracy against programming error
    assert len(_outputs(nb, mime="image/png")) >= 4
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert "real, increment: t = 0 s: 0.0 of" in text  # no real mode breaks in that form
    last = next(c for c in reversed(nb.cells) if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert printed.startswith("OK:") and "outside the unit circle" in printed
    assert list(kernel_env.iterdir()) == []  # nothing written into the working directory


def test_codesign_notebook(kernel_env, monkeypatch):
    monkeypatch.delenv("IMSSA_CODESIGN_RESULT", raising=False)  # it runs its own small sweep
    nb = _execute("codesign.ipynb", kernel_env)
    assert not _outputs(nb, "error")
    assert len(_outputs(nb, mime="image/png")) >= 1  # the four Pareto panels
    html = [o["data"]["text/html"] for o in _outputs(nb, mime="text/html")]
    assert any("digital_quantized" in h and "pcm_energy_nj" in h for h in html)  # the table
    text = "".join(o.get("text", "") for o in _outputs(nb, "stream"))
    assert "codesign-sdigits.toml into a temporary folder: 16 points, 0 failed" in text
    assert "dask dashboard" not in text and "points:" not in text  # no progress noise
    last = next(c for c in reversed(nb.cells) if c.cell_type == "code")
    printed = "".join(o.get("text", "") for o in last.outputs if o.output_type == "stream")
    assert printed.startswith("OK: 16 designs")
    assert list(kernel_env.iterdir()) == []  # nothing written into the working directory
