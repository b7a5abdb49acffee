"""One module per block family; each lowers its block into ops on a ``LoweringContext``."""
