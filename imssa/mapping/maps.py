"""Conductance maps: every tile of a mapped model as an xarray Dataset, for plots and reports.

xarray is imported when a map is made, so ``imssa.mapping`` itself needs only torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from imssa.errors import ImssaError
from imssa.mapping.encoding import check_finite
from imssa.mapping.mapped import MappedModel, MappedTensor, to_tiles

if TYPE_CHECKING:
    import xarray as xr


def conductance_maps(mapped: MappedModel | MappedTensor | Iterable[MappedTensor],
                     programmed: Mapping[str, Tensor] | None = None, *,
                     tensors: Iterable[str] | None = None) -> xr.Dataset:
    """Per-tile conductance maps and utilization.

    Args:
        mapped: a mapped model, one mapped tensor, or several.
        programmed: optional conductances by tensor name, compact layout, (*compact) or
            (chips, *compact), e.g. after programming and drift; every listed tensor needs one
            and the chip counts must agree.
        tensors: names to keep (all if None); a model's full map can be large.

    Returns:
        Dataset with dims (tile, row, column[, chip]):
            g_target (tile, row, column) µS, NaN where no device is used;
            g_programmed ([chip,] tile, row, column) µS, if ``programmed`` is given;
            used (tile, row, column) bool; utilization (tile) used cells / cells;
            coords tile, tensor (tile), tile_in_tensor, row_offset, col_offset (tile): the
            tile's corner in its tensor's logical crossbar matrix (rows = inputs).
    """
    import xarray as xr

    attrs: dict[str, object] = {}
    if isinstance(mapped, MappedModel):
        items = list(mapped)
        attrs |= {"mapping_config": mapped.config.to_json(),
                  "encoding": mapped.config.encoding.value}
    elif isinstance(mapped, MappedTensor):
        items = [mapped]
    else:
        items = list(mapped)
    if tensors is not None:
        wanted = list(tensors)
        known = {t.name for t in items}
        missing = [n for n in wanted if n not in known]
        if missing:
            raise ImssaError(f"tensors {missing} are not in the mapping; it has {sorted(known)}")
        items = [t for t in items if t.name in wanted]
    if not items:
        raise ImssaError("conductance_maps needs at least one mapped tensor")
    sizes = {(t.layout.tile_rows, t.layout.tile_cols) for t in items}
    if len(sizes) != 1:
        raise ImssaError(f"all tensors in one map must share the tile size, got {sorted(sizes)}")
    if programmed is not None:
        missing = [t.name for t in items if t.name not in programmed]
        if missing:
            raise ImssaError(f"programmed conductances missing for {missing}")

    target, used, prog, names, index, row_off, col_off, util = [], [], [], [], [], [], [], []
    for t in items:
        check_finite(t.g_target, f"the target conductances of {t.name}")
        if programmed is not None:
            check_finite(programmed[t.name], f"the programmed conductances of {t.name}")
        tiles = to_tiles(t, fill=float("nan"))
        target.append(tiles)
        used.append(~torch.isnan(tiles))
        if programmed is not None:
            g_p = programmed[t.name]
            _, n_chip = t.check_g(g_p)
            g_tiles = to_tiles(t, g_p, fill=float("nan"))
            prog.append(g_tiles if n_chip else g_tiles.unsqueeze(0))
        names += [t.name] * t.n_tiles
        index.append(torch.arange(t.n_tiles))
        row_off.append(t.layout.row_offset)
        col_off.append(t.layout.col_offset)
        util.append(t.utilization())

    def cat(xs: list[Tensor]) -> np.ndarray:
        return torch.cat([x.detach().cpu() for x in xs]).numpy()

    dims = ("tile", "row", "column")
    data: dict[str, tuple] = {
        "g_target": (dims, cat(target), {"units": "µS", "long_name": "target conductance"}),
        "used": (dims, cat(used), {"long_name": "cell holds a device of a mapped weight"}),
        "utilization": (("tile",), cat(util), {"units": "1", "long_name": "used cells / cells"}),
    }
    if programmed is not None:
        chips = {p.shape[0] for p in prog}
        if len(chips) != 1 and not chips <= {1, max(chips)}:
            raise ImssaError(f"programmed conductances disagree on the number of chips: {chips}")
        n = max(chips)
        g_prog = np.concatenate([p.detach().cpu().expand(n, *p.shape[1:]).numpy() for p in prog],
                                1)
        data["g_programmed"] = (("chip", *dims), g_prog, {"units": "µS",
                                                       "long_name": "programmed conductance"})
    n_tiles = len(names)
    rows, cols = sizes.pop()
    coords = {"tile": np.arange(n_tiles), "row": np.arange(rows), "column": np.arange(cols),
              "tensor": ("tile", np.array(names)),
              "tile_in_tensor": ("tile", cat(index)),
              "row_offset": ("tile", cat(row_off)), "col_offset": ("tile", cat(col_off))}
    attrs |= {"g_units": "µS", "g_min": items[0].g_min, "g_max": items[0].g_max,
              "layout": "rows = inputs (word lines), columns = outputs (bit lines)"}
    return xr.Dataset(data, coords=coords, attrs=attrs)
