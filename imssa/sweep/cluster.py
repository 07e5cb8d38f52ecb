"""Where a sweep runs: a Dask ``LocalCluster`` on this machine, or any running cluster.

On this machine: one single-threaded worker process per core (``workers``), or, where CUDA GPUs
exist, ``workers_per_gpu`` worker processes per GPU, each pinned to its GPU by
``CUDA_VISIBLE_DEVICES`` (so ``device = "auto"`` in the configs is that GPU). Elsewhere
(``scheduler``): the cluster's own workers, started by dask-jobqueue on SLURM, dask-kubernetes
or the Dask helm chart on Kubernetes, or ``dask worker`` by hand (docs/architecture.md); they
need imssa installed and the sweep's folder on a shared file system.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from typing import Any

from imssa.errors import ImssaError

#: Dask's nannies set MALLOC_TRIM_THRESHOLD_=65536 in their workers, which fixes glibc's mmap
#: threshold: every large torch temporary is then a fresh mmap with its page faults, and a
#: point's simulation ran 3-6x slower in a worker than in one process (batched 64x64 matmuls:
#: 20 s against 6 s). Unset, glibc's default malloc behaviour is kept.
KEEP_MALLOC = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES entries (none on a CPU)."""
    try:
        import torch

        count = torch.cuda.device_count()
    except (ImportError, RuntimeError):
        return []
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
               if v.strip()]
    return (visible or [str(i) for i in range(count)])[:count]


def worker_specs(gpus: list[str], workers_per_gpu: int, threads: int) -> dict[str, dict[str, Any]]:
    """Dask worker specs: ``workers_per_gpu`` single-task worker processes per GPU, each pinned."""
    from distributed import Nanny

    return {f"gpu{g}-{k}": {"cls": Nanny, "options": {
        "nthreads": 1, "env": {"CUDA_VISIBLE_DEVICES": g, "OMP_NUM_THREADS": str(threads)}}}
        for g in gpus for k in range(workers_per_gpu)}


def local_cluster(workers: int | None = None, workers_per_gpu: int = 1, threads: int = 1,
                  gpus: list[str] | None = None) -> Any:
    """A LocalCluster of worker processes: per GPU (``gpus``, default the visible ones) when
    there are GPUs, else ``workers`` (default: one per core over ``threads``)."""
    import dask
    from distributed import LocalCluster

    if workers is not None and workers < 1 or workers_per_gpu < 1 or threads < 1:
        raise ImssaError("`workers`, `workers_per_gpu` and `threads` must be integers >= 1")
    gpus = visible_gpus() if gpus is None else gpus
    env = {"OMP_NUM_THREADS": str(threads)}
    common = {"threads_per_worker": 1, "processes": True, "silence_logs": logging.ERROR,
              "dashboard_address": ":8787" if _has_bokeh() else None}
    with dask.config.set(KEEP_MALLOC):  # read when each nanny starts
        if not gpus:
            n = workers or max(1, (os.cpu_count() or 1) // threads)
            return LocalCluster(n_workers=n, env=env, **common)
        cluster = LocalCluster(n_workers=0, **common)
        cluster.worker_spec.update(worker_specs(gpus, workers_per_gpu, threads))
        cluster.sync(cluster._correct_state)
    return cluster


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def dashboard(client: Any) -> str:
    """The Dask dashboard's address, or how to get one."""
    link = getattr(client, "dashboard_link", None)
    if link and (_has_bokeh() or client.scheduler_info().get("services", {}).get("dashboard")):
        return link
    return "none (the scheduler serves it once bokeh>=3.1 is installed: pip install bokeh)"


@contextlib.contextmanager
def connect(scheduler: str | None = None, **local: Any) -> Iterator[Any]:
    """A Dask client: of the cluster at ``scheduler``, or of a new :func:`local_cluster`
    (closed on exit)."""
    from distributed import Client

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise ImssaError(f"`scheduler` {scheduler}: cannot connect ({err})") from None
        with client:
            yield client
        return
    with local_cluster(**local) as cluster, Client(cluster) as client:
        yield client
