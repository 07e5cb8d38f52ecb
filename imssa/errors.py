"""The one exception imssa raises for bad input, so the CLI can print it without a traceback."""


class ImssaError(ValueError):
    """Bad input: the message names the argument, what was given and what is allowed."""
