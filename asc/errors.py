"""The one exception type for user mistakes.

Anything raised as :class:`AscError` is printed by the CLI as a single ``error: ...``
line (no traceback) and the process exits with status 2.  Messages name the thing that
is wrong and say what to do about it.
"""


class AscError(Exception):
    """A problem with the user's input (config, data, checkpoint), not a bug."""


def did_you_mean(name: str, known) -> str:
    """`` (did you mean 'x'?)`` for a misspelt or misplaced dotted key, else ``''``.

    A key whose last part is a known key's last part is suggested whole (``max_epochs`` ->
    ``trainer.max_epochs``); otherwise the closest known keys by spelling (``model.poolng``
    -> ``model.pooling``).
    """
    import difflib

    known = sorted(set(known))
    leaf = name.rsplit(".", 1)[-1]
    close = [k for k in known if k.rsplit(".", 1)[-1] == leaf and k != name]
    close = close or difflib.get_close_matches(name, known, n=1, cutoff=0.8)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(k) for k in close[:2]) + "?)"
