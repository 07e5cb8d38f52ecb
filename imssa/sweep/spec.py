"""A sweep spec: base configs of the stages train -> quantize -> simulate, and axes over any of
their fields, read from TOML and checked whole before any work.

The sections are the existing configs, field for field::

    [train]                  TrainConfig, or run = "FOLDER": a finished run (a training or a QAT
                             folder of a continuous parameterization), taken as it is
    [quantize]               QuantRunConfig, plus method = "ptq" | "qat" | "none", and data_dir,
                             limit: the data of ptq / qat (default: the run's)
    [qat]                    QATConfig (points whose method is "qat")
    [simulate]               SimulationConfig (t_inference, chips, digital, split, limit, seed...)
    [simulate.memristor]     kind = "pcm" | "gaussian" | "rram" | "ideal", and that kind's fields
    [simulate.mapping]       MappingConfig
    [simulate.periphery]     PeripheryConfig
    [axes]                   "section.field" = [values]: one product axis each
    [zip.NAME]               "section.field" = [values] of equal length: one axis, stepped together

An axis is named by its dotted path (``train.model``, ``quantize.a_bits``,
``simulate.memristor.prog_noise``, ``simulate.periphery.adc_bits``, ``simulate.chips``); the grid
is the product of the axes (a zip group counts as one). ``simulate.t_inference`` as an axis sets
the times every simulation evaluates: the chips of a point are programmed once and drifted to each
time, so times are always the ``t_inference`` dimension, never separate points. TOML has no null:
write "none" where a field takes None (for a tuple field such as ``simulate.digital`` or
``simulate.per_tensor``: the empty tuple, so an axis can step between none and some; a TOML
list gives the items). Strings are read as the field's type (as on the command line), so "none",
"8" and "true" work where a field is optional, numeric or boolean.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import sys
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imssa.crossbar import PeripheryConfig
from imssa.devices import DEVICES, DeviceConfig
from imssa.errors import ImssaError
from imssa.experiments.io import parse_field
from imssa.experiments.quantize import QATConfig, QuantRunConfig
from imssa.experiments.simulate import DEFAULT_MEMRISTOR, SimulationConfig
from imssa.experiments.train import ARCHITECTURE_FIELDS, TrainConfig
from imssa.mapping import MappingConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Quantization methods of ``quantize.method``; "none" simulates the trained float model.
METHODS = ("ptq", "qat", "none")
#: QAT parameterizations whose folder holds a float model that a simulation can program.
SIMULABLE_QAT = ("continuous", "polar")
#: The sections of a spec and the config class of each (the memristor's depends on its kind).
SECTIONS: dict[str, type] = {"train": TrainConfig, "quantize": QuantRunConfig, "qat": QATConfig,
                             "simulate": SimulationConfig, "simulate.mapping": MappingConfig,
                             "simulate.periphery": PeripheryConfig}
_SUBTABLES = ("memristor", "mapping", "periphery")
_TOP = ("name", "train", "quantize", "qat", "simulate", "axes", "zip")


@dataclass(frozen=True)
class Axis:
    """One dimension of the grid: ``fields`` (dotted paths) stepped together over ``values``
    (one tuple per step, a value per field). A product axis has one field and is named by it."""

    dim: str
    fields: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class PointConfig:
    """Every config of one grid point. ``method`` is None when the spec has no quantize stage;
    ``simulation`` and ``memristor`` are None when it has no simulate stage."""

    train: TrainConfig
    method: str | None = None
    quant: QuantRunConfig | None = None
    qat: QATConfig | None = None
    simulation: SimulationConfig | None = None
    memristor: DeviceConfig | None = None
    run: str | None = None
    quant_data: tuple[str | None, int | None] = (None, None)

    @property
    def quantizes(self) -> bool:
        return self.method in ("ptq", "qat")

    def train_key(self) -> str:
        """Content key of the training: its config without the torch device and the unset
        architecture overrides (keys of runs made before those fields stay), and the folder of
        a given run (its model's bytes are checked by the point's fingerprint)."""
        train = {"train": {k: v for k, v in _without_device(dataclasses.asdict(self.train)).items()
                           if not (k in ARCHITECTURE_FIELDS and v is None)}}
        return digest(train if self.run is None else {**train, "run": self.run})

    def quant_key(self) -> str | None:
        """Content key of the quantization (None without one): training, method and configs."""
        if not self.quantizes:
            return None
        qat = dataclasses.asdict(self.qat) if self.method == "qat" and self.qat else None
        return digest({"train": self.train_key(), "method": self.method,
                       "quant": dataclasses.asdict(self.quant), "qat": qat,
                       "data": list(self.quant_data)})

    def model_key(self) -> str:
        """Key of the model the simulation programs: the QAT folder's, else the training's."""
        return self.quant_key() if self.method == "qat" else self.train_key()  # type: ignore

    def point_key(self) -> str:
        """Content key of the whole point (every stage's configs, no torch devices)."""
        sim = None if self.simulation is None else _without_device(self.simulation.to_dict())
        mem = None if self.memristor is None else self.memristor.to_dict()
        return digest({"train": self.train_key(), "quant": self.quant_key(),
                       "model": self.model_key(), "simulation": sim, "memristor": mem})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready configs (for the result's attrs and the point files)."""
        return {"train": dataclasses.asdict(self.train), "run": self.run, "method": self.method,
                "quantize": None if self.quant is None else dataclasses.asdict(self.quant),
                "qat": None if self.qat is None or self.method != "qat"
                else dataclasses.asdict(self.qat),
                "simulate": None if self.simulation is None else self.simulation.to_dict(),
                "memristor": None if self.memristor is None else self.memristor.to_dict()}


@dataclass(frozen=True)
class Point:
    """One grid point: its step along every axis and its configs."""

    index: tuple[int, ...]
    config: PointConfig


@dataclass(frozen=True)
class Spec:
    """A checked sweep: the base values of every section, the axes and every grid point."""

    name: str
    base: Mapping[str, Any]
    axes: tuple[Axis, ...]
    points: tuple[Point, ...]
    text: str

    def coords(self, point: Point) -> dict[str, Any]:
        """The value of every axis field at ``point``."""
        return {f: axis.values[i][k] for axis, i in zip(self.axes, point.index)
                for k, f in enumerate(axis.fields)}


def digest(record: Any) -> str:
    """A short content key: the first 16 hex digits of the SHA-256 of a JSON record."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _without_device(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != "device"}


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _memristor_class(section: Mapping[str, Any], where: str) -> type[DeviceConfig]:
    kind = section.get("kind", DEFAULT_MEMRISTOR)
    if kind not in DEVICES:
        raise ImssaError(f"{where}.kind must be one of {', '.join(DEVICES)}, got {kind!r}")
    return DEVICES[kind][0]


def _section_class(section: str) -> type | None:
    return SECTIONS.get(section)


def check_path(path: str) -> None:
    """Raise ImssaError unless ``path`` names a field a spec can set (the memristor's fields
    are those of any memristor kind; the kind of each point is checked when it is built)."""
    section, _, name = path.rpartition(".")
    if not section or not name:
        raise ImssaError(f"{path}: name a field as SECTION.FIELD, e.g. train.seed or "
                         "simulate.memristor.prog_noise")
    if section == "simulate.memristor":
        known = {"kind", *(f for cls, _ in DEVICES.values() for f in _fields(cls))}
        if name not in known:
            raise ImssaError(f"{path}: no memristor config has a field {name!r}; they have "
                             f"{', '.join(sorted(known))}")
        return
    cls = _section_class(section)
    if cls is None:
        raise ImssaError(f"{path}: unknown section {section!r}; sections are "
                         f"{', '.join([*SECTIONS, 'simulate.memristor'])}")
    known = [f for f in _fields(cls) if not (cls is SimulationConfig and f in _SUBTABLES)]
    known += ["method", "data_dir", "limit"] if cls is QuantRunConfig else \
        ["run"] if cls is TrainConfig else []
    if name not in known:
        sub = f" ({name} is a table: name one of its fields)" if name in _SUBTABLES else ""
        raise ImssaError(f"{path}: {cls.__name__} has no field {name!r}{sub}; it has "
                         f"{', '.join(known)}")


def _typed(cls: type, values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A section's values, unknown keys refused, strings read as their field's type, and an
    integer given for a number field made a float (so ``3`` and ``3.0`` give one content key)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise ImssaError(f"{where}.{key}: {cls.__name__} has no field {key!r}; it has "
                             f"{', '.join(fields)}")
        if value == "none" and isinstance(fields[key].default, tuple):
            out[key] = ()  # a tuple field's "none" (e.g. simulate.digital): nothing listed
        elif isinstance(value, str):
            out[key] = parse_field(cls, key, value)
        elif isinstance(value, int) and not isinstance(value, bool) \
                and float in (hints[key], *typing.get_args(hints[key])) \
                and int not in typing.get_args(hints[key]):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def _build(cls: type, values: Mapping[str, Any], where: str, **extra: Any) -> Any:
    typed = _typed(cls, values, where)
    try:
        return cls(**typed, **extra)
    except ImssaError as err:
        raise ImssaError(f"[{where}] {err}") from None
    except (TypeError, ValueError) as err:
        raise ImssaError(f"[{where}] invalid {cls.__name__} values ({err})") from None


def _given_run(values: Mapping[str, Any], cache: dict[str, TrainConfig]) -> tuple[TrainConfig, str]:
    """The TrainConfig of ``train.run``, a finished run folder (read once per folder)."""
    from imssa.experiments.io import config_from_dict, read_json
    from imssa.experiments.train import resolve_run

    other = sorted(set(values) - {"run"})
    if other:
        raise ImssaError(f"[train] run is a finished run, taken as it is: set no other train field "
                         f"(got {', '.join(other)})")
    run = values["run"]
    if not isinstance(run, str):
        raise ImssaError(f"[train] run must be a folder, got {run!r}")
    if run not in cache:
        folder = resolve_run(Path(run).expanduser())
        saved = read_json(folder / "config.json")
        cache[run] = config_from_dict(TrainConfig, saved.get("train"), f"{folder}/config.json")
    return cache[run], str(Path(run).expanduser().resolve())


_RUNS: dict[str, TrainConfig] = {}


def build_point(values: Mapping[str, Any]) -> PointConfig:
    """The configs of one point from its section values (base with the axes applied)."""
    if "run" in values["train"]:
        train, run = _given_run(values["train"], _RUNS)
    else:
        train, run = _build(TrainConfig, values["train"], "train"), None
    method = quant = qat = None
    data: tuple[Any, Any] = (None, None)
    if "quantize" in values:
        q = dict(values["quantize"])
        data = (q.pop("data_dir", None), q.pop("limit", None))
        method = q.pop("method", "ptq")
        if method not in METHODS:
            raise ImssaError(f"[quantize] method must be one of {', '.join(METHODS)}, "
                             f"got {method!r}")
        quant = _build(QuantRunConfig, q, "quantize")
        if method == "qat":
            qat = _build(QATConfig, values.get("qat", {}), "qat")
    sim = memristor = None
    if "simulate" in values:
        s = dict(values["simulate"])
        if isinstance(s.get("t_inference"), list) and any(isinstance(t, str) for t in
                                                          s["t_inference"]):
            s["t_inference"] = ",".join(map(str, s["t_inference"]))  # "1s", "1d": as text
        mem = dict(s.pop("memristor", {}))
        cls = _memristor_class(mem, "simulate.memristor")
        mem.pop("kind", None)
        memristor = _build(cls, mem, "simulate.memristor")
        mapping = _build(MappingConfig, s.pop("mapping", {}), "simulate.mapping")
        periphery = _build(PeripheryConfig, s.pop("periphery", {}), "simulate.periphery")
        sim = _build(SimulationConfig, s, "simulate", mapping=mapping, periphery=periphery)
        if method == "qat" and qat is not None and qat.parameterization not in SIMULABLE_QAT:
            raise ImssaError(f"[qat] parameterization {qat.parameterization!r} stores no float "
                             f"model to program; a simulate stage needs one of "
                             f"{', '.join(SIMULABLE_QAT)}")
    return PointConfig(train, method, quant, qat, sim, memristor, run, data)


def _check_model(config: PointConfig, cache: dict[Any, Any]) -> None:
    """What needs the model: digital parts, mapping forms and per-tensor settings against the
    model's layers and SSM kind (the preset with the train section's architecture overrides,
    built once per architecture)."""
    if config.simulation is None or config.memristor is None:
        return
    from imssa.experiments.simulate.config import check_model
    from imssa.experiments.simulate.points import settings
    from imssa.ssm import S4DModel

    name = config.train.model
    arch = config.train.architecture()
    if arch not in cache:
        cache[arch] = S4DModel(arch)
    try:
        check_model(config.simulation, cache[arch],
                    settings(config.memristor, config.simulation, None))
    except ImssaError as err:
        raise ImssaError(f"[simulate] with train.model {name}: {err}") from None


def _with(base: Mapping[str, Any], assignments: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with dotted ``assignments`` set (sections created as needed)."""
    out = json.loads(json.dumps(base))
    for path, value in assignments.items():
        *sections, name = path.split(".")
        node = out
        for s in sections:
            node = node.setdefault(s, {})
        node[name] = value
    return out


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


def _axis_values(path: str, values: Any, where: str) -> list[Any]:
    if not isinstance(values, list):
        raise ImssaError(f"{where} {path}: give a list of values, e.g. [0, 1], got {values!r}")
    if not values:
        raise ImssaError(f"{where} {path}: empty axis; give at least one value")
    return values


def _axes(doc: Mapping[str, Any]) -> list[Axis]:
    axes = []
    table = doc.get("axes", {})
    if not isinstance(table, dict):
        raise ImssaError("[axes] must be a table of FIELD = [values]")
    for path, values in _flatten(table):
        axes.append(Axis(path, (path,), tuple((v,) for v in _axis_values(path, values, "axis"))))
    groups = doc.get("zip", {})
    if not isinstance(groups, dict) or not all(isinstance(g, dict) for g in groups.values()):
        raise ImssaError("[zip] must hold tables [zip.NAME] of FIELD = [values]")
    for name, group in groups.items():
        fields = dict(_flatten(group))
        if not fields:
            raise ImssaError(f"zip group {name}: empty; give FIELD = [values] lines")
        lists = {p: _axis_values(p, v, f"zip group {name}, axis") for p, v in fields.items()}
        lengths = {p: len(v) for p, v in lists.items()}
        if len(set(lengths.values())) > 1:
            raise ImssaError(f"zip group {name}: its axes need as many values each, got "
                             + ", ".join(f"{p} {n}" for p, n in lengths.items()))
        axes.append(Axis(name, tuple(lists), tuple(zip(*lists.values()))))
    seen: set[str] = set()
    for axis in axes:
        for path in axis.fields:
            if path in seen:
                raise ImssaError(f"axis {path}: given twice")
            seen.add(path)
    if len({a.dim for a in axes}) < len(axes) or {a.dim for a in axes if len(a.fields) > 1} & seen:
        raise ImssaError("a zip group's name must differ from every axis name")
    return axes


def _describe(coords: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in coords.items())


def parse_spec(text: str, name: str = "sweep") -> Spec:
    """A spec from TOML text, checked whole: every axis field, every value of every axis (the
    other axes at their first value), then every grid point. Errors name the axis."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ImssaError(f"spec is not valid TOML: {err}") from None
    unknown = sorted(set(doc) - set(_TOP))
    if unknown:
        raise ImssaError(f"spec: unknown top-level key(s) {', '.join(unknown)}; a spec has "
                         f"{', '.join(_TOP)}")
    if not isinstance(doc.get("train"), dict):
        raise ImssaError("spec: a [train] section is needed (TrainConfig fields; [train] with "
                         "defaults is enough)")
    base = {k: doc[k] for k in ("train", "quantize", "qat", "simulate") if k in doc}
    axes = _axes(doc)
    times = [a for a in axes if a.fields == ("simulate.t_inference",)]
    if any("simulate.t_inference" in a.fields for a in axes if len(a.fields) > 1):
        raise ImssaError("zip axis simulate.t_inference: times are a dimension of every "
                         "simulation; make it a product axis or set [simulate] t_inference")
    if times:  # every simulation evaluates all times (see the module docstring)
        base = _with(base, {"simulate.t_inference": [v for (v,) in times[0].values]})
        axes.remove(times[0])
    for axis in axes:
        for path in axis.fields:
            try:
                check_path(path)
            except ImssaError as err:
                raise ImssaError(f"axis {err}") from None
            if path.split(".")[0] == "qat" and "quantize" not in base \
                    and "quantize.method" not in {f for a in axes for f in a.fields}:
                raise ImssaError(f"axis {path}: a qat axis needs [quantize] with method = 'qat'")
    cache: dict[Any, Any] = {}
    first = {f: axis.values[0][k] for axis in axes for k, f in enumerate(axis.fields)}
    try:
        _check_model(build_point(_with(base, first)), cache)
    except ImssaError as err:
        where = f" (axes at their first values: {_describe(first)})" if first else ""
        raise ImssaError(f"spec{where}: {err}") from None
    for axis in axes:
        for step in axis.values[1:]:
            assign = {**first, **dict(zip(axis.fields, step))}
            try:
                _check_model(build_point(_with(base, assign)), cache)
            except ImssaError as err:
                label = axis.fields[0] if len(axis.fields) == 1 else f"zip group {axis.dim}"
                raise ImssaError(f"axis {label} = {_describe(dict(zip(axis.fields, step)))}: "
                                 f"{err}") from None
    points = []
    for index in itertools.product(*(range(len(a.values)) for a in axes)):
        assign = {f: a.values[i][k] for a, i in zip(axes, index) for k, f in enumerate(a.fields)}
        try:
            config = build_point(_with(base, assign))
            _check_model(config, cache)
        except ImssaError as err:
            raise ImssaError(f"point {_describe(assign)}: {err}") from None
        points.append(Point(index, config))
    return Spec(name, base, tuple(axes), tuple(points), text)


def load_spec(path: str | Path) -> Spec:
    """The spec in the TOML file ``path`` (see :func:`parse_spec`); named by its ``name`` key or
    the file's stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ImssaError(f"spec {path}: cannot read it ({getattr(err, 'strerror', None) or err})"
                         ) from None
    spec = parse_spec(text, path.stem)
    name = tomllib.loads(text).get("name", path.stem)
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise ImssaError(f"spec {path}: name must be a file-name-like string, got {name!r}")
    return dataclasses.replace(spec, name=name)
