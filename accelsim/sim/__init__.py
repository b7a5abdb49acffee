"""Simulation: per-op analytical cost, the mapper, and whole-step results."""
