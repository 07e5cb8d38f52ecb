"""Figure of the sMNIST crossbar tables (docs/results.md): accuracy against Gaussian programming
noise and against PCM drift time, one line per model, mean ± std over chips.

    python scripts/plot_crossbar_smnist.py results/crossbar-smnist results/crossbar-smnist/smnist.png
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from imssa.experiments.io import atomic_write  # noqa: E402

MODELS = {"fp": "FP-trained", "qat": "QAT W8A8", "noise-0.03": "noise-trained (Gaussian 3 %)",
          "noise-pcm": "noise-trained (PCM)"}


def _line(ax, x, acc, label, marker="o") -> None:
    acc = 100 * acc
    ax.errorbar(x, acc.mean("chip").values.ravel(), yerr=acc.std("chip", ddof=1).values.ravel(),
                marker=marker, capsize=3, label=label)


def main(folder: Path, out: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for key, label in MODELS.items():
        f = folder / f"gaussian-{key}.nc"
        if f.exists():
            ds = xr.load_dataset(f)
            _line(a, 100 * ds["prog_noise"].values, ds["accuracy"], label)
    ds = xr.load_dataset(folder / "gaussian-all-analog-fp.nc")
    _line(a, 100 * ds["prog_noise"].values, ds["accuracy"], "FP-trained, A_bar analog too", "x")
    a.set(xscale="symlog", xlabel="programming noise σ (% of g_max)", ylabel="test accuracy (%)",
          title="Gaussian programming noise, A_bar digital")
    for key, label in MODELS.items():
        for comp, style in (("global", "o"), ("none", "x")):
            f = folder / f"pcm-{comp}-{key}.nc"
            if f.exists():
                ds = xr.load_dataset(f)
                _line(b, ds["t_inference"].values, ds["accuracy"], f"{label}, {comp}", style)
    b.set(xscale="log", xlabel="time since programming (s)", ylabel="test accuracy (%)",
          title="PCM, 8-bit DAC/ADC, A_bar digital, compensation global / none")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
