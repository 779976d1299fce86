"""Flax runner: FlaxAutoModel classes, matmul precision 'highest', no preallocation."""

from __future__ import annotations

import ast
import logging
import os
import re

from ..errors import FrameworkError
from ..outputs import flatten
from . import bridge
from .base import LoadReport, Runner

_SETS = {
    "unexpected_keys": re.compile(r"were not used when initializing \w+: (\{.*?\})\n", re.S),
    "missing_keys": re.compile(r"newly initialized: (\{.*?\})\n", re.S),
}


class _Capture(logging.Handler):
    """Flax's from_pretrained has no output_loading_info: read its warnings instead."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.info = {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}

    def emit(self, record):
        msg = record.getMessage()
        for key, pattern in _SETS.items():
            m = pattern.search(msg)
            if m:
                try:
                    self.info[key] = sorted(ast.literal_eval(m.group(1)))
                except (ValueError, SyntaxError):
                    self.info[key] = [m.group(1)]


class FlaxRunner(Runner):
    framework = "flax"
    requires = ("jax", "flax")

    def _load_impl(self) -> LoadReport:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        import transformers
        from transformers.utils import logging as hf_logging

        jax.config.update("jax_default_matmul_precision", "highest")
        if self.spec.device == "cpu":
            jax.config.update("jax_platforms", "cpu")
        platform = jax.devices()[0].platform
        if self.spec.device == "gpu" and platform != "gpu":
            raise FrameworkError("--device gpu but JAX sees no GPU", "pass --device auto or cpu")
        self.device = jax.devices()[0]

        cls = getattr(transformers, self.spec.class_name)
        path, tmp = self.spec.path, None
        kwargs = {}
        if self.spec.converted_from == "tf":
            tmp = bridge.via_pytorch(path, self.spec.class_name, "tf")
            path, kwargs["from_pt"] = str(tmp), True
        elif self.spec.converted_from == "pt":
            kwargs["from_pt"] = True
        capture = _Capture()
        logger = logging.getLogger("transformers.modeling_flax_utils")
        logger.addHandler(capture)
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_warning()
        try:
            with jax.default_device(self.device):
                self.model = cls.from_pretrained(path, **kwargs)
        finally:
            logger.removeHandler(capture)
            hf_logging.set_verbosity(level)
            bridge.cleanup(tmp)
        return self._report(f"{platform}:{self.device.id}" if platform != "cpu" else "cpu", capture.info)

    def _run_impl(self, arrays: dict) -> dict:
        import jax
        import numpy as np

        with jax.default_device(self.device):
            out = self.model(**arrays, output_hidden_states=self.spec.output_hidden_states,
                             output_attentions=self.spec.output_attentions, return_dict=True, train=False)
        return flatten(dict(out.items()), np.asarray)
