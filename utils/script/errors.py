"""The project's own user-facing errors: bad paths, bad files, bad flags.

The scripts print a `UserError` as one line (`error: ...`) and exit 1; any other exception is a bug or
an unexpected failure and keeps its full traceback. Each concrete class also derives from the builtin
a caller would expect (ValueError, FileNotFoundError, ...), so `except ValueError` keeps working.
"""


class UserError(Exception):
    """A problem the user can fix from the message alone."""


class BadInputError(UserError, ValueError):
    """A file, folder, option or environment variable holds something unusable."""


class MissingInputError(UserError, FileNotFoundError):
    """A file or folder the run needs does not exist."""


class OutputError(UserError, OSError):
    """An output cannot be written (no space left, permission denied, read-only file system)."""

    def __init__(self, message, errno=None):
        super().__init__(message)  # one argument: str() is the message alone, not "[Errno n] ..."
        self.errno = errno


class NonFiniteLossError(UserError, RuntimeError):
    """A loss (or the model's predictions) became NaN or inf; training stops before anything is saved."""


def first_few(items, k: int = 5) -> str:
    """The first `k` items, comma separated, with ', ...' when there are more (for an error message)."""
    items = [str(item) for item in items]
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def one_line(error: BaseException) -> str:
    """An exception's message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__
