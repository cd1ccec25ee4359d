"""The one exception type for bad input.

Every user-facing mistake (unknown key, bad value, missing data folder, foreign checkpoint) raises
`BnlabError`, a `ValueError`, with a one-line message that names the problem. The CLI turns it into
`error: <message>` on stderr and exit code 2, with no traceback.
"""


class BnlabError(ValueError):
    """Bad input from the user: the message is one line and names the problem."""
