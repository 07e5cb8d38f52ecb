"""Mapped tensors and models: conductances, scales and tile placement of every weight.

Every weight tensor of an S4D model becomes a :class:`MappedTensor`: its target conductances in a
compact layout (one array for the whole tensor, no empty cells), the scale that turns currents
back into weights, and a :class:`~imssa.mapping.tiling.TileLayout` placing every cell on a tile.
Roles and their compact layouts (H channels, N2 = N/2 complex modes, r x c one block):

    role     math block per unit (out, in)      compact g              logical matrix
    dense    W | b   (out, in + 1)              (in + 1, 2 out)        same, one group
    ssm_A    [[a_r, -a_i], [a_i, a_r]]  (2, 2)  (H, N2, r, c)          block-diagonal, 1 mode/group
    ssm_B    [[b_r], [b_i]]              (2, 1) (H, N2, r, c)          1 channel -> its N2 modes
    ssm_C    [[2 c_r, -2 c_i]]           (1, 2) (H, N2, r, c)          N2 modes -> 1 channel (sum)
    ssm_D    [[d]]                       (1, 1) (H, r, c)              1 channel -> 1 channel

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
from typing import Literal, cast

import torch
from torch import Tensor, nn

from imssa.errors import ImssaError
from imssa.mapping.config import Encoding, MappingConfig
from imssa.mapping.encoding import (
    complex_to_blocks,
    decode_currents,
    decode_signed,
    encode_drive,
    weights_to_conductances,
)
from imssa.mapping.tiling import TileLayout, pack_groups
from imssa.ssm.model import S4DModel
from imssa.ssm.s4d import DiscreteSSM

Role = Literal["dense", "ssm_A", "ssm_B", "ssm_C", "ssm_D"]
#: Applied to the column currents of every tile (a partial sum when a column spans tiles),
#: e.g. an ADC. Must act elementwise or along the last (column) axis.
TileFn = Callable[[Tensor], Tensor]

# Polarity arrays that also output -y (their output is fed back as a state).
_DOUBLED = {"dense": False, "ssm_A": True, "ssm_B": True, "ssm_C": False, "ssm_D": False}
# Logical (per unit) input and output dims of the drive for mapped_matvec.
_IN_DIMS = {"dense": 1, "ssm_A": 2, "ssm_B": 1, "ssm_C": 2, "ssm_D": 1}


@dataclass(frozen=True, eq=False)
class MappedTensor:
    """One weight tensor on the crossbar.

    Attributes:
        name: e.g. "encoder", "layers.0.A", "layers.0.mix".
        role: see the module table.
        encoding: the encoding used (dense tensors: always DIFFERENTIAL).
        g_target: compact target conductances (µS), see the module table.
        scale: µS per weight unit, (g_max - g_min) / w_max, shaped (*grid, out_unit, 1) to
            broadcast against the signed unit weights (*grid, out_unit, in_unit).
        w_max: the weight mapped to g_max, same shape as ``scale``.
        g_min, g_max: conductance window (µS).
        layout: tile placement of the logical crossbar matrix.
        has_bias: dense only: the last row is the bias, driven by 1.
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

    @property
    def doubled(self) -> bool:
        return _DOUBLED[self.role]

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
        k = torch.arange(r).view(r, 1)
        j = torch.arange(c).view(1, c)
        if self.role == "dense":
            return k.expand(r, c), j.expand(r, c)
        if self.role == "ssm_D":
            h = torch.arange(shape[0]).view(-1, 1, 1)
            return r * h + k, c * h + j
        H, N2 = shape[:2]
        h = torch.arange(H).view(H, 1, 1, 1)
        u = h * N2 + torch.arange(N2).view(1, N2, 1, 1)  # mode index
        row_base = {"ssm_A": r * u, "ssm_B": r * h, "ssm_C": r * u}[self.role]
        col_base = {"ssm_A": c * u, "ssm_B": c * u, "ssm_C": c * h}[self.role]
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
        if self.role == "ssm_C":
            return self.scale[:, 0, :, 0]
        return self.scale[..., 0]


# --- building -------------------------------------------------------------------------------

