"""Mapping S4D weights onto memristive crossbars: complex -> real blocks -> conductances -> tiles.

Follows the polarity-doubled 4x4 block of QS4D for the diagonal SSM (or a plain differential
pair, selectable) and differential column pairs for dense layers; see ``docs/architecture.md``.
Mapped tensors are named by module path (``encoder``, ``blocks.0.ssm.A_bar``, ``blocks.0.mix``,
``decoder``); each has a :class:`Role` (:mod:`imssa.mapping.roles`).
"""

from imssa.mapping.config import (
    BLOCK_SHAPE,
    MAPPING_GRANULARITIES,
    TRANSITION_SCALES,
    TRANSITIONS,
    Encoding,
    MappingConfig,
    parse_encoding,
)
from imssa.mapping.encoding import (
    blocks_to_complex,
    check_finite,
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
    to_tiles,
)
from imssa.mapping.maps import conductance_maps
from imssa.mapping.roles import (
    DENSE,
    REAL_SSM_ROLES,
    SSM_A,
    SSM_A_SPLIT,
    SSM_B,
    SSM_C,
    SSM_D,
    SSM_ROLES,
    Role,
    ssm_roles,
)
from imssa.mapping.tiling import TileLayout, pack_groups

__all__ = [
    "BLOCK_SHAPE", "DENSE", "MAPPING_GRANULARITIES", "REAL_SSM_ROLES", "SSM_A", "SSM_A_SPLIT",
    "SSM_B", "SSM_C", "SSM_D", "SSM_ROLES", "TRANSITIONS", "TRANSITION_SCALES", "Encoding",
    "MappedModel", "MappedTensor", "MappingConfig", "Role",
    "TileLayout", "blocks_to_complex", "check_finite", "complex_to_blocks",
    "complex_to_conductances", "conductance_maps", "conductances_to_complex",
    "conductances_to_weights", "crossbar_currents", "decode_currents", "decode_signed",
    "encode_drive", "encode_signed", "from_tiles", "map_linear", "map_model", "map_ssm",
    "map_weights", "mapped_matvec", "pack_groups", "parse_encoding", "reconstruct",
    "reconstruct_linear", "reconstruct_units", "split_signed", "ssm_roles", "to_tiles",
    "weights_to_conductances",
]
