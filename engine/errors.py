"""Errors meant for a person: every message names the file, layer or setting and the fix."""


class EngineError(Exception):
    """A problem the user can fix (bad input, missing file, wrong setting).

    Front ends print its message as is, without a traceback.
    """


class Cancelled(Exception):
    """The run was cancelled (worker terminated or Ctrl-C); outputs were discarded."""
