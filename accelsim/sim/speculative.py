"""Speculative decoding's cost model, as pure functions of step times.

A draft proposes K tokens one at a time; the target model then checks all of them in one
*verify* step, a decode step that computes K + 1 tokens per sequence (the last accepted token
and the K drafts; ``Workload.spec_tokens``).  With each drafted token accepted independently
with probability a, the verify step commits the accepted prefix plus one token of its own, on
average

    E[tokens per verify step] = (1 - a^(K+1)) / (1 - a)

(source: Leviathan, Kalman and Matias, "Fast Inference from Transformers via Speculative
Decoding", ICML 2023, arXiv 2211.17192, eq. (1)).  One round costs K draft steps and the
verify step, so a user sees a token every

    TPOT = (K * t_draft + t_verify) / E[tokens per verify step].

The draft is a catalogue model on the same chips, or ``mtp``: the target's own
multi-token-prediction module (DeepSeek-V3/R1, ``model.lower.lower_mtp``), run K times per round
as SGLang and vLLM run a single MTP module for more than one draft token.  Each draft step is
costed at the round's starting context (the K extra cached tokens change it by K / context).

Nothing here costs a step: ``accelsim.api.speculative`` costs the three steps (an ordinary
decode, the verify step and a draft step, ``pipeline.draft_step``) through the one pipeline and
hands the times to ``figures``; the serving loop (``sim.serving``, ``serve --spec-decode``) costs
its rounds with its memoised ``CostModel.decode_round`` and advances each sequence by
``accepted_tokens``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from accelsim.errors import AccelsimError
from accelsim.sim.result import Result
from accelsim.transform import Parallelism

MTP = "mtp"  # --spec-decode mtp: the target model's own multi-token-prediction module


@dataclass(frozen=True)
class SpecDecode:
    """What the user asked for: the draft (a model name or path, or ``mtp``), the draft length
    K and the per-token acceptance rate a in [0, 1)."""

    draft: str
    k: int
    accept: float

    def __post_init__(self) -> None:
        if not isinstance(self.draft, str) or not self.draft.strip():
            raise AccelsimError("--spec-decode needs a draft: a catalogue model name, a model "
                                "YAML/config.json path, or 'mtp' (the model's own MTP module)")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise AccelsimError(f"--spec-k must be an integer >= 1 (draft tokens per verify step), "
                                f"got {self.k!r}")
        a = self.accept
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a) or not 0 <= a < 1:
            raise AccelsimError(f"--spec-accept must be a number in [0, 1) (the chance each drafted "
                                f"token is accepted), got {a!r}")

    @property
    def uses_mtp(self) -> bool:
        return self.draft == MTP


def accepted_tokens(accept: float, k: int) -> float:
    """Expected tokens one verify step commits per sequence (Leviathan et al. 2023, eq. (1)):
    the accepted drafts and the token the target adds itself; 1 at a = 0, K + 1 as a -> 1."""
    return (1.0 - accept ** (k + 1)) / (1.0 - accept)


def accept_for_tokens(tokens_per_step: float, k: int) -> float:
    """The per-token acceptance rate a at which ``accepted_tokens(a, k)`` equals
    ``tokens_per_step``: the inverse of Leviathan's formula, for published figures that give the
    mean accepted length per verify step (engines log it as the "acceptance length") rather
    than a.  The formula rises strictly with a on [0, 1), from 1 to K + 1, so bisection finds the
    one root; a length outside (1, K + 1) has no such a."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise AccelsimError(f"draft length must be an integer >= 1, got {k!r}")
    if not math.isfinite(tokens_per_step) or not 1.0 <= tokens_per_step < k + 1:
        raise AccelsimError(f"an acceptance length of {tokens_per_step!r} tokens per verify step is not "
                            f"reachable with {k} draft tokens (allowed: 1 <= length < {k + 1})")
    low, high = 0.0, 1.0
    for _ in range(60):  # 2^-60: far below any figure's precision
        mid = (low + high) / 2
        if accepted_tokens(mid, k) < tokens_per_step:
            low = mid
        else:
            high = mid
    return low


def round_s(verify_s: float, draft_step_s: float, k: int) -> float:
    """One speculative round: K draft steps, then the verify step (they run one after the other:
    each draft token needs the one before it, and the verify step needs them all)."""
    return k * draft_step_s + verify_s


def draft_layout(target: Parallelism | None, draft_has_experts: bool) -> Parallelism | None:
    """The draft's layout on the target's chips: the same tensor and attention data
    parallelism (engines shard the draft like the target), one pipeline stage (an MTP module
    sits after the last layer; a small draft model is not cut into stages), and expert
    parallelism only for a draft with experts."""
    if target is None:
        return None
    return replace(target, pp=1, chips=0, ep=target.ep if draft_has_experts else 1)


@dataclass(frozen=True)
class SpecFigures:
    """Speculative decoding's effective figures for one batch of users at one context."""

    draft: str
    k: int
    accept: float
    batch: int
    tokens_per_step: float   # expected tokens each verify step commits per sequence
    verify_s: float          # the verify step (K + 1 tokens per sequence)
    draft_step_s: float      # one draft step (one token per sequence)
    baseline_tpot_s: float   # an ordinary decode step, without speculation

    @property
    def round_s(self) -> float:
        return round_s(self.verify_s, self.draft_step_s, self.k)

    @property
    def tpot_s(self) -> float:
        """Effective time per output token a user sees."""
        return self.round_s / self.tokens_per_step

    @property
    def tokens_per_s_per_user(self) -> float:
        return 1.0 / self.tpot_s

    @property
    def tokens_per_s(self) -> float:
        return self.batch / self.tpot_s

    @property
    def speedup(self) -> float:
        """Baseline TPOT over effective TPOT (below 1: speculation costs more than it saves)."""
        return self.baseline_tpot_s / self.tpot_s

    def to_dict(self) -> dict[str, Any]:
        return {"draft": self.draft, "k": self.k, "accept": self.accept, "batch": self.batch,
                "accepted_tokens_per_step": self.tokens_per_step, "verify_s": self.verify_s,
                "draft_step_s": self.draft_step_s, "round_s": self.round_s, "tpot_s": self.tpot_s,
                "tokens_per_s_per_user": self.tokens_per_s_per_user, "tokens_per_s": self.tokens_per_s,
                "baseline_tpot_s": self.baseline_tpot_s, "speedup": self.speedup}


def figures(spec: SpecDecode, verify_s: float, draft_step_s: float, baseline_s: float,
            batch: int) -> SpecFigures:
    """The effective figures from the three step times (seconds) of one batch."""
    for name, value in (("verify", verify_s), ("draft", draft_step_s), ("baseline", baseline_s)):
        if not math.isfinite(value) or value <= 0:
            raise AccelsimError(f"speculative decoding: the {name} step took {value!r} s; a step "
                                f"must take a positive, finite time")
    return SpecFigures(spec.draft, spec.k, float(spec.accept), batch,
                       accepted_tokens(spec.accept, spec.k), verify_s, draft_step_s, baseline_s)


@dataclass(frozen=True)
class SpecResult:
    """The three costed steps behind the figures: an ordinary decode step (``baseline``), the
    verify step and one draft step."""

    baseline: Result
    verify: Result
    draft: Result
    figures: SpecFigures

    def to_dict(self) -> dict[str, Any]:
        """The ordinary step's result with a ``speculative`` section (the figures and the
        verify and draft steps' latency and bound)."""
        return {**self.baseline.to_dict(),
                "speculative": {**self.figures.to_dict(),
                                "verify_model": self.verify.model, "draft_model": self.draft.model,
                                "draft_chips": self.draft.chips}}
