"""Sweeps over any grid of the train -> quantize -> simulate pipeline, on Dask distributed.

Modules:
    spec: the TOML spec (base configs of every stage, product and zip axes), checked whole.
    run: the unique work of a spec, the Dask graph that does it, progress and failures.
    tasks: the worker side: a training, a quantization, a point, each writing its own files.
    cluster: a LocalCluster (a worker per core, or per GPU pinned by CUDA_VISIBLE_DEVICES) or
        a running cluster's client.
    merge: the point files as one xarray Dataset (combine_by_coords), written as NetCDF.
    report: tables and a figure of a merged Dataset.

The command line is ``imssa sweep SPEC.toml --out DIR`` (:mod:`imssa.cli.sweep`) and
``imssa report DIR/<name>.nc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from imssa.sweep.spec import Axis, Point, PointConfig, Spec, load_spec, parse_spec

if TYPE_CHECKING:
    import xarray as xr


def sweep(spec: Spec | str | Path, out: str | Path, *, client: Any = None,
          scheduler: str | None = None, threads: int = 1, **local: Any
          ) -> tuple[xr.Dataset, int]:
    """Run ``spec`` into the folder ``out``; returns the merged Dataset and the failed points.

    Args:
        spec: a :class:`Spec` or the path of its TOML file (checked whole before any work).
        out: the sweep folder; finished work in it is reused (content-keyed).
        client: a Dask client to run on; else one of ``scheduler`` or of a new LocalCluster
            (``local``: :func:`imssa.sweep.cluster.local_cluster`'s arguments).
        threads: torch threads per task.

    The Dataset is also written to ``out/<spec name>.nc``.
    """
    from imssa.sweep.cluster import connect, dashboard
    from imssa.sweep.merge import merge, write
    from imssa.sweep.run import Paths, execute, plan

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    work = plan(spec, out)
    failed = 0
    if work.pending:
        if client is not None:
            failed = execute(spec, work, out, client, threads)[1]
        else:
            with connect(scheduler, threads=threads, **local) as own:
                print(f"dask dashboard: {dashboard(own)}", flush=True)
                failed = execute(spec, work, out, own, threads)[1]
    else:
        print(f"sweep {spec.name}: all {len(work.points)} points are finished in {out}")
    ds = merge(spec, out)
    path = Paths(Path(out)).result(spec)
    engine = write(ds, path)
    print(f"wrote {path} (NetCDF through {engine})")
    return ds, failed


__all__ = ["Axis", "Point", "PointConfig", "Spec", "load_spec", "parse_spec", "sweep"]
