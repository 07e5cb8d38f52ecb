"""What every verb of the ``imssa`` command shares: a parser whose errors are one line, options
whose defaults and parsing come from the config dataclasses, and the translation of a library
error's ``Config.field`` into the verb's flag (the one place where fields become flags)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from typing import Any

from imssa.errors import ImssaError
from imssa.experiments.io import parse_field

#: Most threads imssa asks for by default: its models are small, so more threads add more
#: synchronization than work (sdigits QAT epoch, shared 2-core machine: 18 s at torch's default
#: threads, 3.8 s with one).
MAX_DEFAULT_THREADS = 4
_FIELD = re.compile(r"\b([A-Z]\w*)\.([a-z_]\w*)\b")
_BOOL_ARG = re.compile(r"\b([a-z_]\w*)=True\b")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit 2) and the verb's table of config fields -> flags."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields: list[tuple[type, str, str]] = []  # (config class, field, dest)
        self.aliases: dict[str, str] = {}  # a library function's argument name -> its flag
        self.set_defaults(parser=self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        namespace, extras = super().parse_known_args(args, namespace)
        for action in self._actions:  # argparse turns `--flag=--` into [] without converting it
            if (type(action) is argparse._StoreAction and action.nargs is None
                    and getattr(namespace, action.dest, None) == []):
                self.error(f"argument {action.option_strings[0]}: expected one value")
        return namespace, extras

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")

    def flag_of(self, dest: str) -> str | None:
        for action in self._actions:
            if action.dest == dest and action.option_strings:
                return next((o for o in action.option_strings if o.startswith("--")),
                            action.option_strings[0])
        return None


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def field_default(cls: type, name: str) -> Any:
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def show(value: Any) -> str:
    """A default as the user would type it."""
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def add_field(parser: Parser, cls: type, name: str, help: str, *flags: str,
              group: Any = None, **kwargs: Any) -> None:
    """An option for field ``name`` of the dataclass ``cls``: its default is the field's, its value
    is parsed to the field's type (strict booleans, integers, numbers), and a library error naming
    ``Class.name`` names this option instead."""
    flags = flags or ("--" + name.replace("_", "-"),)
    default = field_default(cls, name)

    def convert(text: str) -> Any:
        try:
            return parse_field(cls, name, text)
        except ImssaError as err:
            message = str(err).replace(f"{cls.__name__}.{name} ", "", 1)
            raise argparse.ArgumentTypeError(message) from None

    convert.__name__ = name
    action = (group or parser).add_argument(*flags, type=convert, default=default,
                                            help=f"{help} (default: {show(default)})", **kwargs)
    parser.fields.append((cls, name, action.dest))


def build(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The config ``cls`` from the options registered for it with :func:`add_field`."""
    parser: Parser = args.parser
    values = {name: getattr(args, dest) for c, name, dest in parser.fields if c is cls}
    return cls(**values, **extra)


def translate(message: str, parser: Parser) -> str:
    """A library message with ``Class.field`` (and ``name=True``) replaced by this verb's flag."""
    registered = {f"{c.__name__}.{name}": parser.flag_of(dest) for c, name, dest in parser.fields}

    def field(match: re.Match) -> str:
        return registered.get(match[0]) or parser.flag_of(match[2]) or match[0]

    message = _FIELD.sub(field, message)
    for name, flag in parser.aliases.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}\b", flag, message)
    return one_line(_BOOL_ARG.sub(lambda m: parser.flag_of(m[1]) or m[0], message))


def default_threads() -> int:
    """$OMP_NUM_THREADS when set, else half the cores, between 1 and MAX_DEFAULT_THREADS."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, min(MAX_DEFAULT_THREADS, (os.cpu_count() or 2) // 2))


def positive_int(text: str) -> int:
    if not re.fullmatch(r"\+?\d+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return int(text)


def add_threads(parser: Parser, group: Any = None) -> None:
    """``--threads``: torch's CPU threads, set before the verb runs."""
    (group or parser).add_argument(
        "--threads", type=positive_int, default=default_threads(),
        help="CPU threads of torch (default: $OMP_NUM_THREADS, else half the cores, at most "
        f"{MAX_DEFAULT_THREADS}: imssa's small models gain little from more; here %(default)s)")


def add_compute(parser: Parser, cls: type, group: Any = None) -> None:
    """``--device`` (the torch device, field ``device`` of ``cls``) and ``--threads``."""
    add_field(parser, cls, "device", "torch device: cpu, cuda, cuda:N or auto (CUDA when "
              "available)", group=group)
    add_threads(parser, group)
