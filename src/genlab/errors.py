"""The one exception type genlab raises for bad input.

The CLI turns a :class:`GenlabError` into a single line on stderr and exit code 2; anything else
is a bug and keeps its traceback.
"""


class GenlabError(Exception):
    """Bad input from the user: the message names the problem and what to do about it."""
