"""Mapped tensors and models: conductances, scales and tile placement of every weight.

Every weight tensor of an S4D model becomes a :class:`MappedTensor` named by its module path
(``encoder``, ``blocks.0.ssm.A_bar``, ``blocks.0.mix``, ``decoder``; :mod:`imssa.names`): its
target conductances in a compact layout (one array for the whole tensor, no empty cells), the
scale that turns currents back into weights, its :class:`~imssa.mapping.roles.Role` (the table
of roles and compact layouts is in :mod:`imssa.mapping.roles`) and a
:class:`~imssa.mapping.tiling.TileLayout` placing every cell on a tile.

With the polarity encoding A and B output both polarities ((4, 4) and (2, 4) blocks) so the state
lives as (x_r, x_i, -x_r, -x_i); C and D read both polarities and output y once ((4, 1), (2, 1)).
With the differential encoding the blocks are A (2, 4), B (1, 4), C (2, 2), D (1, 2). Dense layers
(encoder, GLU mixing, decoder) are always differential pairs of columns, with the bias as the last
row, driven by 1.

Conductances can be swapped for programmed / drifted ones: every function that reads them takes
``g`` of shape (*compact) or (chips, *compact), and ``MappedModel.conductances()`` gives the
targets as a dict of plain tensors to perturb.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from imssa.errors import ImssaError
from imssa.mapping.config import Encoding, MappingConfig
from imssa.mapping.encoding import (
    check_finite,
    decode_currents,
    decode_signed,
    encode_drive,
    weights_to_conductances,
)
from imssa.mapping.roles import DENSE, SSM_ROLES, Role, ssm_roles
from imssa.mapping.tiling import TileLayout, pack_groups
from imssa.ssm.model import S4DModel
from imssa.ssm.s4d import DiscreteSSM

#: Applied to the column currents of every tile (a partial sum when a column spans tiles),
#: e.g. an ADC. Must act elementwise or along the last (column) axis.
TileFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True, eq=False)
class MappedTensor:
    """One weight tensor on the crossbar.

    Attributes:
        name: its module path, e.g. "encoder", "blocks.0.ssm.A_bar", "blocks.0.mix".
        role: see :mod:`imssa.mapping.roles`.
        encoding: the encoding used (dense tensors: always DIFFERENTIAL).
        g_target: compact target conductances (µS), see the roles' table.
        scale: µS per weight unit, (g_max - g_min) / w_max, shaped (*grid, out_unit, 1) to
            broadcast against the signed unit weights (*grid, out_unit, in_unit).
        w_max: the weight mapped to g_max, same shape as ``scale``.
        g_min, g_max: conductance window (µS).
        layout: tile placement of the logical crossbar matrix.
        has_bias: dense only: the last row is the bias, driven by 1.
        offset: what the periphery adds digitally to the array's weight: 1 for A_bar in the
            increment form (the array holds A_bar - 1, the state register adds x), else 0;
            :func:`reconstruct` includes it, :func:`mapped_matvec` (the array's product) does not.
    """

    name: str
    role: Role
    encoding: Encoding
    g_target: Tensor
    scale: Tensor
    w_max: Tensor
    g_min: float
    g_max: float
    layout: TileLayout
    has_bias: bool = False
    offset: float = 0.0

    @property
    def doubled(self) -> bool:
        return self.role.doubled

    @property
    def compact_shape(self) -> tuple[int, ...]:
        return tuple(self.g_target.shape)

    @property
    def n_tiles(self) -> int:
        return self.layout.n_tiles

    def cell_positions(self) -> tuple[Tensor, Tensor]:
        """Logical crossbar (row, col) of every compact cell, each of shape ``compact_shape``."""
        shape = self.compact_shape
        r, c = shape[-2:]
        row_base, col_base = self.role.bases(shape)
        k = torch.arange(r).view(r, 1)
        j = torch.arange(c).view(1, c)
        return (row_base + k).expand(shape), (col_base + j).expand(shape)

    def cell_tiles(self) -> tuple[Tensor, Tensor, Tensor]:
        """(tile, row in tile, col in tile) of every compact cell, each ``compact_shape``."""
        return self.layout.locate(*self.cell_positions())

    def used_cells(self) -> Tensor:
        """(n_tiles,) long: programmed cells per tile (every cell of a block counts)."""
        tile = self.cell_tiles()[0]
        return torch.bincount(tile.flatten(), minlength=self.n_tiles)

    def utilization(self) -> Tensor:
        """(n_tiles,) float64: used cells / (tile_rows * tile_cols)."""
        return self.used_cells().double() / (self.layout.tile_rows * self.layout.tile_cols)

    def check_g(self, g: Tensor | None) -> tuple[Tensor, int]:
        """``g`` (or the targets if None) and its number of leading chip dims (0 or 1)."""
        if g is None:
            return self.g_target, 0
        n_chip = g.ndim - self.g_target.ndim
        if n_chip not in (0, 1) or tuple(g.shape[n_chip:]) != self.compact_shape:
            raise ImssaError(f"conductances for {self.name!r} must have shape "
                             f"{self.compact_shape} or (chips, *{self.compact_shape}), "
                             f"got {tuple(g.shape)}")
        return g, n_chip

    def output_scale(self) -> Tensor:
        """Scale (µS per weight unit) broadcasting against the logical outputs of
        :func:`mapped_matvec` before their last squeeze: dense (out,), A and B (H, N2, 2),
        C and D (H, 1)."""
        return self.role.output_scale(self.scale)


# --- building -------------------------------------------------------------------------------

def _w_max(W: Tensor, granularity: str, role: Role) -> Tensor:
    """w_max shaped (*grid, out_unit, 1): the tensor's max |w|, one per unit block ("mode"),
    or one per logical output ("channel")."""
    A = W.abs()
    if granularity == "tensor":
        w = A.amax() if A.numel() else torch.ones((), dtype=W.dtype)
        w = w.expand(*W.shape[:-1], 1)
    elif granularity == "mode":
        w = A.amax(dim=(-2, -1), keepdim=True).expand(*W.shape[:-1], 1)
    else:
        w = role.channel_w_max(A)
    return torch.where(w > 0, w, torch.ones_like(w)).contiguous()


def map_weights(name: str, role: Role, W: Tensor, cfg: MappingConfig, *,
                has_bias: bool = False, granularity: str | None = None,
                offset: float = 0.0) -> MappedTensor:
    """Signed unit weights W (*grid, out_unit, in_unit) -> a :class:`MappedTensor`.

    For dense, W is the (out, in [+ 1]) matrix, bias last. Most callers want
    :func:`map_linear`, :func:`map_ssm` or :func:`map_model`. ``granularity`` overrides the
    config's (A_bar's transition scale); ``offset``: see :class:`MappedTensor`.
    """
    W = W.detach()
    check_finite(W, f"the weights of {name}")
    encoding = Encoding.DIFFERENTIAL if role is DENSE else cfg.encoding
    w_max = _w_max(W, granularity or cfg.granularity, role)
    g = weights_to_conductances(W, w_max, cfg.g_min, cfg.g_max, encoding, doubled=role.doubled)
    unit = (1, 2) if role is DENSE else (int(g.shape[-2]), int(g.shape[-1]))
    n_groups, group = role.group(unit, tuple(g.shape))
    what = "weight pair" if role is DENSE else f"{unit[0]}x{unit[1]} {encoding.value} block"
    layout = pack_groups(n_groups, group, unit, cfg.tile_rows, cfg.tile_cols, what=what)
    return MappedTensor(name=name, role=role, encoding=encoding, g_target=g,
                        scale=(cfg.g_max - cfg.g_min) / w_max, w_max=w_max, g_min=cfg.g_min,
                        g_max=cfg.g_max, layout=layout, has_bias=has_bias, offset=offset)


def map_linear(name: str, weight: Tensor, bias: Tensor | None, cfg: MappingConfig) -> MappedTensor:
    """A dense layer W (out, in), b (out,) -> differential pairs; the bias is an extra row at 1."""
    if weight.ndim != 2:
        raise ImssaError(f"{name}: weight must be a matrix (out, in), got {tuple(weight.shape)}")
    W = weight.detach()
    if bias is not None:
        if bias.shape != (W.shape[0],):
            raise ImssaError(f"{name}: bias must have shape ({W.shape[0]},), "
                             f"got {tuple(bias.shape)}")
        W = torch.cat([W, bias.detach().unsqueeze(1)], dim=1)
    return map_weights(name, DENSE, W, cfg, has_bias=bias is not None)


def map_ssm(prefix: str, ssm: DiscreteSSM, cfg: MappingConfig) -> dict[str, MappedTensor]:
    """A discrete SSM -> {"A_bar", "B_bar", "C", "D"} mapped tensors named ``prefix.A_bar`` etc.

    Complex modes (S4D) or real ones (S4D-Real), as ``A_bar``'s dtype says; C carries the factor
    2 of y = 2 Re(C x) of complex modes on the crossbar. A_bar is mapped in the config's
    transition form and scale (the increment form holds A_bar - 1).
    """
    H, M = ssm.A_bar.shape
    real = not torch.is_complex(ssm.A_bar)
    kind = "real" if real else "complex"
    for field in ("A_bar", "B_bar", "C"):
        t = getattr(ssm, field)
        if torch.is_complex(t) == real or tuple(t.shape) != (H, M):
            raise ImssaError(f"{prefix}: DiscreteSSM.{field} must be {kind} (H, modes) = "
                             f"({H}, {M}) like A_bar, got {t.dtype} {tuple(t.shape)}")
    if tuple(ssm.D.shape) != (H,) or torch.is_complex(ssm.D):
        raise ImssaError(f"{prefix}: DiscreteSSM.D must be real ({H},), got {tuple(ssm.D.shape)}")
    split = cfg.transition_scale == "split"
    if split and real:
        raise ImssaError(f"MappingConfig.transition_scale='split' needs complex modes; {prefix} "
                         "is a real SSM (no off-diagonal entries): use 'mode' or None")
    increment = cfg.transition == "increment"
    out = {}
    for k, role in ssm_roles(real, split).items():
        w = getattr(ssm, k).detach()
        if k != "A_bar":
            out[k] = map_weights(f"{prefix}.{k}", role, role.units(w), cfg)
            continue
        scale = {"mode": "mode", "split": "channel"}.get(cfg.transition_scale or "")
        out[k] = map_weights(f"{prefix}.{k}", role, role.units(w - 1 if increment else w), cfg,
                             granularity=scale, offset=1.0 if increment else 0.0)
    return out


@dataclass(frozen=True, eq=False)
class MappedModel:
    """A whole S4D classifier on crossbars: mapped tensors by module path, in graph order."""

    config: MappingConfig
    by_name: dict[str, MappedTensor]

    def tensors(self) -> dict[str, MappedTensor]:
        """All mapped tensors by name, in data-flow order."""
        return dict(self.by_name)

    def __getitem__(self, name: str) -> MappedTensor:
        if name not in self.by_name:
            raise ImssaError(f"{name!r} is not a mapped tensor; the model has "
                             f"{', '.join(self.by_name)}")
        return self.by_name[name]

    def __iter__(self) -> Iterator[MappedTensor]:
        return iter(self.by_name.values())

    @property
    def n_layers(self) -> int:
        return sum(1 for n in self.by_name if n.endswith(".mix"))

    def conductances(self) -> dict[str, Tensor]:
        """Target conductances (µS) by tensor name, compact layout: the tensors to perturb."""
        return {name: t.g_target for name, t in self.by_name.items()}

    def n_tiles(self) -> int:
        return sum(t.n_tiles for t in self)

    def ssm(self, layer: int, g: Mapping[str, Tensor] | None = None) -> DiscreteSSM:
        """The DiscreteSSM of block ``layer`` that conductances ``g`` (by tensor name; targets
        where missing) hold."""
        g = g or {}
        names = [f"blocks.{layer}.ssm.{k}" for k in SSM_ROLES]
        return DiscreteSSM(*(reconstruct(self[n], g.get(n)) for n in names))


def map_model(model: S4DModel, cfg: MappingConfig) -> MappedModel:
    """Map every weight of an S4D model onto crossbar tiles, named by module path.

    The SSM tensors are those of ``block.ssm.discrete()`` (a quantized SSM module gives its
    quantized tensors); encoder, mixing and decoder are read as ``weight`` and ``bias``.
    """
    with torch.no_grad():
        out = {"encoder": map_linear("encoder", model.encoder.weight, model.encoder.bias, cfg)}
        for i, block in enumerate(model.blocks):
            out |= {t.name: t for t in map_ssm(f"blocks.{i}.ssm", block.ssm.discrete(),
                                               cfg).values()}
            out[f"blocks.{i}.mix"] = map_linear(f"blocks.{i}.mix", block.mix.weight,
                                                block.mix.bias, cfg)
        out["decoder"] = map_linear("decoder", model.decoder.weight, model.decoder.bias, cfg)
    return MappedModel(config=cfg, by_name=out)


# --- reading the conductances ---------------------------------------------------------------

def reconstruct_units(t: MappedTensor, g: Tensor | None = None) -> Tensor:
    """Signed unit weights (chips?, *grid, out_unit, in_unit) held by conductances ``g``."""
    g, _ = t.check_g(g)
    return decode_signed(g, t.encoding, doubled=t.doubled) / t.scale


def reconstruct(t: MappedTensor, g: Tensor | None = None) -> Tensor:
    """The weight tensor held by conductances ``g`` (targets if None), chip dim kept in front.

    dense: (out, in [+ 1]) with the bias as last column; ssm_A, ssm_B, ssm_C: (H, N2) complex
    or (H, N) real (A_bar, with the increment form's offset; B_bar; C without the factor 2);
    ssm_D: (H,).
    """
    w = t.role.weight(reconstruct_units(t, g))
    return w + t.offset if t.offset else w


def reconstruct_linear(t: MappedTensor, g: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Dense tensor -> (weight (chips?, out, in), bias (chips?, out) or None)."""
    if t.role is not DENSE:
        raise ImssaError(f"reconstruct_linear needs a dense tensor, {t.name!r} is {t.role}")
    W = reconstruct(t, g)
    return (W[..., :-1], W[..., -1]) if t.has_bias else (W, None)


def crossbar_currents(t: MappedTensor, v: Tensor, g: Tensor | None = None, *,
                      tile_fn: TileFn | None = None) -> Tensor:
    """Column currents I = v @ G of a mapped tensor, in µS x input units.

    Args:
        v: row drive. dense (..., in [+ 1]); ssm_A, ssm_C (..., H, N2, r); ssm_B, ssm_D (..., H, r).
            With a chip dim in ``g``, v is (chips or 1, ...).
        g: conductances (*compact) or (chips, *compact); the targets if None.
        tile_fn: applied to each tile's column currents before tiles' partial sums are added
            (only dense and ssm_C columns can span several tiles).

    Returns:
        dense (..., 2 out); ssm_A, ssm_B (..., H, N2, c); ssm_C, ssm_D (..., H, c).
    """
    g, n_chip = t.check_g(g)
    role = t.role
    if v.ndim < role.drive_ndim + n_chip:
        raise ImssaError(f"{t.name}: drive of shape {tuple(v.shape)} has too few dims")
    if n_chip and v.shape[0] not in (1, g.shape[0]):
        raise ImssaError(f"{t.name}: with {g.shape[0]} chips the drive needs a leading chip dim "
                         f"of size {g.shape[0]} or 1, got {tuple(v.shape)}")
    z = "z" if n_chip else ""
    if n_chip and v.shape[0] == 1:
        v, zv = v[0], ""
    else:
        zv = z
    lead = v.shape[len(zv): v.ndim - role.drive_ndim]
    vb = v.reshape(*v.shape[:len(zv)], -1, *v.shape[v.ndim - role.drive_ndim:])  # batch flat
    ins, out = role.einsum.split("->")
    a, b = ins.split(",")
    eq = f"{zv}{a},{z}{b}->{z}{out}"

    if tile_fn is None or role.pieces_axis is None:
        fn = tile_fn if tile_fn is not None else (lambda x: x)
        I = fn(torch.einsum(eq, vb, g))
    else:  # a column cut over tiles: partial sums of each tile (dense rows, ssm_C modes)
        axis = role.pieces_axis
        I = sum(tile_fn(torch.einsum(eq, vb[(..., s) + (slice(None),) * (role.drive_ndim - 1 - axis)],
                                     g[(..., s) + (slice(None),) * (g.ndim - n_chip - 1 - axis)]))
                for s in role.column_pieces(t, g))
    prefix = I.shape[:len(z)]
    return I.reshape(*prefix, *lead, *I.shape[len(z) + 1:])


def mapped_matvec(t: MappedTensor, x: Tensor, g: Tensor | None = None, *,
                  tile_fn: TileFn | None = None) -> Tensor:
    """The tensor's product computed on the crossbar: drive, currents, decode, divide the scale.

    Args:
        x: logical input. dense (..., in) real -> W x + b (..., out); ssm_A (..., H, N2) complex
            -> A_bar * x; ssm_B (..., H) real -> B_bar * u (..., H, N2) complex; ssm_C
            (..., H, N2) complex -> 2 Re(sum_n C x) (..., H); ssm_D (..., H) -> D * u.
            With a chip dim in ``g``, x is (chips or 1, ...) and so is the output (chips, ...).
        g: conductances (*compact) or (chips, *compact) (µS); the targets if None.
        tile_fn: see :func:`crossbar_currents`.
    """
    role = t.role
    if role.complex_in != torch.is_complex(x):
        raise ImssaError(f"{t.name} ({role}) takes a {'complex' if role.complex_in else 'real'} "
                         f"input, got {x.dtype}")
    v = encode_drive(role.pairs(x, t.has_bias), t.encoding)
    I = crossbar_currents(t, v, g, tile_fn=tile_fn)
    return role.outputs(decode_currents(I, t.encoding, doubled=t.doubled) / t.output_scale())


# --- tiles ----------------------------------------------------------------------------------

def to_tiles(t: MappedTensor, g: Tensor | None = None, *, fill: float = 0.0) -> Tensor:
    """Compact conductances -> physical tiles (chips?, n_tiles, tile_rows, tile_cols).

    Cells no block uses hold ``fill`` (0: unprogrammed; NaN for plots).
    """
    g, n_chip = t.check_g(g)
    tile, r, c = t.cell_tiles()
    out = torch.full((*g.shape[:n_chip], t.n_tiles, t.layout.tile_rows, t.layout.tile_cols),
                     fill, dtype=g.dtype, device=g.device)
    out[..., tile.flatten(), r.flatten(), c.flatten()] = g.reshape(*g.shape[:n_chip], -1)
    return out


def from_tiles(t: MappedTensor, tiles: Tensor) -> Tensor:
    """Physical tiles (chips?, n_tiles, tile_rows, tile_cols) -> compact conductances."""
    tile, r, c = t.cell_tiles()
    lead = tiles.shape[:-3]
    return tiles[..., tile.flatten(), r.flatten(), c.flatten()].reshape(*lead, *t.compact_shape)
