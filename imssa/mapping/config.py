"""Configuration of the weight -> conductance mapping: conductance window, tile size, encoding.

Conductances are in µS. A signed weight w becomes a pair of non-negative conductances,
g = g_min + |w| / w_max * (g_max - g_min) on the device of w's sign and g_min on the other,
so that G+ - G- = w * scale with scale = (g_max - g_min) / w_max (µS per weight unit). The
scale is kept with the mapped tensor so the digital periphery can divide it out.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Literal, get_args

from imssa.errors import ImssaError
from imssa.names import Granularity


class Encoding(str, Enum):
    """How a signed (complex or real) weight is laid out on non-negative conductances.

    POLARITY_BLOCK: the inputs are driven in both polarities (x, -x); the signed matrix M is
        split M = M+ - M- and stored as [[M+, M-], [M-, M+]], which maps (x, -x) to (Mx, -Mx).
        A complex diagonal entry becomes a 4x4 block; the SSM state is carried in both
        polarities and fed back with no sign conversion. Each weight uses four devices.
    DIFFERENTIAL: the inputs are driven once; each output has a pair of columns (G+, G-) whose
        currents are subtracted. A complex diagonal entry becomes a 2x4 block (rows x_r, x_i;
        columns y_r+, y_r-, y_i+, y_i-). Each weight uses two devices.
    """

    POLARITY_BLOCK = "polarity_block"
    DIFFERENTIAL = "differential"


#: The w_max granularities of the mapping (imssa.names' words): one per tensor or one per logical
#: output channel (an output row of a dense weight, a channel of C and D, a (channel, mode, re|im)
#: output of A_bar and B_bar). Saved configs that say "column" (the old word) read as "channel".
MAPPING_GRANULARITIES: tuple[str, ...] = ("tensor", "channel")
_OLD_WORDS = {"column": "channel"}

#: How A_bar sits on the array (DESIGN.md, "The state transition on a crossbar"): "direct"
#: holds A_bar, "increment" holds A_bar - 1 and the state register adds its own content,
#: x[k] = x[k-1] + decode(ADC((A_bar - 1) DAC(x[k-1]) + B_bar DAC(u[k]))).
Transition = Literal["direct", "increment"]
TRANSITIONS: tuple[str, ...] = get_args(Transition)
#: Conductance scales of A_bar: None follows ``granularity``; "mode" is one per mode (the column
#: group of a mode, imssa.names' word); "split" one per entry, the diagonal (a_r) and off-diagonal
#: (a_i) entries of each complex block on columns of their own (complex SSMs only).
TransitionScale = Literal["mode", "split"]
TRANSITION_SCALES: tuple[str, ...] = get_args(TransitionScale)

#: The largest elementary block (rows, cols) an encoding places; a tile must hold one.
BLOCK_SHAPE: dict[Encoding, tuple[int, int]] = {
    Encoding.POLARITY_BLOCK: (4, 4),
    Encoding.DIFFERENTIAL: (2, 4),
}


def parse_encoding(encoding: Encoding | str) -> Encoding:
    """An :class:`Encoding` from itself or its name; ImssaError naming the choices otherwise."""
    if isinstance(encoding, Encoding):
        return encoding
    try:
        return Encoding(encoding)
    except ValueError:
        choices = ", ".join(repr(e.value) for e in Encoding)
        raise ImssaError(f"unknown encoding {encoding!r}; choose one of {choices}") from None


@dataclass(frozen=True, kw_only=True)
class MappingConfig:
    """How weights become crossbar conductances.

    Attributes:
        g_min: conductance of a zero weight and of the idle device of a pair (µS), >= 0.
        g_max: conductance of the largest weight magnitude w_max (µS), > g_min.
        tile_rows: crossbar rows (word lines, driven by the inputs) per tile.
        tile_cols: crossbar columns (bit lines, read as outputs) per tile.
        encoding: SSM encoding, "polarity_block" or "differential" (dense layers are always
            differential pairs of columns).
        granularity: w_max per "tensor" or per "channel" (one per logical output, shared by
            the two devices of a pair and by both polarities).
        transition: the state transition's form, "direct" (the array holds A_bar) or
            "increment" (the array holds A_bar - 1, the state register accumulates).
        transition_scale: A_bar's conductance scales: None (as ``granularity``), "mode" (one per
            mode) or "split" (one per entry, diagonal and off-diagonal on separate columns;
            complex SSMs only, and a tile must hold the 4x8 / 2x8 block it needs).
    """

    g_min: float = 0.0
    g_max: float = 25.0
    tile_rows: int = 256
    tile_cols: int = 256
    encoding: Encoding = Encoding.POLARITY_BLOCK
    granularity: Granularity = "tensor"
    transition: Transition = "direct"
    transition_scale: TransitionScale | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoding", parse_encoding(self.encoding))
        if not (math.isfinite(self.g_min) and self.g_min >= 0.0):
            raise ImssaError(f"MappingConfig.g_min must be a finite conductance >= 0 µS, "
                             f"got {self.g_min}")
        if not (math.isfinite(self.g_max) and self.g_max > self.g_min):
            raise ImssaError(f"MappingConfig.g_max must be finite and > g_min = {self.g_min} µS, "
                             f"got {self.g_max}")
        rows, cols = BLOCK_SHAPE[self.encoding]
        for name, need in (("tile_rows", rows), ("tile_cols", cols)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < need:
                raise ImssaError(
                    f"MappingConfig.{name} must be an integer >= {need}, since a tile has to hold "
                    f"one {rows}x{cols} block of the {self.encoding.value!r} encoding; "
                    f"got {value!r}")
        for name, choices in (("granularity", MAPPING_GRANULARITIES),
                              ("transition", TRANSITIONS),
                              ("transition_scale", (None, *TRANSITION_SCALES))):
            if getattr(self, name) not in choices:
                raise ImssaError(f"MappingConfig.{name} must be one of {choices}, "
                                 f"got {getattr(self, name)!r}")

    @property
    def default_transition(self) -> bool:
        """Whether A_bar is mapped as every other tensor: direct, scaled as ``granularity``."""
        return self.transition == "direct" and self.transition_scale is None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["encoding"] = self.encoding.value
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> MappingConfig:
        """From :meth:`to_dict`; a saved config's old granularity word is translated."""
        g = d.get("granularity")
        return cls(**(d | {"granularity": _OLD_WORDS.get(g, g)} if "granularity" in d else d))
