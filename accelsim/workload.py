"""What is being asked of the model in one step: a prefill of prompts or one decode token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from accelsim.density import DensityProfile
from accelsim.errors import AccelsimError

Phase = Literal["prefill", "decode"]


@dataclass(frozen=True)
class Workload:
    """One forward step.

    prefill: ``batch`` sequences of ``prompt`` tokens each, attending causally to themselves.
    decode: ``batch`` sequences each producing one token with ``context`` tokens already cached.
    """

    phase: Phase = "decode"
    batch: int = 1
    prompt: int = 2048
    context: int = 2048
    # Per-op input activation density; None means dense.  Only hardware that skips zeros reads
    # it (see accelsim.density.effective_macs).  A path is read by ``accelsim.api.resolve_density``.
    density: DensityProfile | None = None

    def __post_init__(self) -> None:
        if self.density is not None and not isinstance(self.density, DensityProfile):
            raise AccelsimError("density must be a DensityProfile (accelsim.api.resolve_density reads "
                                f"one from a path), got {type(self.density).__name__}")
        if self.phase not in ("prefill", "decode"):
            raise AccelsimError(f"phase must be 'prefill' or 'decode', got {self.phase!r}")
        for name in ("batch", "prompt", "context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "context" else 1):
                floor = 0 if name == "context" else 1
                raise AccelsimError(f"--{name} must be an integer >= {floor}, got {value!r}")

    @property
    def query_len(self) -> int:
        """Tokens per sequence computed in this step."""
        return self.prompt if self.phase == "prefill" else 1

    @property
    def kv_len(self) -> int:
        """Tokens each new query attends to (cached plus itself) at the end of the step."""
        return self.prompt if self.phase == "prefill" else self.context + 1

    @property
    def tokens(self) -> int:
        """Tokens processed by every layer in this step."""
        return self.batch * self.query_len

    @property
    def tokens_credited(self) -> int:
        """Tokens a step's throughput and energy are divided by: every prompt token a prefill
        processes, one new token per sequence in decode."""
        return self.tokens if self.phase == "prefill" else self.batch

    def to_dict(self) -> dict:
        """The step's sizes as results and refusals carry them."""
        return {"phase": self.phase, "batch": self.batch, "prompt": self.prompt, "context": self.context}

    def describe(self) -> str:
        if self.phase == "prefill":
            return f"prefill batch={self.batch} prompt={self.prompt}"
        return f"decode batch={self.batch} context={self.context}"