def _w_max(W: Tensor, granularity: str, role: Role) -> Tensor:
    """w_max shaped (*grid, out_unit, 1): the tensor's max |w|, or one per logical output."""
    A = W.abs()
    if granularity == "tensor":
        w = A.amax() if A.numel() else torch.ones((), dtype=W.dtype)
        w = w.expand(*W.shape[:-1], 1)
    elif role == "ssm_C":  # one output per channel, summing over all modes
        w = A.amax(dim=(1, 3), keepdim=True).expand(*W.shape[:-1], 1)
    else:
        w = A.amax(dim=-1, keepdim=True)
    return torch.where(w > 0, w, torch.ones_like(w)).contiguous()


def _group(role: Role, unit: tuple[int, int],
           compact: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
    """Number of diagonal groups and the shape of one, for :func:`pack_groups`."""
    r, c = unit
    if role == "dense":
        return 1, (compact[0], compact[1])
    if role == "ssm_A":
        return compact[0] * compact[1], (r, c)
    if role == "ssm_B":
        return compact[0], (r, c * compact[1])
    if role == "ssm_C":
        return compact[0], (r * compact[1], c)
    return compact[0], (r, c)


def map_weights(name: str, role: Role, W: Tensor, cfg: MappingConfig, *,
                has_bias: bool = False) -> MappedTensor:
    """Signed unit weights W (*grid, out_unit, in_unit) -> a :class:`MappedTensor`.

    For dense, W is the (out, in [+ 1]) matrix, bias last. Most callers want
    :func:`map_linear`, :func:`map_ssm` or :func:`map_model`.
    """
    W = W.detach()
    encoding = Encoding.DIFFERENTIAL if role == "dense" else cfg.encoding
    doubled = _DOUBLED[role]
    w_max = _w_max(W, cfg.granularity, role)
    g = weights_to_conductances(W, w_max, cfg.g_min, cfg.g_max, encoding, doubled=doubled)
    unit = (1, 2) if role == "dense" else (int(g.shape[-2]), int(g.shape[-1]))
    n_groups, group = _group(role, unit, tuple(g.shape))
    what = "weight pair" if role == "dense" else f"{unit[0]}x{unit[1]} {encoding.value} block"
    layout = pack_groups(n_groups, group, unit, cfg.tile_rows, cfg.tile_cols, what=what)
    return MappedTensor(name=name, role=role, encoding=encoding, g_target=g,
                        scale=(cfg.g_max - cfg.g_min) / w_max, w_max=w_max, g_min=cfg.g_min,
                        g_max=cfg.g_max, layout=layout, has_bias=has_bias)


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
    return map_weights(name, "dense", W, cfg, has_bias=bias is not None)


def ssm_unit_weights(ssm: DiscreteSSM) -> dict[str, Tensor]:
    """The signed real unit blocks of A_bar, B_bar, C (with the factor 2 of y = 2 Re(Cx)), D."""
    C = ssm.C
    return {
        "A": complex_to_blocks(ssm.A_bar),  # (H N2 2 2)
        "B": torch.stack([ssm.B_bar.real, ssm.B_bar.imag], -1).unsqueeze(-1),  # (H N2 2 1)
        "C": (2 * torch.stack([C.real, -C.imag], -1)).unsqueeze(-2),  # (H N2 1 2)
        "D": ssm.D.view(-1, 1, 1),  # (H 1 1)
    }


def map_ssm(prefix: str, ssm: DiscreteSSM, cfg: MappingConfig) -> dict[str, MappedTensor]:
    """A discrete SSM -> {"A", "B", "C", "D"} mapped tensors named ``prefix + "A"`` etc."""
    H, N2 = ssm.A_bar.shape
    for field in ("A_bar", "B_bar", "C"):
        t = getattr(ssm, field)
        if not torch.is_complex(t) or tuple(t.shape) != (H, N2):
            raise ImssaError(f"{prefix}: DiscreteSSM.{field} must be complex (H, N/2) = "
                             f"({H}, {N2}), got {t.dtype} {tuple(t.shape)}")
    if tuple(ssm.D.shape) != (H,) or torch.is_complex(ssm.D):
        raise ImssaError(f"{prefix}: DiscreteSSM.D must be real ({H},), got {tuple(ssm.D.shape)}")
    units = ssm_unit_weights(DiscreteSSM(*(t.detach() for t in
                                           (ssm.A_bar, ssm.B_bar, ssm.C, ssm.D))))
    return {k: map_weights(prefix + k, cast(Role, f"ssm_{k}"), W, cfg) for k, W in units.items()}


@dataclass(frozen=True, eq=False)
class MappedLayer:
    """One S4D block: the SSM's A, B, C, D and the GLU mixing layer (H -> 2H)."""

    A: MappedTensor
    B: MappedTensor
    C: MappedTensor
    D: MappedTensor
    mix: MappedTensor

    def tensors(self) -> dict[str, MappedTensor]:
        return {t.name: t for t in (self.A, self.B, self.C, self.D, self.mix)}

    def ssm(self, g: Mapping[str, Tensor] | None = None) -> DiscreteSSM:
        """The DiscreteSSM the conductances ``g`` (by tensor name; targets where missing) hold."""
        g = g or {}
        parts = [reconstruct(t, g.get(t.name)) for t in (self.A, self.B, self.C, self.D)]
        return DiscreteSSM(*parts)


@dataclass(frozen=True, eq=False)
class MappedModel:
    """A whole S4D classifier on crossbars."""

    config: MappingConfig
    encoder: MappedTensor
    layers: tuple[MappedLayer, ...]
    decoder: MappedTensor

    def tensors(self) -> dict[str, MappedTensor]:
        """All mapped tensors by name, in data-flow order."""
        out = {self.encoder.name: self.encoder}
        for layer in self.layers:
            out.update(layer.tensors())
        out[self.decoder.name] = self.decoder
        return out

    def __iter__(self) -> Iterator[MappedTensor]:
        return iter(self.tensors().values())

    def conductances(self) -> dict[str, Tensor]:
        """Target conductances (µS) by tensor name, compact layout: the tensors to perturb."""
        return {name: t.g_target for name, t in self.tensors().items()}

    def n_tiles(self) -> int:
        return sum(t.n_tiles for t in self)


def map_model(model: S4DModel, cfg: MappingConfig,
              discrete: list[DiscreteSSM] | None = None) -> MappedModel:
    """Map every weight of an S4D model onto crossbar tiles.

    Args:
        model: the trained model (its encoder, mixing and decoder layers are read).
        cfg: conductance window, tile size, encoding.
        discrete: the per-layer DiscreteSSMs to map instead of ``model.discrete()``, e.g.
            fake-quantized ones.
    """
    with torch.no_grad():
        ssms = model.discrete() if discrete is None else list(discrete)
        if len(ssms) != len(model.blocks):
            raise ImssaError(f"discrete must hold one DiscreteSSM per layer "
                             f"({len(model.blocks)}), got {len(ssms)}")
        H = model.cfg.d_model
        layers = []
        for i, (block, ssm) in enumerate(zip(model.blocks, ssms)):
            if ssm.A_bar.shape[0] != H:
                raise ImssaError(f"discrete[{i}] has {ssm.A_bar.shape[0]} channels, the model {H}")
            parts = map_ssm(f"layers.{i}.", ssm, cfg)
            lin = cast(nn.Linear, block.mix)
            mix = map_linear(f"layers.{i}.mix", lin.weight, lin.bias, cfg)
            layers.append(MappedLayer(**parts, mix=mix))
        encoder = map_linear("encoder", model.encoder.weight, model.encoder.bias, cfg)
        decoder = map_linear("decoder", model.decoder.weight, model.decoder.bias, cfg)
    return MappedModel(config=cfg, encoder=encoder, layers=tuple(layers), decoder=decoder)


# --- reading the conductances ---------------------------------------------------------------

def reconstruct_units(t: MappedTensor, g: Tensor | None = None) -> Tensor:
    """Signed unit weights (chips?, *grid, out_unit, in_unit) held by conductances ``g``."""
    g, _ = t.check_g(g)
    return decode_signed(g, t.encoding, doubled=t.doubled) / t.scale


def reconstruct(t: MappedTensor, g: Tensor | None = None) -> Tensor:
    """The weight tensor held by conductances ``g`` (targets if None), chip dim kept in front.

    dense: (out, in [+ 1]) with the bias as last column; ssm_A, ssm_B, ssm_C: (H, N2) complex
    (A_bar, B_bar, C without the factor 2); ssm_D: (H,).
    """
    W = reconstruct_units(t, g)
    if t.role == "dense":
        return W
    if t.role == "ssm_A":
        return torch.complex((W[..., 0, 0] + W[..., 1, 1]) / 2, (W[..., 1, 0] - W[..., 0, 1]) / 2)
    if t.role == "ssm_B":
        return torch.complex(W[..., 0, 0], W[..., 1, 0])
    if t.role == "ssm_C":
        return torch.complex(W[..., 0, 0] / 2, -W[..., 0, 1] / 2)
    return W[..., 0, 0]


def reconstruct_linear(t: MappedTensor, g: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Dense tensor -> (weight (chips?, out, in), bias (chips?, out) or None)."""
    if t.role != "dense":
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
    drive_ndim = {"dense": 1, "ssm_A": 3, "ssm_B": 2, "ssm_C": 3, "ssm_D": 2}[t.role]
    if v.ndim < drive_ndim + n_chip:
        raise ImssaError(f"{t.name}: drive of shape {tuple(v.shape)} has too few dims")
    if n_chip and v.shape[0] not in (1, g.shape[0]):
        raise ImssaError(f"{t.name}: with {g.shape[0]} chips the drive needs a leading chip dim "
                         f"of size {g.shape[0]} or 1, got {tuple(v.shape)}")
    z = "z" if n_chip else ""
    if n_chip and v.shape[0] == 1:
        v, zv = v[0], ""
    else:
        zv = z
    lead = v.shape[len(zv): v.ndim - drive_ndim]
    vb = v.reshape(*v.shape[:len(zv)], -1, *v.shape[v.ndim - drive_ndim:])  # batch flattened
    spec = {"dense": "br,rc->bc", "ssm_A": "bhnr,hnrc->bhnc", "ssm_B": "bhr,hnrc->bhnc",
            "ssm_C": "bhnr,hnrc->bhc", "ssm_D": "bhr,hrc->bhc"}[t.role]
    ins, out = spec.split("->")
    a, b = ins.split(",")
    eq = f"{zv}{a},{z}{b}->{z}{out}"

    fn = tile_fn if tile_fn is not None else (lambda x: x)
    if tile_fn is None or t.role not in ("dense", "ssm_C"):
        I = fn(torch.einsum(eq, vb, g))
    elif t.role == "dense":  # row bands: partial sums of each tile
        edges = t.layout.row_edges.tolist()
        I = sum(fn(torch.einsum(eq, vb[..., r0:r1], g[..., r0:r1, :]))
                for r0, r1 in zip(edges[:-1], edges[1:]))
    else:  # ssm_C: a channel's column may be cut into chunks of modes
        m = t.layout.piece_rows // g.shape[-2]
        N2 = g.shape[-3]
        I = sum(fn(torch.einsum(eq, vb[..., n0:n0 + m, :], g[..., n0:n0 + m, :, :]))
                for n0 in range(0, N2, m))
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
    complex_in = t.role in ("ssm_A", "ssm_C")
    if complex_in != torch.is_complex(x):
        raise ImssaError(f"{t.name} ({t.role}) takes a {'complex' if complex_in else 'real'} "
                         f"input, got {x.dtype}")
    if t.role == "dense":
        if t.has_bias:
            x = torch.cat([x, torch.ones_like(x[..., :1])], -1)
        pairs = x
    elif complex_in:
        pairs = torch.view_as_real(x)  # (... H N2 2)
    else:
        pairs = x.unsqueeze(-1)  # (... H 1)
    v = encode_drive(pairs, t.encoding)
    I = crossbar_currents(t, v, g, tile_fn=tile_fn)
    y = decode_currents(I, t.encoding, doubled=t.doubled) / t.output_scale()
    if t.role in ("ssm_A", "ssm_B"):
        return torch.complex(y[..., 0], y[..., 1])
    if t.role in ("ssm_C", "ssm_D"):
        return y[..., 0]
    return y


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
