"""The one exception type for user mistakes.

Anything raised as :class:`AscError` is printed by the CLI as a single ``error: ...``
line (no traceback) and the process exits with status 2.  Messages name the thing that
is wrong and say what to do about it.
"""


class AscError(Exception):
    """A problem with the user's input (config, data, checkpoint), not a bug."""
