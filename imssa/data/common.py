"""What a loaded task looks like (:class:`Split`, :class:`TaskData`) and where data folders are.

A data folder is the ``data_dir`` argument, else the ``IMSSA_DATA_DIR`` environment variable,
else ``~/.cache/imssa/<dataset>``. The CLI passes ``--data-dir`` through as ``data_dir``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from imssa.errors import ImssaError

DATA_DIR_ENV = "IMSSA_DATA_DIR"
CACHE_DIR = Path("~/.cache/imssa")


def resolve_data_dir(data_dir: str | Path | None = None, dataset: str = "mnist") -> Path:
    """The folder to read ``dataset`` from (and to download into, where a download exists).

    Args:
        data_dir: an explicit folder; wins over everything else.
        dataset: names the default folder ``~/.cache/imssa/<dataset>`` used when neither
            ``data_dir`` nor ``$IMSSA_DATA_DIR`` is set.

    Returns:
        The folder, with ``~`` expanded. It need not exist.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV, "")
    if env:
        return Path(env).expanduser()
    return (CACHE_DIR / dataset).expanduser()


@dataclass(frozen=True)
class Split:
    """One split of a task, held in memory.

    Attributes:
        x: (n, L, features) float32 sequences, normalized with the training statistics.
        y: (n,) int64 class labels.
        index: (n,) int64 position of each sample in its source set (the MNIST train or test
            file, ``load_digits``, the sorted FSDD file list), to trace a sample back; None when
            the split was built by hand.
    """

    x: Tensor
    y: Tensor
    index: Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.ndim != 3 or self.x.dtype != torch.float32:
            raise ImssaError(f"Split.x must be a float32 tensor (n, L, features), "
                             f"got {self.x.dtype} of shape {tuple(self.x.shape)}")
        if self.y.ndim != 1 or self.y.dtype != torch.int64 or len(self.y) != len(self.x):
            raise ImssaError(f"Split.y must be an int64 tensor ({len(self.x)},) matching x, "
                             f"got {self.y.dtype} of shape {tuple(self.y.shape)}")
        if self.index is not None and self.index.shape != self.y.shape:
            raise ImssaError(f"Split.index must have shape {tuple(self.y.shape)}, "
                             f"got {tuple(self.index.shape)}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class TaskData:
    """A classification task as sequences: train, validation and test splits plus metadata.

    Attributes:
        name: the task, one of ``imssa.data.TASKS``.
        train, val, test: the splits; val is carved from the official training set.
        n_classes: number of classes (labels are 0 .. n_classes - 1).
        d_input: features per time step.
        seq_len: time steps L per sequence.
        norm_mean, norm_std: (d_input,) float32 per-feature statistics of the train split
            (before normalization); every split was mapped through (x - mean) / std.
        source: where the data came from (a folder, or the sklearn bundle).
    """

    name: str
    train: Split
    val: Split
    test: Split
    n_classes: int
    d_input: int
    seq_len: int
    norm_mean: Tensor
    norm_std: Tensor
    source: str = ""

    def __post_init__(self) -> None:
        for split_name in ("train", "val", "test"):
            x = getattr(self, split_name).x
            if tuple(x.shape[1:]) != (self.seq_len, self.d_input):
                raise ImssaError(f"TaskData.{split_name}.x has shape {tuple(x.shape)}, expected "
                                 f"(n, {self.seq_len}, {self.d_input})")

    def summary(self) -> dict:
        """JSON-ready facts about the task, for a run's config file."""
        return {"name": self.name, "n_train": len(self.train), "n_val": len(self.val),
                "n_test": len(self.test), "n_classes": self.n_classes, "d_input": self.d_input,
                "seq_len": self.seq_len, "norm_mean": self.norm_mean.tolist(),
                "norm_std": self.norm_std.tolist(), "source": self.source}


#: Training sequences used to calibrate static ranges (quantizers, converters), in every verb.
CALIBRATION_SAMPLES = 1000


def calibration_subset(split: Split, n: int = CALIBRATION_SAMPLES, seed: int = 0) -> Tensor:
    """The calibration inputs (min(n, len), L, features): a seeded random subset of ``split``.

    The one calibration subset of the package (PTQ, QAT, analyses and the crossbar periphery use
    it), so accuracies from two commands are comparable. The order depends on ``seed`` only.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ImssaError(f"calibration samples must be an integer >= 1, got {n!r}")
    if len(split.y) == 0:
        raise ImssaError("the training split is empty: there is nothing to calibrate on")
    order = torch.randperm(len(split.y), generator=torch.Generator().manual_seed(seed))
    return split.x[order[:n]]
