"""The one exception type for mistakes a user can fix (bad flags, missing files)."""


class UserError(Exception):
    """Raised for problems the user caused; main.py prints it as one line and exits 2."""
