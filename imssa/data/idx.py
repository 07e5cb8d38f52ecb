"""Reader for the IDX format of LeCun's MNIST files (http://yann.lecun.com/exdb/mnist/).

Layout: a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the values in C order, big-endian. Files may be
gzip-compressed (name ending in ``.gz``). Every inconsistency raises :class:`ImssaError` naming
the file, because a half-downloaded MNIST file otherwise fails far from its cause.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from imssa.errors import ImssaError

# IDX type code -> numpy dtype (big-endian as stored).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse an uncompressed IDX file held in memory.

    Args:
        data: the file's bytes.
        name: the file's name, for error messages.

    Returns:
        A writable array in native byte order with the file's dimensions and type.
    """
    if len(data) < 4:
        raise ImssaError(f"IDX file {name} is truncated: {len(data)} bytes, no header")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim < 1:
        raise ImssaError(f"{name} is not an IDX file: bad magic number 0x{data[:4].hex()} "
                         "(expected 0x0000 + a type code 08/09/0B/0C/0D/0E + dimensions >= 1); "
                         "the file is corrupt or not MNIST, download it again")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ImssaError(f"IDX file {name} is truncated: {len(data)} bytes, "
                         f"shorter than its {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    count = math.prod(dims)
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise ImssaError(f"IDX file {name} is {state}: header says dims {dims} of {dtype.name} "
                         f"({expected} bytes), file has {len(data)} bytes; download it again")
    values = np.frombuffer(data, dtype=dtype, count=count, offset=header)
    # astype copies: the result is writable (torch.from_numpy wants that) and native-endian.
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzip-compressed if its name ends in ``.gz``, else raw."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise ImssaError(f"cannot read IDX file {path}: {err}; the file is corrupt or truncated, "
                         "download it again") from err
    return read_idx_bytes(data, str(path))
