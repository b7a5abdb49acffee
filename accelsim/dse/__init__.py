"""Design-space exploration: spaces (YAML), search, Pareto fronts, the vectorised fast path,
checkpointed local/Dask runners."""
