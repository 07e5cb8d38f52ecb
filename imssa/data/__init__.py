"""Datasets as sequences (batch, length, features) for the S4D classifier.

``load_task(name, data_dir)`` gives a :class:`TaskData` with normalized train, validation and
test splits. ``sdigits`` ships with scikit-learn and needs no files; ``smnist``/``psmnist`` read
the MNIST IDX files and ``fsdd`` the Free Spoken Digit recordings from a data folder (argument,
``$IMSSA_DATA_DIR``, or ``~/.cache/imssa/<dataset>``).
"""

from imssa.data.common import (
    CALIBRATION_SAMPLES,
    DATA_DIR_ENV,
    Split,
    TaskData,
    calibration_subset,
    resolve_data_dir,
)
from imssa.data.fsdd import LogMelConfig, load_fsdd_raw, log_mel_spectrogram, mel_filterbank
from imssa.data.idx import read_idx
from imssa.data.mnist import load_mnist_raw, psmnist_permutation
from imssa.data.tasks import TASKS, load_task, sdigits_test_indices

__all__ = ["CALIBRATION_SAMPLES", "DATA_DIR_ENV", "TASKS", "LogMelConfig", "Split", "TaskData",
           "calibration_subset", "load_fsdd_raw",
           "load_mnist_raw", "load_task", "log_mel_spectrogram", "mel_filterbank",
           "psmnist_permutation", "read_idx", "resolve_data_dir", "sdigits_test_indices"]
