"""Parent side, numpy only: comparisons of outputs (compare, agreement), of behaviour (generation,
pipelines), of weights, and the --explain diagnosis; they read results and reports, never live models."""
