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
effective arrays are signed weights; their layouts per role are in :mod:`imssa.mapping.roles`.
A dense bias is one more row driven by 1 (not through the DAC). Pieces are summed digitally after
their ADCs; the polarity-doubled outputs (y, -y) are averaged after theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from imssa.crossbar.periphery import Compensation, PeripheryConfig, dac, quantize_symmetric, sense
from imssa.devices import Device, DriftedState, drift_compensation_factor
from imssa.devices.base import randn_like
from imssa.errors import ImssaError
from imssa.mapping import Encoding, MappedTensor, Role, mapped_matvec, reconstruct_units


class SensedArrays(NamedTuple):
    """Effective arrays of one tensor at one inference time (layouts in :mod:`imssa.mapping.roles`).

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


def check_memristor(memristor: object) -> Device:
    """``memristor`` itself if it is an imssa Device, else a clear error."""
    if not isinstance(memristor, Device):
        raise ImssaError(f"memristor must be an imssa Device (e.g. make_device('pcm')), got "
                         f"{type(memristor).__name__}")
    return memristor


def check_window(mapped_g_min: float, mapped_g_max: float, memristor: Device) -> None:
    """The mapping's conductance window must lie inside the device's programmable one."""
    cfg = memristor.config
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
        memristor: the memristive device model (programming, drift, read noise).
        periphery: DAC, ADC, output noise, read-noise mode and drift compensation.
        n_chips: independent chip instances (programming errors), a leading dim everywhere.
        seed: int or torch.Generator (on the tensor's device) for programming and later draws.

    Call :meth:`set_time` before a forward; :meth:`calibrate` when the periphery needs ranges
    (standalone use; a converted model's analog modules calibrate their tiles themselves).
    """

    def __init__(self, tensor: MappedTensor, memristor: Device,
                 periphery: PeripheryConfig | None = None, *, n_chips: int = 1,
                 seed: int | torch.Generator = 0) -> None:
        if isinstance(n_chips, bool) or not isinstance(n_chips, int) or n_chips < 1:
            raise ImssaError(f"n_chips must be an integer >= 1, got {n_chips!r}")
        check_window(tensor.g_min, tensor.g_max, check_memristor(memristor))
        self.tensor, self.memristor = tensor, memristor
        self.periphery = periphery if periphery is not None else PeripheryConfig()
        self.n_chips = n_chips
        self.generator = make_generator(seed, tensor.g_target.device)
        g = tensor.g_target
        self.programmed = memristor.program(g.expand(n_chips, *g.shape), self.generator)
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
    def role(self) -> Role:
        return self.tensor.role

    @property
    def read_noise_mode(self) -> str:
        return self.periphery.read_noise_mode or self.memristor.config.read_noise_mode

    def _sensed_scale(self) -> Tensor:
        """Conductance scale (µS per weight unit) per sensed output, (*grid, sensed)."""
        t = self.tensor
        s = t.scale[..., 0]  # (*grid, out_unit)
        if t.encoding is Encoding.POLARITY_BLOCK and t.doubled:
            s = torch.cat([s, s], -1)  # the outputs y and -y share a scale
        return s

    def range_shape(self, granularity: str) -> tuple[int, ...]:
        """Shape of the ADC range of this tensor's sensed outputs; pieces of a column share it."""
        if granularity == "tensor":
            return ()
        return self.role.range_shape(self.tensor, self._sensed_scale().shape[-1])

    def arrays(self, g: Tensor, var: Tensor | None) -> SensedArrays:
        """Effective sensed arrays from conductances g and read variances var, (z, *compact)."""
        s = self._sensed_scale().unsqueeze(-2)  # (*grid, 1, sensed)
        W = _fold(g, self.tensor.encoding, -1.0) / s
        V = None if var is None else _fold(var, self.tensor.encoding, 1.0) / s.square()
        t, role = self.tensor, self.role
        return SensedArrays(role.layout(t, W), None if V is None else role.layout(t, V))

    # --- the fast path ----------------------------------------------------------------------
    def sense(self, v: Tensor, arrays: SensedArrays,
              acc: tuple[Tensor | None, Tensor | None] = (None, None)
              ) -> tuple[Tensor, Tensor | None]:
        """Noiseless sensed outputs and their read-noise variance for drive ``v``.

        Args:
            v: (z|1, N, ...) DAC outputs in the role's drive layout (:mod:`imssa.mapping.roles`).
            arrays: effective arrays (``self.now`` or ``self.target``).
            acc: sensed outputs and variances of tensors sharing these columns (full shape,
                added to in place), e.g. B's for A; ssm_A only.

        Returns:
            mean (z, N, ...) sensed outputs in weight units, var like it or None.
        """
        W, V = arrays
        v, product = self.role.drive(self.tensor, v, W)
        mean = product(v, W, acc[0])
        if V is not None:
            var = product(v.square(), V, acc[1])
        else:
            var = None if acc[1] is None else self.role.widen(acc[1])
        return mean, var

    def decode(self, o: Tensor) -> Tensor:
        """Sensed outputs after the ADC -> decoded logical outputs (sum pieces, average (y, -y))."""
        return self.role.decode(self.tensor, o)

    def _drive(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        """Logical input (z|1, *batch, *in) -> drive (z|1, N, ...) and the batch shape."""
        role = self.role
        if role.complex_in != torch.is_complex(x):
            raise ImssaError(f"{self.tensor.name} ({role}) takes a "
                             f"{'complex' if role.complex_in else 'real'} input, got {x.dtype}")
        if x.ndim < role.in_dims + 1 or x.shape[0] not in (1, self.n_chips):
            raise ImssaError(f"{self.tensor.name}: input must be (chips or 1, ..., logical in) "
                             f"with {self.n_chips} chips, got {tuple(x.shape)}")
        batch = tuple(x.shape[1:x.ndim - role.in_dims])
        v = torch.view_as_real(x) if role.complex_in else x
        return v.reshape(v.shape[0], -1, *v.shape[1 + len(batch):]), batch

    def _output(self, y: Tensor, batch: tuple[int, ...]) -> Tensor:
        y = y.reshape(y.shape[0], *batch, *y.shape[2:])
        return torch.view_as_complex(y.contiguous()) if self.role.complex_out else y

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
        self.drifted = drifted = self.memristor.drift(self.programmed, t_inference, gen)
        if self.read_noise_mode == "per_inference":
            self.g_frozen = self.memristor.read(drifted, gen)
            self.now = self.arrays(self.g_frozen, None)
        else:
            self.g_frozen = None
            var = drifted.read_std.square()
            self.now = self.arrays(drifted.g, var if bool((var > 0).any()) else None)
        mode = self.periphery.drift_compensation
        self.alpha = None if mode == "none" else compensation([self], mode, gen)

    def readout(self, g: Tensor, all_ones: bool) -> Tensor:
        """Read-out outputs, (z, *grid, reads, outputs) (weight units): one read per input
        (one-hot inputs, aihwkit's ``get_readout_tensor`` = eye(in_size): the signed weights
        themselves), or with ``all_ones`` a single read of an all-ones input. Summing over inputs
        averages programming noise out; one-hot reads let it inflate mean |w|, but keep a
        per-column gain well conditioned where a column's signed weights sum to ~0.

        Tensors sharing output columns (A and B, C and D) concatenate along ``reads``.
        """
        W = self.role.readout(reconstruct_units(self.tensor, g).mT)  # (z *grid in out)
        return W.sum(-2, keepdim=True) if all_ones else W

    def current_read(self, generator: torch.Generator) -> Tensor:
        """Conductances as the chip reads them now: the frozen read, or one fresh read."""
        if self.drifted is None:
            raise ImssaError(f"{self.tensor.name}: call set_time(t_inference) first")
        if self.g_frozen is not None:
            return self.g_frozen
        return self.memristor.read(self.drifted, generator)

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
        if self.role.complex_in:
            v = torch.view_as_complex(v.contiguous())
        z, N = self.n_chips, v.shape[1]
        scale = self.role.current_scale(self._sensed_scale())
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
            g = self.memristor.read(per_read, gen).flatten(0, 1)  # (z*N *compact): one read each
            vz = v.expand(z, *v.shape[1:]).flatten(0, 1).unsqueeze(1)  # (z*N 1 ...)
            y = mapped_matvec(t, vz, g, tile_fn=tile_fn).unflatten(0, (z, N)).squeeze(2)
        if self.alpha is not None:
            if torch.is_complex(y):
                y = torch.view_as_complex((torch.view_as_real(y) * self.alpha).contiguous())
            else:
                y = y * self.alpha
        return y.reshape(z, *batch, *y.shape[2:])


def compensation(tiles: list[AnalogTile], mode: Compensation,
                 generator: torch.Generator) -> Tensor:
    """Drift-compensation gains of tiles sharing output columns, shaped for decoded outputs.

    The ratio of the mean |read-out| at programming time (noiseless programmed conductances,
    aihwkit's baseline) to that of the chip's read now (``AnalogTile.readout``):

    - "global": aihwkit 1.2.0's ``GlobalDriftCompensation``: one-hot read-outs
      (``get_readout_tensor`` = eye(in_size)) of every input of the shared columns, readout =
      mean |output| over all reads and outputs; one gain per chip. The mean runs over the cells
      a tensor uses (the compact layout), which gives aihwkit's ratio on the whole logical
      matrix, whose unused cells read 0 in both means (up to the clamp of a mean at 1e-4).
    - "global_ones": one all-ones read-out of the shared columns (the tiles' currents add), the
      mean |output| over the outputs: Joshi et al., Nat. Commun. 11, 2473 (2020), which sums over
      the inputs so programming noise averages out; one gain per chip.
    - "per_column": aihwkit's ``PerColumnDriftCompensation``: one-hot read-outs, mean |output|
      over the reads, one gain per output (column).

    Returns:
        (z, 1, ...) broadcasting against the decoded outputs (z, N, *out) of the first tile.
    """
    ones = mode == "global_ones"

    def read(g_of: Callable[[AnalogTile], Tensor]) -> Tensor:
        reads = [t.readout(g_of(t), ones) for t in tiles]
        width = max(r.shape[-1] for r in reads)  # B_bar drives the first columns of a split A
        reads = [F.pad(r, (0, width - r.shape[-1])) for r in reads]
        return sum(reads[1:], reads[0]) if ones else torch.cat(reads, -2)  # currents add

    ref = read(lambda t: t.g_reference)
    now = read(lambda t: t.current_read(generator))
    role = tiles[0].role
    if mode == "per_column":
        return role.column_gain(drift_compensation_factor(ref, now, "per_column")).unsqueeze(1)
    alpha = drift_compensation_factor(ref.flatten(1).unsqueeze(-1), now.flatten(1).unsqueeze(-1),
                                      "global")  # (z,)
    return alpha.reshape(-1, 1, *[1] * role.out_ndim)
