"""What runs: model specs, block families, and lowering to the dataflow graph."""
