"""The resumable store of a sweep's finished points, and the fingerprint that guards it.

Every finished point is written at once, atomically, to ``<out>.parts/<name>.json``. The folder
starts with ``manifest.json``: the fingerprint of the simulation and the record it hashes. The
record holds the *content* of what the numbers depend on (a hash of ``model.pt``, the run's
config, a hash of the data, every config), not the run's path, so a different model in the same
folder is a different simulation. A rerun with another fingerprint, a folder without a manifest
and a part of another simulation are refused: a resume never mixes numbers.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import Tensor

from imssa.errors import ImssaError
from imssa.experiments.io import read_json, write_json

MANIFEST = "manifest.json"


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensor_digest(tensors: Iterable[Tensor]) -> str:
    """SHA-256 of tensors' dtypes, shapes and values (on the CPU), as hex."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def fingerprint(record: dict[str, Any]) -> str:
    """SHA-256 of a JSON record (keys sorted), as hex."""
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def parts_folder(out: str | Path) -> Path:
    """Where the finished points of ``out`` wait until the sweep is complete."""
    return Path(str(out) + ".parts")


class PartsStore:
    """Finished points of one simulation, in ``folder`` (None: kept nowhere, nothing resumes).

    Use :meth:`open`; then :meth:`load` a point's result (None when it is not finished),
    :meth:`save` one, and :meth:`remove` the folder once the result file is written.
    """

    def __init__(self, folder: Path | None, fingerprint: str) -> None:
        self.folder, self.fingerprint = folder, fingerprint

    @classmethod
    def open(cls, out: str | Path | None, fingerprint: str, record: dict[str, Any], *,
             force: bool = False) -> PartsStore:
        """The store of ``out``: created, or reopened when it holds this simulation's parts.

        Raises:
            ImssaError: the folder holds parts of another simulation, or parts without a
                manifest (unless ``force``: then it is emptied and recomputed).
        """
        if out is None:
            return cls(None, fingerprint)
        folder = parts_folder(out)
        if folder.exists() and not folder.is_dir():
            raise ImssaError(f"{folder} is not a folder; it is where the finished points of "
                             f"`out` {out} are kept: move it away or choose another `out`")
        if force and folder.exists():
            shutil.rmtree(folder)
        manifest = folder / MANIFEST
        if manifest.is_file():
            if _read(manifest).get("fingerprint") != fingerprint:
                raise ImssaError(f"{folder} holds partial results of a different simulation "
                                 "(another model, data or settings); rerun with the same ones, "
                                 "choose another `out`, or pass `force=True` to recompute")
        elif folder.exists():
            if any(folder.glob("*.json")):
                raise ImssaError(f"{folder} holds results without a {MANIFEST}, so it cannot "
                                 "tell which simulation they belong to; delete it, choose "
                                 "another `out`, or pass `force=True` to recompute")
        if not manifest.is_file():
            try:
                write_json({"fingerprint": fingerprint, "record": record}, manifest)
            except OSError as err:
                raise ImssaError(f"`out` {out}: cannot write {manifest} ({err.strerror})") from None
        return cls(folder, fingerprint)

    def done(self, name: str) -> bool:
        return self.folder is not None and (self.folder / f"{name}.json").is_file()

    def load(self, name: str) -> dict[str, Any] | None:
        """The saved result of point ``name`` (without the fingerprint), or None."""
        if not self.done(name):
            return None
        assert self.folder is not None
        path = self.folder / f"{name}.json"
        saved = _read(path)
        if saved.get("fingerprint") != self.fingerprint:
            raise ImssaError(f"{path} belongs to another simulation than its {MANIFEST}; delete "
                             f"{self.folder} or pass `force=True` to recompute")
        return {k: v for k, v in saved.items() if k != "fingerprint"}

    def save(self, name: str, result: dict[str, Any]) -> None:
        if self.folder is not None:
            write_json({"fingerprint": self.fingerprint, **result},
                       self.folder / f"{name}.json")

    def remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        saved = read_json(path)
    except (OSError, ValueError) as err:
        raise ImssaError(f"{path} is unreadable ({err}); delete {path.parent} or pass "
                         "force=True to recompute") from None
    if not isinstance(saved, dict):
        raise ImssaError(f"{path} is not a simulation part; delete {path.parent} or pass "
                         "force=True to recompute")
    return saved
