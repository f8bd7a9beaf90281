"""The one exception type genlab raises for bad input.

The CLI turns a :class:`GenlabError` into a single line on stderr and exit code 2; anything else
is a bug and keeps its traceback.
"""


class GenlabError(Exception):
    """Bad input from the user: the message names the problem and what to do about it.

    ``param``: the Python parameter at fault, when there is one. Library messages name it as
    a Python user passed it (``train_size``); the CLI rewrites that name into its own flag
    (``--train-size``, or ``--set name=`` for an experiment's extra parameter).
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
