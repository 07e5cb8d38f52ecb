"""The classification tasks as normalized sequence datasets: :func:`load_task`.

Every task yields sequences (L, features) and 10 classes:

========  =====================================  ======  ========  ==============================
task      source                                 L       features  test set
========  =====================================  ======  ========  ==============================
sdigits   sklearn's bundled 8x8 digits            64      1         fixed stratified 20 %
smnist    MNIST pixels, row-major                 784     1         official 10,000
psmnist   MNIST pixels, fixed permutation         784     1         official 10,000
fsdd      Free Spoken Digit Dataset, log-mel      63      32        takes 0-4 (300 recordings)
========  =====================================  ======  ========  ==============================

``sdigits`` needs no files and is the offline default. Pixels are scaled to [0, 1] first
(/16 for the digits, /255 for MNIST). The validation split is a seeded random fraction of the
training set; mean and standard deviation per feature are measured on the remaining training
part alone and applied to all three splits, so no test statistic leaks into the model.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from imssa.data import fsdd, mnist
from imssa.data.common import Split, TaskData
from imssa.errors import ImssaError

TASKS: tuple[str, ...] = ("sdigits", "smnist", "psmnist", "fsdd")
N_CLASSES = 10
SDIGITS_TEST_FRACTION = 0.2
SDIGITS_TEST_SEED = 0  # fixed, independent of load_task's seed: the test set never changes

Featurize = Callable[[np.ndarray], Tensor]


class _SplitArgs(NamedTuple):
    val_fraction: float
    seed: int
    limit: int | None


def load_task(name: str, data_dir: str | Path | None = None, *, val_fraction: float = 0.1,
              seed: int = 0, limit: int | None = None, download: bool = True) -> TaskData:
    """Load a task as normalized train / validation / test sequences.

    Args:
        name: one of TASKS.
        data_dir: folder holding the data files (MNIST, FSDD); default ``$IMSSA_DATA_DIR``, else
            ``~/.cache/imssa/<mnist|fsdd>``. Ignored by sdigits.
        val_fraction: share of the (limited) training pool held out for validation, in [0, 1).
        seed: seeds the shuffle of the training pool and so the train/validation split.
        limit: keep only the first ``limit`` training-pool samples after the seeded shuffle
            (before the validation split) and the first ``limit`` test samples; for fast tests
            and demos. None keeps everything.
        download: fetch missing MNIST files into the folder.

    Returns:
        TaskData with x (n, L, features) float32 and y (n,) int64 per split, and the training
        statistics used to normalize.
    """
    if name not in TASKS:
        raise ImssaError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if not isinstance(val_fraction, numbers.Real) or isinstance(val_fraction, bool) \
            or not 0.0 <= float(val_fraction) < 1.0:
        raise ImssaError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral)
                              or limit < 1):
        raise ImssaError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ImssaError(f"seed must be an integer, got {seed!r}")
    split_args = _SplitArgs(float(val_fraction), int(seed), None if limit is None else int(limit))

    if name == "sdigits":
        return _load_sdigits(split_args)
    if name in ("smnist", "psmnist"):
        raw = mnist.load_mnist_raw(data_dir, download=download)
        perm = mnist.psmnist_permutation() if name == "psmnist" else None
        return _assemble(name, raw.train_images, raw.train_labels, raw.test_images,
                         raw.test_labels, lambda a: mnist.images_to_sequences(a, perm),
                         split_args, source=str(raw.folder))
    recordings = fsdd.load_fsdd_raw(data_dir)
    is_test = recordings.takes < fsdd.TEST_TAKES
    for part, members in (("test (takes 0-4)", is_test), ("training (takes 5 and later)", ~is_test)):
        if not members.any():  # checked now, not after a whole training run
            raise ImssaError(f"fsdd: the folder {recordings.files[0].parent} has no {part} "
                             "recordings; the standard split needs both: use the complete dataset")
    cfg = fsdd.LogMelConfig()
    features = fsdd.log_mel_spectrogram(fsdd.stack_waves(recordings.waves, cfg.n_samples), cfg)
    pool_idx, test_idx = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    folder = recordings.files[0].parent
    return _assemble(name, features[pool_idx].numpy(), recordings.digits[pool_idx],
                     features[test_idx].numpy(), recordings.digits[test_idx], torch.from_numpy,
                     split_args, pool_index=pool_idx, test_index=test_idx, source=str(folder))


def sdigits_test_indices(labels: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices into ``load_digits()`` of the fixed sdigits test set (20 % per class).

    Drawn with a generator seeded SDIGITS_TEST_SEED, class by class, so the set is stratified
    and the same whatever seed ``load_task`` gets. ``labels`` defaults to ``load_digits().target``.
    """
    if labels is None:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]

        labels = load_digits().target
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    generator = torch.Generator(device="cpu").manual_seed(SDIGITS_TEST_SEED)
    chosen = []
    for c in range(N_CLASSES):
        members = torch.nonzero(y == c).flatten()
        k = round(SDIGITS_TEST_FRACTION * len(members))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return np.sort(torch.cat(chosen).numpy())


