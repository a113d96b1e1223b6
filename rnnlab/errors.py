"""The one exception a user can cause; the CLI prints it as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user: a file, row, column, label or option. The message names it."""
