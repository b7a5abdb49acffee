"""Reading configs at the edge: safe YAML, validated immutable specs, one-line errors."""
