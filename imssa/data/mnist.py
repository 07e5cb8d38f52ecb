"""MNIST (LeCun et al. 1998) as pixel sequences: sMNIST and permuted sMNIST.

sMNIST feeds the 28 x 28 image one pixel per step in row-major order: 784 steps of 1 feature.
psMNIST applies one fixed permutation to the 784 positions (Le et al. 2015), which destroys the
local structure and makes long-range memory necessary. The permutation is
``torch.randperm(784, generator=torch.Generator().manual_seed(0))`` on CPU, the same on every
machine, see :func:`psmnist_permutation`.

Files are the four standard IDX files, gzip-compressed or raw, looked for in the data folder,
in ``<folder>/MNIST/raw`` (torchvision's layout) and in ``<folder>/mnist``. Missing files are
downloaded into the folder when ``download`` is set.
"""

from __future__ import annotations

import gzip
import os
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from imssa.data.common import DATA_DIR_ENV, resolve_data_dir
from imssa.data.idx import read_idx, read_idx_bytes
from imssa.errors import ImssaError
from imssa.files import atomic_write

MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
MNIST_MIRRORS: tuple[str, ...] = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
DOWNLOAD_TIMEOUT_S = 10.0
NO_DOWNLOAD_ENV = "IMSSA_NO_DOWNLOAD"
IMAGE_SIZE = 28
SEQ_LEN = IMAGE_SIZE * IMAGE_SIZE
PSMNIST_SEED = 0


@dataclass(frozen=True)
class MnistArrays:
    """MNIST as stored: uint8 images (n, 28, 28) with values 0..255 and uint8 labels (n,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    folder: Path


def mnist_dirs(root: Path) -> list[Path]:
    """The folders searched for the IDX files, in order."""
    return [root, root / "MNIST" / "raw", root / "mnist"]


def find_mnist_files(root: Path) -> dict[str, Path | None]:
    """Each file's path (uncompressed preferred, it reads faster), None where none is found."""
    found: dict[str, Path | None] = {}
    for key, stem in MNIST_FILES.items():
        found[key] = None
        for folder in mnist_dirs(root):
            hit = next((folder / n for n in (stem, stem + ".gz") if (folder / n).is_file()), None)
            if hit is not None:
                found[key] = hit
                break
    return found


def _fetch(url: str, timeout: float) -> bytes:
    """Download one URL (the only network access in imssa.data; tests replace it)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download_mnist(folder: Path, keys: list[str], timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download the named MNIST files (keys of MNIST_FILES) as ``.gz`` into ``folder``.

    Every file is fetched and parsed before any is written, each written to a temporary name
    first, so a failed download leaves no broken file (and no new folder) behind. Raises OSError
    with the reasons when no mirror gives a valid file.
    """
    payloads: dict[str, bytes] = {}
    for key in keys:
        name = MNIST_FILES[key] + ".gz"
        errors = []
        for mirror in MNIST_MIRRORS:
            try:
                payloads[name] = _fetch(mirror + name, timeout)
                _validate_download(payloads[name], name)
                break
            except (OSError, ImssaError) as err:  # URLError and timeouts are OSErrors
                payloads.pop(name, None)
                errors.append(f"{mirror + name}: {err}")
        else:
            raise OSError("; ".join(errors))
    folder.mkdir(parents=True, exist_ok=True)  # only now, so a failed download leaves no trace
    for name, payload in payloads.items():
        atomic_write(folder / name, lambda tmp, payload=payload: tmp.write_bytes(payload))


def _validate_download(payload: bytes, name: str) -> None:
    """Raise ImssaError unless ``payload`` is a gzip-compressed, complete IDX file."""
    try:
        data = gzip.decompress(payload)
    except (OSError, EOFError, zlib.error) as err:
        raise ImssaError(f"downloaded {name} is not a valid gzip file: {err}") from err
    read_idx_bytes(data, name)


def _missing_message(root: Path, missing: list[str], reason: str) -> str:
    names = ", ".join(MNIST_FILES[k] + "[.gz]" for k in missing)
    looked = ", ".join(str(d) for d in mnist_dirs(root))
    return (f"MNIST files not found: {names}. Looked in {looked}. Put the four files "
            f"{', '.join(MNIST_FILES.values())} (gzip-compressed .gz or uncompressed) into {root}, "
            f"or point imssa at a folder holding them with --data-dir DIR or the {DATA_DIR_ENV} "
            f"environment variable (they are at {MNIST_MIRRORS[0]}). Automatic download: {reason}.")


def load_mnist_raw(data_dir: str | Path | None = None, *, download: bool = True) -> MnistArrays:
    """Read the four MNIST files, downloading missing ones first if ``download``.

    Args:
        data_dir: the folder (see :func:`imssa.data.resolve_data_dir`); default
            ``$IMSSA_DATA_DIR`` or ``~/.cache/imssa/mnist``.
        download: fetch missing files from the mirror into the folder (never when the
            ``IMSSA_NO_DOWNLOAD`` environment variable is set, for offline machines).

    Returns:
        The arrays exactly as stored (uint8), checked for consistent shapes and labels 0..9.
    """
    root = resolve_data_dir(data_dir, "mnist")
    found = find_mnist_files(root)
    missing = [k for k, p in found.items() if p is None]
    if missing:
        if not download or os.environ.get(NO_DOWNLOAD_ENV):
            raise ImssaError(_missing_message(
                root, missing, f"disabled (download=False or {NO_DOWNLOAD_ENV} set)"))
        try:
            download_mnist(root, missing)
        except (OSError, ImssaError) as err:
            raise ImssaError(_missing_message(root, missing, f"failed ({err})")) from err
        found = find_mnist_files(root)
    paths = {k: p for k, p in found.items() if p is not None}
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        ipath, lpath = paths[f"{part}_images"], paths[f"{part}_labels"]
        if images.dtype != np.uint8 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ImssaError(f"{ipath} holds {images.dtype} of shape {images.shape}; MNIST images "
                             f"are uint8 (n, {IMAGE_SIZE}, {IMAGE_SIZE})")
        if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
            raise ImssaError(f"{lpath} holds {labels.dtype} of shape {labels.shape}; expected "
                             f"uint8 ({len(images)},) to match {ipath}")
        if labels.size and labels.max() > 9:
            raise ImssaError(f"{lpath} has label {labels.max()}; MNIST labels are 0..9")
    return MnistArrays(**arrays, folder=paths["train_images"].parent)


def psmnist_permutation() -> Tensor:
    """The fixed psMNIST pixel order: (784,) int64, a bijection of 0..783, seed PSMNIST_SEED."""
    generator = torch.Generator(device="cpu").manual_seed(PSMNIST_SEED)
    return torch.randperm(SEQ_LEN, generator=generator)


def images_to_sequences(images: np.ndarray, permutation: Tensor | None = None) -> Tensor:
    """uint8 images (n, 28, 28) -> float32 sequences (n, 784, 1) in [0, 1], row-major pixels.

    With ``permutation``, step k of the sequence is pixel ``permutation[k]``.
    """
    x = torch.from_numpy(images).reshape(len(images), SEQ_LEN)  # (n L) uint8
    if permutation is not None:
        x = x[:, permutation]
    return (x.to(torch.float32) / 255.0).unsqueeze(-1)  # (n L 1)
