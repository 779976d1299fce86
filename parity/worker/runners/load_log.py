"""Missing and unexpected weights read from transformers' load warnings, where a loader has no
output_loading_info (Flax's from_pretrained, the Flax -> PyTorch converter)."""

from __future__ import annotations

import ast
import logging
import re

_LOGGED_SETS = {
    "unexpected_keys": re.compile(r"were not used when initializing[^:]*: ([\[{].*?[\]}])\n", re.S),
    "missing_keys": re.compile(r"newly\s+initialized: ([\[{].*?[\]}])\n", re.S),
}


class LoadLogCapture(logging.Handler):
    """Read missing / unexpected weights from transformers' load warnings.

    Flax's from_pretrained and the Flax->PyTorch converter have no
    output_loading_info; their warnings carry the same lists.
    """

    def __init__(self, *loggers: str):
        super().__init__(logging.WARNING)
        self.loggers = loggers
        self.info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}

    def emit(self, record):
        msg = record.getMessage()
        for key, pattern in _LOGGED_SETS.items():
            m = pattern.search(msg)
            if m:
                try:
                    self.info[key] = sorted(ast.literal_eval(m.group(1)), key=str)
                except (ValueError, SyntaxError):
                    self.info[key] = [m.group(1)]

    def __enter__(self):
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_warning()
        for name in self.loggers:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as hf_logging

        for name in self.loggers:
            logging.getLogger(name).removeHandler(self)
        hf_logging.set_verbosity(self._level)
        return False
