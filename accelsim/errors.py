"""The one error type users see: a single line naming where the problem is and what is allowed."""
from __future__ import annotations


class AccelsimError(Exception):
    """A user-facing error; the CLI prints ``str(err)`` on one line and exits 2."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.source = source
        self.key = key
        self.message = message
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(p for p in (self.source, self.key) if p)
        text = f"{where}: {self.message}" if where else self.message
        return " ".join(text.split())


class ConfigError(AccelsimError):
    """A YAML/JSON config that cannot be read or does not validate."""


class CannotRunError(AccelsimError):
    """This hardware cannot run this model or workload (a real limit, reported as a result by
    commands that compare several chips, not an input mistake)."""


class CannotSplitError(AccelsimError):
    """Tensor parallelism of this many ranks cannot split this model (heads it does not divide,
    an op it cannot cut): a caller choosing the split itself tries a smaller one instead."""


class NotFiniteError(AccelsimError):
    """A step whose figures would overflow or divide by an underflowed zero: the config's
    numbers, each allowed, are too extreme together.  Refused, never reported as NaN or inf."""


class DoesNotFitError(CannotRunError):
    """A model/workload whose memory footprint exceeds what the hardware offers.  ``shortfall``
    ("needs X (parts) but hbm holds Y"), where given, lets a caller that asked on the user's
    behalf (``serve``'s one-request probe) word the line in the user's own terms."""

    def __init__(self, message: str, *, shortfall: str | None = None, **where: str | None):
        self.shortfall = shortfall
        super().__init__(message, **where)
