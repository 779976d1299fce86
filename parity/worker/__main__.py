"""``python -m parity.worker request.json`` (one check) or ``--serve-loop`` (a kept worker): parity.worker.serving."""

import os
import sys

from parity.worker.serving import main

code = main()
# Everything is written (outputs, then the report, atomically). Interpreter teardown (TF's
# and JAX's runtimes, torch's thread pools; ~0.8 CPU-s for MiniLM's three workers) would
# only take CPU from the workers still running.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
