"""Markdown rows of crossbar simulation results: accuracy (%) mean ± std over chips per setting.

    python scripts/summarize_crossbar.py results/crossbar-smnist/*.nc
"""

from __future__ import annotations

import sys
from pathlib import Path

import xarray as xr


def row(path: Path) -> str:
    ds = xr.load_dataset(path)
    acc = ds["accuracy"] * 100  # (setting, t_inference, chip)
    mean, std = acc.mean("chip"), acc.std("chip", ddof=1)
    cells = [f"{m:.2f} ± {s:.2f}" for m, s in zip(mean.values.ravel(), std.values.ravel())]
    sweep = ds.attrs.get("sweep")
    head = (f"{sweep}={[float(v) for v in ds[sweep].values]}" if sweep
            else f"t={[float(v) for v in ds['t_inference'].values]}")
    return (f"| {path.stem} | " + " | ".join(cells)
            + f" |  <!-- {head}, digital {100 * float(ds.attrs['digital_accuracy']):.2f}, "
            f"{int(ds.attrs['n_samples'])} samples -->")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(row(Path(p)))
