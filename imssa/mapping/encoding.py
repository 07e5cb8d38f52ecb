"""Signed and complex weights as non-negative crossbar arrays, and back.

A complex diagonal entry a = a_r + i a_i acts on the real pair (x_r, x_i) as the 2x2 block
M = [[a_r, -a_i], [a_i, a_r]] (``complex_to_blocks``). A signed matrix W (out, in) is split
W = W+ - W- with W+, W- >= 0 and laid out on the crossbar by one of two encodings (see
:class:`~imssa.mapping.config.Encoding`).

Layout convention (all of ``imssa.mapping``): a crossbar array is (rows, cols) = (inputs,
outputs). Rows are word lines driven by the input voltages v, columns are bit lines whose
currents are I = v @ G (Kirchhoff). Signed matrices are kept in the usual (out, in) order.

For W (out, in) the non-negative array P (rows, cols) is
    polarity, doubled output:  rows (x, -x), cols (y, -y):  P = [[W+^T, W-^T], [W-^T, W+^T]]
    polarity, single output:   rows (x, -x), cols y:        P = [[W+^T], [W-^T]]
    differential:              rows x, cols (y_0+, y_0-, y_1+, y_1-, ...) interleaved pairs.
Every decode below is linear and blind to a constant added to all cells, so it applies to the
conductances g = g_min + P * (g_max - g_min) / w_max directly; dividing by the scale gives W.
QS4D's 4x4 conductance block (its exact published layout could not be checked) is the
polarity encoding of one complex diagonal entry.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from imssa.errors import ImssaError
from imssa.mapping.config import Encoding, parse_encoding


def check_finite(x: Tensor, what: str) -> None:
    """ImssaError unless every value of ``x`` is finite: a NaN would make w_max fall back to 1
    and clip the other weights, an infinity map every cell to g_min."""
    if not bool(torch.isfinite(x).all()):
        raise ImssaError(f"{what} contain NaN or infinite values; a crossbar can only hold "
                         "finite weights")


def complex_to_blocks(a: Tensor) -> Tensor:
    """Complex entries (...) -> real 2x2 blocks (..., 2, 2) M = [[a_r, -a_i], [a_i, a_r]]."""
    if not torch.is_complex(a):
        raise ImssaError(f"complex_to_blocks needs a complex tensor, got {a.dtype}")
    a_r, a_i = a.real, a.imag
    return torch.stack([torch.stack([a_r, -a_i], -1), torch.stack([a_i, a_r], -1)], -2)


def blocks_to_complex(M: Tensor) -> Tensor:
    """Real 2x2 blocks (..., 2, 2) -> complex (...); the two copies of a_r and a_i are averaged
    (exact when the block has the rotation-scaling form)."""
    if M.shape[-2:] != (2, 2):
        raise ImssaError("blocks_to_complex needs blocks of shape (..., 2, 2), "
                         f"got {tuple(M.shape)}")
    return torch.complex((M[..., 0, 0] + M[..., 1, 1]) / 2, (M[..., 1, 0] - M[..., 0, 1]) / 2)


def split_signed(W: Tensor) -> tuple[Tensor, Tensor]:
    """W = W+ - W- with W+ = max(W, 0), W- = max(-W, 0)."""
    return W.clamp(min=0), (-W).clamp(min=0)


def encode_signed(W: Tensor, encoding: Encoding | str, *, doubled: bool = True) -> Tensor:
    """Signed matrices W (..., out, in) -> non-negative crossbar arrays P (..., rows, cols).

    Shapes: polarity doubled (2 in, 2 out); polarity single (2 in, out); differential
    (in, 2 out). ``doubled`` selects whether a polarity array also outputs -Wx; it is ignored
    by the differential encoding.
    """
    encoding = parse_encoding(encoding)
    Wp, Wn = split_signed(W)
    Pp, Pn = Wp.mT, Wn.mT  # (... in out)
    if encoding is Encoding.DIFFERENTIAL:
        return torch.stack([Pp, Pn], -1).flatten(-2)  # (... in 2out), columns y_j+ y_j-
    if doubled:
        return torch.cat([torch.cat([Pp, Pn], -1), torch.cat([Pn, Pp], -1)], -2)  # (... 2in 2out)
    return torch.cat([Pp, Pn], -2)  # (... 2in out)


def decode_signed(P: Tensor, encoding: Encoding | str, *, doubled: bool = True) -> Tensor:
    """Inverse of :func:`encode_signed`: arrays (..., rows, cols) -> W (..., out, in).

    The polarity-doubled array stores each weight twice; the two copies are averaged.
    """
    encoding = parse_encoding(encoding)
    rows, cols = P.shape[-2:]
    if encoding is Encoding.DIFFERENTIAL:
        if cols % 2:
            raise ImssaError(f"a differential array needs an even number of columns, got {cols}")
        return (P[..., 0::2] - P[..., 1::2]).mT
    if rows % 2 or (doubled and cols % 2):
        raise ImssaError(f"a polarity array needs an even number of rows (and columns when "
                         f"doubled), got {rows}x{cols}")
    n_in = rows // 2
    if not doubled:
        return (P[..., :n_in, :] - P[..., n_in:, :]).mT
    n_out = cols // 2
    top = P[..., :n_in, :n_out] - P[..., n_in:, :n_out]
    bottom = P[..., n_in:, n_out:] - P[..., :n_in, n_out:]
    return ((top + bottom) / 2).mT


def encode_drive(x: Tensor, encoding: Encoding | str) -> Tensor:
    """Real inputs x (..., in) -> row drive v (..., rows): (x, -x) for polarity, x otherwise."""
    if parse_encoding(encoding) is Encoding.POLARITY_BLOCK:
        return torch.cat([x, -x], -1)
    return x


def decode_currents(I: Tensor, encoding: Encoding | str, *, doubled: bool = True) -> Tensor:
    """Column currents I (..., cols) -> signed outputs (..., out), still times the scale.

    Polarity doubled: (I_y - I_-y) / 2; polarity single: I; differential: I+ - I-.
    """
    encoding = parse_encoding(encoding)
    if encoding is Encoding.DIFFERENTIAL:
        return I[..., 0::2] - I[..., 1::2]
    if doubled:
        n_out = I.shape[-1] // 2
        return (I[..., :n_out] - I[..., n_out:]) / 2
    return I


def weights_to_conductances(W: Tensor, w_max: Tensor | float, g_min: float, g_max: float,
                            encoding: Encoding | str, *, doubled: bool = True) -> Tensor:
    """Signed W (..., out, in) -> conductances g (..., rows, cols) in µS within [g_min, g_max].

    g = g_min + |w| / w_max * (g_max - g_min) on the device of w's sign, g_min on the other.
    ``w_max`` is a scalar or broadcasts against W as (..., out, 1) (one per output column).
    Weights beyond w_max are clipped to g_max.
    """
    w_max = torch.as_tensor(w_max, dtype=W.dtype, device=W.device)
    P = encode_signed(W / w_max, encoding, doubled=doubled)
    return (g_min + P * (g_max - g_min)).clamp(g_min, g_max)


def conductances_to_weights(g: Tensor, scale: Tensor | float, encoding: Encoding | str, *,
                            doubled: bool = True) -> Tensor:
    """Conductances g (..., rows, cols) µS -> W (..., out, in) = decode(g) / scale.

    ``scale`` = (g_max - g_min) / w_max in µS per weight unit, scalar or (..., out, 1).
    """
    return decode_signed(g, encoding, doubled=doubled) / scale


def complex_to_conductances(a: Tensor, encoding: Encoding | str, g_min: float, g_max: float,
                            w_max: float | None = None) -> tuple[Tensor, Tensor]:
    """Complex diagonal entries (H, N/2) -> conductance blocks and their scale.

    Args:
        a: (...) complex, e.g. A_bar (H, N/2).
        w_max: the weight that maps to g_max; max(|a_r|, |a_i|) over the tensor if None.

    Returns:
        g: (..., 4, 4) polarity or (..., 2, 4) differential conductances (µS), rows
            (x_r, x_i[, -x_r, -x_i]), columns (y_r, y_i, -y_r, -y_i) or (y_r+, y_r-, y_i+, y_i-).
        scale: () µS per weight unit, (g_max - g_min) / w_max.
    """
    check_finite(a, "the complex weights")
    if w_max is not None and not math.isfinite(w_max):
        raise ImssaError(f"w_max must be finite, got {w_max}")
    M = complex_to_blocks(a)  # (... 2 2)
    if w_max is None:
        w_max = float(M.abs().amax()) if M.numel() else 1.0
    if not w_max > 0:
        w_max = 1.0
    g = weights_to_conductances(M, w_max, g_min, g_max, encoding)
    return g, torch.as_tensor((g_max - g_min) / w_max, dtype=g.dtype)


def conductances_to_complex(g: Tensor, encoding: Encoding | str, scale: Tensor | float) -> Tensor:
    """Inverse of :func:`complex_to_conductances`: g (..., rows, cols) µS -> complex (...)."""
    return blocks_to_complex(conductances_to_weights(g, scale, encoding))
