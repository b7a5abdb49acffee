"""Predictions against published measurements (``accelsim validate``) and calibration of the
hardware efficiency constants on a documented subset of them (docs/validation.md)."""
from accelsim.validate.run import Validation, validate

__all__ = ["Validation", "validate"]
