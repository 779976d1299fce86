"""Errors that end a run with one readable line and a fixed exit code.

Following Polygraphy: say what went wrong, then a `Note:` with the flag or
argument that changes it.
"""

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_FRAMEWORK = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT); results.json says complete: false


class ParityError(Exception):
    """Base class: a message and an optional note, rendered on one line."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, note: str | None = None):
        super().__init__(message)
        self.message = message
        self.note = note

    def one_line(self) -> str:
        text = self.message.rstrip(".") + "."
        if self.note:
            text += " Note: " + self.note
        return " ".join(text.split())


class UsageError(ParityError):
    """Bad input or usage: exit 2."""

    exit_code = EXIT_USAGE


class FrameworkError(ParityError):
    """A framework could not load or run the model: exit 3."""

    exit_code = EXIT_FRAMEWORK
