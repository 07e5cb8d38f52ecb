"""Placing a block-structured crossbar matrix onto fixed-size tiles.

A mapped tensor is, logically, one big crossbar matrix (rows = inputs, cols = outputs) made of
G identical groups lying one after another along the diagonal: a whole dense matrix (G = 1), one
4x4 block per complex mode (A), one channel's fan-out to its modes (B), and so on. Groups share
no rows and no columns, so several of them can sit in one tile, diagonally, without mixing
inputs or summing unrelated currents. Each tile holds as many whole groups as fit; a group
larger than a tile is cut at multiples of its elementary block (a weight pair, a 4x4 block)
into pieces, one per tile, like the usual grid tiling of a dense matrix.

The result is a band structure: the logical rows are cut into row bands, the columns into column
bands, and every tile is one (row band, column band) rectangle, placed at the tile's corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from imssa.errors import ImssaError


@dataclass(frozen=True, eq=False)
class TileLayout:
    """Where the cells of one logical crossbar matrix lie on tiles.

    Attributes:
        tile_rows, tile_cols: tile size (cells).
        n_rows, n_cols: size of the logical crossbar matrix.
        row_edges: (n_row_bands + 1,) long, band boundaries in logical rows.
        col_edges: (n_col_bands + 1,) long.
        band_tile: (n_row_bands, n_col_bands) long, the tile holding each band pair, -1 if none.
        row_offset, col_offset: (n_tiles,) long, logical position of each tile's corner.
        rows_spanned, cols_spanned: (n_tiles,) long, extent of each tile's rectangle.
        piece_rows, piece_cols: the largest rectangle of one group on one tile; smaller than the
            group when the group was cut.
    """

    tile_rows: int
    tile_cols: int
    n_rows: int
    n_cols: int
    row_edges: Tensor
    col_edges: Tensor
    band_tile: Tensor
    row_offset: Tensor
    col_offset: Tensor
    rows_spanned: Tensor
    cols_spanned: Tensor
    piece_rows: int
    piece_cols: int

    @property
    def n_tiles(self) -> int:
        return int(self.row_offset.shape[0])

    def locate(self, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logical cells (rows, cols) (any shape, long) -> (tile, row in tile, col in tile)."""
        rb = torch.searchsorted(self.row_edges, rows.contiguous(), right=True) - 1
        cb = torch.searchsorted(self.col_edges, cols.contiguous(), right=True) - 1
        tile = self.band_tile[rb, cb]
        if bool((tile < 0).any()):
            raise ImssaError("a used cell lies outside every tile; the layout does not cover it")
        return tile, rows - self.row_offset[tile], cols - self.col_offset[tile]


def _edges(n_groups: int, group: int, piece: int, per_tile: int) -> Tensor:
    """Band boundaries along one axis: every ``per_tile`` groups, or every ``piece`` inside one."""
    if per_tile > 0:
        starts = torch.arange(0, n_groups, per_tile) * group
    else:
        starts = (torch.arange(n_groups).unsqueeze(1) * group
                  + torch.arange(0, group, piece).unsqueeze(0)).flatten()
    return torch.cat([starts, torch.tensor([n_groups * group])]).long()


def pack_groups(n_groups: int, group_shape: tuple[int, int], unit_shape: tuple[int, int],
                tile_rows: int, tile_cols: int, *, what: str = "block") -> TileLayout:
    """Lay ``n_groups`` groups of ``group_shape`` cells along the diagonal of tiles.

    Args:
        n_groups: G, groups on the diagonal of the logical matrix (G * rows, G * cols).
        group_shape: (rows, cols) of one group.
        unit_shape: (rows, cols) of the elementary block a group may be cut into.
        what: the block's name, for the error when a tile cannot hold one.
    """
    gr, gc = group_shape
    ur, uc = unit_shape
    if ur > tile_rows or uc > tile_cols:
        raise ImssaError(f"a {tile_rows}x{tile_cols} tile (tile_rows x tile_cols) cannot hold "
                         f"one {ur}x{uc} {what}; use tiles of at least {ur}x{uc}")
    if gr % ur or gc % uc:
        raise ImssaError(f"group {gr}x{gc} is not a whole number of {ur}x{uc} blocks")
    if gr <= tile_rows and gc <= tile_cols:
        per_tile = min(tile_rows // gr, tile_cols // gc)
        pr, pc = gr, gc
        row_edges = _edges(n_groups, gr, pr, per_tile)
        col_edges = _edges(n_groups, gc, pc, per_tile)
        n_tiles = row_edges.shape[0] - 1
        band_tile = torch.full((n_tiles, n_tiles), -1, dtype=torch.long)
        band_tile[torch.arange(n_tiles), torch.arange(n_tiles)] = torch.arange(n_tiles)
        tiles_rb = tiles_cb = torch.arange(n_tiles)
    else:
        # Cut each group into a grid of pieces; piece (i, j) of group k gets its own tile.
        pr = min(gr, tile_rows // ur * ur)
        pc = min(gc, tile_cols // uc * uc)
        row_edges = _edges(n_groups, gr, pr, 0)
        col_edges = _edges(n_groups, gc, pc, 0)
        nr, nc = -(-gr // pr), -(-gc // pc)
        k = torch.arange(n_groups).view(-1, 1, 1)
        tiles_rb = (k * nr + torch.arange(nr).view(1, -1, 1)).expand(-1, -1, nc).flatten()
        tiles_cb = (k * nc + torch.arange(nc).view(1, 1, -1)).expand(-1, nr, -1).flatten()
        band_tile = torch.full((n_groups * nr, n_groups * nc), -1, dtype=torch.long)
        band_tile[tiles_rb, tiles_cb] = torch.arange(tiles_rb.shape[0])
    return TileLayout(
        tile_rows=tile_rows, tile_cols=tile_cols, n_rows=n_groups * gr, n_cols=n_groups * gc,
        row_edges=row_edges, col_edges=col_edges, band_tile=band_tile,
        row_offset=row_edges[tiles_rb], col_offset=col_edges[tiles_cb],
        rows_spanned=row_edges[tiles_rb + 1] - row_edges[tiles_rb],
        cols_spanned=col_edges[tiles_cb + 1] - col_edges[tiles_cb],
        piece_rows=pr, piece_cols=pc)
