"""Workarounds for upstream defects, one small module each; each docstring names the defect and the
versions it was seen in, so it can be dropped when the pinned stack no longer needs it."""
