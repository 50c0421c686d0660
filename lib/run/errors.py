"""The one exception type for mistakes a user can fix (bad flags, missing files), and main.py's
exit statuses."""

EXIT_USER_ERROR = 2  # a UserError: one line on stderr, nothing run (argparse uses 2 too)
# --skip_if_done found this configuration's finished results: nothing to do, nothing changed.
# Not 0, so that a caller (the sweep runner, a shell loop) can tell a skip from a fresh run.
EXIT_SKIPPED = 3


class UserError(Exception):
    """Raised for problems the user caused; main.py prints it as one line and exits
    EXIT_USER_ERROR."""
