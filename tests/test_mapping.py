"""Tests for imssa.mapping: round trips, block algebra, conductance window, tiling, maps and the
noiseless mapped S4D model against the digital one."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from imssa.errors import ImssaError
from imssa.mapping import (
    Encoding,
    MappingConfig,
    blocks_to_complex,
    complex_to_blocks,
    complex_to_conductances,
    conductance_maps,
    conductances_to_complex,
    crossbar_currents,
    decode_currents,
    encode_drive,
    encode_signed,
    from_tiles,
    map_linear,
    map_model,
    map_ssm,
    mapped_matvec,
    pack_groups,
    reconstruct,
    reconstruct_linear,
    to_tiles,
)
from imssa.ssm import DiscreteSSM, S4DConfig, S4DModel

ENCODINGS = ["polarity_block", "differential"]
GRANULARITIES = ["tensor", "channel"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _complex(shape, dtype=torch.complex128, seed=0):
    return torch.randn(shape, dtype=dtype, generator=_gen(seed))


def _model(dtype=torch.float64, **kw) -> S4DModel:
    torch.manual_seed(0)
    cfg = S4DConfig(**({"d_input": 2, "d_model": 4, "d_state": 8, "n_layers": 2,
                        "n_classes": 3} | kw))
    return S4DModel(cfg).to(dtype).eval()


def _layers(mapped):
    """Each block's mapped tensors by their short names, and its reconstructed SSM."""
    out = []
    for i in range(mapped.n_layers):
        p = f"blocks.{i}."
        out.append(SimpleNamespace(
            A=mapped[p + "ssm.A_bar"], B=mapped[p + "ssm.B_bar"], C=mapped[p + "ssm.C"],
            D=mapped[p + "ssm.D"], mix=mapped[p + "mix"],
            ssm=lambda g=None, i=i: mapped.ssm(i, g)))
    return out


# --- encodings ------------------------------------------------------------------------------

