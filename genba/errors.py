"""The one exception type for user errors: the CLI prints its message as a single line and exits 2."""


class GenbaError(Exception):
    """Bad input or environment (unknown task, bad value, unwritable path, corrupt file), not a bug."""
