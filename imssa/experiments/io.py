"""Files and console of the experiments: atomic result files (:mod:`imssa.files`), torch and
JSON files read with one-line errors, typed parsing of command-line values into config fields,
progress that suits the output stream, and the run environment."""

from __future__ import annotations

import dataclasses
import json
import pickle
import platform
import re
import sys
import types
import typing
import warnings
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from imssa.errors import ImssaError
from imssa.files import atomic_write

#: Seconds between the plain progress lines written when stderr is not a terminal; loops shorter
#: than this print none (a redirected log gets lines, not 85 KB of carriage returns).
PLAIN_PROGRESS_INTERVAL_S = 30.0


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save, atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def write_json(obj: Any, path: str | Path) -> None:
    """JSON with indentation, atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2) + "\n"))


def read_json(path: str | Path) -> Any:
    """A JSON file; a missing, unreadable or corrupt one raises ImssaError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as err:
        raise ImssaError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from err
    except json.JSONDecodeError as err:
        raise ImssaError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}); the file "
                         "is corrupt: restore or recreate it") from err


def parse_value(text: str) -> Any:
    """An untyped command-line value: None ("none", "null"), a bool ("true", "false"), an int,
    a float, or the string itself. Prefer :func:`parse_field` where the target field is known."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _convert(text: str, kind: Any) -> Any:
    """``text`` as the type ``kind`` (bool, int, float, str, Literal, X | None); ValueError else."""
    low = text.strip().lower()
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and low in ("none", "null"):
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _convert(text, arg)
                except ValueError:
                    pass
        raise ValueError(_describe(kind))
    if origin is typing.Literal:
        if text.strip() in args:
            return text.strip()
        raise ValueError("one of " + ", ".join(map(str, args)))
    if kind is bool:
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ValueError("a boolean (true or false)")
    if kind is int:
        if re.fullmatch(r"[+-]?\d+", text.strip()):
            return int(text)
        raise ValueError("an integer")
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("a number") from None
    if kind is str:
        return text.strip()
    return parse_value(text)  # containers and other types: the untyped reading


def _type_name(kind: Any) -> str:
    return getattr(kind, "__name__", str(kind))


def parse_field(cls: type, name: str, text: str) -> Any:
    """A command-line value for field ``name`` of the dataclass ``cls``, converted to the field's
    annotated type. Booleans are strict (true/false, yes/no, 1/0, on/off); a value that does not
    convert, or a field the class lacks, raises ImssaError naming ``Class.field``."""
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    if name not in fields:
        raise ImssaError(f"{cls.__name__} has no field {name!r}; it has {', '.join(fields)}")
    try:
        return _convert(text, hints[name])
    except ValueError as err:
        raise ImssaError(f"{cls.__name__}.{name} must be {err}, got {text!r}") from None


def _is_instance(value: Any, kind: Any) -> bool | None:
    """Whether ``value`` has the simple type ``kind`` (None: a type this check does not know)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        known = [_is_instance(value, a) for a in args]
        return True if any(known) else (None if None in known else False)
    if kind is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str)
    return None


def check_field_types(config: Any) -> None:
    """Raise ImssaError naming ``Class.field`` for a field of the dataclass ``config`` whose value
    is not of its annotated simple type (bool, int, float, str, Literal, X | None). Ints are
    accepted for floats; containers and other types are left to the class's own checks."""
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if _is_instance(value, hints[f.name]) is False:
            raise ImssaError(f"{cls.__name__}.{f.name} must be {_describe(hints[f.name])}, "
                             f"got {value!r}")


def _describe(kind: Any) -> str:
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else _describe(a) for a in args)
    if typing.get_origin(kind) is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(
        kind, _type_name(kind))


def config_from_dict(cls: type, data: Any, where: str) -> Any:
    """The dataclass ``cls`` from a dict read from a file; ``where`` names the file (and section)
    in the error for a value that is not a dict, keys the class lacks, or invalid values. Keys
    the dict lacks take the class's defaults (fields added since the file was written)."""
    if not isinstance(data, dict):
        raise ImssaError(f"{where} must hold a {cls.__name__} as a JSON object, got "
                         f"{type(data).__name__}; the file is corrupt or of another kind")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = sorted(set(data) - names)
    if extra:
        raise ImssaError(f"{where} has keys that {cls.__name__} does not know: "
                         f"{', '.join(map(str, extra))}; the file is corrupt, edited or written by "
                         "another version or kind of run")
    try:
        return cls(**data)
    except ImssaError as err:  # "Class field x", not "Class.x": the CLI maps the latter to flags
        raise ImssaError(f"{where}: {str(err).replace(f'{cls.__name__}.', f'{cls.__name__} field ')}"
                         ) from None
    except (TypeError, ValueError) as err:
        raise ImssaError(f"{where} holds invalid {cls.__name__} values ({err})") from None


def load_tensors(path: str | Path, what: str = "file",
                 remedy: str = "restore it or recompute it") -> Any:
    """``torch.load`` of a file imssa wrote (tensors, dicts, lists, numbers only: weights_only),
    onto the CPU. A missing, empty, truncated or foreign file raises one ImssaError naming it."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on foreign pickle protocols
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ImssaError(f"{what} {path} does not exist") from None
    except pickle.UnpicklingError:
        if _is_zip(path):  # a torch.save archive holding code objects: not ours
            raise ImssaError(f"{what} {path} holds objects other than tensors and plain data, so "
                             "it was not written by imssa; imssa does not load it") from None
        raise ImssaError(f"{what} {path} is not a PyTorch file (corrupt or foreign); {remedy}"
                         ) from None
    except (OSError, RuntimeError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, UnicodeDecodeError):
        raise ImssaError(f"{what} {path} is empty, truncated or not a PyTorch file; {remedy}"
                         ) from None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


class _LineStream:
    """A stream for tqdm that writes each redraw as one whole line: no carriage returns or
    cursor moves, for logs and notebooks."""

    def __init__(self, stream: Any):
        self.stream = stream

    def write(self, text: str) -> None:
        for part in re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "\n").split("\n"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A tqdm progress bar on a terminal; elsewhere (a redirected log, a notebook) plain lines,
    one every PLAIN_PROGRESS_INTERVAL_S seconds and none for shorter loops. Takes tqdm's
    arguments."""
    stream = sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        kwargs = {"mininterval": PLAIN_PROGRESS_INTERVAL_S, "delay": PLAIN_PROGRESS_INTERVAL_S,
                  **kwargs, "file": _LineStream(stream), "ascii": True}
    return tqdm(iterable, **kwargs)


def environment(device: torch.device | str) -> dict:
    """Device, library versions and date, recorded with every result."""
    device = torch.device(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine())
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
