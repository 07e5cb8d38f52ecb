"""Running a sweep: the work its points need, the Dask graph that does it, and the progress.

Every stage's result is computed once and shared: one training per unique training config,
one quantization per unique (training, quantization), one simulation per unique point (grid
points of equal configs share it). Outputs are keyed by content in ``DIR``::

    DIR/train/<key>/          a training run (imssa train's folder)
    DIR/quantize/<key>/       a PTQ or QAT folder
    DIR/points/<key>.json     a finished point; <key>.error.json a failed one
    DIR/logs/<stage>-<key>.log
    DIR/<spec name>.nc        the merged Dataset

The graph is Dask futures with dependencies (training -> quantization -> points); a point whose
file holds the fingerprint of its configs and model is finished and gets no task, so a rerun
after a crash or Ctrl-C computes only what is missing. A failed point (an error in it or in a
stage it needs, or workers lost to it) is recorded with its error and does not stop the others;
a rerun retries it. A worker lost mid-task is replaced and its tasks rerun elsewhere.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imssa.experiments.io import progress, read_json, write_json
from imssa.experiments.simulate.parts import file_digest
from imssa.files import check_writable
from imssa.sweep.spec import PointConfig, Spec
from imssa.sweep.tasks import point_fingerprint, point_task, quantize_task, train_task


@dataclass(frozen=True)
class Paths:
    """Where a sweep keeps its outputs (see the module docstring)."""

    root: Path

    def train(self, key: str) -> Path:
        return self.root / "train" / key

    def quantize(self, key: str) -> Path:
        return self.root / "quantize" / key

    def point(self, key: str) -> Path:
        return self.root / "points" / f"{key}.json"

    def error(self, key: str) -> Path:
        return self.root / "points" / f"{key}.error.json"

    def log(self, stage: str, key: str) -> Path:
        return self.root / "logs" / f"{stage}-{key}.log"

    def result(self, spec: Spec) -> Path:
        return self.root / f"{spec.name}.nc"

    def model(self, config: PointConfig) -> Path:
        """The model file a point's simulation programs."""
        if config.method == "qat":
            return self.quantize(config.model_key()) / "model.pt"
        return Path(config.run or self.train(config.model_key())) / "model.pt"


@dataclass(frozen=True)
class Plan:
    """The unique work of a sweep: points by key, the trainings and quantizations they need,
    and which points are finished already."""

    points: dict[str, PointConfig]
    trainings: dict[str, PointConfig]
    quantizations: dict[str, PointConfig]
    finished: frozenset[str]

    @property
    def pending(self) -> dict[str, PointConfig]:
        return {k: c for k, c in self.points.items() if k not in self.finished}


def _finished(paths: Paths, key: str, config: PointConfig, hashes: dict[Path, str | None]) -> bool:
    """Whether the point file holds this point for the current model file."""
    model = paths.model(config)
    if model not in hashes:
        hashes[model] = file_digest(model) if model.is_file() else None
    file = paths.point(key)
    if hashes[model] is None or not file.is_file():
        return False
    try:
        return read_json(file).get("fingerprint") == point_fingerprint(key, hashes[model])
    except ValueError:  # a damaged file is recomputed
        return False


def plan(spec: Spec, out: str | Path) -> Plan:
    """The work ``spec`` needs in ``out``, finished points found by their fingerprints."""
    paths = Paths(Path(out))
    points: dict[str, PointConfig] = {}
    for p in spec.points:
        points.setdefault(p.config.point_key(), p.config)
    hashes: dict[Path, str | None] = {}
    finished = frozenset(k for k, c in points.items() if _finished(paths, k, c, hashes))
    pending = [c for k, c in points.items() if k not in finished]
    return Plan(points, {c.train_key(): c for c in pending},
                {c.quant_key(): c for c in pending if c.quantizes},  # type: ignore[misc]
                finished)


