"""The worker side: what runs inside a framework's process (the serve loop, the runners and their
workarounds, generation, pipelines, weight export, the --explain probes, a pool's fork template).

It imports parity.contracts only, never the parent side (tests/test_layers.py keeps it so); the parent
reaches it through files (parity.contracts.protocol), and inline mode alone calls its serve loop in-process.
"""
