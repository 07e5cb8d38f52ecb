"""One mapped weight tensor on the crossbars of many chips: program, drift, read through DAC/ADC.

An :class:`AnalogTile` programs the target conductances of one
:class:`~imssa.mapping.MappedTensor` once per chip instance (leading chip dim), drifts them to an
inference time and computes

    y = decode(ADC(sum_j g_eff,ij v_j + N(0, sum_j sigma_ij^2 v_j^2) + N(0, (eta r)^2))) * alpha,
    v = DAC(x),

with read noise drawn per sensed output rather than per device (DESIGN.md, "Simulating reads
cheaply and faithfully"): the sum of independent Gaussians on every device of a column is one
Gaussian whose variance is the v^2-weighted sum of the device variances. :meth:`reference` keeps
the slow per-device form (a fresh read of every device for every input, then the product through
:func:`~imssa.mapping.mapped_matvec`) for the statistical tests.

Sensed outputs. A column whose current is signed by the drive is sensed as is (polarity
encoding: the rows carry (x, -x)); a differential pair (G+, G-) is subtracted in the analog
domain and sensed once. Every sensed output is expressed in weight units, i.e. divided by its
column's conductance scale (µS per weight unit; a per-column gain in front of the ADC), so the
effective arrays below are signed weights. Layouts (z chips, N batch, H channels, N2 modes,
S sensed state columns per mode: 4 = (y_r, y_i, -y_r, -y_i) for polarity, 2 for differential,
P pieces of a column that spans several tiles, each with its own ADC):

    role    drive v            effective W            sensed outputs     decoded output
    dense   (z|1, N, in)       (z, P, Rp, out)        (z, N, P, out)     (z, N, out)
    ssm_A   (z|1, N, H, N2, 2) (z, 2, H, N2, S)       (z, N, H, N2, S)   (z, N, H, N2, 2)
    ssm_B   (z|1, N, H)        (z, H, N2, S)          (z, N, H, N2, S)   (z, N, H, N2, 2)
    ssm_C   (z|1, N, H, N2, 2) (z, H, P, K = 2 m)     (z, N, H, P)       (z, N, H)
    ssm_D   (z|1, N, H)        (z, H)                 (z, N, H, 1)       (z, N, H)

A dense bias is one more row driven by 1 (not through the DAC). Pieces are summed digitally after
their ADCs; the polarity-doubled outputs (y, -y) are averaged after theirs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from imssa.crossbar.periphery import PeripheryConfig, dac, quantize_symmetric, sense
from imssa.devices import Device, DriftedState, drift_compensation_factor
from imssa.devices.base import randn_like
from imssa.devices.compensation import CompensationMode
from imssa.errors import ImssaError
from imssa.mapping import Encoding, MappedTensor, mapped_matvec, reconstruct_units

# Dims of the decoded output after (chips, batch), for broadcasting gains.
_OUT_NDIM = {"dense": 1, "ssm_A": 3, "ssm_B": 3, "ssm_C": 1, "ssm_D": 1}


class SensedArrays(NamedTuple):
    """Effective arrays of one tensor at one inference time (layouts in the module docstring).

    W: signed weights per sensed output (weight units); V: read-noise variance per cell (weight
    units squared), None when the devices read noiselessly.
    """

    W: Tensor
    V: Tensor | None


def make_generator(seed: int | torch.Generator, device: torch.device | str) -> torch.Generator:
    """A generator on ``device``: the one given, or a new one seeded with ``seed``."""
    if isinstance(seed, torch.Generator):
        if torch.device(seed.device).type != torch.device(device).type:
            raise ImssaError(f"the generator is on {seed.device}, the tensors on {device}; "
                             f"create it with torch.Generator(device={str(device)!r})")
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ImssaError(f"seed must be an int or a torch.Generator, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def check_window(mapped_g_min: float, mapped_g_max: float, device: Device) -> None:
    """The mapping's conductance window must lie inside the device's programmable one."""
    cfg = device.config
    slack = 1e-9 * (cfg.g_max - cfg.g_min)
    if mapped_g_min < cfg.g_min - slack or mapped_g_max > cfg.g_max + slack:
        raise ImssaError(
            f"the mapping's conductance window [{mapped_g_min}, {mapped_g_max}] µS lies outside "
            f"the device's [{cfg.g_min}, {cfg.g_max}] µS; use MappingConfig(g_min={cfg.g_min}, "
            f"g_max={cfg.g_max}) or a device config with that window")


def _fold(P: Tensor, encoding: Encoding, sign: float) -> Tensor:
    """Cells (..., rows, cols) -> per logical input and sensed output (..., in, sensed).

    Polarity: rows (x, -x) fold onto x (sign -1 for conductances, +1 for variances).
    Differential: column pairs (G+, G-) fold onto one sensed output.
    """
    if encoding is Encoding.DIFFERENTIAL:
        return P[..., 0::2] + sign * P[..., 1::2]
    n = P.shape[-2] // 2
    return P[..., :n, :] + sign * P[..., n:, :]


class AnalogTile:
    """One mapped tensor programmed on ``n_chips`` chip instances.

    Args:
        tensor: the mapped tensor (its targets, scale and tile layout).
        device: the memristive device model (programming, drift, read noise).
        periphery: DAC, ADC, output noise, read-noise mode and drift compensation.
        n_chips: independent chip instances (programming errors), a leading dim everywhere.
        seed: int or torch.Generator (on the tensor's device) for programming and later draws.

    Call :meth:`set_time` before a forward; :meth:`calibrate` when the periphery needs ranges
    (standalone use; :class:`~imssa.crossbar.CrossbarS4D` calibrates its tiles itself).
    """

    def __init__(self, tensor: MappedTensor, device: Device,
                 periphery: PeripheryConfig | None = None, *, n_chips: int = 1,
                 seed: int | torch.Generator = 0) -> None:
        if isinstance(n_chips, bool) or not isinstance(n_chips, int) or n_chips < 1:
            raise ImssaError(f"n_chips must be an integer >= 1, got {n_chips!r}")
        check_window(tensor.g_min, tensor.g_max, device)
        self.tensor, self.device = tensor, device
        self.periphery = periphery if periphery is not None else PeripheryConfig()
        self.n_chips = n_chips
        self.generator = make_generator(seed, tensor.g_target.device)
        g = tensor.g_target
        self.programmed = device.program(g.expand(n_chips, *g.shape), self.generator)
        self.g_reference = self.programmed.g  # (z, *compact) read-out baseline at programming
        self.target = self.arrays(g.unsqueeze(0), None)
        self.now: SensedArrays | None = None
        self.drifted: DriftedState | None = None
        self.g_frozen: Tensor | None = None  # the one read of per_inference mode
        self.alpha: Tensor | None = None
        self.dac_range: Tensor | None = None
        self.adc_range: Tensor | None = None

    # --- layout ---------------------------------------------------------------------------
    @property
    def role(self) -> str:
        return self.tensor.role

    @property
    def read_noise_mode(self) -> str:
        return self.periphery.read_noise_mode or self.device.config.read_noise_mode

    def _sensed_scale(self) -> Tensor:
        """Conductance scale (µS per weight unit) per sensed output, (*grid, sensed)."""
        t = self.tensor
        s = t.scale[..., 0]  # (*grid, out_unit)
        if t.encoding is Encoding.POLARITY_BLOCK and t.doubled:
            s = torch.cat([s, s], -1)  # the outputs y and -y share a scale
        return s

    def _pieces(self) -> tuple[int, int]:
        """(P, rows per piece) of a column cut over tiles: dense rows, ssm_C modes."""
        t = self.tensor
        if self.role == "dense":
            rows = t.layout.piece_rows
            return -(-t.compact_shape[0] // rows), rows
        m = t.layout.piece_rows // t.compact_shape[-2]  # whole modes per piece
        return -(-t.compact_shape[1] // m), m

    def range_shape(self, granularity: str) -> tuple[int, ...]:
        """Shape of the ADC range of this tensor's sensed outputs; pieces of a column share it."""
        if granularity == "tensor":
            return ()
        shape = self.tensor.compact_shape
        if self.role == "dense":
            return (self.tensor.scale.shape[0],)
        if self.role in ("ssm_A", "ssm_B"):
            return (*shape[:2], self._sensed_scale().shape[-1])
        return (shape[0], 1)

    def arrays(self, g: Tensor, var: Tensor | None) -> SensedArrays:
        """Effective sensed arrays from conductances g and read variances var, (z, *compact)."""
        s = self._sensed_scale().unsqueeze(-2)  # (*grid, 1, sensed)
        W = _fold(g, self.tensor.encoding, -1.0) / s
        V = None if var is None else _fold(var, self.tensor.encoding, 1.0) / s.square()
        return SensedArrays(self._layout(W), None if V is None else self._layout(V))

    def _layout(self, W: Tensor) -> Tensor:
        """(z, *grid, in, sensed) -> the role's layout of the effective arrays."""
        z = W.shape[0]
        if self.role == "dense":
            P, rows = self._pieces()
            W = F.pad(W, (0, 0, 0, P * rows - W.shape[-2]))
            return W.reshape(z, P, rows, W.shape[-1]).contiguous()
        if self.role == "ssm_A":  # rows first: each row's (H N2 S) matrix is contiguous
            return W.movedim(-2, 1).contiguous()
        if self.role == "ssm_B":
            return W[..., 0, :].contiguous()  # (z H N2 S)
        if self.role == "ssm_C":
            P, m = self._pieces()
            W = F.pad(W[..., 0], (0, 0, 0, P * m - W.shape[2]))  # (z H P*m 2)
            return W.reshape(z, W.shape[1], P, 2 * m).contiguous()
        return W[..., 0, 0].contiguous()  # (z H)

    # --- the fast path ----------------------------------------------------------------------
    def sense(self, v: Tensor, arrays: SensedArrays,
              acc: tuple[Tensor | None, Tensor | None] = (None, None)
              ) -> tuple[Tensor, Tensor | None]:
        """Noiseless sensed outputs and their read-noise variance for drive ``v``.

        Args:
            v: (z|1, N, ...) DAC outputs in the role's drive layout (module docstring).
            arrays: effective arrays (``self.now`` or ``self.target``).
            acc: sensed outputs and variances of tensors sharing these columns (full shape,
                added to in place), e.g. B's for A; ssm_A only.

        Returns:
            mean (z, N, ...) sensed outputs in weight units, var like it or None.
        """
        W, V = arrays
        role = self.role
        if role == "dense":
            if self.tensor.has_bias:
                v = torch.cat([v, torch.ones_like(v[..., :1])], -1)
            P, rows = W.shape[1:3]
            if P * rows != v.shape[-1]:
                v = F.pad(v, (0, P * rows - v.shape[-1]))
            v = v.unflatten(-1, (P, rows))  # (z|1 N P Rp)

            def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
                if x.shape[0] == 1:
                    return torch.einsum("npr,zpro->znpo", x[0], M)
                return torch.einsum("znpr,zpro->znpo", x, M)
        elif role == "ssm_A":
            v = v.unsqueeze(-1)  # (z|1 N H N2 2 1): broadcasts over the sensed columns

            def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
                M = M.unsqueeze(2)  # (z 2 1 H N2 S)
                if out is None:
                    out = x[..., 0, :] * M[:, 0]
                else:
                    out.addcmul_(x[..., 0, :], M[:, 0])
                return out.addcmul_(x[..., 1, :], M[:, 1])
        elif role == "ssm_B":
            def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
                return x[..., None, None] * M.unsqueeze(1)
        elif role == "ssm_C":
            P, K = W.shape[2:]
            v = v.flatten(-2)  # (z|1 N H N2*2), mode-major like W
            if P * K != v.shape[-1]:
                v = F.pad(v, (0, P * K - v.shape[-1]))
            v = v.unflatten(-1, (P, K))

            def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
                return (x * M.unsqueeze(1)).sum(-1)
        else:
            def product(x: Tensor, M: Tensor, out: Tensor | None) -> Tensor:
                return (x * M.unsqueeze(1)).unsqueeze(-1)
        mean = product(v, W, acc[0])
        var = acc[1] if V is None else product(v.square(), V, acc[1])
        return mean, var

    def decode(self, o: Tensor) -> Tensor:
        """Sensed outputs after the ADC -> decoded logical outputs (sum pieces, average (y, -y))."""
        if self.role == "dense":
            return o.sum(-2)
        if self.role in ("ssm_C", "ssm_D"):
            return o.sum(-1)
        if self.tensor.encoding is Encoding.POLARITY_BLOCK:
            return (o[..., :2] - o[..., 2:]) * 0.5
        return o

    def _drive(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Logical input (z|1, *batch, *in) -> drive (z|1, N, ...) and the batch shape."""
        n_in = {"dense": 1, "ssm_A": 2, "ssm_B": 1, "ssm_C": 2, "ssm_D": 1}[self.role]
        complex_in = self.role in ("ssm_A", "ssm_C")
        if complex_in != torch.is_complex(x):
            raise ImssaError(f"{self.tensor.name} ({self.role}) takes a "
                             f"{'complex' if complex_in else 'real'} input, got {x.dtype}")
        if x.ndim < n_in + 1 or x.shape[0] not in (1, self.n_chips):
            raise ImssaError(f"{self.tensor.name}: input must be (chips or 1, ..., logical in) "
                             f"with {self.n_chips} chips, got {tuple(x.shape)}")
        batch = tuple(x.shape[1:x.ndim - n_in])
        v = torch.view_as_real(x) if complex_in else x
        return v.reshape(v.shape[0], -1, *v.shape[1 + len(batch):]), batch

    def _output(self, y: Tensor, batch: tuple[int, ...]) -> Tensor:
        y = y.reshape(y.shape[0], *batch, *y.shape[2:])
        return torch.view_as_complex(y.contiguous()) if self.role in ("ssm_A", "ssm_B") else y

    def _require_time(self) -> SensedArrays:
        if self.now is None:
            raise ImssaError(f"{self.tensor.name}: call set_time(t_inference) first")
        return self.now

    @torch.no_grad()
    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The tensor's product on the crossbar, as :func:`~imssa.mapping.mapped_matvec`.

        Args:
            x: (chips or 1, *batch, *logical in), e.g. dense (z, B, in), ssm_A (z, B, H, N2)
                complex.
            generator: noise source; the tile's own if None.

        Returns:
            (chips, *batch, *logical out): dense W x + b, ssm_A A_bar * x, ...
        """
        arrays = self._require_time()
        gen = generator if generator is not None else self.generator
        v, batch = self._drive(x)
        cfg = self.periphery
        mean, var = self.sense(dac(v, self.dac_range, cfg.dac_bits), arrays)
        y = self.decode(sense(mean, var, self.adc_range, cfg, gen))
        return self._output(y if self.alpha is None else y * self.alpha, batch)

    # --- programming time, drift, calibration --------------------------------------------------
    @torch.no_grad()
    def set_time(self, t_inference: float, generator: torch.Generator | None = None) -> None:
        """Drift every chip to ``t_inference`` (s) and precompute the effective arrays.

        In "per_inference" read-noise mode one read of every device is drawn here and frozen.
        With drift compensation a read-out of the drifted weights sets the output gains.
        """
        gen = generator if generator is not None else self.generator
        self.drifted = drifted = self.device.drift(self.programmed, t_inference, gen)
        if self.read_noise_mode == "per_inference":
            self.g_frozen = self.device.read(drifted, gen)
            self.now = self.arrays(self.g_frozen, None)
        else:
            self.g_frozen = None
            var = drifted.read_std.square()
            self.now = self.arrays(drifted.g, var if bool((var > 0).any()) else None)
        mode = self.periphery.drift_compensation
        self.alpha = None if mode == "none" else compensation([self], mode, gen)

    def readout(self, g: Tensor, all_ones: bool) -> Tensor:
        """Read-out outputs, (z, *grid, reads, outputs) (weight units): one read per input
        (one-hot inputs: the signed weights themselves), or with ``all_ones`` a single read of an
        all-ones input, as aihwkit's global drift compensation does. Summing over inputs averages
        programming noise out; one-hot reads let it inflate mean |w| and bias a global gain, but
        keep a per-column gain well conditioned where a column's signed weights sum to ~0.

        Tensors sharing output columns (A and B, C and D) concatenate along ``reads``.
        """
        W = reconstruct_units(self.tensor, g).mT  # (z *grid in out)
        if self.role == "ssm_C":
            W = W.flatten(-3, -2)  # all modes of a channel feed its one output
        return W.sum(-2, keepdim=True) if all_ones else W

    def current_read(self, generator: torch.Generator) -> Tensor:
        """Conductances as the chip reads them now: the frozen read, or one fresh read."""
        if self.drifted is None:
            raise ImssaError(f"{self.tensor.name}: call set_time(t_inference) first")
        if self.g_frozen is not None:
            return self.g_frozen
        return self.device.read(self.drifted, generator)

    @torch.no_grad()
    def calibrate(self, x: Tensor) -> None:
        """Standalone use: DAC and ADC ranges from inputs ``x`` on the target weights."""
        cfg = self.periphery
        v, _ = self._drive(x)
        if cfg.needs_dac_ranges:
            obs = cfg.observer()
            obs.observe(v)
            self.dac_range = obs.range()[1]
        elif cfg.dac_range is not None:
            self.dac_range = torch.tensor(cfg.dac_range, dtype=v.dtype, device=v.device)
        if cfg.needs_adc_ranges:
            mean, _ = self.sense(v, self.target)
            obs = cfg.observer(self.range_shape(cfg.adc_granularity))
            obs.observe(mean)
            self.adc_range = obs.range()[1]

    # --- the slow per-device reference --------------------------------------------------------
    @torch.no_grad()
    def reference(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Same as calling the tile, with read noise drawn on every device for every input.

        Each input of the batch gets its own read of all devices (``Device.read``, clipped at
        0 µS) in "per_step" mode; the product runs through :func:`~imssa.mapping.mapped_matvec`
        in current units with output noise and ADC applied per tile. Slow; for tests.
        """
        self._require_time()
        assert self.drifted is not None
        gen = generator if generator is not None else self.generator
        cfg, t = self.periphery, self.tensor
        v, batch = self._drive(x)
        v = dac(v, self.dac_range, cfg.dac_bits)
        if self.role in ("ssm_A", "ssm_C"):
            v = torch.view_as_complex(v.contiguous())
        z, N = self.n_chips, v.shape[1]
        scale = self._sensed_scale()
        if self.role == "ssm_C":
            scale = scale[:, 0]  # (H 1): all modes of a channel share its output's scale
        r_current = None if self.adc_range is None else self.adc_range * scale
        differential = t.encoding is Encoding.DIFFERENTIAL

        def tile_fn(I: Tensor) -> Tensor:
            if differential:
                I = I[..., 0::2] - I[..., 1::2]
            if cfg.output_noise > 0:
                assert r_current is not None
                I = I + cfg.output_noise * r_current * randn_like(I, gen)
            if cfg.adc_bits is not None:
                assert r_current is not None
                I = quantize_symmetric(I, r_current, cfg.adc_bits)
            if differential:
                I = torch.stack([I, torch.zeros_like(I)], -1).flatten(-2)
            return I

        if self.g_frozen is not None:
            y = mapped_matvec(t, v, self.g_frozen, tile_fn=tile_fn)
        else:
            d = self.drifted
            per_read = DriftedState(g=d.g.unsqueeze(1).expand(z, N, *d.g.shape[1:]),
                                    read_std=d.read_std.unsqueeze(1).expand(z, N,
                                                                            *d.g.shape[1:]),
                                    t_inference=d.t_inference)
            g = self.device.read(per_read, gen).flatten(0, 1)  # (z*N *compact): one read each
            vz = v.expand(z, *v.shape[1:]).flatten(0, 1).unsqueeze(1)  # (z*N 1 ...)
            y = mapped_matvec(t, vz, g, tile_fn=tile_fn).unflatten(0, (z, N)).squeeze(2)
        if self.alpha is not None:
            if torch.is_complex(y):
                y = torch.view_as_complex((torch.view_as_real(y) * self.alpha).contiguous())
            else:
                y = y * self.alpha
        return y.reshape(z, *batch, *y.shape[2:])


def compensation(tiles: list[AnalogTile], mode: CompensationMode,
                 generator: torch.Generator) -> Tensor:
    """Drift-compensation gains of tiles sharing output columns, shaped for decoded outputs.

    aihwkit's ``GlobalDriftCompensation`` / ``PerColumnDriftCompensation``: the ratio of the mean
    |read-out| at programming time (noiseless programmed conductances, aihwkit's baseline) to
    that of the chip's read now: an all-ones input for the global gain, one-hot inputs for
    per-column gains (see ``AnalogTile.readout``).

    Returns:
        (z, 1, ...) broadcasting against the decoded outputs (z, N, *out) of the first tile.
    """
    role = tiles[0].role
    if mode == "global":  # one all-ones read of the shared columns (the tiles' currents add)
        ref = sum(t.readout(t.g_reference, True) for t in tiles)
        now = sum(t.readout(t.current_read(generator), True) for t in tiles)
        alpha = drift_compensation_factor(ref.flatten(1).unsqueeze(-1),
                                          now.flatten(1).unsqueeze(-1), mode)  # (z,)
        return alpha.reshape(-1, 1, *[1] * _OUT_NDIM[role])
    ref = torch.cat([t.readout(t.g_reference, False) for t in tiles], -2)
    now = torch.cat([t.readout(t.current_read(generator), False) for t in tiles], -2)
    alpha = drift_compensation_factor(ref, now, mode)  # (z *grid cols)
    if role in ("ssm_C", "ssm_D"):
        alpha = alpha[..., 0]  # (z H)
    return alpha.unsqueeze(1)
