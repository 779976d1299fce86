"""Benchmark of `parity check` against a hand-written check: ``python -m bench.run`` (see bench/run.py)."""
