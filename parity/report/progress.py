"""One status line on a terminal (stderr) while frameworks load, run and compare; silent otherwise.

CI logs are not terminals, so they get no progress noise: nothing at all is
written when the stream is not a TTY.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.states: dict = {}
        self.start = time.monotonic()
        self.shown = False

    def __call__(self, subject: str, state: str) -> None:
        if not self.enabled:
            return
        self.states[subject] = state
        parts = ", ".join(f"{k} {v}" for k, v in self.states.items())
        line = f"parity: {parts} ({time.monotonic() - self.start:.0f}s)"
        self.stream.write("\r\x1b[K" + line)  # rewrite the one line in place
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
