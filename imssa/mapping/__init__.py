"""Mapping S4D weights onto memristive crossbars: complex -> real blocks -> conductances -> tiles.

Follows the polarity-doubled 4x4 block of QS4D for the diagonal SSM (or a plain differential
pair, selectable) and differential column pairs for dense layers; see ``docs/architecture.md``.
"""

from imssa.mapping.config import BLOCK_SHAPE, Encoding, MappingConfig, parse_encoding
from imssa.mapping.encoding import (
    blocks_to_complex,
    complex_to_blocks,
    complex_to_conductances,
    conductances_to_complex,
    conductances_to_weights,
    decode_currents,
    decode_signed,
    encode_drive,
    encode_signed,
    split_signed,
    weights_to_conductances,
)
from imssa.mapping.mapped import (
    MappedLayer,
    MappedModel,
    MappedTensor,
    crossbar_currents,
    from_tiles,
    map_linear,
    map_model,
    map_ssm,
    map_weights,
    mapped_matvec,
    reconstruct,
    reconstruct_linear,
    reconstruct_units,
    ssm_unit_weights,
    to_tiles,
)
from imssa.mapping.maps import conductance_maps
from imssa.mapping.tiling import TileLayout, pack_groups

__all__ = [
    "BLOCK_SHAPE", "Encoding", "MappedLayer", "MappedModel", "MappedTensor", "MappingConfig",
    "TileLayout", "blocks_to_complex", "complex_to_blocks", "complex_to_conductances",
    "conductance_maps", "conductances_to_complex", "conductances_to_weights",
    "crossbar_currents", "decode_currents", "decode_signed", "encode_drive", "encode_signed",
    "from_tiles", "map_linear", "map_model", "map_ssm", "map_weights", "mapped_matvec",
    "pack_groups", "parse_encoding", "reconstruct", "reconstruct_linear", "reconstruct_units",
    "split_signed", "ssm_unit_weights", "to_tiles", "weights_to_conductances",
]
