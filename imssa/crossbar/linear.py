"""The analog dense layer: encoder, mixing (GLU) and decoder of a converted S4D model.

    x (chips|1, *batch, in) -> DAC ("input") -> differential column pairs (bias: a row at 1)
        -> read noise -> ADC ("output"), per piece of a column cut over tiles, pieces summed
        -> drift-compensation gain -> y (chips, *batch, out)

All time steps run at once, in chunks of rows holding at most ``DENSE_CHUNK_ELEMENTS`` output
elements (chips x rows x columns), to bound the memory of long sequences.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imssa.crossbar.chips import AnalogPart, ChipSet
from imssa.crossbar.tile import AnalogTile
from imssa.mapping import MappedTensor

DENSE_CHUNK_ELEMENTS = 2**26


class AnalogLinear(AnalogPart):
    """A dense layer (an ``nn.Linear``'s weight and bias) programmed on every chip.

    Args:
        tensor: the mapped weight, named by the module's path ("encoder", "blocks.0.mix").
        chips: the converted model's chip set (programming draws from its generator).
        entry: whether this is the first analog module of the graph (its input has no chip axis).
    """

    CONVERTERS = {"input": "dac", "output": "adc"}

    def __init__(self, tensor: MappedTensor, chips: ChipSet, entry: bool) -> None:
        super().__init__(tensor.name, chips, entry)
        self.tile = chips.tile(tensor)
        self.in_features = tensor.compact_shape[0] - int(tensor.has_bias)
        self.out_features = tensor.compact_shape[1] // 2

    def tiles(self) -> list[AnalogTile]:
        return [self.tile]

    def groups(self) -> dict[str, list[AnalogTile]]:
        return {"output": [self.tile]}

    def served(self) -> dict[str, list[AnalogTile]]:
        return {"input": [self.tile], "output": [self.tile]}

    @torch.no_grad()
    def forward(self, x: Tensor) -> Tensor:
        """x: (chips or 1, *batch, in) ((*batch, in) for the entry module) -> (chips, *batch, out)."""
        x = self.begin(x)
        tile = self.tile
        batch = x.shape[1:-1]
        v = self.dac("input", x.reshape(x.shape[0], -1, x.shape[-1]))  # (z|1 N in)
        arrays = self.arrays(tile)
        W = arrays.W
        N, per_row = v.shape[1], W.shape[0] * W.shape[1] * W.shape[3]  # z * P * out
        rows = max(1, DENSE_CHUNK_ELEMENTS // per_row)
        ys = []
        for v_chunk in v.split(rows, dim=1):
            mean, var = tile.sense(v_chunk, arrays)
            ys.append(tile.decode(self.adc("output", tile, mean, var, total=per_row * N)))
        y = torch.cat(ys, 1) if len(ys) > 1 else ys[0]
        alpha = self.gain("output")
        if alpha is not None:
            y = y * alpha
        return y.reshape(y.shape[0], *batch, y.shape[-1])
