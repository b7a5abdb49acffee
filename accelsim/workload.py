"""What is being asked of the model in one step: a prefill of prompts or one decode token."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from accelsim.errors import AccelsimError
from accelsim.model.density import DensityProfile

Phase = Literal["prefill", "decode"]


@dataclass(frozen=True)
class Workload:
    """One forward step.

    prefill: ``batch`` sequences of ``prompt`` tokens each, attending causally to themselves.
    decode: ``batch`` sequences each producing one token with ``context`` tokens already cached;
    with ``spec_tokens`` K > 0, each sequence computes 1 + K tokens at once (speculative decoding's
    verify step: the last accepted token and K drafted ones, all attending causally to the cache).
    """

    phase: Phase = "decode"
    batch: int = 1
    prompt: int = 2048
    context: int = 2048
    # Per-op input activation density; None means dense.  Only hardware that skips zeros reads
    # it (see accelsim.model.density.effective_macs).  A path is read by ``accelsim.api.resolve_density``.
    density: DensityProfile | None = None
    spec_tokens: int = 0

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
        k = self.spec_tokens
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise AccelsimError(f"--spec-k must be an integer >= 0, got {k!r}")
        if k and self.phase != "decode":
            raise AccelsimError("drafted tokens (--spec-k) are verified in a decode step, not a prefill")

    @property
    def query_len(self) -> int:
        """Tokens per sequence computed in this step."""
        return self.prompt if self.phase == "prefill" else 1 + self.spec_tokens

    @property
    def kv_len(self) -> int:
        """Tokens each new query attends to (cached plus itself) at the end of the step."""
        return self.prompt if self.phase == "prefill" else self.context + self.query_len

    @property
    def tokens(self) -> int:
        """Tokens processed by every layer in this step."""
        return self.batch * self.query_len

    @property
    def tokens_credited(self) -> int:
        """Tokens a step's throughput and energy are divided by: every prompt token a prefill
        processes, one new token per sequence in decode (a verify step's accepted tokens depend
        on the acceptance rate: ``accelsim.sim.speculative`` credits them)."""
        return self.tokens if self.phase == "prefill" else self.batch

    def to_dict(self) -> dict:
        """The step's sizes as results and refusals carry them."""
        sizes = {"phase": self.phase, "batch": self.batch, "prompt": self.prompt, "context": self.context}
        return {**sizes, "spec_tokens": self.spec_tokens} if self.spec_tokens else sizes

    def describe(self) -> str:
        if self.phase == "prefill":
            return f"prefill batch={self.batch} prompt={self.prompt}"
        verify = f" verify={self.query_len}" if self.spec_tokens else ""
        return f"decode batch={self.batch} context={self.context}{verify}"
