"""Tensor roles: how each kind of weight sits on a crossbar, its shape facts and methods in one
place (mapping, tiling, reading, sensing), so no code elsewhere dispatches on a role's name.

H channels, N2 = N/2 complex modes, (r, c) the rows and columns of one unit block:

    role     math block per unit (out, in)      compact g        logical matrix
    dense    W | b   (out, in + 1)              (in + 1, 2 out)  same, one group
    ssm_A    [[a_r, -a_i], [a_i, a_r]]  (2, 2)  (H, N2, r, c)    block-diagonal, 1 mode/group
    ssm_B    [[b_r], [b_i]]              (2, 1) (H, N2, r, c)    1 channel -> its N2 modes
    ssm_C    [[2 c_r, -2 c_i]]           (1, 2) (H, N2, r, c)    N2 modes -> 1 channel (sum)
    ssm_D    [[d]]                       (1, 1) (H, r, c)        1 channel -> 1 channel

Effective (sensed) arrays of an :class:`~imssa.crossbar.AnalogTile` (z chips, N batch rows, S
sensed state columns per mode: 4 = (y_r, y_i, -y_r, -y_i) for polarity, 2 for differential, P
pieces of a column that spans several tiles, each with its own ADC):

    role    drive v            effective W            sensed outputs     decoded output
    dense   (z|1, N, in)       (z, P, Rp, out)        (z, N, P, out)     (z, N, out)
    ssm_A   (z|1, N, H, N2, 2) (z, 2, H, N2, S)       (z, N, H, N2, S)   (z, N, H, N2, 2)
    ssm_B   (z|1, N, H)        (z, H, N2, S)          (z, N, H, N2, S)   (z, N, H, N2, 2)
    ssm_C   (z|1, N, H, N2, 2) (z, H, P, K = 2 m)     (z, N, H, P)       (z, N, H)
    ssm_D   (z|1, N, H)        (z, H)                 (z, N, H, 1)       (z, N, H)

Real SSMs (S4D-Real, :class:`~imssa.ssm.s4d_real.S4DRealLayer`) have N real modes instead of
N2 complex ones and the same layouts with one row per mode instead of the pair (re, im): A_bar
[[a]], B_bar [[b]], C [[c]] (no factor 2: no conjugate half), one differential pair (or a 2x2
polarity block) per mode; the state is (z, N, H, N, 1). The ``split`` transition scale puts the
diagonal (a_r) and off-diagonal (a_i) entries of a complex A_bar block on columns of their own,
each with its own conductance scale: a (4, 2) unit block (outputs y_r, y_i of the diagonal
part, then of the off-diagonal part), S = 8 (polarity) or 4 sensed columns per mode, whose
two parts are summed after their ADCs; B_bar drives the diagonal part's columns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from imssa.mapping.config import Encoding
from imssa.mapping.encoding import blocks_to_complex, complex_to_blocks

if TYPE_CHECKING:
    from imssa.mapping.mapped import MappedTensor

Product = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


class Role:
    """One kind of mapped tensor. Subclasses set the facts and override the methods that differ.

    Attributes:
        name: "dense", "ssm_A", ... (messages only).
        doubled: a polarity array also outputs -y (its output is fed back as a state).
        complex_in, complex_out: whether the logical input / output is complex.
        in_dims: logical input dims per sample (dense (in,): 1, ssm_A (H, N2): 2, ...).
        drive_ndim: dims of the row drive of ``crossbar_currents`` (ssm_A (H, N2, r): 3).
        out_ndim: decoded output dims after (chips, batch), to broadcast gains against.
        einsum: the currents' product "drive,conductances->currents" without the chip dim.
        pieces_axis: the compact axis along which a column may be cut over tiles (dense rows,
            ssm_C modes), None if a column always fits one tile.
    """

    name = ""
    doubled = False
    complex_in = complex_out = False
    in_dims = 1
    drive_ndim = 2
    out_ndim = 1
    einsum = ""
    pieces_axis: int | None = None

    def __repr__(self) -> str:
        return self.name

    # --- mapping --------------------------------------------------------------------------
    def units(self, w: Tensor) -> Tensor:
        """The tensor (a weight matrix, or A_bar, B_bar, C, D) -> signed unit blocks
        (*grid, out_unit, in_unit)."""
        raise NotImplementedError

    def weight(self, W: Tensor) -> Tensor:
        """Inverse of :meth:`units` (a leading chip dim is kept)."""
        raise NotImplementedError

    def channel_w_max(self, A: Tensor) -> Tensor:
        """|units| -> the max per logical output, shaped (*grid, out_unit, 1)."""
        return A.amax(dim=-1, keepdim=True)

    def group(self, unit: tuple[int, int], compact: tuple[int, ...]) -> tuple[int, tuple[int, int]]:
        """Number of diagonal groups and the shape of one, for ``pack_groups``."""
        return compact[0], unit

    def bases(self, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Logical (row, col) of the corner of every unit block, broadcasting to ``shape``."""
        r, c = shape[-2:]
        H, N2 = shape[:2]
        h = torch.arange(H).view(H, 1, 1, 1)
        mode = h * N2 + torch.arange(N2).view(1, N2, 1, 1)
        return self._bases(r, c, h, mode)

    def _bases(self, r: int, c: int, h: Tensor, mode: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def pairs(self, x: Tensor, has_bias: bool) -> Tensor:
        """Logical input -> the real pairs (or values) the encoding drives (..., in_unit)."""
        return torch.view_as_real(x) if self.complex_in else x.unsqueeze(-1)

    def outputs(self, y: Tensor) -> Tensor:
        """Decoded signed outputs (..., out_unit) -> the logical output."""
        return torch.complex(y[..., 0], y[..., 1]) if self.complex_out else y[..., 0]

    def output_scale(self, scale: Tensor) -> Tensor:
        """The scale (*grid, out_unit, 1) broadcasting against the decoded outputs."""
        return scale[..., 0]

    def column_pieces(self, t: MappedTensor, g: Tensor) -> list[slice]:
        """Slices of the compact ``pieces_axis`` whose currents one tile sums."""
        return [slice(None)]

    # --- sensed arrays of a tile (module table) ---------------------------------------------
    def pieces(self, t: MappedTensor) -> tuple[int, int]:
        """(P, rows or modes per piece) of a column cut over tiles."""
        return 1, 1

    def range_shape(self, t: MappedTensor, sensed: int) -> tuple[int, ...]:
        """Shape of one ADC range per sensed output (pieces of a column share it)."""
        return (t.compact_shape[0], 1)

    def layout(self, t: MappedTensor, W: Tensor) -> Tensor:
        """Folded arrays (z, *grid, in, sensed) -> this role's effective layout."""
        raise NotImplementedError

    def drive(self, t: MappedTensor, v: Tensor, W: Tensor) -> tuple[Tensor, Product]:
        """DAC outputs in the drive layout -> the shaped drive and its product with W or V."""
        raise NotImplementedError

    def widen(self, o: Tensor) -> Tensor:
        """Sensed outputs of a tensor sharing these columns (B_bar's on A_bar's state columns)
        laid out on this role's sensed columns; the same layout except for a split A_bar."""
        return o

    def decode(self, t: MappedTensor, o: Tensor) -> Tensor:
        """Sensed outputs after the ADCs -> decoded outputs (sum pieces, average (y, -y))."""
        return o.sum(-1)

    def current_scale(self, sensed_scale: Tensor) -> Tensor:
        """µS per weight unit of the tile's column currents (``AnalogTile.reference``)."""
        return sensed_scale

    def sensed(self, W: Tensor) -> int:
        """Sensed outputs (ADC conversions) per sample of effective arrays W (z, ...)."""
        return math.prod(W.shape[1:])

    def readout(self, W: Tensor) -> Tensor:
        """Unit weights (z, *grid, in, out) -> one-hot read-outs (z, *grid, reads, outputs)."""
        return W

    def column_gain(self, alpha: Tensor) -> Tensor:
        """Per-column gains (z, *grid, outputs) -> shaped like the decoded outputs."""
        return alpha


def _polarity_decode(t: MappedTensor, o: Tensor) -> Tensor:
    """Sensed (y, -y) of a doubled polarity array -> y, averaged; differential outputs as is."""
    if t.encoding is Encoding.POLARITY_BLOCK:
        n = o.shape[-1] // 2
        return (o[..., :n] - o[..., n:]) * 0.5
    return o


class Dense(Role):
    name, drive_ndim, einsum, pieces_axis = "dense", 1, "br,rc->bc", 0

    def units(self, w: Tensor) -> Tensor:
        return w

    def weight(self, W: Tensor) -> Tensor:
        return W

    def group(self, unit, compact):
        return 1, (compact[0], compact[1])

    def bases(self, shape):
        zero = torch.zeros((), dtype=torch.long)
        return zero, zero

    def pairs(self, x, has_bias):
        return torch.cat([x, torch.ones_like(x[..., :1])], -1) if has_bias else x

    def outputs(self, y):
        return y

    def column_pieces(self, t, g):
        edges = t.layout.row_edges.tolist()
        return [slice(r0, r1) for r0, r1 in zip(edges[:-1], edges[1:])]

    def pieces(self, t):
        rows = t.layout.piece_rows
        return -(-t.compact_shape[0] // rows), rows

    def range_shape(self, t, sensed):
        return (t.scale.shape[0],)

    def layout(self, t, W):
        P, rows = self.pieces(t)
        W = F.pad(W, (0, 0, 0, P * rows - W.shape[-2]))
        return W.reshape(W.shape[0], P, rows, W.shape[-1]).contiguous()

    def drive(self, t, v, W):
        if t.has_bias:
            v = torch.cat([v, torch.ones_like(v[..., :1])], -1)
        P, rows = W.shape[1:3]
        if P * rows != v.shape[-1]:
            v = F.pad(v, (0, P * rows - v.shape[-1]))

        def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
            if x.shape[0] == 1:
                return torch.einsum("npr,zpro->znpo", x[0], M)
            return torch.einsum("znpr,zpro->znpo", x, M)
        return v.unflatten(-1, (P, rows)), product  # (z|1 N P Rp)

    def decode(self, t, o):
        return o.sum(-2)

    def sensed(self, W):
        return W.shape[1] * W.shape[3]  # P pieces x outputs


class StateA(Role):
    """A_bar: mode n of channel h drives its own (y_r, y_i) state columns."""

    name, doubled, complex_in, complex_out = "ssm_A", True, True, True
    in_dims, drive_ndim, out_ndim, einsum = 2, 3, 3, "bhnr,hnrc->bhnc"

    def units(self, w):
        return complex_to_blocks(w)  # (H N2 2 2)

    def weight(self, W):
        return blocks_to_complex(W)

    def group(self, unit, compact):
        return compact[0] * compact[1], unit

    def _bases(self, r, c, h, mode):
        return r * mode, c * mode

    def range_shape(self, t, sensed):
        return (*t.compact_shape[:2], sensed)

    def layout(self, t, W):  # rows first: each row's (H N2 S) matrix is contiguous
        return W.movedim(-2, 1).contiguous()

    def drive(self, t, v, W):
        def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
            M = M.unsqueeze(2)  # (z p 1 H N2 S), p rows per mode (2: re, im; 1: real)
            out = self.widen(out) if out is not None else None
            for j in range(M.shape[1]):
                if out is None:
                    out = x[..., j, :] * M[:, j]
                else:
                    out.addcmul_(x[..., j, :], M[:, j])
            assert out is not None
            return out
        return v.unsqueeze(-1), product  # (z|1 N H N2 p 1): broadcasts over sensed columns

    def decode(self, t, o):
        return _polarity_decode(t, o)

    def sensed(self, W):
        return math.prod(W.shape[2:])  # (z p H N2 S): p rows per mode drive the same columns


class InputB(StateA):
    """B_bar: channel h's input fans out to the state columns of its N2 modes."""

    name, in_dims, drive_ndim, complex_in, einsum = "ssm_B", 1, 2, False, "bhr,hnrc->bhnc"

    def units(self, w):
        return torch.stack([w.real, w.imag], -1).unsqueeze(-1)  # (H N2 2 1)

    def weight(self, W):
        return torch.complex(W[..., 0, 0], W[..., 1, 0])

    def group(self, unit, compact):
        return compact[0], (unit[0], unit[1] * compact[1])

    def _bases(self, r, c, h, mode):
        return r * h, c * mode

    def layout(self, t, W):
        return W[..., 0, :].contiguous()  # (z H N2 S)

    def drive(self, t, v, W):
        def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
            return x[..., None, None] * M.unsqueeze(1)
        return v, product

    def sensed(self, W):
        return math.prod(W.shape[1:])


class OutputC(Role):
    """C (with the factor 2 of y = 2 Re(C x)): the N2 modes of channel h sum on its column."""

    name, complex_in, in_dims, drive_ndim = "ssm_C", True, 2, 3
    einsum, pieces_axis = "bhnr,hnrc->bhc", 1

    def units(self, w):
        return (2 * torch.stack([w.real, -w.imag], -1)).unsqueeze(-2)  # (H N2 1 2)

    def weight(self, W):
        return torch.complex(W[..., 0, 0] / 2, -W[..., 0, 1] / 2)

    def channel_w_max(self, A):  # one output per channel, summing over all modes
        return A.amax(dim=(1, 3), keepdim=True).expand(*A.shape[:-1], 1)

    def group(self, unit, compact):
        return compact[0], (unit[0] * compact[1], unit[1])

    def _bases(self, r, c, h, mode):
        return r * mode, c * h

    def output_scale(self, scale):
        return scale[:, 0, :, 0]

    def column_pieces(self, t, g):
        m = t.layout.piece_rows // g.shape[-2]
        return [slice(n0, n0 + m) for n0 in range(0, g.shape[-3], m)]

    def pieces(self, t):
        m = t.layout.piece_rows // t.compact_shape[-2]  # whole modes per piece
        return -(-t.compact_shape[1] // m), m

    def layout(self, t, W):
        P, m = self.pieces(t)
        W = F.pad(W[..., 0], (0, 0, 0, P * m - W.shape[2]))  # (z H P*m p)
        return W.reshape(W.shape[0], W.shape[1], P, -1).contiguous()

    def drive(self, t, v, W):
        P, K = W.shape[2:]
        v = v.flatten(-2)  # (z|1 N H N2*p), mode-major like W
        if P * K != v.shape[-1]:
            v = F.pad(v, (0, P * K - v.shape[-1]))

        def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
            return (x * M.unsqueeze(1)).sum(-1)
        return v.unflatten(-1, (P, K)), product

    def current_scale(self, sensed_scale):
        return sensed_scale[:, 0]  # (H 1): all modes of a channel share its output's scale

    def readout(self, W):
        return W.flatten(-3, -2)  # all modes of a channel feed its one output

    def column_gain(self, alpha):
        return alpha[..., 0]

    def sensed(self, W):
        return W.shape[1] * W.shape[2]  # H channels x P pieces


class SkipD(Role):
    name, einsum = "ssm_D", "bhr,hrc->bhc"

    def units(self, w):
        return w.view(-1, 1, 1)  # (H 1 1)

    def weight(self, W):
        return W[..., 0, 0]

    def bases(self, shape):
        r, c = shape[-2:]
        h = torch.arange(shape[0]).view(-1, 1, 1)
        return r * h, c * h

    def layout(self, t, W):
        return W[..., 0, 0].contiguous()  # (z H)

    def drive(self, t, v, W):
        def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
            return (x * M.unsqueeze(1)).unsqueeze(-1)
        return v, product

    def column_gain(self, alpha):
        return alpha[..., 0]


class SplitA(StateA):
    """A complex A_bar with its diagonal (a_r) and off-diagonal (a_i) entries on columns of their
    own: unit block (4, 2), outputs (y_r, y_i) of the diagonal part, then of the off-diagonal
    part; per-output w_max gives each entry its own conductance scale."""

    name = "ssm_A_split"

    def units(self, w):
        a_r, a_i = w.real, w.imag
        zero = torch.zeros_like(a_r)
        rows = [(a_r, zero), (zero, a_r), (zero, -a_i), (a_i, zero)]
        return torch.stack([torch.stack(r, -1) for r in rows], -2)  # (H N2 4 2)

    def weight(self, W):
        return torch.complex((W[..., 0, 0] + W[..., 1, 1]) / 2, (W[..., 3, 0] - W[..., 2, 1]) / 2)

    def outputs(self, y):
        return torch.complex(y[..., 0] + y[..., 2], y[..., 1] + y[..., 3])

    def widen(self, o):
        pol = o.shape[-1] // 2  # 2 (y, -y) for polarity, 1 for differential
        out = o.new_zeros(*o.shape[:-1], pol, 2, 2)
        out[..., 0, :] = o.unflatten(-1, (pol, 2))
        return out.flatten(-3)

    def decode(self, t, o):
        y = _polarity_decode(t, o)
        return y[..., :2] + y[..., 2:]


class _RealUnit:
    """A real SSM tensor: one (1, 1) unit block [[w]] per mode."""

    def units(self, w):
        return w[..., None, None]  # (H N 1 1)

    def weight(self, W):
        return W[..., 0, 0]


class RealStateA(_RealUnit, StateA):
    """A real A_bar: mode n of channel h drives its own state column, [[a]]."""

    name, complex_in, complex_out = "ssm_A_real", False, False


class RealInputB(_RealUnit, InputB):
    name, complex_out = "ssm_B_real", False


class RealOutputC(_RealUnit, OutputC):
    """A real C: y = sum_n c x, no conjugate half, so no factor 2."""

    name, complex_in = "ssm_C_real", False


DENSE, SSM_A, SSM_B, SSM_C, SSM_D = Dense(), StateA(), InputB(), OutputC(), SkipD()
SSM_A_SPLIT = SplitA()
#: The role of each tensor of an SSM layer (imssa.names.SSM_TENSORS), complex modes.
SSM_ROLES: dict[str, Role] = {"A_bar": SSM_A, "B_bar": SSM_B, "C": SSM_C, "D": SSM_D}
#: The same for real modes (S4D-Real).
REAL_SSM_ROLES: dict[str, Role] = {"A_bar": RealStateA(), "B_bar": RealInputB(),
                                   "C": RealOutputC(), "D": SSM_D}


def ssm_roles(real: bool, split: bool = False) -> dict[str, Role]:
    """The roles of an SSM layer's tensors: real or complex modes, A_bar split or not (a real
    A_bar has no off-diagonal entries to split; :func:`~imssa.mapping.map_ssm` refuses it)."""
    if real:
        return REAL_SSM_ROLES
    return SSM_ROLES | {"A_bar": SSM_A_SPLIT} if split else SSM_ROLES
