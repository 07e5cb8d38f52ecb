"""Files written atomically (a crash or Ctrl-C never leaves half a file) with the mode the
user's umask gives, and write checks made before long work. Standard library only, so every
layer (data downloads, device figures, experiment results) uses the same helper."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from imssa.errors import ImssaError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    The file gets the mode the user's umask gives a new file (mkstemp's 0600 is widened), so
    results are as shareable as any other file the user writes. A folder or file that cannot be
    written raises ImssaError naming the path.
    """
    path = Path(path)
    if path.is_dir():
        raise ImssaError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ImssaError(f"cannot write {path}: {err.strerror or err}") from err
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise ImssaError(f"cannot write {path}: {err.strerror or err}") from err
    except BaseException:  # Ctrl-C included: never leave the temporary file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(folder: str | Path, what: str = "output folder") -> None:
    """Raise ImssaError now if files cannot be created in ``folder`` (or, when it does not exist
    yet, in its nearest existing parent), so that a read-only place fails before the work."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ImssaError(f"{what} {folder}: {probe} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        raise ImssaError(f"{what} {folder} is not writable ({err.strerror or err}); choose "
                         "another folder") from err


def check_figure_path(path: str | os.PathLike, field: str = "plot") -> Path:
    """Raise ImssaError now, before the work, unless matplotlib can write a figure of
    ``path``'s extension; returns the path."""
    from matplotlib.figure import Figure

    path = Path(path)
    formats = Figure().canvas.get_supported_filetypes()
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in formats:
        raise ImssaError(f"{field}: cannot write a figure as {path.name!r}; give one of the "
                         f"extensions {', '.join('.' + f for f in sorted(formats))}")
    check_writable(path.parent, f"{field} folder")
    return path
