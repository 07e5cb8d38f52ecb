"""imssa: simulate S4D state-space models on analog in-memory-computing crossbars."""

from imssa.errors import ImssaError

__version__ = "0.1.0"
__all__ = ["ImssaError", "__version__"]