def test_complex_blocks_round_trip_is_bit_exact():
    a = _complex((5, 3))
    M = complex_to_blocks(a)
    assert M.shape == (5, 3, 2, 2)
    assert torch.equal(M[..., 0, 0], a.real) and torch.equal(M[..., 0, 1], -a.imag)
    assert torch.equal(M[..., 1, 0], a.imag) and torch.equal(M[..., 1, 1], a.real)
    assert torch.equal(blocks_to_complex(M), a)
    # M acts on (x_r, x_i) as complex multiplication.
    x = _complex((5, 3), seed=1)
    Mx = (M @ torch.view_as_real(x).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(torch.view_as_complex(Mx.contiguous()), a * x, rtol=0, atol=1e-15)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_complex_conductance_round_trip(encoding):
    a = _complex((4, 6))
    g, scale = complex_to_conductances(a, encoding, g_min=0.5, g_max=25.0)
    assert g.dtype == torch.float64
    assert g.shape == ((4, 6, 4, 4) if encoding == "polarity_block" else (4, 6, 2, 4))
    torch.testing.assert_close(conductances_to_complex(g, encoding, scale), a, rtol=0, atol=1e-14)
    # float32 stays float32 and round-trips to float precision
    g32, s32 = complex_to_conductances(a.to(torch.complex64), encoding, 0.5, 25.0)
    assert g32.dtype == torch.float32
    torch.testing.assert_close(conductances_to_complex(g32, encoding, s32), a.to(torch.complex64),
                               rtol=1e-5, atol=1e-5)


def test_polarity_block_maps_x_and_minus_x_to_Mx_and_minus_Mx():
    a = _complex((7,))
    M = complex_to_blocks(a)  # (7 2 2)
    P = encode_signed(M, "polarity_block")  # (7 4 4) rows (x, -x), cols (y, -y)
    Mp, Mn = M.clamp(min=0), (-M).clamp(min=0)
    # the crossbar array is the transpose of [[M+, M-], [M-, M+]]
    block = torch.cat([torch.cat([Mp, Mn], -1), torch.cat([Mn, Mp], -1)], -2)
    assert torch.equal(P, block.mT)
    assert (P >= 0).all()
    x = torch.randn(7, 2, dtype=torch.float64, generator=_gen(1))
    v = torch.cat([x, -x], -1)  # (x_r, x_i, -x_r, -x_i)
    out = (v.unsqueeze(-2) @ P).squeeze(-2)
    Mx = (M @ x.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out, torch.cat([Mx, -Mx], -1), rtol=0, atol=1e-15)
    # with the g_min offset the currents are the scaled result: g_min cancels on (x, -x)
    g, scale = complex_to_conductances(a, "polarity_block", g_min=1.0, g_max=21.0)
    I = (v.unsqueeze(-2) @ g).squeeze(-2)
    torch.testing.assert_close(I / scale, torch.cat([Mx, -Mx], -1), rtol=0, atol=1e-13)


def test_differential_block_layout_by_hand():
    a = torch.tensor([1.0 - 2.0j], dtype=torch.complex128)  # M = [[1, 2], [-2, 1]]
    P = encode_signed(complex_to_blocks(a), "differential")[0]
    # rows x_r, x_i; columns y_r+, y_r-, y_i+, y_i-
    expected = torch.tensor([[1.0, 0.0, 0.0, 2.0],
                             [2.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    assert torch.equal(P, expected)
    g, scale = complex_to_conductances(a, "differential", g_min=0.0, g_max=10.0)
    assert scale.item() == 5.0  # w_max = 2
    assert torch.equal(g[0], expected * 5.0)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_drive_and_current_decoding_compute_W_x(encoding):
    W = torch.randn(3, 5, dtype=torch.float64, generator=_gen(2))
    x = torch.randn(4, 5, dtype=torch.float64, generator=_gen(3))
    for doubled in (True, False):
        P = encode_signed(W, encoding, doubled=doubled)
        y = decode_currents(encode_drive(x, encoding) @ P, encoding, doubled=doubled)
        torch.testing.assert_close(y, x @ W.T, rtol=0, atol=1e-14)


# --- conductance window ---------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_conductances_within_window_and_pairs_idle_at_g_min(encoding, granularity):
    cfg = MappingConfig(g_min=0.5, g_max=25.0, tile_rows=16, tile_cols=16, encoding=encoding,
                        granularity=granularity)
    mapped = map_model(_model(), cfg)
    for t in mapped:
        g = t.g_target
        assert g.min() >= cfg.g_min and g.max() <= cfg.g_max, t.name
        assert math.isclose(g.max().item(), cfg.g_max, rel_tol=1e-12), t.name  # w_max hits g_max
        if t.encoding is Encoding.DIFFERENTIAL:  # one device of every pair sits at g_min
            assert torch.equal(torch.minimum(g[..., 0::2], g[..., 1::2]),
                               torch.full_like(g[..., 0::2], cfg.g_min)), t.name


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_dense_conductance_formula_and_scale(granularity):
    W = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.float64)
    b = torch.tensor([-4.0, 0.25], dtype=torch.float64)
    cfg = MappingConfig(g_min=1.0, g_max=9.0, tile_rows=4, tile_cols=4, granularity=granularity)
    t = map_linear("lin", W, b, cfg)
    Wb = torch.cat([W, b[:, None]], 1)
    w_max = (torch.tensor([[4.0], [4.0]]) if granularity == "tensor"
             else torch.tensor([[4.0], [0.5]])).double()
    assert torch.equal(t.w_max, w_max)
    g = t.g_target  # (in + 1, 2 out): rows x_0, x_1, bias; columns y_0+, y_0-, y_1+, y_1-
    assert g.shape == (3, 4)
    expected_pos = 1.0 + Wb.clamp(min=0).T / w_max.T * 8.0
    expected_neg = 1.0 + (-Wb).clamp(min=0).T / w_max.T * 8.0
    torch.testing.assert_close(g[:, 0::2], expected_pos, rtol=0, atol=1e-15)
    torch.testing.assert_close(g[:, 1::2], expected_neg, rtol=0, atol=1e-15)
    torch.testing.assert_close((g[:, 0::2] - g[:, 1::2]).T, Wb * t.scale[..., 0:1],
                               rtol=0, atol=1e-14)
    W2, b2 = reconstruct_linear(t)
    torch.testing.assert_close(W2, W, rtol=0, atol=1e-15)
    torch.testing.assert_close(b2, b, rtol=0, atol=1e-15)


# --- tiling ---------------------------------------------------------------------------------

def _logical_from_tiles(t, tiles):
    """Assemble the logical crossbar matrix from tiles and their offsets."""
    L = torch.zeros(t.layout.n_rows, t.layout.n_cols, dtype=tiles.dtype)
    for k in range(t.n_tiles):
        r0, c0 = int(t.layout.row_offset[k]), int(t.layout.col_offset[k])
        nr, nc = int(t.layout.rows_spanned[k]), int(t.layout.cols_spanned[k])
        L[r0:r0 + nr, c0:c0 + nc] += tiles[k, :nr, :nc]
        assert torch.all(tiles[k, nr:] == 0) and torch.all(tiles[k, :, nc:] == 0)
    return L


def test_dense_tiling_splits_and_reassembles_exactly():
    W = torch.randn(5, 7, dtype=torch.float64, generator=_gen(4))
    b = torch.randn(5, dtype=torch.float64, generator=_gen(5))
    t = map_linear("lin", W, b, MappingConfig(tile_rows=4, tile_cols=4, g_min=0.1))
    assert t.g_target.shape == (8, 10)
    assert t.n_tiles == 2 * 3  # rows 8 -> 4 + 4, columns 10 -> 4 + 4 + 2 (whole pairs)
    assert t.layout.row_edges.tolist() == [0, 4, 8]
    assert t.layout.col_edges.tolist() == [0, 4, 8, 10]
    tiles = to_tiles(t)
    assert tiles.shape == (6, 4, 4)
    assert torch.equal(from_tiles(t, tiles), t.g_target)
    assert torch.equal(_logical_from_tiles(t, tiles), t.g_target)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_ssm_tiles_are_block_diagonal_and_reassemble(encoding):
    H, N2 = 3, 5
    ssm = DiscreteSSM(_complex((H, N2)) * 0.5, _complex((H, N2), seed=1),
                      _complex((H, N2), seed=2), torch.randn(H, dtype=torch.float64))
    cfg = MappingConfig(tile_rows=8, tile_cols=12, encoding=encoding, g_min=0.2)
    parts = map_ssm("s", ssm, cfg)
    A = parts["A_bar"]
    tiles = to_tiles(A)
    assert torch.equal(from_tiles(A, tiles), A.g_target)
    blocks = A.g_target.reshape(H * N2, *A.g_target.shape[-2:])
    assert torch.equal(_logical_from_tiles(A, tiles), torch.block_diag(*blocks))
    for t in parts.values():  # every cell lands in a tile exactly once
        assert t.used_cells().sum().item() == t.g_target.numel()
        assert torch.equal(from_tiles(t, to_tiles(t)), t.g_target)


def test_utilization_by_hand():
    # one channel, 3 modes, polarity 4x4 blocks on 8x8 tiles: 2 blocks fit per tile
    ssm = DiscreteSSM(_complex((1, 3)), _complex((1, 3)), _complex((1, 3)),
                      torch.ones(1, dtype=torch.float64))
    A = map_ssm("s", ssm, MappingConfig(tile_rows=8, tile_cols=8))["A_bar"]
    assert A.n_tiles == 2
    assert A.used_cells().tolist() == [32, 16]
    assert A.utilization().tolist() == [0.5, 0.25]
    assert A.layout.row_offset.tolist() == [0, 8] and A.layout.col_offset.tolist() == [0, 8]
    # differential 2x4 blocks: min(8 // 2, 8 // 4) = 2 per tile
    A = map_ssm("s", ssm, MappingConfig(tile_rows=8, tile_cols=8, encoding="differential"))["A_bar"]
    assert A.utilization().tolist() == [0.25, 0.125]
    # a dense 3x2 layer with bias: 3 rows x 6 columns on 4x4 tiles -> 3x4 and 3x2 pieces
    t = map_linear("lin", torch.ones(3, 2), torch.ones(3), MappingConfig(tile_rows=4, tile_cols=4))
    assert t.used_cells().tolist() == [12, 6]
    assert t.utilization().tolist() == [0.75, 0.375]
    ds = conductance_maps(t)
    assert ds["utilization"].values.tolist() == [0.75, 0.375]
    assert int(ds["used"].sum()) == 18
    assert int(ds["g_target"].isnull().sum()) == 2 * 16 - 18


def test_pack_groups_cuts_large_groups_at_block_boundaries():
    layout = pack_groups(2, (2, 12), (2, 4), tile_rows=8, tile_cols=8)
    assert (layout.piece_rows, layout.piece_cols) == (2, 8)
    assert layout.n_tiles == 4
    assert layout.row_offset.tolist() == [0, 0, 2, 2]
    assert layout.col_offset.tolist() == [0, 8, 12, 20]
    assert layout.cols_spanned.tolist() == [8, 4, 8, 4]


# --- matvec ---------------------------------------------------------------------------------

def test_mapped_matvec_equals_W_x_plus_b_with_chips_and_tile_partial_sums():
    W = torch.randn(5, 9, dtype=torch.float64, generator=_gen(6))
    b = torch.randn(5, dtype=torch.float64, generator=_gen(7))
    t = map_linear("lin", W, b, MappingConfig(g_min=0.3, tile_rows=4, tile_cols=4))
    x = torch.randn(2, 3, 9, dtype=torch.float64, generator=_gen(8))
    torch.testing.assert_close(mapped_matvec(t, x), x @ W.T + b, rtol=0, atol=1e-13)
    calls = []

    def tile_fn(I):
        calls.append(I.shape)
        return I

    torch.testing.assert_close(mapped_matvec(t, x, tile_fn=tile_fn), x @ W.T + b, rtol=0,
                               atol=1e-13)
    assert len(calls) == 3  # 10 rows (9 inputs + bias) on 4-row tiles: three partial sums
    # perturbed conductances with a chip dimension: each chip computes with its own weights
    g = t.g_target * (1 + 0.05 * torch.randn(4, *t.g_target.shape, dtype=torch.float64,
                                             generator=_gen(9)))
    y = mapped_matvec(t, x.unsqueeze(0), g)
    assert y.shape == (4, 2, 3, 5)
    Wc, bc = reconstruct_linear(t, g)  # (4 5 9), (4 5)
    expected = torch.einsum("bli,coi->cblo", x, Wc) + bc[:, None, None]
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    assert not torch.allclose(y[0], y[1])
    # a per-chip input batch gives the same
    torch.testing.assert_close(mapped_matvec(t, x.expand(4, -1, -1, -1), g), y, rtol=0,
                               atol=1e-13)


# --- the mapped S4D model -------------------------------------------------------------------

def _mapped_ssm_step(layer, x, u, g=None):
    """One recurrent step computed on the crossbar tensors of a MappedLayer."""
    g = g or {}
    x = mapped_matvec(layer.A, x, g.get(layer.A.name)) + mapped_matvec(layer.B, u,
                                                                       g.get(layer.B.name))
    y = mapped_matvec(layer.C, x, g.get(layer.C.name)) + mapped_matvec(layer.D, u,
                                                                       g.get(layer.D.name))
    return y, x


def _mapped_forward(model, mapped, u):
    """The whole model, every product on the mapped conductances, the rest digital."""
    x = mapped_matvec(mapped["encoder"], u)  # (B L H)
    for layer in _layers(mapped):
        s = torch.zeros(u.shape[0], *layer.A.compact_shape[:2], dtype=torch.complex128)
        ys = []
        for k in range(u.shape[1]):
            y, s = _mapped_ssm_step(layer, s, x[:, k])
            ys.append(y)
        y = torch.stack(ys, 1)
        z = torch.nn.functional.gelu(y)
        x = x + torch.nn.functional.glu(mapped_matvec(layer.mix, z), dim=-1)
    return mapped_matvec(mapped["decoder"], x.mean(1))


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_mapped_recurrent_step_equals_digital(encoding, granularity):
    model = _model()
    cfg = MappingConfig(g_min=0.5, g_max=25.0, tile_rows=8, tile_cols=8, encoding=encoding,
                        granularity=granularity)
    mapped = map_model(model, cfg)
    assert len(_layers(mapped)) == 2 and mapped.n_tiles() == sum(t.n_tiles for t in mapped)
    x = _complex((3, 4, 4), seed=10)
    u = torch.randn(3, 4, dtype=torch.float64, generator=_gen(11))
    for layer, ssm in zip(_layers(mapped), model.discrete()):
        rebuilt = layer.ssm()  # reconstructed from conductances
        for f in ("A_bar", "B_bar", "C", "D"):
            torch.testing.assert_close(getattr(rebuilt, f), getattr(ssm, f).detach(), rtol=0,
                                       atol=1e-14)
        y0, x0 = ssm.step(x, u)
        for y, s in (rebuilt.step(x, u), _mapped_ssm_step(layer, x, u)):
            torch.testing.assert_close(s, x0, rtol=0, atol=1e-13)
            torch.testing.assert_close(y, y0, rtol=0, atol=1e-13)
        # ssm_C with columns cut over tiles (4 modes x 4 rows > 8 rows) and a tile function
        y_c = mapped_matvec(layer.C, x, tile_fn=lambda I: I)
        torch.testing.assert_close(y_c, mapped_matvec(layer.C, x), rtol=0, atol=1e-13)


def test_mapped_model_forward_equals_digital_recurrent():
    model = _model()
    u = torch.randn(2, 6, 2, dtype=torch.float64, generator=_gen(12))
    with torch.no_grad():
        expected = model(u, mode="recurrent")
        for encoding in ENCODINGS:
            mapped = map_model(model, MappingConfig(g_min=1.0, tile_rows=8, tile_cols=8,
                                                    encoding=encoding))
            torch.testing.assert_close(_mapped_forward(model, mapped, u), expected, rtol=0,
                                       atol=1e-12)


def test_float32_model_round_trips_to_float_tolerance():
    model = _model(dtype=torch.float32)
    mapped = map_model(model, MappingConfig(g_min=0.5))
    assert all(t.g_target.dtype == torch.float32 for t in mapped)
    ssm = model.discrete()[0]
    rebuilt = mapped.ssm(0)
    for f in ("A_bar", "B_bar", "C", "D"):
        torch.testing.assert_close(getattr(rebuilt, f), getattr(ssm, f).detach(), rtol=1e-5,
                                   atol=1e-6)


def test_map_ssm_maps_the_given_tensors():
    model = _model()
    quantized = [DiscreteSSM(*(torch.round(t.detach() * 8) / 8 for t in
                               (s.A_bar.real, s.B_bar.real, s.C.real, s.D)))
                 for s in model.discrete()]
    quantized = [DiscreteSSM(q.A_bar.to(torch.complex128), q.B_bar.to(torch.complex128),
                             q.C.to(torch.complex128), q.D) for q in quantized]
    for i, q in enumerate(quantized):
        mapped = map_ssm(f"blocks.{i}.ssm", q, MappingConfig())
        assert mapped["A_bar"].name == f"blocks.{i}.ssm.A_bar"
        torch.testing.assert_close(reconstruct(mapped["A_bar"]), q.A_bar, rtol=0, atol=1e-14)
        torch.testing.assert_close(reconstruct(mapped["D"]), q.D, rtol=0, atol=1e-14)


def test_conductances_can_be_replaced_per_chip():
    model = _model()
    mapped = map_model(model, MappingConfig(g_min=0.5, tile_rows=8, tile_cols=8))
    g = {k: v.expand(3, *v.shape).clone() for k, v in mapped.conductances().items()}
    layer = _layers(mapped)[0]
    x = _complex((1, 2, 4, 4), seed=13)  # (chips=1 broadcast, B, H, N2)
    u = torch.randn(1, 2, 4, dtype=torch.float64, generator=_gen(14))
    y, s = _mapped_ssm_step(layer, x, u, g)
    assert y.shape == (3, 2, 4) and s.shape == (3, 2, 4, 4)
    y0, s0 = model.discrete()[0].step(x[0], u[0])
    torch.testing.assert_close(s, s0.expand_as(s), rtol=0, atol=1e-13)
    torch.testing.assert_close(y, y0.expand_as(y), rtol=0, atol=1e-13)
    # raw currents of the polarity A carry both polarities: (y, -y) for the (x, -x) drive
    v = torch.cat([torch.view_as_real(x[0]), -torch.view_as_real(x[0])], -1)
    I = crossbar_currents(layer.A, v)
    torch.testing.assert_close(I[..., :2], -I[..., 2:], rtol=0, atol=1e-12)


def test_conductance_maps_dataset():
    model = _model(n_layers=1)
    cfg = MappingConfig(g_min=0.5, tile_rows=8, tile_cols=8)
    mapped = map_model(model, cfg)
    prog = {k: v.expand(2, *v.shape) + 0.1 for k, v in mapped.conductances().items()}
    ds = conductance_maps(mapped, prog)
    assert ds.sizes["tile"] == mapped.n_tiles() and ds.sizes["chip"] == 2
    assert ds["g_target"].attrs["units"] == "µS"
    assert set(ds["tensor"].values.tolist()) == set(mapped.tensors())
    assert json.loads(ds.attrs["mapping_config"]) == cfg.to_dict()
    A = mapped["blocks.0.ssm.A_bar"]
    sel = ds.where(ds["tensor"] == A.name, drop=True)
    expected = to_tiles(A, fill=float("nan")).numpy()
    assert ((sel["g_target"].values == expected) | torch.isnan(torch.from_numpy(expected))
            .numpy()).all()
    diff = (ds["g_programmed"] - ds["g_target"]).values
    assert abs(diff[~torch.isnan(torch.from_numpy(diff)).numpy()] - 0.1).max() < 1e-12
    only = conductance_maps(mapped, tensors=["decoder"])
    assert set(only["tensor"].values.tolist()) == {"decoder"}


# --- errors ---------------------------------------------------------------------------------

def test_config_errors_name_the_argument():
    with pytest.raises(ImssaError, match="g_max"):
        MappingConfig(g_min=5.0, g_max=5.0)
    with pytest.raises(ImssaError, match="g_max"):
        MappingConfig(g_min=5.0, g_max=1.0)
    with pytest.raises(ImssaError, match="g_min"):
        MappingConfig(g_min=-1.0)
    with pytest.raises(ImssaError, match=r"tile_rows must be an integer >= 4.*4x4"):
        MappingConfig(tile_rows=3)
    with pytest.raises(ImssaError, match=r"tile_cols must be an integer >= 4"):
        MappingConfig(tile_cols=2, encoding="differential")
    with pytest.raises(ImssaError, match="polarity_block.*differential"):
        MappingConfig(encoding="quadrature")
    with pytest.raises(ImssaError, match="granularity"):
        MappingConfig(granularity="row")
    with pytest.raises(ImssaError, match="granularity"):
        MappingConfig(granularity="column")  # the old word, read only from saved configs
    assert MappingConfig(tile_rows=2, encoding="differential").tile_rows == 2
    cfg = MappingConfig(encoding="differential", g_min=0.1, granularity="channel")
    assert cfg.encoding is Encoding.DIFFERENTIAL
    assert MappingConfig.from_dict(json.loads(cfg.to_json())) == cfg
    old = cfg.to_dict() | {"granularity": "column"}
    assert MappingConfig.from_dict(old) == cfg


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_at_the_mapping(bad):
    """A NaN would make w_max fall back to 1 and clip the rest; an inf map every cell to g_min."""
    model = _model()
    with torch.no_grad():
        model.blocks[0].ssm.C[1, 2, 0] = bad
    with pytest.raises(ImssaError, match="blocks.0.ssm.C contain NaN or infinite"):
        map_model(model, MappingConfig())
    a = _complex((3, 2))
    a[1, 1] = complex(bad, 0.0)
    with pytest.raises(ImssaError, match="NaN or infinite"):
        complex_to_conductances(a, "polarity_block", 0.0, 25.0)
    with pytest.raises(ImssaError, match="w_max"):
        complex_to_conductances(_complex((3, 2)), "polarity_block", 0.0, 25.0, w_max=bad)
    with pytest.raises(ImssaError, match="NaN or infinite"):
        map_linear("lin", torch.tensor([[1.0, bad]]), None, MappingConfig())
    mapped = map_model(_model(n_layers=1), MappingConfig())
    prog = mapped.conductances()
    prog["decoder"] = prog["decoder"].clone()
    prog["decoder"][0, 0] = bad
    with pytest.raises(ImssaError, match="programmed conductances of decoder contain NaN"):
        conductance_maps(mapped, prog)


def test_usage_errors():
    with pytest.raises(ImssaError, match="cannot hold one 4x4"):
        pack_groups(3, (4, 4), (4, 4), tile_rows=2, tile_cols=8)
    t = map_linear("lin", torch.ones(2, 3), None, MappingConfig())
    with pytest.raises(ImssaError, match="conductances for 'lin' must have shape"):
        mapped_matvec(t, torch.ones(3), torch.ones(5, 5))
    model = _model()
    mapped = map_model(model, MappingConfig())
    with pytest.raises(ImssaError, match="is not a mapped tensor"):
        mapped["layers.0.A"]
    with pytest.raises(ImssaError, match="complex"):
        mapped_matvec(mapped["blocks.0.ssm.A_bar"], torch.ones(4, 4))
    with pytest.raises(ImssaError, match="not in the mapping"):
        conductance_maps(mapped, tensors=["nope"])