def _load_sdigits(split_args: _SplitArgs) -> TaskData:
    # imported here: sklearn takes ~0.5 s to import
    from sklearn.datasets import load_digits  # type: ignore[import-untyped]

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # (n 8 8), values 0..16 -> [0, 1]
    labels = digits.target.astype(np.int64)
    test_idx = sdigits_test_indices(labels)
    pool_idx = np.setdiff1d(np.arange(len(labels)), test_idx)

    def featurize(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).reshape(len(a), a.shape[1] * a.shape[2], 1)  # (n 64 1), row-major

    return _assemble("sdigits", images[pool_idx], labels[pool_idx], images[test_idx],
                     labels[test_idx], featurize, split_args, pool_index=pool_idx,
                     test_index=test_idx, source="sklearn.datasets.load_digits")


def _assemble(name: str, pool: np.ndarray, pool_y: np.ndarray, test: np.ndarray,
              test_y: np.ndarray, featurize: Featurize, split_args: _SplitArgs, *, source: str,
              pool_index: np.ndarray | None = None,
              test_index: np.ndarray | None = None) -> TaskData:
    """Shuffle and limit the training pool, carve validation, featurize, normalize, check.

    ``pool_index`` / ``test_index`` map positions in ``pool`` / ``test`` to the source set's
    numbering (identity when None).
    """
    val_fraction, seed, limit = split_args
    generator = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(len(pool), generator=generator).numpy()
    if limit is not None:
        order = order[:limit]
    n_val = round(val_fraction * len(order))
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if len(order) - n_val < 1:
        raise ImssaError(f"{name}: val_fraction={val_fraction} with {len(order)} training "
                         "samples leaves none to train on; lower val_fraction or raise limit")
    val_pos, train_pos = order[:n_val], order[n_val:]
    test_pos = np.arange(len(test) if limit is None else min(limit, len(test)))

    def split(data: np.ndarray, labels: np.ndarray, pos: np.ndarray,
              index: np.ndarray | None) -> Split:
        x = featurize(data[pos]) if len(pos) else featurize(data[:0])
        source_index = pos if index is None else index[pos]
        return Split(x.to(torch.float32), torch.from_numpy(labels[pos].astype(np.int64)),
                     torch.from_numpy(np.asarray(source_index, dtype=np.int64)))

    train = split(pool, pool_y, train_pos, pool_index)
    val = split(pool, pool_y, val_pos, pool_index)
    test_split = split(test, test_y, test_pos, test_index)

    mean, std = feature_stats(train.x)
    splits = [Split((s.x - mean) / std, s.y, s.index) for s in (train, val, test_split)]
    for split_name, s in zip(("train", "val", "test"), splits):
        if not torch.isfinite(s.x).all():
            raise ImssaError(f"{name}: the {split_name} split contains NaN or infinite values "
                             f"after normalization; the data in {source} is corrupt")
    return TaskData(name=name, train=splits[0], val=splits[1], test=splits[2],
                    n_classes=N_CLASSES, d_input=train.x.shape[2], seq_len=train.x.shape[1],
                    norm_mean=mean, norm_std=std, source=source)


def feature_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation per feature of (n, L, features), over samples and steps.

    Accumulated in float64 (MNIST has 42 million values per feature); a constant feature gets
    std 1, so it maps to 0 instead of NaN.
    """
    mean = x.mean(dim=(0, 1), dtype=torch.float64)  # (F)
    var = torch.zeros_like(mean)
    for chunk in x.split(4096):  # bounds the temporary of the squared deviations
        var += (chunk.to(torch.float64) - mean).square().sum(dim=(0, 1))
    std = (var / max(x.shape[0] * x.shape[1], 1)).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))
    return mean.to(torch.float32), std.to(torch.float32)
