"""The one exception type the CLI turns into a single readable line (no traceback)."""


class HarnessError(Exception):
    """A problem the user can fix: bad input, missing files, unknown names.

    The message is shown as-is after ``error:``; it should name the file (and line) at fault
    and, where there is one, the way to recover.
    """


def error_line(exc: HarnessError) -> str:
    """The one line a command prints for ``exc``: ``error: `` + its message, lines joined."""
    return "error: " + " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def first_line(exc: BaseException) -> str:
    """The first non-empty line of a third-party exception's message (its type name if none), for
    wrapping it in a one-line HarnessError."""
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
