"""The one exception type the CLI turns into "exit code 2 and one clear sentence"."""


class HatError(Exception):
    """Bad input or an unmet precondition the user can fix.

    The message is shown to the user as is, so it must be one complete sentence that says
    what was wrong and what is allowed. Library code raises it; only the CLI exits.
    """
