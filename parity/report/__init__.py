"""Reports rendered from results.json only."""
