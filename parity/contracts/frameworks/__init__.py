"""Each framework's facts, one module per framework, as plain data (no framework imported)."""