def describe(spec: Spec, work: Plan, out: str | Path, limit: int = 100) -> str:
    """What ``--dry-run`` prints: the points (their axis values) and the work they need."""
    paths = Paths(Path(out))
    given = sum(c.run is not None for c in work.trainings.values())
    train_done = sum((paths.train(k) / "metrics.json").is_file() for k, c in
                     work.trainings.items() if c.run is None)
    quant_done = sum((paths.quantize(k) / "metrics.json").is_file() for k in work.quantizations)
    lines = [f"sweep {spec.name}: {len(spec.points)} points, axes "
             + (", ".join(f"{a.dim} ({len(a.values)})" for a in spec.axes) or "none")]
    for n, p in enumerate(spec.points[:limit]):
        key = p.config.point_key()
        state = "finished" if key in work.finished else "to run"
        values = ", ".join(f"{k}={v}" for k, v in spec.coords(p).items())
        lines.append(f"  {n:>5}  {values or '(base)'}  [{key}, {state}]")
    if len(spec.points) > limit:
        lines.append(f"  ... and {len(spec.points) - limit} more")
    kind = "simulations" if any(c.simulation for c in work.points.values()) else "points"
    lines.append(f"work: {len(work.trainings) - given} trainings ({train_done} finished)"
                 + (f" and {given} given runs, " if given else ", ")
                 + f"{len(work.quantizations)} quantizations ({quant_done} finished), "
                 f"{len(work.points)} {kind} ({len(work.finished)} finished, "
                 f"{len(work.pending)} to run)")
    return "\n".join(lines)


def _error_record(future: Any) -> dict[str, str]:
    err = future.exception()
    tb = future.traceback()
    return {"error": " ".join(f"{type(err).__name__}: {err}".split()),
            "traceback": "".join(traceback.format_tb(tb)) if tb is not None else ""}


def execute(spec: Spec, work: Plan, out: str | Path, client: Any, threads: int = 1,
            log: Callable[[str], None] = print) -> tuple[int, int]:
    """Submit the pending work to ``client`` and wait for it; returns (done, failed) points.

    Trainings get the highest priority, then quantizations, so points start as soon as their
    model exists. Each point's result or error is written as it finishes.
    """
    from distributed import as_completed

    paths = Paths(Path(out).resolve())  # workers elsewhere may start in other folders
    check_writable(paths.root, "sweep folder")
    trains = {k: client.submit(train_task, c, str(paths.train(k)), str(paths.log("train", k)),
                               threads, key=f"train-{k}", priority=20, retries=0)
              for k, c in work.trainings.items()}
    quants = {k: client.submit(quantize_task, c, trains[c.train_key()], str(paths.quantize(k)),
                               str(paths.log("quantize", k)), threads, key=f"quantize-{k}",
                               priority=10)
              for k, c in work.quantizations.items()}
    futures = {client.submit(point_task, c, trains[c.train_key()],
                             quants.get(c.quant_key()) if c.quantizes else None, k,
                             str(paths.point(k)), str(paths.log("point", k)), threads,
                             key=f"point-{k}"): k
               for k, c in work.pending.items()}
    done = failed = 0
    t0 = time.perf_counter()
    with progress(total=len(work.points), initial=len(work.finished), desc="points",
                  unit="pt") as bar:
        for future in as_completed(futures):
            key = futures[future]
            if future.status == "finished":
                done += 1
                paths.error(key).unlink(missing_ok=True)
            else:
                failed += 1
                record = _error_record(future)
                write_json({"key": key, **record}, paths.error(key))
                log(f"point {key} failed: {record['error']} (log: {paths.log('point', key)})")
            bar.set_postfix(failed=failed, refresh=False)
            bar.update()
            future.release()
    log(f"sweep {spec.name}: {done} points computed, {failed} failed, {len(work.finished)} "
        f"finished before, in {time.perf_counter() - t0:.1f} s")
    return done, failed
