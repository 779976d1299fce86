"""The bottom layer, shared by both sides of the process boundary: errors and exit codes, atomic writes,
the framework descriptors and their registry (plain data), the worker protocol (LoadSpec, requests,
reports), the batch and weight-export files, output names, the results schema, library versions, the
conversion cache's layout and process helpers. It imports nothing of parity above it."""
