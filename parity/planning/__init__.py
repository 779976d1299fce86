"""Parent side, planning a check before any worker starts: options and tolerances (config), the
checkpoint and its weight routing, preflight of the files, tasks and classes, environments, the batch
and its cache, trust of custom code, behaviour requests, and the plan that joins them (plan.py)."""
