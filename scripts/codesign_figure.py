"""Execute notebooks/codesign.ipynb on one sweep result and keep what it drew: the executed
notebook (its tables and Pareto fronts) and its figure beside it.

    python scripts/codesign_figure.py runs/codesign-fsdd/codesign-fsdd-cpu.nc \
        results/codesign/codesign-fsdd-cpu.ipynb        # also writes codesign-fsdd-cpu.png
"""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("result", type=Path, help="the sweep's merged NetCDF (its folder beside it)")
    p.add_argument("out", type=Path, help="the executed notebook to write (.ipynb)")
    args = p.parse_args()
    os.environ["IMSSA_CODESIGN_RESULT"] = str(args.result.resolve())
    nb = nbformat.read(ROOT / "notebooks" / "codesign.ipynb", as_version=4)
    NotebookClient(nb, timeout=1200, resources={"metadata": {"path": str(ROOT)}}).execute()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, args.out)
    figures = [o["data"]["image/png"] for cell in nb.cells for o in cell.get("outputs", [])
               if "image/png" in o.get("data", {})]
    args.out.with_suffix(".png").write_bytes(base64.b64decode(figures[0]))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
