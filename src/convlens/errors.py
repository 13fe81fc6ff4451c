"""The one exception type for mistakes a user can fix: bad paths, corrupt files, bad flags."""


class UserError(Exception):
    """A problem the user caused and can fix; the CLI prints it as one line and exits with 2.

    The message names the problem and, where there is one, the fix.
    """

    exit_code = 2
